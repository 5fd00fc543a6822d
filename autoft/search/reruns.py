"""After the search: the reruns of the top configurations with new seeds (``search.rerun_top_k`` ×
``search.rerun_seeds``, planned by ``autoft.run.selection.rerun_plan``) as Ray trials under FIFO, and the
winner's final fit on train+val (``search.final_fit: train+val``)."""
from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.search import Searcher
from safetensors.numpy import load_file

from autoft.config import RunConfig, apply_params
from autoft.config.schema import Scheduler
from autoft.data import ImageData, Split
from autoft.run.bundle import copy_bundle, is_bundle, load_bundle, save_bundle
from autoft.run.layout import RunDir
from autoft.run.records import TrialRecord, read_trials
from autoft.run.selection import rerun_plan
from autoft.search.costs import stored_costs
from autoft.search.recorder import Progress, Recorder
from autoft.search.tuner import run_tuner

__all__ = ["PlanSearcher", "RerunTagger", "run_reruns", "train_plus_val", "final_fit"]

SEED_KEY = "train.seed"


class PlanSearcher(Searcher):
    """Hands out the planned reruns in order: each one's params with its new seed."""

    def __init__(self, plan: list[dict[str, Any]]) -> None:
        super().__init__(metric="val_acc", mode="max")
        self.todo = list(plan)
        self.given: dict[str, dict[str, Any]] = {}

    # Ray annotates suggest as returning dict | None, leaving out its own Searcher.FINISHED (a str)
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
        if not self.todo:
            return Searcher.FINISHED
        self.given[trial_id] = self.todo.pop(0)
        return {**self.given[trial_id]["params"], SEED_KEY: self.given[trial_id]["seed"]}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass

    def optuna_number(self, trial_id: str) -> int | None:
        return None  # reruns are not Optuna trials


class RerunTagger(tune.Callback):
    """Writes each rerun's origin and seed into its trial.json as it starts."""

    def __init__(self, searcher: PlanSearcher, recorder: Recorder) -> None:
        self.searcher, self.recorder = searcher, recorder

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        spec = self.searcher.given.get(trial.trial_id, {})
        self.recorder.annotate(trial.trial_id, {"rerun_of": spec.get("rerun_of"), "seed": spec.get("seed")})


def run_reruns(cfg: RunConfig, run_dir: Path, *, on_progress: Callable[[Progress], None] | None = None) -> int:
    """Run ``rerun_plan`` as Ray trials (FIFO, the search's resources) on the Ray the search started (its
    RaySession); returns how many ran."""
    plan = rerun_plan(cfg, read_trials(run_dir))
    if not plan:
        return 0
    rerun_cfg = dataclasses.replace(cfg, search=dataclasses.replace(cfg.search, scheduler=Scheduler.FIFO.value))
    searcher = PlanSearcher(plan)
    recorder = Recorder(run_dir, rerun_cfg, searcher, on_progress, time.time())
    run_tuner(rerun_cfg, run_dir, searcher=searcher, recorder=recorder, name="rerun", num_samples=len(plan),
              param_names=(*cfg.space.names, SEED_KEY), callbacks=[RerunTagger(searcher, recorder)],
              costs=stored_costs(run_dir))  # the search's measured costs, so cost_per_epoch means the same
    return len(plan)


def train_plus_val(data: ImageData) -> ImageData:
    """The train and val images as one training split (val stays as it was); a fingerprint of its own, so no cache
    entry of ``data`` is taken for it."""
    merged = Split(np.concatenate([np.asarray(data.train.images), np.asarray(data.val.images)]),
                   np.concatenate([data.train.labels, data.val.labels]))
    return dataclasses.replace(data, train=merged, fingerprint=f"{data.fingerprint}+val")


def final_fit(cfg: RunConfig, run_dir: Path, winner: TrialRecord, data: ImageData,
              log: Callable[[str], None] | None = None) -> Path:
    """Train the winner's configuration on train+val for its best epoch count; it becomes ``best_model/``.

    The selection bundle (already in ``best_model/``) moves to ``best_trial_model/``. The lr schedule spans the
    refit's own epochs and steps. Validation images are part of this training set, so the refit's bundle.json
    carries no val_acc of its own: ``metrics.selection_val_acc`` is the winner run's, for reference.
    """
    from autoft.training import features  # paddle: imported when a refit runs
    from autoft.training.checkpoint import MODEL_FILE, checkpoint_path
    from autoft.training.fit import build_model, fit

    run = RunDir(Path(run_dir))
    epochs = max(1, math.ceil(float(winner.require_best()["epoch"])))
    params = dict(winner.params)
    if "seed" in winner.extra:
        params[SEED_KEY] = winner.extra["seed"]
    cfg = apply_params(cfg, params)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=epochs, save_ckpt_interval=epochs,
                                                             eval_interval="epoch"))
    merged = train_plus_val(data)
    if cfg.train.freeze_backbone and features.enabled():  # the refit reuses the features the trials computed
        features.publish_train_plus_val(build_model(cfg, data.num_classes), data, merged, log=log,
                                        engine=cfg.train.eval_engine)
    if is_bundle(run.best_model):
        copy_bundle(run.best_model, run.best_trial_model)
    tmp = Path(tempfile.mkdtemp(prefix=".final-fit-", dir=run.path))
    try:
        fit(cfg, merged, bundle_dir=tmp / "bundle", checkpoint_dir=tmp / "ckpt", log=log)
        weights = load_file(str(checkpoint_path(tmp / "ckpt", epochs) / MODEL_FILE))
        meta = load_bundle(tmp / "bundle").meta
        metrics = {"epoch": epochs, "final_fit": "train+val", "selection_trial": winner.trial_id,
                   "selection_val_acc": float(winner.require_best()["val_acc"])}
        meta = dataclasses.replace(meta, metrics=metrics, num_train_samples=len(merged.train), created="")
        save_bundle(run.best_model, weights, meta)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return run.best_model
