"""``--resume``: trial.json files reconciled with the run's Optuna study after a crash (the storage itself is opened
by autoft.run.storage.open_storage)."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from autoft.run.layout import RunDir
from autoft.run.records import TrialRecord, TrialStatus, read_trials
from autoft.search.study_space import check_study_space

__all__ = ["check_resumed_space", "prepare_resume"]


def check_resumed_space(run_dir: Path, storage: optuna.storages.BaseStorage, study_name: str,
                        space: dict[str, Any], on_message: Callable[[str], None]) -> None:
    """A config.yaml whose space was edited since the run began: a change the study's trials cannot be continued
    with is refused naming the parameter; a compatible one (a moved range, a parameter added or dropped) is said."""
    run = RunDir(Path(run_dir))
    for note in check_study_space(storage, study_name, space, f"--resume {run.path}: {run.config_file.name}",
                                  "put the space back as it was, or start a new run with this config"):
        on_message(f"resume: {note} (Optuna goes on with the edited space)")


def prepare_resume(run_dir: Path, storage: optuna.storages.BaseStorage, study_name: str, epochs: int) -> int:
    """Reconcile trial.json files with the Optuna study after a crash; returns how many trials already count.

    Trials that were running are re-run: their Optuna trial is failed (with a reason) and its params enqueued,
    their folder moves to interrupted/. A trial that finished on one side only is completed on the other.
    """
    run = RunDir(Path(run_dir))
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        study = None
    by_ray = {t.user_attrs.get("ray_trial_id"): t for t in study.get_trials(deepcopy=False)} if study else {}
    finished_states = (TrialState.COMPLETE, TrialState.PRUNED)
    for record in read_trials(run_dir):
        if record.status not in (TrialStatus.RUNNING, TrialStatus.INTERRUPTED):
            continue
        ot = by_ray.get(record.trial_id)
        if ot is not None and ot.state in finished_states and record.best is not None:
            status = TrialStatus.COMPLETED if record.epochs_run >= epochs else TrialStatus.STOPPED
            dataclasses.replace(record, status=status, error=None).save(run.trial(record.trial_id))
        else:
            run.interrupted.mkdir(exist_ok=True)
            os.replace(run.trial(record.trial_id), run.interrupted / record.trial_id)
    records = {r.trial_id: r for r in read_trials(run_dir)}
    if study:
        _settle_running(study, storage, records)
    return sum(1 for r in records.values() if r.status.finished or r.status is TrialStatus.FAILED)


def _settle_running(study: optuna.Study, storage: optuna.storages.BaseStorage,
                    records: dict[str, TrialRecord]) -> None:
    """The study's trials still RUNNING: finished from their trial.json when it finished, else failed and enqueued."""
    for ot in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        record = records.get(ot.user_attrs.get("ray_trial_id", ""))  # "": no trial.json has an empty trial_id
        if record is not None and record.status.finished:
            early = record.status is TrialStatus.STOPPED
            storage.set_trial_state_values(ot._trial_id, TrialState.PRUNED if early else TrialState.COMPLETE,
                                           None if early else [record.require_best()["val_acc"]])
            continue
        storage.set_trial_system_attr(ot._trial_id, "fail_reason", "interrupted; re-run on resume")
        storage.set_trial_state_values(ot._trial_id, TrialState.FAIL)
        study.enqueue_trial(ot.params, skip_if_exists=False)
