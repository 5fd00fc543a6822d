"""Backbone and image size as searched choices with their cost: each trial records what its epochs cost, and ASHA
compares trials after equal compute, so a slow configuration that is no better is stopped after fewer epochs.
Real Ray, Optuna and Paddle (EfficientNet-Lite0 and Lite1 with their ImageNet weights) on the tiny shapes."""
from __future__ import annotations

import json
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


def test_measured_costs_replace_flops_and_fill_a_size_range(shapes_dir: Path) -> None:
    """With each combination's measured epoch seconds, costs are their ratios; a size between two measured ones is
    interpolated by its pixels; a measurement that misses a combination is not used."""
    cfg = _cfg(shapes_dir)
    seconds = {("efficientnet_lite0", 64): 10.0, ("efficientnet_lite0", 96): 14.0,
               ("efficientnet_lite1", 64): 12.0, ("efficientnet_lite1", 96): 18.0}
    assert cost_range(cfg, seconds) == (10.0, 18.0)
    assert relative_cost(cfg, {"model.backbone": "efficientnet_lite1", "data.image_size": 96}, seconds) == 1.8
    asha = make_scheduler(cfg, costs=seconds)
    assert asha._time_attr == "compute" and asha._max_t == pytest.approx(4 * 1.8)
    ranged = config_from_dict({**shapes_config(shapes_dir), "space": {
        "data.image_size": {"type": "int", "low": 64, "high": 96}}})
    sizes = {k: v for k, v in seconds.items() if k[0] == "efficientnet_lite0"}
    # between the two measured ends: linear in the pixel count, so the cost rises with the size and stays >= 1
    t = (88 ** 2 - 64 ** 2) / (96 ** 2 - 64 ** 2)
    assert relative_cost(ranged, {"data.image_size": 88}, sizes) == pytest.approx((10.0 * (1 - t) + 14.0 * t) / 10.0)
    inside = [relative_cost(ranged, {"data.image_size": s}, sizes) for s in range(64, 97)]
    assert inside == sorted(inside) and inside[0] == 1.0 and inside[-1] == pytest.approx(1.4)
    partial = dict(list(seconds.items())[:3])
    assert relative_cost(cfg, {"model.backbone": "efficientnet_lite1", "data.image_size": 96}, partial) == \
        pytest.approx(3.0375)  # FLOPs for all


@pytest.mark.slow
def test_a_slow_no_better_configuration_is_stopped_after_fewer_epochs(shapes_dir: Path, tmp_path: Path) -> None:
    from autoft.search.run import search

    cheap = {"model.backbone": "efficientnet_lite0", "data.image_size": 64}
    enqueue = [{**cheap, "learning_rate": 3e-3}, {**cheap, "learning_rate": 2e-3},
               {"model.backbone": "efficientnet_lite1", "data.image_size": 96, "learning_rate": 1e-6}]
    cfg = _cfg(shapes_dir, trials=3, max_concurrent=1, scheduler="asha", grace_period=1, reduction_factor=3,
               enqueue=enqueue)
    outcome = search(cfg, results_dir=tmp_path, name="cost")
    # the probe timed each backbone x size before the trials (one thread, as trials run): costs.json
    measured = json.loads((outcome.run_dir / "costs.json").read_text())["seconds_per_epoch"]
    seconds = {(r["backbone"], r["image_size"]): r["seconds"] for r in measured}
    assert set(seconds) == {(b, s) for b in ("efficientnet_lite0", "efficientnet_lite1") for s in (64, 96)}
    ratio = seconds[("efficientnet_lite1", 96)] / seconds[("efficientnet_lite0", 64)]
    assert 1.3 < ratio < 4  # Lite1 at 96 px is dearer; FLOPs alone would say 3.04
    assert seconds[("efficientnet_lite0", 64)] == min(seconds.values())
    records = {round(r.params["learning_rate"], 8): r for r in read_trials(outcome.run_dir)}
    first, slow = records[3e-3], records[1e-6]
    assert first.extra["cost_per_epoch"] == 1.0 and slow.extra["cost_per_epoch"] == pytest.approx(ratio, abs=1e-3)
    assert [h["compute"] for h in first.history] == [1.0, 2.0, 3.0, 4.0]  # each trial's cost, in trial.json
    assert first.status is TrialStatus.COMPLETED and first.epochs_run == 4
    # its first epoch already costs more than the cheap ones' first rung: it is compared there and stopped
    assert slow.status is TrialStatus.STOPPED and slow.epochs_run == 1
    assert slow.history[0]["compute"] == pytest.approx(ratio, abs=1e-3)
    assert slow.best["val_acc"] < first.best["val_acc"]
    header = (outcome.run_dir / "leaderboard.csv").read_text().splitlines()[0].split(",")
    assert header[header.index("seconds") + 1] == "cost_per_epoch"  # the leaderboard shows each trial's cost
    board = outcome.leaderboard
    assert list(board.table["cost_per_epoch"]) == [r.extra["cost_per_epoch"] for r in board.records]
    assert sorted(board.table["cost_per_epoch"]) == pytest.approx([1.0, 1.0, ratio], abs=1e-3)


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


