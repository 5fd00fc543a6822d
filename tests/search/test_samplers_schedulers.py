"""Each sampler and scheduler through real Ray + Optuna on synthetic shapes, asserting what defines it."""
from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import optuna
import pytest

from autoft.config import config_from_dict
from autoft.errors import ConfigError
from autoft.run.records import TrialRecord, TrialStatus, read_trials
from autoft.search.run import search
from autoft.search.budget import Budget
from autoft.search.searcher import make_searcher
from autoft.search.tuner import ray_init
from autoft.run.warmstart import warm_start
from searched_run import shapes_config

SAMPLERS = ("tpe", "random", "grid", "cmaes", "qmc")
GRID_SPACE = {"learning_rate": {"type": "float", "low": 0.002, "high": 0.006, "step": 0.004},
              "optimizer": {"type": "categorical", "choices": ["adam", "momentum"]}}


def tiny(shapes_dir: Path, epochs: int, space: dict | None = None, **search: object) -> dict:
    """A search small enough for a loaded 2-core machine: 12 training images per class, 4 steps an epoch."""
    raw = shapes_config(shapes_dir, **search)
    raw["data"]["max_train_per_class"] = 12
    raw["train"]["epochs"] = epochs
    if space is not None:
        raw["space"] = space
    return raw


@pytest.fixture(scope="module")
def ray_session():
    """One Ray for every search in this module (searches attach to it instead of starting their own)."""
    import ray

    started = ray_init(None, False)
    yield
    if started:
        ray.shutdown()


def run(shapes_dir: Path, results: Path, name: str, raw: dict):
    return search(config_from_dict(raw), results_dir=results, name=name)


def _suggestions(raw: dict, tmp_path: Path, tag: str) -> list[dict]:
    """Four suggestions from the real searcher (OptunaSearch subclass + sampler), each told a fake result."""
    cfg = config_from_dict(raw)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / f'{tag}.db'}")
    searcher = make_searcher(cfg, storage, "s", cfg.search.seed, Budget())
    out = []
    for i in range(min(4, cfg.search.trials)):
        params = searcher.suggest(f"t{i}")
        out.append(params)
        result = {"val_acc": 0.1 * i, "best_val_acc": 0.1 * i, "epoch": cfg.train.epochs, "training_iteration": 1}
        searcher.on_trial_complete(f"t{i}", result)
    return out


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_seeded_samplers_repeat_their_params(sampler: str, shapes_dir: Path, tmp_path: Path) -> None:
    raw = tiny(shapes_dir, 1, GRID_SPACE if sampler == "grid" else None, sampler=sampler, seed=7, trials=4)
    first, again = _suggestions(raw, tmp_path, "a"), _suggestions(raw, tmp_path, "b")
    assert first == again
    assert len({json.dumps(p, sort_keys=True) for p in first}) == 4  # four different points
    if sampler == "grid":  # every point once, in a seeded order
        assert sorted(json.dumps(p, sort_keys=True) for p in first) == sorted(
            json.dumps(p, sort_keys=True) for p in config_from_dict(raw).space.grid())
    else:
        raw["search"]["seed"] = 8
        other = _suggestions(raw, tmp_path, "c")
        assert other != first
        # the numeric parameter moves with the seed too, after the first trial (which Optuna draws at random to
        # learn the space), not only the categoricals: an unscrambled Sobol sequence would repeat itself here
        assert [p["learning_rate"] for p in other[1:]] != [p["learning_rate"] for p in first[1:]]


def test_gp_without_torch_is_a_config_error(shapes_dir: Path, tmp_path: Path) -> None:
    try:
        import torch  # noqa: F401
        pytest.skip("torch is installed: gp works")
    except ImportError:
        pass
    with pytest.raises(ConfigError, match="'gp' needs PyTorch"):
        _suggestions(tiny(shapes_dir, 1, sampler="gp"), tmp_path, "gp")


