"""CSV sources: a `path,label[,split]` file; image paths relative to the CSV's folder, labels are class names."""
from __future__ import annotations

import csv
from pathlib import Path

from autoft.data.lists import Row, labels_to_indices, resolve_image
from autoft.data.source import Source, SplitName, decode_file, hash_files
from autoft.errors import DataError

__all__ = ["load_csv"]

_SPLIT_VALUES = {"train": SplitName.TRAIN, "val": SplitName.VAL, "validation": SplitName.VAL,
                 "test": SplitName.TEST}


def load_csv(csv_file: Path) -> Source:
    rows = _read_rows(csv_file)
    class_names, splits = labels_to_indices(rows, None, csv_file)
    if SplitName.TRAIN not in splits:
        raise DataError(f"{csv_file}: no rows with split 'train'")
    return Source(
        description=f"{csv_file} (CSV)",
        class_names=class_names,
        splits=splits,
        content_hash=hash_files(csv_file.parent, class_names, splits),
        decode=decode_file,
    )


def _read_rows(csv_file: Path) -> dict[SplitName, list[Row]]:
    with csv_file.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in ("path", "label") if c not in columns]
        if missing:
            raise DataError(f"{csv_file}: header must have columns path,label[,split]; missing {missing} "
                            f"(got {columns})")
        reader.fieldnames = columns
        rows: dict[SplitName, list[Row]] = {}
        for record in reader:
            where = f"{csv_file}:{reader.line_num}"
            if not any(isinstance(v, str) and v.strip() for v in record.values()):
                continue
            split = _split_of(record, where)
            path = resolve_image(csv_file.parent, (record["path"] or "").strip(), where)
            label = (record["label"] or "").strip()
            if not label:
                raise DataError(f"{where}: label is empty")
            rows.setdefault(split, []).append(Row(where, path, label))
    if not rows:
        raise DataError(f"{csv_file}: CSV has no rows")
    return rows


def _split_of(record: dict[str, str | None], where: str) -> SplitName:
    if "split" not in record:
        return SplitName.TRAIN
    value = (record["split"] or "").strip().lower()
    if value not in _SPLIT_VALUES:
        raise DataError(f"{where}: split must be one of train, val, test; got {value!r}")
    return _SPLIT_VALUES[value]
