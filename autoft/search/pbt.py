"""Population based training (``search.scheduler: pbt``) and the trial checkpoints that PBT and retries restore.

Ray's PopulationBasedTraining drives the population; autoft adds three things around it:

* ``PbtSearcher`` hands out the initial population (``search.enqueue`` first, then points drawn by the configured
  Optuna sampler, seeded) and writes each finished member to the Optuna study with ``create_trial`` — with its
  *final* (perturbed) params, so the dashboard and the report show what was really trained. An Optuna trial
  cannot change its params while it runs, which is why members are recorded at completion, not asked up front.
* ``make_pbt_scheduler`` mutates the YAML space's ``train`` keys (model/data keys define the weights, so a clone
  keeps its donor's) and clamps every perturbed value back into the space; each exploit lands in trial.json
  as ``extra.exploits``.
* ``TrialCheckpoints`` saves autoft checkpoints (``autoft/checkpoint.py``) every ``perturbation_interval`` epochs
  and hands them to Ray with ``tune.report(..., checkpoint=...)``; a trial that starts with
  ``tune.get_checkpoint()`` (an exploit, or a ``search.max_failures`` retry) continues from it.

This module imports ray and optuna only inside functions: ``search`` is its only caller.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autoft.config import RunConfig
from autoft.config.space import CategoricalParam, FloatParam, IntParam, Param

__all__ = ["make_pbt_searcher", "make_pbt_scheduler", "TrialCheckpoints", "initial_population", "clamp", "OWNER_FILE"]

OWNER_FILE = "owner.json"  # inside a checkpoint: which trial wrote it, at which epoch, with which params
# Keys whose change makes a donor's optimizer state meaningless (other accumulators, other param groups).
_OPTIMIZER_KEYS = ("optimizer", "strategy", "freeze_backbone", "train.optimizer", "train.strategy",
                   "train.freeze_backbone")


def initial_population(cfg: RunConfig, seed: int) -> list[dict[str, Any]]:
    """``search.trials`` param sets: the enqueued ones first, the rest drawn by ``search.sampler`` (seeded)."""
    import optuna

    from autoft.search.tuner import make_sampler

    study = optuna.create_study(direction="maximize", sampler=make_sampler(cfg, seed))
    for params in cfg.search.enqueue:
        study.enqueue_trial(dict(params))
    space = cfg.space.to_optuna()
    return [study.ask(space).params for _ in range(cfg.search.trials)]


def clamp(param: Param, value: Any) -> Any:
    """A perturbed value (x0.8, x1.2, rounded) put back inside the parameter's range and onto its step."""
    if isinstance(param, CategoricalParam):
        return value if value in param.choices else param.choices[0]
    value = min(max(value, param.low), param.high)
    if param.step is not None:
        value = param.low + round((value - param.low) / param.step) * param.step
        value = min(value, param.high)
    return int(round(value)) if isinstance(param, IntParam) else float(value)


def _mutation(param: Param) -> Any:
    from ray import tune

    if isinstance(param, CategoricalParam):
        return list(param.choices)
    if isinstance(param, IntParam):
        return tune.lograndint(param.low, param.high + 1) if param.log else tune.randint(param.low, param.high + 1)
    assert isinstance(param, FloatParam)
    return tune.loguniform(param.low, param.high) if param.log else tune.uniform(param.low, param.high)


def _mutable(cfg: RunConfig) -> list[Param]:
    """Training keys only: a clone keeps its donor's weights, so it keeps the keys that shaped them too."""
    return [p for p in cfg.space if not p.name.startswith(("model.", "data.")) and p.name not in
            ("backbone", "pretrained")]


