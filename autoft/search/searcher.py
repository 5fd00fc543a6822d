"""The searcher Tune asks for each trial's params: Optuna's (``search.sampler``) through Ray's OptunaSearch, or the
PBT population (``search.scheduler: pbt``, see search.pbt). Both stop asking once the time budget is spent."""
from __future__ import annotations

import hashlib
import socket
import warnings
from pathlib import Path
from typing import Any

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from autoft.config import RunConfig
from autoft.config.rules import SEEDS
from autoft.config.schema import Scheduler
from autoft.run.storage import StudyRef
from autoft.search.budget import Budget
from autoft.search.pbt import PbtSearcher
from autoft.search.samplers import make_sampler

__all__ = ["StudySearch", "make_searcher", "joined_seed", "sampler_seed"]


class StudySearch(OptunaSearch):
    """Tags Optuna trials with their Ray id, tells Optuna PRUNED for trials the scheduler stopped early, honours
    the time budget."""

    def __init__(self, cfg: RunConfig, storage: optuna.storages.BaseStorage, study_name: str, seed: int,
                 budget: Budget, sampler: optuna.samplers.BaseSampler | None = None) -> None:
        """``sampler``: the one ``search.sampler`` names unless given (the replay benchmark scores variants)."""
        super().__init__(space=cfg.space.to_optuna(), metric="val_acc", mode="max",
                         sampler=sampler if sampler is not None else make_sampler(cfg, seed),
                         storage=storage, study_name=study_name)
        self.epochs = cfg.train.epochs
        self.budget = budget

    # Ray annotates suggest as returning dict | None, leaving out its own Searcher.FINISHED (a str)
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
        if self.budget.spent():
            return Searcher.FINISHED
        params = super().suggest(trial_id)
        self._ot_trials[trial_id].set_user_attr("ray_trial_id", trial_id)
        return params

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if result and not error and trial_id in self._ot_trials and "val_acc" in result:
            # Tune gives the result that ends a trial (ASHA's stop, the last epoch) only to this hook, so Optuna
            # would miss that epoch's intermediate value; a repeat of a reported step is a no-op.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._ot_trials[trial_id].report(float(result["val_acc"]), int(result["training_iteration"]))
        if result and not error and float(result.get("epoch", self.epochs)) < self.epochs:
            self._ot_trials[trial_id].set_user_attr("stopped_early", True)
            result = None  # OptunaSearch tells PRUNED for a result-less, error-less completion
        elif result and not error:
            result = {**result, "val_acc": result.get("best_val_acc", result.get("val_acc"))}
        super().on_trial_complete(trial_id, result, error)

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles the Tuner, this searcher included, into ray/tune-*/tuner.pkl: leave the storage (its URL and
        # password) and the live study out; nothing unpickles it (a resume reads the study, autoft.search.resume)
        return {**self.__dict__, "_storage": None, "_ot_study": None, "_ot_trials": {}}

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        # Tune would pickle this searcher (its storage URL and password with it) into ray/; the study itself is
        # the state a resume reads (autoft.search.resume), so nothing is saved (as PbtSearcher.save_to_dir)
        return None

    def optuna_number(self, trial_id: str) -> int | None:
        trial = self._ot_trials.get(trial_id)
        return trial.number if trial is not None else None


def make_searcher(cfg: RunConfig, storage: optuna.storages.BaseStorage, study_name: str, seed: int,
                  budget: Budget) -> StudySearch | PbtSearcher:
    if Scheduler(cfg.search.scheduler) is Scheduler.PBT:  # members change params while they run
        return PbtSearcher(cfg, storage, study_name, seed, budget)
    return StudySearch(cfg, storage, study_name, seed, budget)


def joined_seed(seed: int, run_dir: Path) -> int:
    """The sampler seed of a run that joins a study other drivers draw in: ``search.seed`` mixed with the run's
    identity (this machine and the run folder), so that drivers with one config propose different start-up points
    and the same command on the same machine proposes the same ones."""
    identity = f"{seed}\0{socket.gethostname()}\0{Path(run_dir).resolve()}"
    return int.from_bytes(hashlib.sha256(identity.encode()).digest()[:8], "big") % SEEDS


def sampler_seed(cfg: RunConfig, ref: StudyRef, counted: int) -> int:
    """``search.seed`` for the run that made its study, the recorded joined seed for one that joined; plus the
    trials already done (the same seed on resume would repeat the first configs)."""
    return (cfg.search.seed if ref.sampler_seed is None else ref.sampler_seed) + counted
