"""One real finished search (Ray + Optuna + Paddle on synthetic shapes) shared by the dashboard and report tests.

pytest keeps a fixture's value per defining module, so a session fixture in each test module would search twice;
this module keeps the one run for the whole session instead.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from autoft.config import config_from_dict
from autoft.search.run import SearchOutcome, search

def shapes_config(shapes_dir: Path, **search_overrides: object) -> dict:
    return {
        "name": "shapes",
        "data": {"path": str(shapes_dir), "image_size": 32, "val_split": 0.25},
        "model": {"backbone": "efficientnet_lite0", "pretrained": "imagenet"},
        "train": {"epochs": 2, "batch_size": 8, "log_interval": 2},
        "search": {"trials": 3, "max_concurrent": 2, "seed": 0, "grace_period": 1, **search_overrides},
        "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
                  "optimizer": {"type": "categorical", "choices": ["adam", "momentum"]}},
    }


STUDY = "dash"  # the study is named after the run folder (--name)
_RUNS: dict[str, SearchOutcome] = {}


def run_config(shapes_dir: Path) -> dict:
    """4 trials of 2 epochs, 2 at a time, ASHA after epoch 1; the first (enqueued, lr 1e30) diverges and fails.

    An enqueued trial must lie inside the space, so the diverging rate is one of the choices (seed 0's sampled
    trials draw the others). The rate overflows float32 on any CPU: its loss is NaN at step 2. (lr 1e4, used
    before, went NaN at step 7 on one machine and stayed finite, ~40, on another: a machine-dependent failure.)
    """
    return {
        "name": "shapes-dash",
        "data": {"path": str(shapes_dir), "image_size": 32, "val_split": 0.25},
        "model": {"backbone": "efficientnet_lite0", "pretrained": "imagenet"},
        "train": {"epochs": 2, "batch_size": 8, "log_interval": 2, "depthwise": "native"},
        "search": {"trials": 4, "max_concurrent": 2, "seed": 0, "grace_period": 1,
                   "enqueue": [{"learning_rate": 1.0e30, "optimizer": "momentum"}]},
        "space": {"learning_rate": {"type": "categorical", "choices": [1e-3, 3e-3, 1e-2, 1.0e30]},
                  "optimizer": {"type": "categorical", "choices": ["adam", "momentum"]}},
    }


def searched_run(shapes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> SearchOutcome:
    if "run" not in _RUNS:
        _RUNS["run"] = search(config_from_dict(run_config(shapes_dir)),
                              results_dir=tmp_path_factory.mktemp("dash_results"), name=STUDY)
    return _RUNS["run"]
