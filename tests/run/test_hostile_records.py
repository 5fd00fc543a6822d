"""Hand-edited or hostile trial.json files: a field of the wrong type is one warning naming the file and the field
and that trial skipped; text from them (params, errors) reaches leaderboard.csv, leaderboard.md and the terminal
table escaped for each."""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from autoft.cli.display import board_lines
from autoft.run.escape import md_cell, printable
from autoft.run.leaderboard import load_leaderboard, write_leaderboard
from autoft.run.records import MAX_BYTES, TrialRecord, TrialStatus, read_trials


def good(tid: str, **fields: Any) -> dict[str, Any]:
    """A trial.json as the recorder writes it, with ``fields`` replaced."""
    raw = {"trial_id": tid, "number": 0, "status": "completed", "params": {"learning_rate": 0.01},
           "history": [{"epoch": 1, "step": 4, "val_acc": 0.5, "val_loss": 1.0}], "error": None,
           "started": 1.0, "seconds": 2.0, "extra": {}}
    return {**raw, **fields}


def write(run: Path, tid: str, text: str) -> Path:
    path = run / "trials" / tid / "trial.json"
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    return path


BAD_FIELDS = [  # (trial.json, the field the warning names)
    (good("t", params=5), "'params'"),
    (good("t", params={"learning_rate": [[1, 2], {"deep": [3]}]}), "'params'['learning_rate']"),
    (good("t", status=7), "'status'"),
    (good("t", status="won"), "'status'"),
    (good("t", history={"epoch": 1}), "'history'"),
    (good("t", history=[{"epoch": 1, "val_acc": "abc"}]), "'history'[0]['val_acc']"),
    (good("t", history=[{"epoch": None, "val_acc": 0.5}]), "'history'[0]['epoch']"),
    (good("t", history=[{"epoch": 1, "val_acc": 0.5}, "second"]), "'history'[1]"),
    (good("t", history=[{"epoch": 1, "val_acc": True}]), "'history'[0]['val_acc']"),
    (good("t", number=1.5), "'number'"),
    (good("t", error=["a", "list"]), "'error'"),
    (good("t", started="yesterday"), "'started'"),
    (good("t", seconds=[1]), "'seconds'"),
    (good("t", extra="abc"), "'extra'"),
    (good("t", extra={"rerun_of": 3}), "'extra'['rerun_of']"),
    (good("t", extra={"seed": "one"}), "'extra'['seed']"),
    (good("t", extra={"cost_per_epoch": "x"}), "'extra'['cost_per_epoch']"),
    (good("t", trial_id=12), "'trial_id'"),
    (good("t", trial_id="../other/trials/x"), "'trial_id' must be its folder's name 't'"),
    ({k: v for k, v in good("t").items() if k != "trial_id"}, "'trial_id' is missing"),
]


@pytest.mark.parametrize("raw, field", BAD_FIELDS, ids=[f for _, f in BAD_FIELDS])
def test_a_field_of_the_wrong_type_is_named_and_its_trial_skipped(raw: dict, field: str, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path, "ok", json.dumps(good("ok")))
    path = write(tmp_path, "t", json.dumps(raw))
    with caplog.at_level(logging.WARNING, logger="autoft.run.records"):
        records = read_trials(tmp_path)
    assert [r.trial_id for r in records] == ["ok"]
    assert len(caplog.records) == 1
    line = caplog.records[0].getMessage()
    assert str(path) in line and f"field {field}" in line and line.endswith("; skipped"), line
    with pytest.raises(ValueError, match="field "):
        TrialRecord.from_json(raw) if "folder" not in field else TrialRecord.load(path.parent)


@pytest.mark.parametrize("text, says", [
    ("[" * 100_000 + "]" * 100_000, "maximum recursion depth"),  # nested past Python's recursion limit
    (json.dumps(good("t", error="x" * (MAX_BYTES + 1))), "larger than 16 MiB"),
    ('"just a string"', "expected an object, got str"),
])
def test_deep_huge_or_non_object_files_are_skipped(text: str, says: str, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, "t", text)
    with caplog.at_level(logging.WARNING, logger="autoft.run.records"):
        assert read_trials(tmp_path) == []
    assert str(path) in caplog.text and says in caplog.text


def test_unknown_fields_are_kept_unread_and_the_trial_counts(tmp_path: Path) -> None:
    write(tmp_path, "t", json.dumps(good("t", metrics="abc", best=[1, 2], extra={"hostname": ["any", "json"]})))
    [record] = read_trials(tmp_path)
    assert record.best == {"epoch": 1, "step": 4, "val_acc": 0.5, "val_loss": 1.0}
    assert record.extra == {"hostname": ["any", "json"]}


