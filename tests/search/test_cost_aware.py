"""Backbone and image size as searched choices with their cost: each trial records what its epochs cost, and ASHA
compares trials after equal compute, so a slow configuration that is no better is stopped after fewer epochs.
Real Ray, Optuna and Paddle (EfficientNet-Lite0 and Lite1 with their ImageNet weights) on the tiny shapes."""
from __future__ import annotations

from pathlib import Path

import pytest

from autoft.config import config_from_dict
from autoft.run.records import TrialStatus, read_trials
from autoft.search.costs import cost_aware, cost_range, relative_cost
from autoft.search.schedulers import make_scheduler

from searched_run import shapes_config

SPACE = {"model.backbone": {"type": "categorical", "choices": ["efficientnet_lite0", "efficientnet_lite1"]},
         "data.image_size": {"type": "categorical", "choices": [64, 96]},
         "learning_rate": {"type": "float", "low": 1.0e-6, "high": 1.0e-2, "log": True}}


def _cfg(shapes_dir: Path, **search: object):
    raw = shapes_config(shapes_dir, **search)
    raw["space"] = SPACE
    raw["train"]["epochs"] = 4
    return config_from_dict(raw)


def test_costs_are_relative_to_the_cheapest_configuration(shapes_dir: Path) -> None:
    cfg = _cfg(shapes_dir)
    assert cost_aware(cfg)
    cheapest, dearest = cost_range(cfg)
    assert dearest / cheapest == pytest.approx(1.35 * (96 / 64) ** 2)
    assert relative_cost(cfg, {"model.backbone": "efficientnet_lite0", "data.image_size": 64}) == 1.0
    assert relative_cost(cfg, {"model.backbone": "efficientnet_lite1", "data.image_size": 96}) == \
        pytest.approx(3.0375)
    asha = make_scheduler(cfg)
    assert asha._time_attr == "compute" and asha._max_t == pytest.approx(4 * 3.0375)
    fixed = config_from_dict(shapes_config(shapes_dir))  # no cost in the space: rungs in epochs, as before
    assert not cost_aware(fixed) and make_scheduler(fixed)._time_attr == "epoch"


@pytest.mark.slow
def test_a_slow_no_better_configuration_is_stopped_after_fewer_epochs(shapes_dir: Path, tmp_path: Path) -> None:
    from autoft.search.run import search

    cheap = {"model.backbone": "efficientnet_lite0", "data.image_size": 64}
    enqueue = [{**cheap, "learning_rate": 3e-3}, {**cheap, "learning_rate": 2e-3},
               {"model.backbone": "efficientnet_lite1", "data.image_size": 96, "learning_rate": 1e-6}]
    cfg = _cfg(shapes_dir, trials=3, max_concurrent=1, scheduler="asha", grace_period=1, reduction_factor=3,
               enqueue=enqueue)
    outcome = search(cfg, results_dir=tmp_path, name="cost")
    records = {round(r.params["learning_rate"], 8): r for r in read_trials(outcome.run_dir)}
    first, slow = records[3e-3], records[1e-6]
    assert first.extra["cost_per_epoch"] == 1.0 and slow.extra["cost_per_epoch"] == pytest.approx(3.0375)
    assert [h["compute"] for h in first.history] == [1.0, 2.0, 3.0, 4.0]  # each trial's cost, in trial.json
    assert first.status is TrialStatus.COMPLETED and first.epochs_run == 4
    # its first epoch costs 3 of the cheap one's: it meets rung 3 at once, against the cheap trials' epoch 3
    assert slow.status is TrialStatus.STOPPED and slow.epochs_run == 1
    assert slow.history[0]["compute"] == pytest.approx(3.0375)
    assert slow.best["val_acc"] < first.best["val_acc"]
    header = (outcome.run_dir / "leaderboard.csv").read_text().splitlines()[0].split(",")
    assert header[header.index("seconds") + 1] == "cost_per_epoch"  # the leaderboard shows each trial's cost
    board = outcome.leaderboard
    assert list(board.table["cost_per_epoch"]) == [r.extra["cost_per_epoch"] for r in board.records]
    assert sorted(board.table["cost_per_epoch"]) == pytest.approx([1.0, 1.0, 3.0375])


def test_the_scheduler_compares_a_costly_trial_after_equal_compute(shapes_dir: Path) -> None:
    """Ray's own ASHAScheduler, as autoft builds it, fed one result sequence: two cheap trials learning steadily,
    then a configuration 3× as costly whose first epoch is better than their first epochs but worse than where they
    stood after the same compute (their third epoch). By epochs it would go on; by compute it stops."""
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler

    def run(scheduler) -> str:
        cheap = [Trial("autoft_trainable", stub=True), Trial("autoft_trainable", stub=True)]
        costly = Trial("autoft_trainable", stub=True)
        for trial in (*cheap, costly):
            scheduler.on_trial_add(None, trial)
        for trial, accs in zip(cheap, ([0.50, 0.60, 0.70, 0.80], [0.45, 0.55, 0.65, 0.75])):
            for epoch, acc in enumerate(accs, start=1):
                scheduler.on_trial_result(None, trial, {"epoch": epoch, "compute": float(epoch), "val_acc": acc})
        return scheduler.on_trial_result(None, costly, {"epoch": 1, "compute": 3.0375, "val_acc": 0.55})

    aware = make_scheduler(_cfg(shapes_dir, scheduler="asha", grace_period=1, reduction_factor=3))
    raw = shapes_config(shapes_dir, scheduler="asha", grace_period=1, reduction_factor=3)
    raw["train"]["epochs"] = 4
    by_epochs = make_scheduler(config_from_dict(raw))
    assert run(by_epochs) == TrialScheduler.CONTINUE
    assert run(aware) == TrialScheduler.STOP
