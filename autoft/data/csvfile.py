"""CSV sources: a `path,label[,split]` file; image paths relative to the CSV's folder, labels are class names.

UTF-8 with or without a BOM, any line ends (autoft.data.textfile); a label holding a comma must be quoted.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from autoft.data.lists import Row, labels_to_indices, resolve_image
from autoft.data.source import Source, SplitName, decode_file, decode_file_sizes, hash_files
from autoft.data.textfile import read_text
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
        decode_sizes=decode_file_sizes,
    )


def _read_rows(csv_file: Path) -> dict[SplitName, list[Row]]:
    reader = csv.DictReader(io.StringIO(read_text(csv_file)))
    try:
        columns = _columns(csv_file, reader)
        rows: dict[SplitName, list[Row]] = {}
        for record in reader:
            where = f"{csv_file}:{reader.line_num}"
            _check_field_count(record, columns, where)
            if not any(isinstance(v, str) and v.strip() for v in record.values()):
                continue
            rows.setdefault(_split_of(record, where), []).append(_row(csv_file, record, where))
    except csv.Error as exc:  # a NUL byte, a field over the size limit
        raise DataError(f"{csv_file}:{reader.line_num}: not a valid CSV ({exc})") from None
    if not rows:
        raise DataError(f"{csv_file}: CSV has no rows")
    return rows


def _columns(csv_file: Path, reader: csv.DictReader) -> list[str]:
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in ("path", "label") if c not in columns]
    if missing:
        raise DataError(f"{csv_file}: header must have columns path,label[,split]; missing {missing} "
                        f"(got {columns})")
    reader.fieldnames = columns
    return columns


def _check_field_count(record: dict[str | None, Any], columns: list[str], where: str) -> None:
    # DictReader puts fields beyond the header under None: an unquoted comma split a value in two.
    extra = [v for v in record.get(None) or [] if v.strip()]
    if extra:
        raise DataError(f"{where}: {len(columns) + len(record[None])} fields but the header has {len(columns)} "
                        f"({','.join(columns)}); quote a label holding a comma (\"golden, retriever\"); "
                        f"extra: {extra}")


def _row(csv_file: Path, record: dict[str | None, Any], where: str) -> Row:
    path = resolve_image(csv_file.parent, (record["path"] or "").strip(), where)
    label = (record["label"] or "").strip()
    if not label:
        raise DataError(f"{where}: label is empty")
    return Row(where, path, label)


def _split_of(record: dict[str, str | None], where: str) -> SplitName:
    if "split" not in record:
        return SplitName.TRAIN
    value = (record["split"] or "").strip().lower()
    if value not in _SPLIT_VALUES:
        raise DataError(f"{where}: split must be one of train, val, test; got {value!r}")
    return _SPLIT_VALUES[value]