HOSTILE = {  # text a spreadsheet, a Markdown renderer or a terminal would act on
    "formula": "=HYPERLINK(\"http://evil\",\"x\")",
    "plus": "+1+1",
    "minus": "-2+3",
    "at": "@SUM(A1)",
    "tab": "\tx",
    "cr": "a\rb",
    "newline": "one\ntwo",
    "html": "<b>x</b> & <script>alert(1)</script>",
    "pipe": "a|b",
    "code": "`rm -rf`",
    "link": "[click](http://evil) ![img](http://evil/p.png)",
    "ansi": "\x1b[31mred\x1b[0m",
    "backslash": "a\\|b",
    "surrogate": "bad\udcffname",
}


def _hostile_run(run: Path) -> None:
    """One trial per hostile text: as its params value, its error and a param name."""
    for i, (key, text) in enumerate(HOSTILE.items()):
        raw = good(key, status="failed", params={"optimizer": text, text: 1}, error=f"TrialError: {text}",
                   started=float(i))
        write(run, key, json.dumps(raw))


def test_leaderboard_csv_escapes_formulas_and_quotes_line_ends(tmp_path: Path) -> None:
    _hostile_run(tmp_path)
    write_leaderboard(tmp_path)
    with (tmp_path / "leaderboard.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["trial_id"] for r in rows] == list(HOSTILE)  # one row each: no line end split a row
    by_id = {r["trial_id"]: r for r in rows}
    for key, text in HOSTILE.items():
        shown = text.encode("utf-8", "backslashreplace").decode()  # UTF-8 cannot hold a lone surrogate
        expected = "'" + shown if shown[0] in "=+-@\t\r" else shown
        assert by_id[key]["optimizer"] == expected, key
        assert by_id[key]["error"] == f"TrialError: {shown}", key  # not at a cell's start: kept as it is
    header = next(csv.reader((tmp_path / "leaderboard.csv").open(newline="", encoding="utf-8")))
    assert "'=HYPERLINK(\"http://evil\",\"x\")" in header and "=HYPERLINK(\"http://evil\",\"x\")" not in header


def _unescaped(line: str, chars: str) -> int:
    """How many of ``chars`` in a Markdown line act as markup: a backslash escapes the character after it."""
    count, escaped = 0, False
    for ch in line:
        count += ch in chars and not escaped
        escaped = ch == "\\" and not escaped
    return count


def test_leaderboard_md_shows_text_not_markup_one_row_per_trial(tmp_path: Path) -> None:
    _hostile_run(tmp_path)
    board = write_leaderboard(tmp_path)
    text = (tmp_path / "leaderboard.md").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) == 2 + len(HOSTILE)
    assert all(ch.isprintable() for line in lines for ch in line)  # no CR, ESC or newline inside a row
    assert {_unescaped(line, "|") for line in lines} == {len(board.table.columns) + 1}  # no text ended a cell
    assert _unescaped(text, "`[]<>") == 0 and "\x1b" not in text  # no code span, link, image or HTML tag
    assert "&lt;b&gt;x&lt;/b&gt; &amp; &lt;script&gt;" in text and "a\\|b" in text and "\\`rm -rf\\`" in text
    assert "\\[click\\](http://evil)" in text and "\\x1b\\[31mred" in text and "one\\ntwo" in text


def test_md_cell_escapes_every_markup_character() -> None:
    assert md_cell("a\\|b") == "a\\\\\\|b"  # the text's backslash cannot turn our \| back into a cell end
    assert md_cell("learning_rate 1e-05 (x)") == "learning_rate 1e-05 (x)"  # ordinary text stays readable


def test_terminal_table_prints_no_control_character(tmp_path: Path) -> None:
    _hostile_run(tmp_path)
    board = load_leaderboard(tmp_path)
    for width in (None, 80):
        lines, left_out = board_lines(board, width)
        assert len(lines) == 2 + len(HOSTILE)
        assert all(ch.isprintable() for line in lines + left_out for ch in line), lines
    assert printable("\x1b[31mred\x1b[0m\n") == "\\x1b[31mred\\x1b[0m\\n"
    assert printable("café 北京 \u202egnp.exe") == "café 北京 \\u202egnp.exe"  # the right-to-left override too


def test_a_param_named_like_a_column_does_not_overwrite_it(tmp_path: Path) -> None:
    write(tmp_path, "t", json.dumps(good("t", params={"rank": "first", "seconds": "many", "learning_rate": 0.1})))
    board = write_leaderboard(tmp_path)
    assert list(board.table["rank"]) == [1] and list(board.table["seconds"]) == [2.0]
    assert board.records[0].status is TrialStatus.COMPLETED
