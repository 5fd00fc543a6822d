"""`autoft predict` meets a broken bundle or odd inputs: one `autoft: error:` line naming the file, key, rule and
value, exit 2, no traceback; a FIFO or a device among the inputs is refused unopened and the rest are predicted."""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shapes import COLOURS, draw_shape

from cli_helpers import assert_one_line_exit_2, image, run

HANG = 180  # seconds: far more than a prediction takes here, so a blocking open fails the test instead of hanging it


def _run_folder(real_bundle: Path, tmp: Path) -> Path:
    """A run folder whose best_model/ is a copy of the real bundle."""
    shutil.copytree(real_bundle, tmp / "run" / "best_model")
    return tmp / "run"


_DROP = object()  # as a value in an edit: remove the key


def _edited(raw: dict[str, Any], edit: dict[str, Any] | str) -> str:
    if isinstance(edit, str):
        return edit
    return json.dumps({k: v for k, v in {**raw, **edit}.items() if v is not _DROP})


PIXELS = "image_size: must be a whole number of pixels in 1..4096, got"
MEAN = "mean: must be 3 finite numbers (R, G, B), got"
STD = "std: must be 3 finite numbers > 0 (R, G, B), got"
# (id, bundle.json edit: changed keys or the file's whole text, what the line says after "FILE: ")
BAD_META = [
    ("image-size-word", {"image_size": "big"}, f"{PIXELS} 'big'"),
    ("image-size-zero", {"image_size": 0}, f"{PIXELS} 0"),
    ("image-size-negative", {"image_size": -32}, f"{PIXELS} -32"),
    ("image-size-huge", {"image_size": 10**9}, f"{PIXELS} 1000000000"),
    ("image-size-fraction", {"image_size": 32.5}, f"{PIXELS} 32.5"),
    ("mean-two-numbers", {"mean": [0.5, 0.5]}, f"{MEAN} [0.5, 0.5]"),
    ("mean-text", {"mean": ["a", "b", "c"]}, f"{MEAN} ['a', 'b', 'c']"),
    ("mean-nan", {"mean": [math.nan, 1.0, 1.0]}, f"{MEAN} [nan, 1.0, 1.0]"),
    ("mean-not-a-list", {"mean": 127.5}, f"{MEAN} 127.5"),
    ("std-all-zero", {"std": [0, 0, 0]}, f"{STD} [0, 0, 0]"),
    ("std-negative", {"std": [-1.0, 58.0, 58.0]}, f"{STD} [-1.0, 58.0, 58.0]"),
    ("std-infinite", {"std": [math.inf, 1, 1]}, f"{STD} [inf, 1, 1]"),
    ("std-booleans", {"std": [True, True, True]}, f"{STD} [True, True, True]"),
    ("classes-a-string", {"class_names": "blue"}, "class_names: must be a non-empty list of strings, got 'blue'"),
    ("classes-numbers", {"class_names": [1, 2, 3]}, "class_names: must be a non-empty list of strings, got [1, 2, 3]"),
    ("classes-repeated", {"class_names": ["red", "red", "blue"]}, "class_names: must not repeat a class ('red' twice)"),
    ("num-classes-mismatch", {"num_classes": 2}, "num_classes: must equal the number of class_names (3), got 2"),
    ("num-classes-text", {"num_classes": "3"}, "num_classes: must be a whole number >= 1, got '3'"),
    ("backbone-empty", {"backbone": ""}, "backbone: must be a non-empty string, got ''"),
    ("metrics-a-list", {"metrics": [0.9]}, "metrics: must be a JSON object, got [0.9]"),
    ("newer-format", {"format_version": 99}, "format_version: is newer than this autoft reads (1); upgrade autoft"),
    ("key-missing", {"std": _DROP}, "lacks std"),
    ("not-json", "{\"backbone\": ", "not valid JSON"),
    ("not-an-object", "[1, 2, 3]", "must hold a JSON object, got list"),
]


@pytest.mark.parametrize("edit, says", [(e, s) for _, e, s in BAD_META], ids=[i for i, _, _ in BAD_META])
def test_a_bad_bundle_json_is_one_line_naming_file_key_and_rule(edit: Any, says: str, real_bundle: Path,
                                                                 tmp_path: Path) -> None:
    run_dir = _run_folder(real_bundle, tmp_path)
    meta = run_dir / "best_model" / "bundle.json"
    raw = json.loads(meta.read_text())
    meta.write_text(_edited(raw, edit))
    out = run("predict", str(run_dir), str(image(tmp_path / "x.png")), timeout=HANG)
    assert_one_line_exit_2(out, f"{meta}: {says}")


def test_weights_of_another_shape_than_bundle_json_describes_are_refused(real_bundle: Path, tmp_path: Path) -> None:
    """bundle.json lists 4 classes, the weights have a 3-class head: Paddle would keep a random head and predict."""
    run_dir = _run_folder(real_bundle, tmp_path)
    meta = run_dir / "best_model" / "bundle.json"
    raw = json.loads(meta.read_text())
    meta.write_text(json.dumps({**raw, "class_names": [*raw["class_names"], "purple"], "num_classes": 4}))
    out = run("predict", str(run_dir), str(image(tmp_path / "x.png")), timeout=HANG)
    assert_one_line_exit_2(out, f"{run_dir / 'best_model' / 'model.safetensors'}: tensor ")
    line = out.stderr.strip()
    assert "has shape [" in line and ", 3]" in line and "mobilenet_v3_small with 4 classes" in line, line
    assert "needs [" in line and ", 4]" in line, line


def _good_image(path: Path) -> Path:
    draw_shape(COLOURS["red"], np.random.default_rng(3)).save(path)
    return path


def test_a_fifo_or_a_device_among_the_inputs_is_refused_unopened(real_bundle: Path, tmp_path: Path) -> None:
    good = _good_image(tmp_path / "good.png")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # opening it would block until a writer comes: never
    out = run("predict", str(real_bundle), str(fifo), str(good), "/dev/null", timeout=HANG)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stdout.startswith(f"{good}: ") and out.stdout.count("\n") == 1, out.stdout
    errors = out.stderr.strip().splitlines()
    assert errors == [f"autoft: error: {fifo}: not a regular file (a FIFO); only regular image files are read, "
                      "so it was not opened",
                      "autoft: error: /dev/null: not a regular file (a character device); only regular image files "
                      "are read, so it was not opened"], out.stderr[-2000:]


def test_a_fifo_inside_an_input_folder_is_reported_and_the_rest_predicted(real_bundle: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    good = [_good_image(folder / "a.png"), _good_image(folder / "more" / "b.jpg")]
    os.mkfifo(folder / "more" / "c.png")
    os.mkfifo(folder / "notes.txt")  # not an image name: skipped like any other non-image file
    out = run("predict", str(real_bundle), str(folder), "--json", timeout=HANG)
    assert out.returncode == 2, out.stderr[-2000:]
    preds = [json.loads(line) for line in out.stdout.splitlines()]
    assert [p["path"] for p in preds] == [str(good[0]), str(good[1]), str(folder / "more" / "c.png")]
    assert all(p["top"] and p["error"] is None for p in preds[:2])
    assert preds[2]["top"] == [] and "not a regular file (a FIFO)" in preds[2]["error"]
    errors = out.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"autoft: error: {folder / 'more' / 'c.png'}: not a regular file")


def test_a_folder_without_images_is_one_line(real_bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no pictures here")
    out = run("predict", str(real_bundle), str(tmp_path / "empty"), timeout=HANG)
    assert_one_line_exit_2(out, f"predict: no image files in {tmp_path / 'empty'}")