def test_grid_budget_is_its_size(shapes_dir: Path) -> None:
    raw = tiny(shapes_dir, 1, GRID_SPACE, sampler="grid")
    del raw["search"]["trials"]
    assert config_from_dict(raw).search.trials == 4
    raw["search"]["trials"] = 9
    assert config_from_dict(raw).search.trials == 4  # never a duplicate
    raw["search"]["trials"] = 3
    assert config_from_dict(raw).search.trials == 3
    with pytest.raises(ConfigError, match="space.learning_rate: the grid sampler needs finite values"):
        config_from_dict(tiny(shapes_dir, 1, sampler="grid"))


def test_grid_with_fifo_covers_every_point_once(ray_session, shapes_dir: Path, tmp_path: Path) -> None:
    raw = tiny(shapes_dir, 2, GRID_SPACE, sampler="grid", scheduler="fifo")
    del raw["search"]["trials"]
    outcome = run(shapes_dir, tmp_path, "grid", raw)
    records = outcome.leaderboard.records
    seen = sorted((round(r.params["learning_rate"], 6), r.params["optimizer"]) for r in records)
    assert seen == sorted(itertools.product([0.002, 0.006], ["adam", "momentum"]))
    assert all(r.status is TrialStatus.COMPLETED and r.epochs_run == 2 for r in records)  # fifo stops nothing


@pytest.mark.parametrize("sampler,scheduler", [("random", "asha"), ("qmc", "hyperband")])
def test_asha_and_hyperband_stop_some_trials_early(ray_session, shapes_dir: Path, tmp_path: Path, sampler: str,
                                                    scheduler: str) -> None:
    space = {"learning_rate": {"type": "float", "low": 1e-5, "high": 5e-2, "log": True}}
    # HyperBand halves a bracket once all its trials exist; Tune creates them only as slots free up
    slots = {"max_concurrent": 4, "resources_per_trial": {"cpu": 0.5}} if scheduler == "hyperband" else {}
    raw = tiny(shapes_dir, 2, space, sampler=sampler, scheduler=scheduler, trials=4, **slots)
    outcome = run(shapes_dir, tmp_path, scheduler, raw)
    records = outcome.leaderboard.records
    runs = sorted(r.epochs_run for r in records)
    assert len(records) == 4 and runs[0] < runs[-1] == 2, runs
    stopped = [r for r in records if r.status is TrialStatus.STOPPED]
    assert stopped and all(r.epochs_run < 2 for r in stopped)
    # a trial that continued after a pause shows each epoch once (hyperband resumes it from its checkpoint)
    assert all([h["epoch"] for h in r.history] == list(range(1, len(r.history) + 1)) for r in records)


