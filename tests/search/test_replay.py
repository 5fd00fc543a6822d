"""The replay benchmark (benchmarks/replay.py) keeps to its recorded curves: a recorded configuration replayed reports
exactly its recorded curve, through the simulated clock and through Ray's real Tuner."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from benchmarks.replay import Table, simulate

SPACE = {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
         "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]}}
LEVELS = {"learning_rate": [0.00215443, 0.01, 0.0464159], "optimizer": ["adam", "sgd"]}


def _table(tmp_path: Path, epochs: int = 4) -> Table:
    """A small recorded table: distinct curves, so a mix-up shows."""
    configs = []
    for i, (lr, opt) in enumerate(itertools.product(LEVELS["learning_rate"], LEVELS["optimizer"])):
        acc = [round(0.1 * (i + 1) * (e + 1) / epochs, 5) for e in range(epochs)]
        configs.append({"index": i, "params": {"learning_rate": lr, "optimizer": opt}, "val_acc": acc,
                        "val_loss": [round(2 - a, 5) for a in acc], "seconds": [float(5 * (e + 1) + i)
                                                                                for e in range(epochs)],
                        "error": None, "wall": 0.0})
    doc = {"table": "tiny", "title": "test", "space": SPACE, "levels": LEVELS, "epochs": epochs, "grid_size": 6,
           "config": {"name": "tiny", "data": {"dataset": "fashion-mnist-demo", "image_size": 32},
                      "model": {"backbone": "efficientnet_lite0", "pretrained": "none"},
                      "train": {"epochs": epochs}},
           "configs": configs}
    path = tmp_path / "curves-tiny.json"
    path.write_text(json.dumps(doc))
    return Table.load(path)


def test_a_sampled_point_falls_on_its_recorded_bin(tmp_path: Path) -> None:
    t = _table(tmp_path)
    assert t.row({"learning_rate": 0.0011, "optimizer": "sgd"})["params"] == {"learning_rate": 0.00215443,
                                                                               "optimizer": "sgd"}
    assert t.row({"learning_rate": 0.09, "optimizer": "adam"})["params"]["learning_rate"] == 0.0464159
    for row in t.curves.values():  # a recorded point is its own bin
        assert t.row(row["params"]) is row


def test_every_replayed_trial_reports_exactly_its_recorded_curve(tmp_path: Path) -> None:
    t = _table(tmp_path)
    sim = simulate(t, "random", "fifo", seed=3, num_samples=6)
    assert len(sim.trials) == 6
    for trial in sim.trials:
        got = [e.val_acc for e in sim.evaluations if e.trial_id == trial.trial_id]
        assert got == trial.row["val_acc"]
        assert trial.row is t.row(trial.config)
    # two workers: the clock is the later of the two workers' sums of recorded seconds
    assert sim.clock > 0 and sim.epochs_spent == 6 * t.epochs


def test_asha_stops_by_the_recorded_values_and_the_grid_covers_the_recording(tmp_path: Path) -> None:
    t = _table(tmp_path)
    sim = simulate(t, "grid", "asha", seed=0, num_samples=6, search={"grace_period": 1, "reduction_factor": 2})
    assert sorted(tuple(tr.config.values()) for tr in sim.trials) == sorted(
        tuple(r["params"].values()) for r in t.curves.values())
    stopped = [tr for tr in sim.trials if tr.epoch < t.epochs]
    assert stopped, "ASHA stops some of six trials with distinct curves"
    for tr in stopped:  # a stopped trial's reported prefix is its recorded curve's
        got = [e.val_acc for e in sim.evaluations if e.trial_id == tr.trial_id]
        assert got == tr.row["val_acc"][:tr.epoch]


def _costed_table(tmp_path: Path, epochs: int = 4) -> Table:
    """Configurations that differ in cost (backbone x image size): val_acc depends on the optimizer only, so the
    costly ones are no better."""
    space = {"model.backbone": {"type": "categorical", "choices": ["efficientnet_lite0", "efficientnet_lite1"]},
             "data.image_size": {"type": "categorical", "choices": [32, 64]},
             "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]}}
    levels = {n: spec["choices"] for n, spec in space.items()}
    configs = []
    for i, combo in enumerate(itertools.product(*levels.values())):
        params = dict(zip(space, combo))
        cost = {"efficientnet_lite0": 1.0, "efficientnet_lite1": 1.35}[params["model.backbone"]] * (
            params["data.image_size"] / 32) ** 2
        acc = [round((0.8 if params["optimizer"] == "adam" else 0.4) * (e + 1) / epochs + 0.001 * i, 5)
               for e in range(epochs)]
        configs.append({"index": i, "params": params, "val_acc": acc, "val_loss": [1.0] * epochs,
                        "seconds": [10.0 * cost * (e + 1) for e in range(epochs)], "error": None, "wall": 0.0})
    doc = {"table": "costed", "title": "test", "space": space, "levels": levels, "epochs": epochs, "grid_size": 8,
           "config": {"name": "costed", "data": {"dataset": "fashion-mnist-demo", "image_size": 32},
                      "model": {"backbone": "efficientnet_lite0", "pretrained": "none"}, "train": {"epochs": epochs}},
           "configs": configs}
    path = tmp_path / "curves-costed.json"
    path.write_text(json.dumps(doc))
    return Table.load(path)


def test_a_table_that_searches_backbone_and_size_is_replayed_at_each_configurations_cost(tmp_path: Path) -> None:
    """The cost-aware variant (issue 17): each epoch counts at its configuration's cost, trials report compute as
    autoft's do, and ASHA's rungs are in compute, unless cost_aware=false asks for the rungs in epochs."""
    from benchmarks.replay import mean_cost

    t = _costed_table(tmp_path)
    assert mean_cost(t) == pytest.approx((1 + 1.35) * (1 + 4) / 4)
    sim = simulate(t, "grid", "fifo", seed=0, num_samples=8)
    costs = {tr.trial_id: tr.cost for tr in sim.trials}
    assert sorted(costs.values()) == pytest.approx(sorted([1, 1, 1.35, 1.35, 4, 4, 5.4, 5.4]))
    assert sim.epochs_spent == pytest.approx(t.epochs * sum(costs.values()))
    for tr in sim.trials:
        assert tr.last_result["compute"] == pytest.approx(t.epochs * tr.cost)
    aware = simulate(t, "grid", "asha", seed=0, num_samples=8, search={"grace_period": 1, "reduction_factor": 2})
    blind = simulate(t, "grid", "asha", seed=0, num_samples=8,
                     search={"grace_period": 1, "reduction_factor": 2, "cost_aware": False})
    assert aware.scheduler._time_attr == "compute" and blind.scheduler._time_attr == "epoch"

    def costly_epochs(sim) -> int:
        return sum(tr.epoch for tr in sim.trials if tr.cost > 3)

    # the costly, no-better configurations meet ASHA's rungs sooner when rungs count compute
    assert costly_epochs(aware) < costly_epochs(blind)


def test_tpe_settings_reach_the_sampler_and_the_default_is_untouched(tmp_path: Path) -> None:
    from autoft.search.samplers import make_sampler
    from benchmarks.replay import replay_config

    t = _table(tmp_path)
    sim = simulate(t, "tpe", "fifo", seed=1, num_samples=4,
                   search={"tpe.startup": 3, "tpe.multivariate": False, "tpe.constant_liar": False})
    sampler = sim.searcher._ot_study.sampler
    assert (sampler._n_startup_trials, sampler._multivariate, sampler._constant_liar) == (3, False, False)
    assert len(sim.trials) == 4
    default = make_sampler(replay_config(t, "tpe", "fifo", seed=1), 1)  # autoft's own, as search builds it
    assert (default._n_startup_trials, default._multivariate, default._constant_liar) == (10, True, True)


def test_replayed_trials_through_the_real_tuner_report_their_recorded_curves(tmp_path: Path) -> None:
    """The end-to-end check: the same table through ray.tune.Tuner with autoft's searcher."""
    import optuna
    import ray
    from ray import tune

    from autoft.search.budget import Budget
    from autoft.search.searcher import make_searcher
    from autoft.search.tuner import ray_temp_dir
    from benchmarks.replay import replay_config

    t = _table(tmp_path)
    cfg = replay_config(t, "tpe", "fifo", seed=0)
    searcher = make_searcher(cfg, optuna.storages.InMemoryStorage(), "replay", 0, Budget.starting(0.0, None))
    curves = {k: v["val_acc"] for k, v in t.curves.items()}

    def trainable(config):
        for acc in curves[t.key(config)]:
            tune.report({"val_acc": acc, "epoch": 1})

    class Reports(tune.Callback):
        """What each trial reported, as the Tuner's driver saw it (not Tune's loggers, which autoft's own
        in-process searches switch off for the whole process)."""

        def __init__(self) -> None:
            self.by_trial: dict[str, list[float]] = {}

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            self.by_trial.setdefault(trial.trial_id, []).append(result["val_acc"])

    reports = Reports()
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=ray_temp_dir())
    try:
        grid = tune.Tuner(tune.with_resources(trainable, {"cpu": 1}),
                          tune_config=tune.TuneConfig(search_alg=searcher, num_samples=3, max_concurrent_trials=2),
                          run_config=tune.RunConfig(storage_path=str(tmp_path / "ray"), verbose=0,
                                                    callbacks=[reports])).fit()
    finally:
        if started:
            ray.shutdown()
    assert len(grid) == 3 and len(reports.by_trial) == 3
    for result in grid:
        assert result.error is None, result.error
        params = {k: result.config[k] for k in SPACE}
        trial_id = result.metrics["trial_id"]
        assert reports.by_trial[trial_id] == pytest.approx(t.row(params)["val_acc"])


def test_the_committed_tables_are_whole_curves_of_the_space_they_name() -> None:
    data = Path(__file__).resolve().parents[2] / "benchmarks" / "data"
    paths = sorted(data.glob("curves-*.json"))
    assert paths, "benchmarks/data holds the recorded tables"
    for path in paths:
        t = Table.load(path)
        assert len(t.curves) == t.doc["recorded"] == len(t.doc["configs"])
        for row in t.doc["configs"]:
            assert t.key(row["params"]) in t.curves
            if row["error"] is None:
                assert len(row["val_acc"]) == len(row["val_loss"]) == len(row["seconds"]) == t.epochs
                assert all(0.0 <= a <= 1.0 for a in row["val_acc"])
                assert row["seconds"] == sorted(row["seconds"])