def test_a_resumed_search_reads_the_measured_costs_again(shapes_dir: Path, tmp_path: Path) -> None:
    """costs.json is what a resumed search uses (no second probe, so compute stays comparable across the two
    sittings); GPU trials keep FLOPs (the probe times the CPU)."""
    from autoft.search.costs import COSTS_FILE, measured_costs

    cfg = _cfg(shapes_dir)
    rows = [{"backbone": b, "image_size": s, "seconds": 10.0 + i}
            for i, (b, s) in enumerate((b, s) for b in ("efficientnet_lite0", "efficientnet_lite1") for s in (64, 96))]
    (tmp_path / COSTS_FILE).write_text(json.dumps({"seconds_per_epoch": rows}))
    costs = measured_costs(cfg, tmp_path, 72, 18)  # no Ray here: read, not probed
    assert costs == {(r["backbone"], r["image_size"]): r["seconds"] for r in rows}
    gpu = config_from_dict({**shapes_config(shapes_dir), "space": SPACE,
                            "search": {"resources_per_trial": {"cpu": 1, "gpu": 1}}})
    assert measured_costs(gpu, tmp_path, 72, 18) is None


TAMPERED_COSTS = [
    ("zero", '{"seconds_per_epoch": [{"backbone": "efficientnet_lite0", "image_size": 64, "seconds": 0}]}', "seconds"),
    ("negative", '{"seconds_per_epoch": [{"backbone": "efficientnet_lite0", "image_size": 64, "seconds": -3}]}',
     "seconds"),
    ("nan", '{"seconds_per_epoch": [{"backbone": "efficientnet_lite0", "image_size": 64, "seconds": NaN}]}', "seconds"),
    ("infinite", '{"seconds_per_epoch": [{"backbone": "efficientnet_lite0", "image_size": 64, "seconds": 1e999}]}',
     "seconds"),
    ("a-string", '{"seconds_per_epoch": [{"backbone": "efficientnet_lite0", "image_size": 64, "seconds": "9"}]}',
     "seconds"),
    ("a-bool-size", '{"seconds_per_epoch": [{"backbone": "efficientnet_lite0", "image_size": true, "seconds": 9}]}',
     "image_size"),
    ("rows-not-a-list", '{"seconds_per_epoch": 5}', "costs.json"),
    ("no-key", '{"seconds": []}', "seconds_per_epoch"),
    ("garbage", "\x00\x01 not json", "costs.json"),
]


@pytest.mark.parametrize("text, needle", [(t, n) for _, t, n in TAMPERED_COSTS], ids=[i for i, _, _ in TAMPERED_COSTS])
def test_a_tampered_costs_file_is_measured_again_with_a_warning(text: str, needle: str, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """costs.json is read back on --resume: a value a probe never writes (0, negative, NaN, a string) must not
    reach the cost ratios (a division by zero, NaN rungs inside Ray): it is ignored with one warning and measured
    again."""
    from autoft.search.costs import COSTS_FILE, stored_costs

    (tmp_path / COSTS_FILE).write_text(text)
    with caplog.at_level("WARNING", logger="autoft.search"):
        assert stored_costs(tmp_path) is None
    assert len(caplog.records) == 1 and "measuring the costs again" in caplog.records[0].message
    assert COSTS_FILE in caplog.records[0].message and needle in caplog.records[0].message
    assert stored_costs(tmp_path / "absent") is None  # no file: nothing to say
