"""Searches on PaddleHub list files (with a test split scored once) and on a CSV; the missing-paddle message."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from autoft.config import config_from_dict
from autoft.search.run import search
from autoft.search.trial import error_line
from shapes import COLOURS, draw_shape


def _images(root: Path, per_class: int, seed: int) -> list[tuple[str, str]]:
    """(relative path, class name) for per_class coloured shapes of each colour under root/img."""
    rng = np.random.default_rng(seed)
    out = []
    for name, colour in COLOURS.items():
        for i in range(per_class):
            rel = f"img/{name}_{seed}_{i}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            draw_shape(colour, rng).save(root / rel)
            out.append((rel, name))
    return out


def _small(data: dict) -> dict:
    return {"name": "formats", "data": {**data, "image_size": 32},
            "train": {"epochs": 1, "batch_size": 8, "learning_rate": 0.003},
            "search": {"trials": 2, "max_concurrent": 2, "scheduler": "fifo"},
            "space": {"optimizer": {"type": "categorical", "choices": ["adam", "adamw"]}}}


def test_list_files_with_a_test_split_and_evaluate_test(tmp_path: Path) -> None:
    root = tmp_path / "hub"
    labels = list(COLOURS)
    for split, n, seed in (("train_list.txt", 20, 0), ("validate_list.txt", 6, 1), ("test_list.txt", 6, 2)):
        lines = [f"{rel} {labels.index(name)}" for rel, name in _images(root, n, seed)]
        (root / split).write_text("\n".join(lines) + "\n")
    (root / "label_list.txt").write_text("\n".join(labels) + "\n")
    cfg = tmp_path / "hub.yaml"
    cfg.write_text(yaml.safe_dump(_small({"path": str(root)})))
    out = subprocess.run([sys.executable, "-m", "autoft.cli", "search", str(cfg), "--evaluate-test", "--quiet",
                          "--results-dir", str(tmp_path / "results"), "--name", "hub"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Test split (scored once, not used for selection): test_acc" in out.stdout
    metrics = json.loads((tmp_path / "results" / "hub" / "test_metrics.json").read_text())
    assert metrics["n"] == 18 and 0 <= metrics["test_acc"] <= 1
    assert metrics["bundle"] == str(tmp_path / "results" / "hub" / "best_model")
    meta = json.loads((tmp_path / "results" / "hub" / "best_model" / "bundle.json").read_text())
    assert meta["num_train_samples"] == 60 and meta["class_names"] == labels


def test_csv_dataset_search(tmp_path: Path) -> None:
    root = tmp_path / "csv"
    rows = _images(root, 12, 0)
    (root / "labels.csv").write_text("path,label\n" + "".join(f"{rel},{name}\n" for rel, name in rows))
    outcome = search(config_from_dict(_small({"path": str(root / "labels.csv"), "val_split": 0.25})),
                     results_dir=tmp_path / "results", name="csv")
    assert len(outcome.leaderboard.records) == 2 and outcome.best_model is not None
    assert json.loads((outcome.best_model / "bundle.json").read_text())["num_train_samples"] == 27


def test_evaluate_test_without_a_test_split_is_a_user_error(shapes_dir: Path, tmp_path: Path) -> None:
    from autoft.errors import ConfigError

    with pytest.raises(ConfigError, match="--evaluate-test: .* has no test split"):
        search(config_from_dict(_small({"path": str(shapes_dir)})), results_dir=tmp_path, evaluate_test=True)
    assert not any(tmp_path.iterdir())


def test_out_of_memory_marks_the_params_infeasible() -> None:
    class ResourceExhaustedError(RuntimeError):
        pass

    line = error_line(ResourceExhaustedError("\n\nOut of memory error on GPU 0. Cannot allocate 3.2GB memory"))
    assert line.startswith("infeasible: out of memory with these params (ResourceExhaustedError: Out of memory")
    assert error_line(ValueError("bad\nvalue")) == "ValueError: bad"


def test_without_paddle_the_cli_says_what_to_install(shapes_dir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml.safe_dump(_small({"path": str(shapes_dir)})))
    hide_paddle = ("import sys, importlib.abc\n"
                   "class Hide(importlib.abc.MetaPathFinder):\n"
                   "    def find_spec(self, name, path=None, target=None):\n"
                   "        if name == 'paddle' or name.startswith('paddle.'):\n"
                   "            raise ModuleNotFoundError(\"No module named 'paddle'\", name='paddle')\n"
                   "sys.meta_path.insert(0, Hide())\n"
                   "from autoft.cli.app import main\n"
                   "main(sys.argv[1:])\n")
    for argv in (["train", str(cfg)], ["search", str(cfg), "--results-dir", str(tmp_path / "r")]):
        out = subprocess.run([sys.executable, "-c", hide_paddle, *argv], capture_output=True, text=True, timeout=120)
        assert out.returncode == 2, out.stderr[-2000:]
        assert out.stderr.strip() == "autoft: error: PaddlePaddle is not installed: pip install 'autoft[cpu]' " \
                                     "(or 'autoft[gpu]' with CUDA)"
    assert not (tmp_path / "r").exists()