def make_pbt_scheduler(cfg: RunConfig, recorder: Any) -> Any:
    """Ray's PopulationBasedTraining over the space's training keys; exploits are written to trial.json."""
    from ray.tune.schedulers import PopulationBasedTraining, TrialScheduler

    mutable = _mutable(cfg)
    names = cfg.space.names

    def explore(config: dict[str, Any]) -> dict[str, Any]:
        return {**config, **{p.name: clamp(p, config[p.name]) for p in mutable if p.name in config}}

    class _Pbt(PopulationBasedTraining):
        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
            if float(result.get("epoch", 0)) >= cfg.train.epochs:
                return TrialScheduler.CONTINUE  # the last epoch: a clone would have nothing left to train
            return super().on_trial_result(tune_controller, trial, result)

        def _exploit(self, tune_controller: Any, trial: Any, trial_to_clone: Any) -> None:
            before = {k: trial.config.get(k) for k in names}
            donor_params = {k: trial_to_clone.config.get(k) for k in names}
            at_epoch = (self._trial_state[trial].last_result or {}).get("epoch")
            donor_epoch = (self._trial_state[trial_to_clone].last_result or {}).get("epoch")
            super()._exploit(tune_controller, trial, trial_to_clone)
            after = {k: trial.config.get(k) for k in names}
            if recorder is not None:
                recorder.searcher.note_config(trial.trial_id, after)  # Tune's results carry no config
                recorder.exploit(trial.trial_id, {
                    "donor": trial_to_clone.trial_id, "epoch": donor_epoch, "at_epoch": at_epoch,
                    "old_params": before, "donor_params": donor_params, "new_params": after, "time": time.time()})

    if not mutable:
        from autoft.errors import ConfigError

        raise ConfigError("search.scheduler: pbt perturbs training keys (learning_rate, optimizer, …); "
                          f"the space has only {', '.join(names) or 'nothing'}")
    return _Pbt(time_attr="epoch", metric="val_acc", mode="max",
                perturbation_interval=cfg.search.perturbation_interval,
                quantile_fraction=cfg.search.quantile_fraction,
                hyperparam_mutations={p.name: _mutation(p) for p in mutable}, custom_explore_fn=explore)


def make_pbt_searcher(cfg: RunConfig, storage: Any, study_name: str, seed: int, deadline: float | None,
                      budget_flag: dict[str, bool]) -> Any:
    """The initial population for Ray, and the Optuna record of each member once it ends."""
    import optuna
    from ray.tune.experiment import _convert_to_experiment_list
    from ray.tune.search import BasicVariantGenerator

    distributions = cfg.space.to_optuna()
    names = cfg.space.names

    # Ray's PBT refuses a Searcher (it must own the configs it mutates); a BasicVariantGenerator is allowed.
    class _PbtSearch(BasicVariantGenerator):
        def __init__(self) -> None:
            super().__init__(points_to_evaluate=initial_population(cfg, seed), random_state=seed)
            self.study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize",
                                             load_if_exists=True)
            self.curves: dict[str, list[tuple[Any, float]]] = {}
            self.configs: dict[str, dict[str, Any]] = {}
            self.numbers: dict[str, int] = {}

        def add_configurations(self, experiments: Any) -> None:
            experiments = _convert_to_experiment_list(experiments)
            for experiment in experiments:  # the population's keys must exist in the spec they fill
                experiment.spec["config"] = {**{k: None for k in names}, **(experiment.spec.get("config") or {})}
            super().add_configurations(experiments)

        def next_trial(self) -> Any:
            if deadline is not None and time.time() >= deadline:
                budget_flag["hit"] = True
                self.set_finished()
                return None
            trial = super().next_trial()
            if trial is not None:
                self.configs[trial.trial_id] = {k: trial.config[k] for k in names if k in trial.config}
            return trial

        def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
            curve = self.curves.setdefault(trial_id, [])
            point = ((result.get("training_iteration"), result.get("epoch")), float(result.get("val_acc", "nan")))
            if "val_acc" in result and (not curve or curve[-1] != point):
                curve.append(point)

        def note_config(self, trial_id: str, params: dict[str, Any]) -> None:
            """The params a member trains with from now on (after an exploit)."""
            self.configs[trial_id] = dict(params)

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            if result:  # the result that ends a trial comes only here
                self.on_trial_result(trial_id, result)
            params = self.configs.get(trial_id, {})
            curve = [value for _, value in self.curves.get(trial_id, [])]
            state = optuna.trial.TrialState.FAIL if error or not curve else optuna.trial.TrialState.COMPLETE
            trial = optuna.trial.create_trial(
                state=state, params=params, distributions={k: distributions[k] for k in params},
                value=max(curve) if state == optuna.trial.TrialState.COMPLETE else None,
                intermediate_values={i: v for i, v in enumerate(curve, start=1)},
                user_attrs={"ray_trial_id": trial_id, "scheduler": "pbt"})
            self.study.add_trial(trial)
            self.numbers[trial_id] = self.study.get_trials(deepcopy=False)[-1].number
            super().on_trial_complete(trial_id, result, error)

        def optuna_number(self, trial_id: str) -> int | None:
            return self.numbers.get(trial_id)

    return _PbtSearch()