def test_cmaes_with_median_notes_categoricals_once(ray_session, shapes_dir: Path, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    raw = tiny(shapes_dir, 2, sampler="cmaes", scheduler="median", trials=3)
    with caplog.at_level(logging.INFO, logger="autoft"):
        outcome = run(shapes_dir, tmp_path, "cmaes", raw)
    notes = [m for m in caplog.messages if "samples optimizer independently" in m]
    assert len(notes) == 1, caplog.messages
    assert len(outcome.leaderboard.records) == 3 and all(r.status.finished for r in outcome.leaderboard.records)


def test_pbt_clones_weights_and_perturbs_params(ray_session, shapes_dir: Path, tmp_path: Path) -> None:
    # one clearly strong and one clearly weak member, so the bottom of the population is never a tie; four epochs
    # give three perturbation points (none at the last epoch), whatever order the members report in
    raw = tiny(shapes_dir, 4, scheduler="pbt", trials=3, max_concurrent=3, quantile_fraction=0.5,
               resources_per_trial={"cpu": 0.5}, enqueue=[{"learning_rate": 0.006, "optimizer": "adam"},
                                                          {"learning_rate": 0.001, "optimizer": "momentum"}])
    outcome = run(shapes_dir, tmp_path, "pbt", raw)
    run_dir = outcome.run_dir
    records = {r.trial_id: r for r in read_trials(run_dir)}
    exploited = [r for r in records.values() if r.extra.get("exploits")]
    assert exploited, "no exploit in trial.json"
    for record in exploited:
        epochs = [h["epoch"] for h in record.history]
        log = (run_dir / "trials" / record.trial_id / "train.log").read_text()
        cursor = 0
        for e in record.extra["exploits"]:
            assert e["donor"] in records and e["donor"] != record.trial_id
            assert e["new_params"] != e["donor_params"]  # perturbed, not a plain copy
            assert e["epoch"] < 4  # never at the last epoch: a clone would have nothing to train
            at = epochs.index(e["at_epoch"], cursor)
            assert epochs[at + 1] == e["epoch"] + 1, epochs  # continued from the donor's checkpoint epoch
            assert f"restoring the checkpoint of trial {e['donor']} at epoch {e['epoch']}" in log
            cursor = at + 1
    study = optuna.load_study(study_name=run_dir.name, storage=f"sqlite:///{run_dir / 'optuna.db'}")
    assert len(study.trials) == 3
    for t in study.trials:  # recorded at completion, with the final (perturbed) params
        record = records[t.user_attrs["ray_trial_id"]]
        assert t.params["optimizer"] == record.params["optimizer"]
        assert t.params["learning_rate"] == pytest.approx(record.params["learning_rate"])
        assert t.value == pytest.approx(record.best["val_acc"]) and record.number == t.number


def test_pbt_needs_epoch_evaluations(shapes_dir: Path) -> None:
    raw = tiny(shapes_dir, 2, scheduler="pbt")
    raw["train"]["eval_interval"] = 4
    with pytest.raises(ConfigError, match="search.scheduler: pbt exploits at epoch ends"):
        config_from_dict(raw)


def _record(run_dir: Path, trial_id: str, params: dict, val_acc: float, **extra: object) -> None:
    history = ({"epoch": 1, "val_acc": val_acc, "val_loss": 1 - val_acc},)
    TrialRecord(trial_id=trial_id, params=params, status=TrialStatus.COMPLETED, history=history,
                extra=dict(extra)).save(run_dir / "trials" / trial_id)


def test_warm_start_enqueues_the_best_param_sets_of_the_space(shapes_dir: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    _record(old, "a", {"learning_rate": 0.004, "optimizer": "adam", "batch_size": 16}, 0.9)
    _record(old, "b", {"learning_rate": 0.5, "optimizer": "momentum"}, 0.8)  # lr outside today's range
    _record(old, "c", {"learning_rate": 0.002, "optimizer": "adam"}, 0.7)
    _record(old, "d", {"learning_rate": 0.003, "optimizer": "adam"}, 0.95, rerun_of="a", seed=1)
    _record(old, "e", {"learning_rate": 0.001, "optimizer": "adam"}, 0.1)
    raw = tiny(shapes_dir, 1, enqueue=[{"optimizer": "momentum"}])
    cfg = warm_start(config_from_dict(raw), old)
    assert cfg.search.enqueue == ({"learning_rate": 0.004, "optimizer": "adam"}, {"optimizer": "momentum"},
                                  {"learning_rate": 0.002, "optimizer": "adam"})
    with pytest.raises(ConfigError, match="--warm-start .*not a run folder"):
        warm_start(config_from_dict(raw), tmp_path / "nothing")


def test_every_sampler_and_scheduler_the_config_accepts_has_a_factory() -> None:
    """The Enums in config.schema are what validation accepts; each registry covers its Enum exactly."""
    from autoft.config.schema import Sampler, Scheduler
    from autoft.search.samplers import SAMPLER_FACTORIES
    from autoft.search.schedulers import SCHEDULER_FACTORIES

    assert set(SAMPLER_FACTORIES) == set(Sampler)
    assert set(SCHEDULER_FACTORIES) == set(Scheduler)
    for name in Sampler:
        cfg = config_from_dict({"search": {"sampler": name.value},
                                "space": {"learning_rate": {"type": "categorical", "choices": [0.01, 0.1]}}})
        assert cfg.search.sampler == name.value
    with pytest.raises(ConfigError, match="search.sampler"):
        config_from_dict({"search": {"sampler": "annealing"}})
