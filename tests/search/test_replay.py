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
    from benchmarks.record_curves import TABLES, grid

    data = Path(__file__).resolve().parents[2] / "benchmarks" / "data"
    paths = sorted(data.glob("curves-*.json"))
    assert paths, "benchmarks/data holds the recorded tables"
    for path in paths:
        t = Table.load(path)
        runs = [(row["index"], row.get("seed", 0)) for row in t.doc["configs"]]
        assert len(set(runs)) == len(runs) == t.doc["recorded"]  # each (configuration, seed) once
        seeds = t.doc.get("seeds", [0])
        assert len(t.curves) == len(t.runs) == t.doc.get("recorded_configs", t.doc["recorded"])
        assert all(len(rows) == len(seeds) for rows in t.runs.values())
        if t.name in TABLES:  # the grid record_curves records: a row's index names its configuration
            configs = grid(TABLES[t.name])
            assert t.doc["grid_size"] == len(configs)
            assert all(row["params"] == configs[row["index"]] for row in t.doc["configs"])
        for row in t.doc["configs"]:
            assert row.get("seed", 0) in seeds
            if row["error"] is None:
                assert len(row["val_acc"]) == len(row["val_loss"]) == len(row["seconds"]) == t.epochs
                assert all(0.0 <= a <= 1.0 for a in row["val_acc"])
                assert row["seconds"] == sorted(row["seconds"])
            if len(t.runs.get(t.key(row["params"]), [])) == len(seeds):
                assert row in t.runs[t.key(row["params"])]


# the seeded tables (issue 27) and their noise-aware score
ACCS = {  # optimizer -> each seed's val_acc over 2 epochs
    "adam": ([0.6, 0.80], [0.6, 0.78]),       # the best: mean 0.79
    "momentum": ([0.6, 0.79], [0.6, 0.78]),   # mean 0.785: within one standard error of the best, after 2 epochs
    "adagrad": ([0.6, 0.77], [0.6, 0.77]),    # mean 0.77: close, not within
    "sgd": ([0.5, 0.85], [0.5, 0.55]),        # mediocre (mean 0.70), but one lucky seed beats everything seen
    "rmsprop": ([0.3, 0.4], [0.3, 0.4]),      # poor
}
# the seed-to-seed variance pooled over the best 3 (adam, momentum, adagrad), over 2 seeds
SEM = ((0.0002 + 0.00005 + 0.0) / 3 / 2) ** 0.5
SEEDED_SPACE = {"optimizer": {"type": "categorical", "choices": list(ACCS)},
                "strategy": {"type": "categorical", "choices": ["default", "adamw_decay"]}}
PIN = {"when": {"strategy": "adamw_decay"}, "set": {"optimizer": "adamw"}}


def _seeded(tmp_path: Path, accs: dict = ACCS, name: str = "seeded") -> Table:
    """2 seeds x 6 configurations: the five above under default, and adamw_decay (which reads no optimizer: its
    five combinations are one, recorded as adamw)."""
    params = [{"optimizer": o, "strategy": "default"} for o in accs] + [{"optimizer": "adamw",
                                                                         "strategy": "adamw_decay"}]
    curves = [*accs.values(), ([0.2, 0.3], [0.25, 0.3])]
    configs = [{"index": i, "seed": s, "params": p, "val_acc": curve[s], "val_loss": [1.0, 0.9],
                "seconds": [3.0, 5.0], "error": None, "wall": 5.0}
               for i, (p, curve) in enumerate(zip(params, curves, strict=True)) for s in (0, 1)]
    doc = {"table": name, "title": "test", "dataset": name, "mode": "full", "space": SEEDED_SPACE,
           "levels": {n: spec["choices"] for n, spec in SEEDED_SPACE.items()}, "pins": [PIN], "seeds": [0, 1],
           "epochs": 2, "grid_size": 6, "recorded": 12, "recorded_configs": 6,
           "config": {"name": name, "data": {"dataset": "fashion-mnist-demo", "image_size": 32},
                      "model": {"backbone": "efficientnet_lite0", "pretrained": "none"}, "train": {"epochs": 2}},
           "configs": configs}
    path = tmp_path / f"curves-{name}.json"
    path.write_text(json.dumps(doc))
    return Table.load(path)


def test_a_seeded_table_replays_one_of_its_seeds_and_maps_an_unread_value_to_its_pinned_row(tmp_path: Path) -> None:
    t = _seeded(tmp_path)
    assert t.seeded and len(t.runs) == 6 and all(len(rows) == 2 for rows in t.runs.values())
    pinned_row = t.row({"optimizer": "momentum", "strategy": "adamw_decay"})  # adamw_decay builds AdamW anyway
    assert pinned_row["params"] == {"optimizer": "adamw", "strategy": "adamw_decay"}
    drawn = set()
    for seed in range(10):
        sim = simulate(t, "grid", "fifo", seed=seed, num_samples=10)
        for trial in sim.trials:
            got = [e.val_acc for e in sim.evaluations if e.trial_id == trial.trial_id]
            assert got == trial.row["val_acc"] and trial.row in t.runs[t.key(trial.config)]
            drawn.add((t.key(trial.config), trial.row["seed"]))
    assert len(drawn) == 12  # every seed of every configuration is drawn by some trial