@dataclasses.dataclass
class TrialCheckpoints:
    """Checkpoints of one trial: saved by ``fit`` every ``interval`` epochs, reported to Ray, restored on restart.

    ``interval`` 0 means none (asha, median, fifo without ``search.max_failures``): reports carry no checkpoint
    and nothing is restored.
    """

    interval: int
    trial_id: str
    log: Callable[[str], None]
    directory: Path | None = None
    restore: Path | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def for_trial(cls, cfg: RunConfig, trial_id: str, log: Callable[[str], None]) -> TrialCheckpoints:
        if cfg.search.scheduler == "pbt":
            interval = cfg.search.perturbation_interval
        else:  # HyperBand pauses trials between rungs; a retry resumes
            interval = 1 if cfg.search.max_failures > 0 or cfg.search.scheduler == "hyperband" else 0
        return cls(interval=interval, trial_id=trial_id, log=log)

    def configure(self, cfg: RunConfig, params: dict[str, Any]) -> RunConfig:
        """``cfg`` with fit saving checkpoints at the interval into a private folder; fetches Ray's checkpoint."""
        if not self.interval:
            return cfg
        from ray import tune

        self.params = dict(params)
        self.directory = Path(tempfile.mkdtemp(prefix=f"autoft-ckpt-{self.trial_id}-"))
        given = tune.get_checkpoint()
        if given is not None:
            self.restore = self._fetch(given)
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, save_ckpt_interval=self.interval))

    def _fetch(self, checkpoint: Any) -> Path:
        local = Path(checkpoint.to_directory(str(self.directory / "restore")))
        owner = json.loads((local / OWNER_FILE).read_text()) if (local / OWNER_FILE).is_file() else {}
        self.log(f"restoring the checkpoint of trial {owner.get('trial_id', '?')} at epoch {owner.get('epoch', '?')}")
        changed = [k for k in _OPTIMIZER_KEYS if k in self.params and k in owner.get("params", {})
                   and owner["params"][k] != self.params[k]]
        if changed:
            _drop_optimizer_state(local)
            self.log(f"{', '.join(changed)} changed: weights kept, optimizer state starts fresh")
        return local

    def for_report(self, metrics: dict[str, Any]) -> Any:
        """A ``tune.Checkpoint`` when ``fit`` just saved one for this evaluation's epoch, else None."""
        from autoft.training.checkpoint import checkpoint_path

        epoch = metrics.get("epoch")
        if not self.interval or self.directory is None or not isinstance(epoch, (int, float)):
            return None
        if not float(epoch).is_integer() or int(epoch) % self.interval:
            return None
        where = checkpoint_path(self.directory, int(epoch))
        if not where.is_dir():
            return None
        from ray import tune

        (where / OWNER_FILE).write_text(json.dumps({"trial_id": self.trial_id, "epoch": int(epoch),
                                                    "params": self.params}))
        return tune.Checkpoint.from_directory(str(where))

    def after_report(self, metrics: dict[str, Any]) -> None:
        """Ray has copied the checkpoint into the run's storage: the local one can go."""
        from autoft.training.checkpoint import checkpoint_path

        if self.directory is not None and isinstance(metrics.get("epoch"), (int, float)):
            shutil.rmtree(checkpoint_path(self.directory, int(metrics["epoch"])), ignore_errors=True)

    def cleanup(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


def _drop_optimizer_state(path: Path) -> None:
    """Keep weights, schedule position and strategy extras (the L2-SP anchor); forget optimizer accumulators."""
    from safetensors.numpy import load_file, save_file

    from autoft.training.checkpoint import OPTIMIZER_FILE, STATE_FILE

    extras = {k: v for k, v in load_file(str(path / OPTIMIZER_FILE)).items() if k.startswith("extra::")}
    save_file(extras, str(path / OPTIMIZER_FILE))
    state = json.loads((path / STATE_FILE).read_text())
    state["optimizer"] = {}
    (path / STATE_FILE).write_text(json.dumps(state))
