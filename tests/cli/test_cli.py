"""The CLI as a user meets it: bad input is one line and exit 2; `autoft train` and `--dry-run` work end to end."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shapes import COLOURS, draw_shape, make_shapes

from cli_helpers import assert_one_line_exit_2, image, make_lists, run, search_yaml, write_yaml


# Each case: (setup(tmp) -> argv, text the single stderr line must contain)
def case_yaml_syntax(tmp: Path) -> list[str]:
    return ["search", str(write_yaml(tmp / "c.yaml", "train:\n  epochs: [1, 2\n"))]


def case_space(spec: dict) -> callable:
    return lambda tmp: ["search", str(search_yaml(tmp, space=spec))]


def case_section(section: str, values: dict) -> callable:
    return lambda tmp: ["search", str(search_yaml(tmp, **{section: values}))]


def case_data_missing(tmp: Path) -> list[str]:
    return ["search", str(search_yaml(tmp))]


def case_data_empty(tmp: Path) -> list[str]:
    (tmp / "data").mkdir()
    return ["search", str(search_yaml(tmp))]


def case_empty_class(tmp: Path) -> list[str]:
    image(tmp / "data" / "cat" / "1.png")
    image(tmp / "data" / "cat" / "2.png")
    (tmp / "data" / "dog").mkdir()
    (tmp / "data" / "dog" / "notes.txt").write_text("no images here")
    return ["search", str(search_yaml(tmp))]


def case_one_class(tmp: Path) -> list[str]:
    image(tmp / "data" / "cat" / "1.png")
    image(tmp / "data" / "cat" / "2.png")
    return ["search", str(search_yaml(tmp))]


def case_list_missing_image(tmp: Path) -> list[str]:
    make_lists(tmp / "data", ["img/a.png 0", "img/gone.png 1"], ["cat", "dog"])
    return ["search", str(search_yaml(tmp))]


def case_list_bad_label(tmp: Path) -> list[str]:
    make_lists(tmp / "data", ["img/a.png 0", "img/b.png 7"], ["cat", "dog"])
    return ["search", str(search_yaml(tmp))]


def case_resume_missing(tmp: Path) -> list[str]:
    return ["search", "--resume", str(tmp / "no-such-run")]


def case_resume_not_a_run(tmp: Path) -> list[str]:
    (tmp / "plain").mkdir()
    return ["search", "--resume", str(tmp / "plain")]


def case_predict_not_bundle(tmp: Path) -> list[str]:
    (tmp / "folder").mkdir()
    return ["predict", str(tmp / "folder"), str(image(tmp / "x.png"))]


def case_leaderboard_not_a_run(tmp: Path) -> list[str]:
    return ["leaderboard", str(tmp)]


BAD_INPUT = [
    ("yaml-syntax", case_yaml_syntax, "c.yaml: YAML syntax error at line 3, column 1"),
    ("unknown-key", case_section("train", {"epoch": 1}), "did you mean 'epochs'"),
    ("wrong-type", case_section("train", {"batch_size": "big"}), "train.batch_size: must be an integer"),
    ("low>high", case_space({"learning_rate": {"type": "float", "low": 0.1, "high": 0.01}}), "`low <= high`"),
    ("log-low<=0", case_space({"learning_rate": {"type": "float", "low": 0, "high": 0.1, "log": True}}),
     "log scale needs low > 0"),
    ("empty-choices", case_space({"optimizer": {"type": "categorical", "choices": []}}), "space.optimizer"),
    ("backbone", case_section("model", {"backbone": "resnet51"}), "unknown backbone 'resnet51'"),
    ("optimizer", case_section("train", {"optimizer": "lion"}), "train.optimizer: unknown value 'lion'"),
    ("strategy", case_section("train", {"strategy": "ulmfitt"}), "train.strategy: unknown value 'ulmfitt'"),
    ("sampler", case_section("search", {"sampler": "bayes"}), "search.sampler: unknown value 'bayes'"),
    ("scheduler", case_section("search", {"scheduler": "asha2"}), "search.scheduler: unknown value 'asha2'"),
    ("data-missing", case_data_missing, "data path does not exist"),
    ("data-empty", case_data_empty, "data folder is empty"),
    ("class-without-images", case_empty_class, "dog"),
    ("one-class", case_one_class, "2 classes"),
    ("list-missing-image", case_list_missing_image, "gone.png"),
    ("list-label-outside", case_list_bad_label, "label 7"),
    ("resume-missing", case_resume_missing, "no-such-run"),
    ("resume-not-a-run", case_resume_not_a_run, "not a run folder"),
    ("predict-not-bundle", case_predict_not_bundle, "not a bundle"),
    ("leaderboard-not-a-run", case_leaderboard_not_a_run, "not a run folder"),
]


@pytest.mark.parametrize("setup, needle", [(s, n) for _, s, n in BAD_INPUT], ids=[i for i, _, _ in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(setup, needle: str, tmp_path: Path) -> None:
    argv = setup(tmp_path)
    results = tmp_path / "results"
    if argv[0] == "search":
        argv += ["--results-dir", str(results)]
    assert_one_line_exit_2(run(*argv, cwd=tmp_path), needle, results)


def test_predict_reports_bad_files_and_still_predicts_the_rest(tmp_path: Path, trained: Path) -> None:
    good = tmp_path / "red.png"
    draw_shape(COLOURS["red"], __import__("numpy").random.default_rng(5)).save(good)
    text = tmp_path / "notes.png"
    text.write_text("not really a png")
    out = run("predict", str(trained), str(good), str(text), str(tmp_path / "missing.jpg"))
    assert out.returncode == 2
    assert out.stdout.startswith(f"{good}: ") and out.stdout.count("\n") == 1
    errors = out.stderr.strip().splitlines()
    assert len(errors) == 2 and "notes.png: not a readable image" in errors[0] and "missing.jpg: no such file" in errors[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`autoft train` on the shapes, run as a user would."""
    tmp = tmp_path_factory.mktemp("train")
    make_shapes(tmp / "shapes", per_class=30)
    cfg = write_yaml(tmp / "train.yaml", {
        "name": "one", "data": {"path": "shapes", "image_size": 32},
        "train": {"epochs": 3, "batch_size": 8, "checkpoint_dir": "ckpt", "log_interval": 2},
        "space": {"learning_rate": {"type": "categorical", "choices": [0.003, 0.1]}}})
    out = run("train", str(cfg), "--set", "train.optimizer=adam", cwd=tmp)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("best val_acc") == 1 and "epoch 1 step 2 loss" in out.stdout  # the result, once
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("best val_acc") and last.endswith("best_model"), last
    bundle = tmp / "ckpt" / "best_model"
    meta = json.loads((bundle / "bundle.json").read_text())
    assert meta["hparams"]["learning_rate"] == 0.003 and meta["hparams"]["optimizer"] == "adam"
    return bundle


