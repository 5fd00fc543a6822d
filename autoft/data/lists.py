"""PaddleHub list-file sources: train_list.txt / validate_list.txt / test_list.txt (+ label_list.txt).

Read as UTF-8 with or without a BOM, any line ends (autoft.data.textfile).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autoft.data.source import RawSplit, Source, SplitName, decode_file, decode_file_sizes, hash_files
from autoft.data.textfile import read_lines
from autoft.errors import DataError

__all__ = ["is_list_folder", "load_lists", "Row", "labels_to_indices", "resolve_image"]

_LIST_FILES = {
    SplitName.TRAIN: ("train_list.txt",),
    SplitName.VAL: ("validate_list.txt", "val_list.txt"),
    SplitName.TEST: ("test_list.txt",),
}


@dataclass(frozen=True)
class Row:
    """One `image label` entry, with where it came from for error messages."""

    where: str          # "<file>:<line>"
    path: Path
    label: str


def is_list_folder(root: Path) -> bool:
    return (root / "train_list.txt").is_file()


def load_lists(root: Path) -> Source:
    rows = {split: _read_list(path) for split, path in _list_paths(root).items()}
    label_file = root / "label_list.txt"
    label_list = _read_label_list(label_file) if label_file.is_file() else None
    class_names, splits = labels_to_indices(rows, label_list, label_file)
    return Source(
        description=f"{root} (PaddleHub lists: {', '.join(p.name for p in _list_paths(root).values())})",
        class_names=class_names,
        splits=splits,
        content_hash=hash_files(root, class_names, splits),
        decode=decode_file,
        decode_sizes=decode_file_sizes,
    )


def _list_paths(root: Path) -> dict[SplitName, Path]:
    found = {}
    for split, names in _LIST_FILES.items():
        present = [root / n for n in names if (root / n).is_file()]
        if len(present) > 1:
            raise DataError(f"{root}: has both {present[0].name} and {present[1].name}; keep one")
        if present:
            found[split] = present[0]
    return found


def _read_list(list_file: Path) -> list[Row]:
    rows = []
    for number, line in enumerate(read_lines(list_file), start=1):
        if not line.strip():
            continue
        fields = line.strip().rsplit(maxsplit=1)
        where = f"{list_file}:{number}"
        if len(fields) != 2:
            raise DataError(f"{where}: expected '<image path> <label>', got {line.strip()!r}")
        rows.append(Row(where, resolve_image(list_file.parent, fields[0], where), fields[1]))
    if not rows:
        raise DataError(f"{list_file}: list file has no entries")
    return rows


def _read_label_list(label_file: Path) -> list[str]:
    names = [line.strip() for line in read_lines(label_file) if line.strip()]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"{label_file}: class names must be unique, got duplicates {duplicates}")
    return names


def resolve_image(base: Path, name: str, where: str) -> Path:
    if not name:
        raise DataError(f"{where}: image path is empty")
    path = Path(name) if Path(name).is_absolute() else base / name
    if path.exists() and not path.is_file():
        # A folder, a FIFO or a device: never opened (reading a FIFO would hang).
        raise DataError(f"{where}: image {path} is not a regular file")
    if not path.is_file():
        raise DataError(f"{where}: image {path} does not exist")
    return path


def labels_to_indices(
    rows: dict[SplitName, list[Row]], label_list: list[str] | None, label_file: Path
) -> tuple[tuple[str, ...], dict[SplitName, RawSplit]]:
    """Map each row's label to a class index; class names from label_list, else the sorted labels."""
    all_rows = [row for split_rows in rows.values() for row in split_rows]
    if label_list is not None:
        class_names = label_list
        index = _label_list_index(label_list, label_file)
    else:
        class_names = _sorted_labels({row.label for row in all_rows})
        index = {name: i for i, name in enumerate(class_names)}
    if len(class_names) < 2:
        raise DataError(f"{all_rows[0].where.rsplit(':', 1)[0]}: found {len(class_names)} class(es) "
                        f"{class_names}; need at least 2 classes")
    splits = {}
    for split, split_rows in rows.items():
        labels = [_lookup(row, index, label_file, len(class_names)) for row in split_rows]
        splits[split] = RawSplit([row.path for row in split_rows], np.asarray(labels, dtype=np.int64))
    return tuple(class_names), splits


def _label_list_index(label_list: list[str], label_file: Path) -> dict[str, int]:
    # An entry may give the class index (PaddleHub's format) or the class name itself.
    index = {name: i for i, name in enumerate(label_list)}
    index.update({str(i): i for i in range(len(label_list)) if str(i) not in index})
    return index


def _lookup(row: Row, index: dict[str, int], label_file: Path, num_classes: int) -> int:
    if row.label in index:
        return index[row.label]
    if _is_int(row.label):
        raise DataError(f"{row.where}: label {row.label} is outside {label_file.name} ({num_classes} classes)")
    raise DataError(f"{row.where}: label {row.label!r} is not a class of {label_file.name}")


def _sorted_labels(labels: set[str]) -> list[str]:
    if all(_is_int(label) for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True
