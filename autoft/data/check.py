"""`check_dataset`: a fast look at a data set before training, and `format_report` for a short table.

It reads every file once (content hash + image header + a reduced-size decode) and reports counts per class
and split, class imbalance, unreadable files, exact duplicates across splits (leakage) and tiny images.
Problems that still allow training are warnings; what makes training impossible is an error, raised as a
DataError by `CheckReport.raise_for_errors()` (opening an unusable source raises at once).
"""
from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autoft.data.cache import MAX_UNREADABLE_FRACTION
from autoft.data.catalog import CATALOG
from autoft.data.loader import open_source
from autoft.data.registry import get_source
from autoft.data.source import ArrayDecoder, Source, SplitName
from autoft.data.transforms import read_image, stored_size
from autoft.errors import DataError

if TYPE_CHECKING:
    from autoft.config import RunConfig

__all__ = ["CheckReport", "Duplicate", "check_dataset", "format_report", "TINY_PX", "IMBALANCE_RATIO"]

TINY_PX = 32
IMBALANCE_RATIO = 10.0
_MAX_TABLE_ROWS = 20
_EXAMPLES = 3


@dataclass(frozen=True)
class Duplicate:
    """Files with identical bytes (or identical pixels, for array sources) found in more than one split."""

    members: tuple[tuple[SplitName, str], ...]   # (split, file name)

    @property
    def splits(self) -> tuple[SplitName, ...]:
        return tuple(sorted({split for split, _ in self.members}, key=list(SplitName).index))


@dataclass(frozen=True)
class CheckReport:
    source: str
    class_names: tuple[str, ...]
    counts: Mapping[SplitName, tuple[int, ...]]   # readable images per class, per split present in the source
    unreadable: tuple[str, ...]                  # "<file>: <reason>"
    tiny: tuple[str, ...]                        # files whose shorter side is below TINY_PX
    duplicates: tuple[Duplicate, ...]            # cross-split groups: leakage between train, val and test
    warnings: tuple[str, ...]
    errors: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_for_errors(self) -> None:
        if self.errors:
            raise DataError(f"{self.source}: {self.errors[0]}" + (f" (+{len(self.errors) - 1} more)"
                                                                 if len(self.errors) > 1 else ""))


@dataclass(frozen=True)
class _Item:
    name: str
    label: int
    digest: str | None = None
    min_side: int = 0
    error: str | None = None


def check_dataset(target: str | Path, *, flatten_nested: bool = False, tiny_px: int = TINY_PX,
                  imbalance_ratio: float = IMBALANCE_RATIO, workers: int | None = None) -> CheckReport:
    """Check a registry name (downloaded when needed) or a path (ImageFolder, PaddleHub lists, CSV)."""
    source = _open(target, flatten_nested)
    items = {split: _inspect(source, raw.items, raw.labels, workers) for split, raw in source.splits.items()}
    n_classes = len(source.class_names)
    counts = {split: tuple(np.bincount([i.label for i in its if i.error is None], minlength=n_classes).tolist())
              for split, its in items.items()}
    unreadable = tuple(f"{i.name}: {i.error}" for its in items.values() for i in its if i.error)
    tiny = tuple(i.name for its in items.values() for i in its if i.error is None and i.min_side < tiny_px)
    duplicates, within, conflicts = _duplicates(items)
    total = sum(len(its) for its in items.values())
    warnings = _warnings(source, counts, unreadable, tiny, duplicates, within, conflicts, tiny_px, imbalance_ratio)
    errors = _errors(source, counts, len(unreadable), total)
    return CheckReport(source.description, source.class_names, counts, unreadable, tiny, duplicates,
                       tuple(warnings), tuple(errors))


def _open(target: str | Path, flatten_nested: bool) -> Source:
    if isinstance(target, str) and target in CATALOG and not Path(target).exists():
        return get_source(target)
    return open_source(Path(target), flatten_nested=flatten_nested)


def _inspect(source: Source, raw_items: Sequence[Any] | np.ndarray, labels: np.ndarray,
             workers: int | None) -> list[_Item]:
    if isinstance(source.decode, ArrayDecoder):
        images = source.decode.images()
        return [_inspect_array(source.name_of(i), int(label), images[i])
                for i, label in zip(raw_items, labels, strict=True)]
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(_inspect_file, raw_items, labels.tolist()))


def _inspect_array(name: str, label: int, pixels: np.ndarray) -> _Item:
    digest = hashlib.sha256(pixels.tobytes() + repr(pixels.shape).encode()).hexdigest()
    return _Item(f"#{name}", label, digest, int(min(pixels.shape[:2])))


def _inspect_file(path: Path, label: int) -> _Item:
    """The file's hash and shorter side, or why training cannot use it: decoded through the one reader training and
    predict use (autoft.data.transforms), so the check and training agree on what is readable."""
    try:
        data = Path(path).read_bytes()
        min_side = min(stored_size(path))
        read_image(path, 16)  # a full decode (a JPEG at its draft scale): damage past the header shows here
    except OSError as exc:
        return _Item(str(path), label, error=f"cannot read ({exc.strerror or type(exc).__name__})")
    except DataError as exc:
        return _Item(str(path), label, error=str(exc).removeprefix(f"{path}: "))
    return _Item(str(path), label, hashlib.sha256(data).hexdigest(), min_side)


