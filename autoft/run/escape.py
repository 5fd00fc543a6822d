"""The text cells every output shares: ``printable`` (a terminal), ``csv_cell`` / ``csv_text`` (a spreadsheet) and
``md_cell`` (a Markdown renderer). File names, class names, params and error texts come from files a user (or
anyone) may have named or edited, so nothing of theirs reaches an output unescaped."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["printable", "csv_cell", "csv_text", "md_cell", "CSV_LINE_END"]


def printable(text: str) -> str:
    """``text`` as a terminal may show it: every character it would act on or not show (newline, carriage return,
    ESC and the other controls, invisible format characters, a lone surrogate) written as repr writes it:
    ``\\n``, ``\\x1b``, ``\\u202e``. Anything else, accents and CJK included, stays as it is."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# OWASP's CSV injection rule: a spreadsheet runs a cell that starts with one of these as a formula
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# RFC 4180's line end: the csv module quotes a cell holding a character of its line end, so with "\n" alone a
# carriage return in a file name went out unquoted and split the row in spreadsheets
CSV_LINE_END = "\r\n"


def csv_cell(text: str) -> str:
    """``text`` as a CSV cell a spreadsheet shows as text: a leading ``'`` where it would start a formula; a lone
    surrogate (a file name that is not UTF-8) as its backslash escape, since the file is written in UTF-8."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_text(rows: Iterable[Sequence[Any]]) -> str:
    """Rows as CSV: text cells through ``csv_cell``, quoted where they hold a comma, a quote or a line end."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=CSV_LINE_END)
    writer.writerows([csv_cell(v) if isinstance(v, str) else v for v in row] for row in rows)
    return out.getvalue()


# what would make a table cell markup: a pipe ends the cell, backticks open code, brackets a link or an image,
# < and & raw HTML or an entity; and the backslash, so that one in the text cannot undo an escape of ours
_MARKDOWN = str.maketrans({"\\": "\\\\", "|": "\\|", "`": "\\`", "[": "\\[", "]": "\\]",
                           "&": "&amp;", "<": "&lt;", ">": "&gt;"})


def md_cell(text: str) -> str:
    """``text`` as a Markdown table cell a renderer shows as the text itself, on one line."""
    return printable(text.translate(_MARKDOWN))
