"""`autoft search DATA --time-budget …` with no YAML: the real probe, the plan, a real search on an ImageFolder and
on a PaddleHub list folder, inside the budget, leaving a normal run folder that --resume and a rerun of its
config.yaml accept."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from autoft.run.records import read_trials

from cli_helpers import assert_one_line_exit_2

BIN = Path(sys.executable).parent


def _autoft(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "autoft"), *args], capture_output=True, text=True, timeout=timeout)


def _list_folder(shapes_dir: Path, root: Path) -> Path:
    """The shapes as PaddleHub lists: train_list.txt / val_list.txt / label_list.txt beside the images."""
    classes = sorted(p.name for p in shapes_dir.iterdir() if p.is_dir())
    (root / "img").mkdir(parents=True)
    train, val = [], []
    for label, name in enumerate(classes):
        for i, image in enumerate(sorted((shapes_dir / name).iterdir())):
            shutil.copy(image, root / "img" / f"{name}-{image.name}")
            (val if i % 4 == 0 else train).append(f"img/{name}-{image.name} {label}")
    (root / "train_list.txt").write_text("\n".join(train) + "\n")
    (root / "val_list.txt").write_text("\n".join(val) + "\n")
    (root / "label_list.txt").write_text("\n".join(classes) + "\n")
    return root


def test_a_dry_run_prints_the_plan_and_writes_nothing(shapes_dir: Path, tmp_path: Path) -> None:
    out = _autoft("search", str(shapes_dir), "--time-budget", "2m", "--dry-run", "--results-dir",
                  str(tmp_path / "results"))
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"plan for {shapes_dir}: 72 train / 18 val images, 3 classes; budget 2m00s")
    assert "img/s on one thread" in lines[1] and "efficientnet_lite" in lines[2] and "portfolio" in lines[3]
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("flags, needle", [
    (["--time-budget", "5s"], "--time-budget 0m05s: too short"),
    (["--time-budget", "soon"], "--time-budget: must be a duration"),
    (["--preset", "huge"], "--preset: must be one of fast, balanced, best"),
    (["--param-file", "h.yaml"], "--param-file: a search without a YAML makes its own space"),
])
def test_bad_zero_config_flags_are_one_line(shapes_dir: Path, tmp_path: Path, flags: list[str], needle: str) -> None:
    out = _autoft("search", str(shapes_dir), "--results-dir", str(tmp_path / "r"), *flags)
    assert_one_line_exit_2(out, needle, tmp_path / "r")


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["imagefolder", "lists"])
def test_a_search_without_yaml_stays_in_its_budget_and_leaves_a_normal_run(shapes_dir: Path, tmp_path: Path,
                                                                           layout: str) -> None:
    data = shapes_dir if layout == "imagefolder" else _list_folder(shapes_dir, tmp_path / "lists")
    budget = 80  # a small search: the probe, Ray and the report take ~40 s of it
    started = time.time()
    out = _autoft("search", str(data), "--time-budget", f"{budget}s", "--results-dir", str(tmp_path / "results"),
                  "--plain")
    wall = time.time() - started
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("plan for "), out.stdout[:500]
    (run,) = (tmp_path / "results").iterdir()
    assert run.name.startswith("auto-shapes" if layout == "imagefolder" else "auto-lists")
    trials = read_trials(run)
    epoch = max(r.seconds / max(1, r.epochs_run) for r in trials)
    assert wall <= budget + epoch + 60, (wall, epoch)  # the whole command: probe, decoding, search, report
    for name in ("leaderboard.csv", "leaderboard.md", "best_model/bundle.json", "report/report.html"):
        assert (run / name).is_file(), name
    saved = yaml.safe_load((run / "config.yaml").read_text())
    portfolio = saved["search"]["enqueue"]
    assert len(portfolio) >= 2 and saved["model"]["pretrained"] == "imagenet"
    first = sorted(trials, key=lambda r: r.started)[:len(portfolio)]  # they start together: any order
    assert sorted(r.params["learning_rate"] for r in first) == \
        pytest.approx(sorted(p["learning_rate"] for p in portfolio))  # the portfolio ran first
    # the plan is an ordinary config: a rerun of it validates like a hand-written YAML
    check = _autoft("search", str(run / "config.yaml"), "--dry-run")
    assert check.returncode == 0, check.stderr[-2000:]