def _duplicates(items: Mapping[SplitName, list[_Item]]) -> tuple[tuple[Duplicate, ...], int, int]:
    """(cross-split groups, extra copies within one split, groups whose copies carry different labels)."""
    groups: dict[str, list[tuple[SplitName, _Item]]] = defaultdict(list)
    for split, its in items.items():
        for item in its:
            if item.digest is not None:
                groups[item.digest].append((split, item))
    cross, within, conflicts = [], 0, 0
    for members in groups.values():
        if len(members) < 2:
            continue
        if len({item.label for _, item in members}) > 1:
            conflicts += 1
        if len({split for split, _ in members}) > 1:
            cross.append(Duplicate(tuple((split, item.name) for split, item in members)))
        else:
            within += len(members) - 1
    return tuple(cross), within, conflicts


def _warnings(source: Source, counts: Mapping[SplitName, tuple[int, ...]], unreadable: tuple[str, ...],
              tiny: tuple[str, ...], duplicates: tuple[Duplicate, ...], within: int, conflicts: int, tiny_px: int,
              imbalance_ratio: float) -> list[str]:
    out = []
    train = counts[SplitName.TRAIN]
    nonzero = [c for c in train if c]
    if nonzero and max(nonzero) > imbalance_ratio * min(nonzero):
        big, small = int(np.argmax(train)), min(range(len(train)), key=lambda i: train[i] or float("inf"))
        out.append(f"class imbalance: {source.class_names[big]!r} has {train[big]} training images, "
                   f"{source.class_names[small]!r} {train[small]} (more than {imbalance_ratio:g}x)")
    if unreadable:
        out.append(f"{len(unreadable)} unreadable or corrupt file(s), skipped in training: " + _examples(unreadable))
    if duplicates:
        pairs: defaultdict[str, int] = defaultdict(int)
        for dup in duplicates:
            pairs["/".join(s.value for s in dup.splits)] += 1
        where = ", ".join(f"{n} across {p}" for p, n in sorted(pairs.items()))
        shown = [" = ".join(name for _, name in dup.members) for dup in duplicates]
        out.append(f"leakage: {len(duplicates)} image(s) appear in more than one split ({where}): " + _examples(shown))
    if within:
        out.append(f"{within} exact duplicate image(s) within a split")
    if conflicts:
        out.append(f"{conflicts} image(s) appear with different labels")
    if tiny:
        out.append(f"{len(tiny)} image(s) smaller than {tiny_px} px on a side (upscaled when loaded): "
                   + _examples(tiny))
    return out


def _errors(source: Source, counts: Mapping[SplitName, tuple[int, ...]], n_unreadable: int, total: int) -> list[str]:
    out = []
    train = counts[SplitName.TRAIN]
    empty = [name for name, count in zip(source.class_names, train, strict=True) if count == 0]
    if empty:
        out.append(f"class(es) with no readable training images: {', '.join(empty)}")
    if n_unreadable > MAX_UNREADABLE_FRACTION * total:
        out.append(f"{n_unreadable} of {total} images are unreadable (more than {MAX_UNREADABLE_FRACTION:.0%})")
    if SplitName.VAL not in counts and not any(count >= 2 for count in train):
        out.append("no validation split and no class has 2 or more training images to split one from")
    return out


def _examples(names: Sequence[str]) -> str:
    return "; ".join(names[:_EXAMPLES]) + (" …" if len(names) > _EXAMPLES else "")


def format_report(report: CheckReport) -> str:
    """A short plain-text table of images per class and split, then the warnings and errors."""
    splits = list(report.counts)
    width = min(max([len(n) for n in report.class_names] + [5]), 40)
    lines = [report.source, f"{'class':<{width}} " + " ".join(f"{s.value:>7}" for s in splits)]
    rows = list(zip(report.class_names, *(report.counts[s] for s in splits), strict=True))
    for name, *values in rows[:_MAX_TABLE_ROWS]:
        lines.append(f"{name[:width]:<{width}} " + " ".join(f"{v:>7}" for v in values))
    if len(rows) > _MAX_TABLE_ROWS:
        lines.append(f"… {len(rows) - _MAX_TABLE_ROWS} more classes")
    lines.append(f"{'total':<{width}} " + " ".join(f"{sum(report.counts[s]):>7}" for s in splits))
    train = report.counts[SplitName.TRAIN]
    lines.append(f"{len(report.class_names)} classes; training images per class: min {min(train)}, max {max(train)}")
    if SplitName.VAL not in report.counts:
        lines.append("no validation split: one is made from train when loading (data.val_split)")
    lines += [f"warning: {w}" for w in report.warnings] + [f"error: {e}" for e in report.errors]
    lines.append("OK" if report.ok else f"{len(report.errors)} error(s): training is not possible")
    return "\n".join(lines)


def check_for_config(cfg: RunConfig) -> CheckReport:
    """The check a run gets before it trains; "tiny" there means upscaled more than 2x to the training size."""
    from autoft.config import resolve_image_size

    # exactly one is set (config_from_dict); `path: ""` is the current folder, as load_data reads it
    target = cfg.data.path if cfg.data.path is not None else cfg.data.dataset
    assert target is not None
    return check_dataset(target, flatten_nested=cfg.data.flatten_nested,
                         tiny_px=max(1, resolve_image_size(cfg) // 2))
