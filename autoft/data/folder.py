"""ImageFolder sources: one sub-folder per class, optionally inside train/ val/ (validation/) test/ folders.

With `flatten_nested=True` every folder that holds images directly is a class named by its path below the
class root, joined with NESTED_SEPARATOR ("animals/cat"): "/" cannot occur in a folder name, so the names
never collide. Symlinked folders and image files are followed, loops are not (autoft.data.walk).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from autoft.data import walk
from autoft.data.source import RawSplit, Source, SplitName, decode_file, decode_file_sizes, hash_files
from autoft.data.walk import Folder
from autoft.errors import DataError

__all__ = ["load_folder", "NESTED_SEPARATOR"]

NESTED_SEPARATOR = "/"

_SPLIT_DIRS = {"train": SplitName.TRAIN, "val": SplitName.VAL, "validation": SplitName.VAL, "test": SplitName.TEST}


def load_folder(root: Path, *, flatten_nested: bool = False) -> Source:
    """Scan `root` (no decoding) into a Source; DataError when the layout breaks a rule."""
    scan = _scan_nested if flatten_nested else _scan_classes
    top = walk.start(root)
    subdirs = walk.subfolders(top)
    if not subdirs:
        raise DataError(f"{root}: no class sub-folders (expected one folder of images per class)")
    names = {d.path.name for d in subdirs}
    # train/ must hold class folders; walking it twice warns once about a loop in it (walk dedupes).
    is_split_layout = "train" in names and names <= set(_SPLIT_DIRS) and bool(
        walk.subfolders(next(d for d in subdirs if d.path.name == "train")))
    if not is_split_layout:
        classes = scan(top)
        class_names = _check_class_count(root, sorted(classes))
        splits = {SplitName.TRAIN: _raw_split(classes, class_names)}
        kind = "ImageFolder, nested classes flattened" if flatten_nested else "ImageFolder"
    else:
        if {"val", "validation"} <= names:
            raise DataError(f"{root}: has both val/ and validation/; keep one")
        scanned = {_SPLIT_DIRS[d.path.name]: scan(d) for d in subdirs}
        class_names = _check_class_count(root / "train", sorted(scanned[SplitName.TRAIN]))
        for split, classes in scanned.items():
            for name in sorted(set(classes) - set(class_names)):
                folder = next(d.path for d in subdirs if _SPLIT_DIRS[d.path.name] == split)
                raise DataError(f"{folder / name}: class is not in {root / 'train'} (train classes: "
                                f"{', '.join(class_names)})")
        splits = {split: _raw_split(classes, class_names) for split, classes in scanned.items()}
        kind = "ImageFolder, " + "/".join(s.value for s in splits) + " splits"
    return Source(
        description=f"{root} ({kind})",
        class_names=tuple(class_names),
        splits=splits,
        content_hash=hash_files(root, class_names, splits),
        decode=decode_file,
        decode_sizes=decode_file_sizes,
    )


def _scan_classes(folder: Folder) -> dict[str, list[Path]]:
    classes = {}
    for class_dir in walk.subfolders(folder):
        files = sorted(path for _, found in walk.walk(class_dir) for path in found)
        if not files:
            raise DataError(f"{class_dir.path}: class folder has no images")
        classes[class_dir.path.name] = files
    return classes


def _scan_nested(folder: Folder) -> dict[str, list[Path]]:
    classes = {}
    for here, files in walk.walk(folder):
        if files and here.path != folder.path:
            classes[NESTED_SEPARATOR.join(here.path.relative_to(folder.path).parts)] = files
    if not classes:
        raise DataError(f"{folder.path}: no sub-folder holds images (data.flatten_nested makes every folder of "
                        "images a class)")
    return classes


def _check_class_count(folder: Path, class_names: list[str]) -> list[str]:
    if len(class_names) < 2:
        raise DataError(f"{folder}: found {len(class_names)} class folder(s) {class_names}; "
                        "need at least 2 classes")
    return class_names


def _raw_split(classes: dict[str, list[Path]], class_names: list[str]) -> RawSplit:
    index = {name: i for i, name in enumerate(class_names)}
    items = [path for name in sorted(classes) for path in classes[name]]
    labels = [index[name] for name in sorted(classes) for _ in classes[name]]
    return RawSplit(items, np.asarray(labels, dtype=np.int64))
