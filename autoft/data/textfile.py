"""Reading the text files data sources are made of (list files, label lists, CSVs) as editors save them.

UTF-8 with or without a BOM (Windows Notepad writes one) and LF, CRLF or CR line ends are all fine; any
other encoding (cp1252 from Excel, GBK label lists) is a DataError naming the file and the line, because a
guessed encoding would silently turn labels into different class names.
"""
from __future__ import annotations

import codecs
from pathlib import Path

from autoft.errors import DataError

__all__ = ["read_text", "read_lines"]


def read_text(path: Path) -> str:
    """The file decoded as UTF-8, a leading BOM dropped, every line ending turned into "\\n"."""
    data = _read_bytes(path)
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(_not_utf8(path, data, exc)) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_lines(path: Path) -> list[str]:
    """The file's lines without their line ends; line N of the file is item N - 1."""
    # split("\n"), not splitlines(): form feeds or U+2028 inside a label must not shift line numbers.
    lines = read_text(path).split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from None


def _not_utf8(path: Path, data: bytes, exc: UnicodeDecodeError) -> str:
    line = data.count(b"\n", 0, exc.start) + 1
    column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
    return (f"{path} line {line}: not UTF-8 (byte 0x{data[exc.start]:02x} at column {column}); "
            "save the file as UTF-8")