def test_autoft_train_then_predict_its_bundle(trained: Path, tmp_path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(11)
    for name, colour in COLOURS.items():
        for i in range(3):
            draw_shape(colour, rng).save(tmp_path / f"{name}_{i}.png")
    out = run("predict", str(trained), str(tmp_path), "--json", "--top-k", "1")
    assert out.returncode == 0, out.stderr
    preds = [json.loads(line) for line in out.stdout.splitlines()]
    right = sum(Path(p["path"]).stem.split("_")[0] == p["top"][0]["label"] for p in preds)
    assert len(preds) == 9 and right >= 6, preds  # chance is 3 of 9


def test_predict_formats_say_the_same_thing(trained: Path, tmp_path: Path) -> None:
    import csv as csvlib

    image(tmp_path / "a.png")
    image(tmp_path / "b.png")
    (tmp_path / "c.png").write_text("not an image")
    by_format = {fmt: run("predict", str(trained), str(tmp_path), "--format", fmt, "--top-k", "2")
                 for fmt in ("text", "json", "jsonl", "csv")}
    assert {o.returncode for o in by_format.values()} == {2}  # c.png is named on stderr; a and b are predicted
    doc = json.loads(by_format["json"].stdout)  # one document: an array
    lines = [json.loads(line) for line in by_format["jsonl"].stdout.splitlines()]
    assert doc == lines and [Path(p["path"]).name for p in doc] == ["a.png", "b.png", "c.png"]
    assert len(doc[0]["top"]) == 2 and doc[0]["error"] is None and doc[2]["top"] == [] and doc[2]["error"]
    rows = list(csvlib.DictReader(by_format["csv"].stdout.splitlines()))
    assert [(Path(r["path"]).name, r["rank"], r["label"]) for r in rows[:2]] == \
        [("a.png", "1", doc[0]["top"][0]["label"]), ("a.png", "2", doc[0]["top"][1]["label"])]
    assert len(rows) == 5 and rows[-1]["error"] and rows[-1]["label"] == ""
    assert by_format["text"].stdout.count("\n") == 2 and "c.png" not in by_format["text"].stdout
    alias = run("predict", str(trained), str(tmp_path / "a.png"), "--json", "--top-k", "2")
    assert json.loads(alias.stdout) == doc[0]  # --json is --format jsonl


def test_dry_run_prints_the_plan_and_writes_no_run(tmp_path: Path) -> None:
    make_shapes(tmp_path / "shapes", per_class=10)
    cfg = write_yaml(tmp_path / "s.yaml", {"data": {"path": "shapes", "image_size": 32},
                                            "train": {"epochs": 2, "batch_size": 8},
                                            "search": {"trials": 4, "max_concurrent": 2},
                                            "space": {"batch_size": {"type": "categorical", "choices": [4, 8]}}})
    out = run("search", str(cfg), "--dry-run", "--results-dir", "results", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "4 trials, 2 at a time" in out.stdout and "per training step (batch 4)" in out.stdout
    assert "3 classes, 24 train / 6 val images at 32px" in out.stdout
    assert not (tmp_path / "results").exists()


def test_importing_paddle_through_autoft_prints_no_ccache_warning() -> None:
    out = subprocess.run([sys.executable, "-c", "import autoft.training.fit, paddle"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ccache" not in out.stderr, out.stderr[-2000:]


def test_help_is_fast_to_import() -> None:
    out = subprocess.run([sys.executable, "-c", "import sys, autoft.cli; "
                          "print(sorted(m for m in ('paddle', 'ray', 'optuna', 'pandas') if m in sys.modules))"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_a_diverging_autoft_train_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """A loss that becomes NaN ends the run with the step it happened at, not a traceback, and leaves no bundle."""
    make_shapes(tmp_path / "shapes", per_class=30)
    cfg = write_yaml(tmp_path / "train.yaml", {
        "name": "nan", "data": {"path": "shapes", "image_size": 32, "val_split": 0.25},
        "model": {"backbone": "efficientnet_lite0", "pretrained": "imagenet"},
        "train": {"epochs": 1, "batch_size": 8, "checkpoint_dir": "ckpt", "learning_rate": 1.0e30,
                  "optimizer": "momentum", "depthwise": "native"}})
    out = run("train", str(cfg), cwd=tmp_path)
    errors = [line for line in out.stderr.splitlines() if line.startswith("autoft: error")]
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert len(errors) == 1 and errors[0].startswith("autoft: error: training failed: loss became nan at epoch 1")
    assert "train.learning_rate" in errors[0] and not (tmp_path / "ckpt" / "best_model").exists()


# Usage errors come from whichever click the installed typer parses with (typer >= 0.26 carries its own copy):
# each class must still be one line and exit 2, never a traceback.
USAGE_ERRORS = [
    ("unknown-command", ["frobnicate"], "No such command 'frobnicate'"),
    ("unknown-subcommand", ["datasets", "frobnicate"], "No such command 'frobnicate'"),
    ("unknown-option", ["search", "--bogus"], "No such option: --bogus"),
    ("bad-value", ["search", "--trials", "abc"], "'--trials'"),
    ("missing-argument", ["leaderboard"], "Missing argument"),
    ("top-k-zero", ["predict", "b", "x.png", "--top-k", "0"], "--top-k: must be >= 1, got 0"),
    ("top-k-negative", ["predict", "b", "x.png", "--top-k", "-1"], "--top-k: must be >= 1, got -1"),
    ("empty-address", ["search", "--address", ""], "--address ''"),
]


@pytest.mark.parametrize("argv, needle", [(a, n) for _, a, n in USAGE_ERRORS], ids=[i for i, _, _ in USAGE_ERRORS])
def test_usage_errors_are_one_line_exit_2(argv: list[str], needle: str, tmp_path: Path) -> None:
    assert_one_line_exit_2(run(*argv, cwd=tmp_path), needle, tmp_path / "results")


def test_autoft_alone_prints_the_commands() -> None:
    out = run()
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert "search" in out.stdout and "predict" in out.stdout


@pytest.fixture
def read_only_folder(tmp_path: Path):
    """A real read-only file system (a tmpfs mounted ro): root writes through chmod, not through EROFS."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here ({mounted.stderr.decode().strip()})")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("argv", [["search", "--dry-run"], ["search", "--trials", "1"]], ids=["dry-run", "search"])
def test_a_home_that_is_a_file_is_one_line(argv: list[str], tmp_path: Path) -> None:
    (tmp_path / "home").write_text("not a folder")
    out = run(*argv, "--results-dir", str(tmp_path / "results"), cwd=tmp_path, env={"AUTOFT_HOME": str(tmp_path / "home")})
    assert_one_line_exit_2(out, "is a file, not a folder", tmp_path / "results")


@pytest.mark.parametrize("argv", [["search", "--dry-run"], ["search", "--trials", "1"],
                                  ["predict", "--imagenet", "efficientnet_lite0", "x.png"]],
                         ids=["dry-run", "search", "predict-imagenet"])
def test_a_read_only_home_is_one_line(argv: list[str], read_only_folder: Path, tmp_path: Path) -> None:
    image(tmp_path / "x.png")
    out = run(*argv, *(["--results-dir", str(tmp_path / "results")] if argv[0] == "search" else []), cwd=tmp_path,
              env={"AUTOFT_HOME": str(read_only_folder)})
    assert_one_line_exit_2(out, str(read_only_folder), tmp_path / "results")
