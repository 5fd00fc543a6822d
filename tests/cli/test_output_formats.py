"""`autoft predict --format text|json|jsonl|csv` on images (and classes) whose names hold line ends, control
characters, spreadsheet formulas and HTML: text is one line per image with control characters escaped, CSV parses
back to one row per image and label with formulas defused, JSON keeps every name exactly."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cli_helpers import CLI, image

from autoft.cli.display import format_predictions
from autoft.serving.predict import Prediction

NAMES = ("line\nbreak.png", "carriage\rreturn.png", "=cmd.png", "+plus.png", "-minus.png", "@at.png",
         "<b>x</b>.png", "\x1b[31mred.png", "tab\tin.png", "plain.png")
CLASSES = ["=HYPERLINK(\"http://evil\")", "<i>green</i>", "-red"]


def _defused(text: str) -> str:
    return "'" + text if text[0] in "=+-@\t\r" else text


def _no_control_characters(text: str) -> bool:
    return all(ch.isprintable() for line in text.split("\n") for ch in line)


@pytest.fixture(scope="module")
def hostile(real_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A copy of the real bundle with hostile class names, and a folder of images with hostile file names."""
    root = tmp_path_factory.mktemp("hostile")
    bundle = root / "bundle"
    shutil.copytree(real_bundle, bundle)
    meta = json.loads((bundle / "bundle.json").read_text())
    (bundle / "bundle.json").write_text(json.dumps({**meta, "class_names": CLASSES}))
    for name in NAMES:
        image(root / "images" / name)
    return bundle, root / "images"


@pytest.fixture(scope="module")
def outputs(hostile: tuple[Path, Path]) -> dict[str, str]:
    """stdout of each format; the images named relative to their folder, so a name starts the path cell."""
    bundle, images = hostile
    env = {k: v for k, v in os.environ.items() if k != "AUTOFT_DEBUG"}
    by_format = {}
    for kind in ("text", "json", "jsonl", "csv"):
        # bytes, decoded here: text mode would turn a carriage return into a newline before the test sees it
        out = subprocess.run([*CLI, "predict", "--format", kind, "--top-k", "3", str(bundle), "--", *NAMES],
                             capture_output=True, timeout=300, cwd=images, env=env)  # "--": -minus.png is a name
        assert out.returncode == 0 and b"Traceback" not in out.stderr, out.stderr[-2000:]
        by_format[kind] = out.stdout.decode("utf-8")
    return by_format


def test_json_keeps_every_name_exactly(outputs: dict[str, str]) -> None:
    doc = json.loads(outputs["json"])
    assert [p["path"] for p in doc] == list(NAMES)
    assert {t["label"] for p in doc for t in p["top"]} == set(CLASSES)
    lines = outputs["jsonl"].splitlines()
    assert [json.loads(line) for line in lines] == doc  # one line per image: JSON escapes line ends
    assert _no_control_characters(outputs["json"]) and _no_control_characters(outputs["jsonl"])


def test_csv_parses_back_one_row_per_image_and_label_with_formulas_defused(outputs: dict[str, str]) -> None:
    rows = list(csv.reader(io.StringIO(outputs["csv"], newline="")))
    assert rows[0] == ["path", "rank", "label", "probability", "error"]
    assert len(rows) == 1 + 3 * len(NAMES)  # a line end in a name split no row
    assert [r[0] for r in rows[1::3]] == [_defused(n) for n in NAMES]
    assert {r[2] for r in rows[1:]} == {_defused(c) for c in CLASSES}
    assert all(len(r) == 5 and r[1] in "123" and 0 <= float(r[3]) <= 1 for r in rows[1:])


def test_text_is_one_line_per_image_with_control_characters_escaped(outputs: dict[str, str]) -> None:
    lines = outputs["text"].split("\n")
    assert lines[-1] == "" and len(lines) - 1 == len(NAMES)
    assert _no_control_characters(outputs["text"]) and "\r" not in outputs["text"]
    shown = [line.rsplit(".png: ", 1)[0] + ".png" for line in lines[:-1]]
    assert shown == ["line\\nbreak.png", "carriage\\rreturn.png", "=cmd.png", "+plus.png", "-minus.png", "@at.png",
                     "<b>x</b>.png", "\\x1b[31mred.png", "tab\\tin.png", "plain.png"]
    assert all(c in lines[0] for c in CLASSES)


def test_an_unreadable_image_is_one_csv_row_with_its_error_defused() -> None:
    preds = [Prediction(path="-x.png", error="-x.png: cannot identify image file\n(second line)"),
             Prediction(path="ok.png", top=(("=1+1", 0.75),))]
    rows = list(csv.reader(io.StringIO(format_predictions(preds, "csv"), newline="")))
    assert rows[1] == ["'-x.png", "", "", "", "'-x.png: cannot identify image file\n(second line)"]
    assert rows[2] == ["ok.png", "1", "'=1+1", "0.750000", ""]
    assert format_predictions(preds, "text") == "ok.png: =1+1 0.750\n"  # errors go to stderr


def test_a_name_that_is_not_utf8_is_written_as_its_escape() -> None:
    preds = [Prediction(path="bad\udcffname.png", top=(("a", 1.0),))]
    for kind in ("text", "csv", "json", "jsonl"):
        out = format_predictions(preds, kind)
        out.encode("utf-8")  # stdout is UTF-8: a lone surrogate would stop the whole output
        assert "bad\\udcffname.png" in out, (kind, out)
