"""Population based training (``search.scheduler: pbt``) and the trial checkpoints that PBT and retries restore.

Ray's PopulationBasedTraining drives the population; autoft adds three things around it:

* ``PbtSearcher`` hands out the initial population (``search.enqueue`` first, then points drawn by the configured
  Optuna sampler, seeded) and writes each finished member to the Optuna study with ``create_trial`` — with its
  *final* (perturbed) params, so the dashboard and the report show what was really trained. An Optuna trial
  cannot change its params while it runs, which is why members are recorded at completion, not asked up front.
* ``PbtScheduler`` mutates the YAML space's ``train`` keys (model/data keys define the weights, so a clone
  keeps its donor's) and clamps every perturbed value back into the space; each exploit lands in trial.json
  as ``extra.exploits``.
* ``TrialCheckpoints`` (``autoft.search.checkpoints``) saves checkpoints every ``perturbation_interval`` epochs
  and hands them to Ray with ``tune.report(..., checkpoint=...)``; a trial that starts with
  ``tune.get_checkpoint()`` (an exploit, or a ``search.max_failures`` retry) continues from it.
"""
from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

import optuna
from ray import tune
from ray.tune.experiment import Trial, _convert_to_experiment_list
from ray.tune.schedulers import PopulationBasedTraining, TrialScheduler
from ray.tune.search import BasicVariantGenerator

from autoft.config import RunConfig
from autoft.config.space import CategoricalParam, FloatParam, IntParam, Param
from autoft.errors import ConfigError
from autoft.search.budget import Budget
from autoft.search.samplers import make_sampler

if TYPE_CHECKING:
    from autoft.search.recorder import Recorder

__all__ = ["PbtSearcher", "PbtScheduler", "initial_population", "clamp"]



def initial_population(cfg: RunConfig, seed: int) -> list[dict[str, Any]]:
    """``search.trials`` param sets: the enqueued ones first, the rest drawn by ``search.sampler`` (seeded)."""
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


class PbtScheduler(PopulationBasedTraining):
    """Ray's PopulationBasedTraining over the space's training keys; each exploit is written to trial.json and
    told to the searcher (Tune's results carry no config). A member on its last epoch is never exploited."""

    def __init__(self, cfg: RunConfig, recorder: Recorder | None, mutable: list[Param]) -> None:
        super().__init__(time_attr="epoch", metric="val_acc", mode="max",
                         perturbation_interval=cfg.search.perturbation_interval,
                         quantile_fraction=cfg.search.quantile_fraction,
                         hyperparam_mutations={p.name: _mutation(p) for p in mutable},
                         custom_explore_fn=functools.partial(_explore, mutable))
        self.epochs = cfg.train.epochs
        self.names = cfg.space.names
        self.recorder = recorder

    @classmethod
    def for_config(cls, cfg: RunConfig, recorder: Recorder | None) -> PbtScheduler:
        mutable = _mutable(cfg)
        if not mutable:
            raise ConfigError("search.scheduler: pbt perturbs training keys (learning_rate, optimizer, …); "
                              f"the space has only {', '.join(cfg.space.names) or 'nothing'}")
        return cls(cfg, recorder, mutable)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        if float(result.get("epoch", 0)) >= self.epochs:
            return TrialScheduler.CONTINUE  # the last epoch: a clone would have nothing left to train
        return super().on_trial_result(tune_controller, trial, result)

    def _exploit(self, tune_controller: Any, trial: Trial, trial_to_clone: Trial) -> None:
        before = {k: trial.config.get(k) for k in self.names}
        donor_params = {k: trial_to_clone.config.get(k) for k in self.names}
        at_epoch = (self._trial_state[trial].last_result or {}).get("epoch")
        donor_epoch = (self._trial_state[trial_to_clone].last_result or {}).get("epoch")
        super()._exploit(tune_controller, trial, trial_to_clone)
        after = {k: trial.config.get(k) for k in self.names}
        if self.recorder is None:
            return
        if isinstance(self.recorder.searcher, PbtSearcher):
            self.recorder.searcher.note_config(trial.trial_id, after)
        self.recorder.exploit(trial.trial_id, {
            "donor": trial_to_clone.trial_id, "epoch": donor_epoch, "at_epoch": at_epoch,
            "old_params": before, "donor_params": donor_params, "new_params": after, "time": time.time()})


def _explore(mutable: list[Param], config: dict[str, Any]) -> dict[str, Any]:
    return {**config, **{p.name: clamp(p, config[p.name]) for p in mutable if p.name in config}}


class PbtSearcher(BasicVariantGenerator):
    """The initial population for Ray, and the Optuna record of each member once it ends.

    Ray's PBT refuses a Searcher (it must own the configs it mutates); a BasicVariantGenerator is allowed."""

    def __init__(self, cfg: RunConfig, storage: optuna.storages.BaseStorage, study_name: str, seed: int,
                 budget: Budget) -> None:
        super().__init__(points_to_evaluate=initial_population(cfg, seed), random_state=seed)
        self.study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize",
                                         load_if_exists=True)
        self.distributions = cfg.space.to_optuna()
        self.names = cfg.space.names
        self.budget = budget
        self.curves: dict[str, list[tuple[Any, float]]] = {}
        self.configs: dict[str, dict[str, Any]] = {}
        self.numbers: dict[str, int] = {}

    def add_configurations(self, experiments: Any) -> None:
        experiments = _convert_to_experiment_list(experiments)
        for experiment in experiments:  # the population's keys must exist in the spec they fill
            experiment.spec["config"] = {**{k: None for k in self.names}, **(experiment.spec.get("config") or {})}
        super().add_configurations(experiments)

    def next_trial(self) -> Trial | None:
        if self.budget.spent():
            self.set_finished()
            return None
        trial = super().next_trial()
        if trial is not None:
            self.configs[trial.trial_id] = {k: trial.config[k] for k in self.names if k in trial.config}
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
            state=state, params=params, distributions={k: self.distributions[k] for k in params},
            value=max(curve) if state == optuna.trial.TrialState.COMPLETE else None,
            intermediate_values={i: v for i, v in enumerate(curve, start=1)},
            user_attrs={"ray_trial_id": trial_id, "scheduler": "pbt"})
        self.study.add_trial(trial)
        self.numbers[trial_id] = self.study.get_trials(deepcopy=False)[-1].number
        super().on_trial_complete(trial_id, result, error)

    def optuna_number(self, trial_id: str) -> int | None:
        return self.numbers.get(trial_id)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "study": None}  # as StudySearch: tuner.pkl must not hold the storage's password

    # BasicVariantGenerator's own save_to_dir narrows SearchAlgorithm's (dirpath, **kwargs) the same way
    def save_to_dir(self, dirpath: str, session_str: str) -> bool:  # type: ignore[override]
        return False  # as StudySearch.save: a pickle in ray/ would hold the storage URL; the study is the state