def test_the_target_is_one_standard_error_below_the_best_mean_and_a_lucky_seed_does_not_reach_it(
        tmp_path: Path) -> None:
    """sgd's lucky seed (0.85) makes it the incumbent of any search that draws it: from then on that search holds a
    configuration worth 0.70, below the target, though it saw a val_acc above it."""
    from benchmarks.replay import Worth, _course

    t = _seeded(tmp_path)
    worth = Worth.of(t)
    assert t.curves[worth.best_key]["params"]["optimizer"] == "adam"
    assert (worth.best, worth.sem, worth.target) == pytest.approx((0.79, SEM, 0.79 - SEM))
    assert worth.median == pytest.approx((0.77 + 0.70) / 2)  # of 0.79, 0.785, 0.77, 0.70, 0.4, 0.3
    key = {o: t.key({"optimizer": o, "strategy": "default"}) for o in ACCS}
    assert [worth.first_reaching(key[o]) for o in ACCS] == [2, 2, None, None, None]
    outcomes = set()
    for seed in range(10):
        sim = simulate(t, "grid", "fifo", seed=seed, num_samples=10)
        lucky = any(tr.row["params"]["optimizer"] == "sgd" and tr.row["val_acc"][-1] == 0.85 for tr in sim.trials)
        course = _course(sim, worth)
        assert len(course.steps) == len(sim.evaluations)
        seen_lucky = [w for (_, w), e in zip(course.steps, sim.evaluations, strict=True) if e.val_acc == 0.85]
        assert seen_lucky == ([pytest.approx(0.70)] if lucky else [])  # above the target seen, not worth it
        final = course.steps[-1][1]
        assert final == pytest.approx(0.70) if lucky else final >= worth.target
        outcomes.add(lucky)
    assert outcomes == {True, False}  # both cases are exercised


def test_regret_is_normalised_between_the_best_and_the_median_and_averaged_over_the_budget(tmp_path: Path) -> None:
    from benchmarks.replay import Course, Worth

    worth = Worth.of(_seeded(tmp_path))
    assert worth.regret(worth.best) == 0 and worth.regret(worth.median) == pytest.approx(1)
    # nothing before epoch 2 (the median's regret, 1), then the median (1), then the best from epoch 3 (0)
    course = Course([(2.0, worth.median), (3.0, worth.best)])
    assert course.regret(worth, 4) == pytest.approx((1 + 1 + 0 + 0) / 4)
    assert course.to_target(worth) == 3.0


def test_the_perfect_stopper_pays_one_epoch_per_configuration_never_worth_the_target(tmp_path: Path) -> None:
    import random

    from benchmarks.replay import Worth, _perfect_stopper, _random_key

    t = _seeded(tmp_path)
    worth = Worth.of(t)
    for seed in range(5):
        rng, stops = random.Random(seed), 0
        while worth.first_reaching(_random_key(t, rng)) is None:
            stops += 1
        assert _perfect_stopper(worth, seed, 40).to_target(worth) == stops + 2


def test_the_configuration_best_on_the_other_tables_is_scored_alone(tmp_path: Path) -> None:
    """Another table of the same space where rmsprop is best: its best configuration, trained alone here, never
    reaches this table's target; a table of another space is not consulted."""
    from benchmarks.replay import best_elsewhere, score_noise_aware

    here = _seeded(tmp_path)
    flipped = {**ACCS, "adam": ACCS["rmsprop"], "rmsprop": ACCS["adam"]}
    other = _seeded(tmp_path, flipped, name="other")
    assert here.curves[best_elsewhere(here, [here, other])]["params"]["optimizer"] == "rmsprop"
    assert best_elsewhere(here, [here]) is None
    res = score_noise_aware(here, [here, other], seeds=3)
    alone = res["methods"]["best_other_tables"]
    assert alone["reach"] == 0 and alone["params"]["optimizer"] == "rmsprop"
    # a budget of 20 trials x 2 epochs: worth 0.3 after its first epoch, 0.4 for the other 39
    assert alone["regret"] == pytest.approx(((0.79 - 0.3) + 39 * (0.79 - 0.4)) / 40 / (0.79 - (0.77 + 0.70) / 2))
    for name in ("default", "random", "perfect_stopper"):
        assert 0 <= res["methods"][name]["reach"] <= 3
    assert res["methods"]["perfect_stopper"]["ratio_median"] <= res["methods"]["random"]["ratio_median"]
    assert (res["target"], res["configs"], res["seeds_per_config"]) == (round(0.79 - SEM, 5), 6, 2)
