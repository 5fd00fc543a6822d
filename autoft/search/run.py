"""`autoft search`: the run folder, the study, resume, then trials under Ray Tune (autoft.search.tuner, autoft.search.trial),
then the leaderboard, the winner and the report. Ray and Optuna are imported only when a search runs."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib.util
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from autoft._fs import atomic_write_text, autoft_home
from autoft.config import RunConfig, config_from_dict, config_to_dict, read_yaml_file
from autoft.errors import PADDLE_MISSING, AutoftError, ConfigError
from autoft.run.leaderboard import Leaderboard, promote_best, write_leaderboard
from autoft.run.records import TrialStatus, read_trials
from autoft.observe.report import try_write_report
from autoft._fs import LOCK_FILE, RunLock, check_writable
from autoft.config.rules import check_run_name
from autoft.search.trial import load_trial_data
from autoft.search.tuner import (Progress, Recorder, budget_stopper, make_scheduler, make_searcher, ray_init,
                           run_tuner)

__all__ = ["search", "SearchOutcome", "Progress", "load_trial_data", "load_run_config"]

CONFIG_FILE = "config.yaml"


@dataclass(frozen=True)
class SearchOutcome:
    run_dir: Path
    leaderboard: Leaderboard
    best_model: Path | None
    stopped_on_budget: bool
    interrupted: bool
    test_metrics: dict[str, Any] | None = None

    @property
    def all_failed(self) -> bool:
        return bool(self.leaderboard.records) and self.leaderboard.best is None

    def most_common_error(self) -> str:
        errors = Counter(r.error for r in self.leaderboard.records if r.error)
        return errors.most_common(1)[0][0] if errors else "no trial finished"


def new_run_dir(cfg: RunConfig, results_dir: str | Path, name: str | None) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(results_dir).resolve() / (check_run_name("--name", name) if name is not None else f"{cfg.name}-{stamp}")
    _refuse_used(run_dir)
    return run_dir


def _refuse_used(run_dir: Path) -> None:
    if run_dir.is_dir() and any(p.name != LOCK_FILE for p in run_dir.iterdir()):
        raise ConfigError(f"--name {run_dir.name}: {run_dir} already holds a run; pick another name or --resume it")
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--name {run_dir.name}: {run_dir} is a file")


def _claim_run_dir(run_dir: Path) -> tuple[RunLock, bool]:
    """Create (or take the empty) run folder and lock it; a second search with the same name is refused."""
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AutoftError(f"--results-dir {run_dir.parent}: cannot create {run_dir.name} ({exc.strerror})") from None
    lock = RunLock(run_dir, f"--name {run_dir.name}")
    lock.acquire()
    try:
        _refuse_used(run_dir)  # another search may have claimed it between our check and our lock
    except ConfigError:
        lock.release()
        raise
    return lock, created


def load_run_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not Path(run_dir).is_dir():
        raise AutoftError(f"--resume {run_dir}: no such run folder")
    if not path.is_file():
        raise AutoftError(f"--resume {run_dir}: not a run folder ({CONFIG_FILE} missing)")
    return config_from_dict(read_yaml_file(path), source=str(path))


def _absolute_paths(cfg: RunConfig) -> RunConfig:
    """Trials run in other working folders (and on other nodes): relative paths mean the user's current folder."""
    if cfg.data.path is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=str(Path(cfg.data.path).resolve())))
    if cfg.model.pretrained not in ("imagenet", "none"):
        pretrained = str(Path(cfg.model.pretrained).expanduser().resolve())
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pretrained=pretrained))
    return cfg


def _storage(run_dir: Path, url: str | None) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    what = f"--storage {url}" if url else f"{run_dir / 'optuna.db'}"
    url = url or f"sqlite:///{run_dir / 'optuna.db'}"
    try:
        storage = optuna.storages.RDBStorage(url, heartbeat_interval=None)
        storage.get_all_studies()  # a garbage SQLite file opens lazily: read it now, not inside the first trial
        return storage
    except Exception as exc:  # SQLAlchemy raises many kinds for a bad URL or file
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
        raise ConfigError(f"{what}: cannot open the Optuna study storage ({type(exc).__name__}: {reason})") from None


def _prepare_resume(run_dir: Path, storage: Any, study_name: str, epochs: int) -> int:
    """Reconcile trial.json files with the Optuna study after a crash; returns how many trials already count.

    Trials that were running are re-run: their Optuna trial is failed (with a reason) and its params enqueued,
    their folder moves to interrupted/. A trial that finished on one side only is completed on the other.
    """
    import optuna
    from optuna.trial import TrialState

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
            dataclasses.replace(record, status=status, error=None).save(run_dir / "trials" / record.trial_id)
        else:
            (run_dir / "interrupted").mkdir(exist_ok=True)
            os.replace(run_dir / "trials" / record.trial_id, run_dir / "interrupted" / record.trial_id)
    records = {r.trial_id: r for r in read_trials(run_dir)}
    for ot in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if study else []:
        record = records.get(ot.user_attrs.get("ray_trial_id"))
        if record is not None and record.status.finished:
            early = record.status is TrialStatus.STOPPED
            storage.set_trial_state_values(ot._trial_id, TrialState.PRUNED if early else TrialState.COMPLETE,
                                           None if early else [record.best["val_acc"]])
            continue
        storage.set_trial_system_attr(ot._trial_id, "fail_reason", "interrupted; re-run on resume")
        storage.set_trial_state_values(ot._trial_id, TrialState.FAIL)
        study.enqueue_trial(ot.params, skip_if_exists=False)
    return sum(1 for r in records.values() if r.status.finished or r.status is TrialStatus.FAILED)


def _check_ray_dashboard_deps() -> None:
    try:
        import ray.dashboard.optional_deps  # noqa: F401  (Ray's own test for its `default` extra)
    except ImportError:
        raise ConfigError("--ray-dashboard: the Ray dashboard needs ray[default]; "
                          "pip install 'autoft[ray-dashboard]'") from None


def search(cfg: RunConfig | None = None, *, results_dir: str | Path = "results", name: str | None = None,
           resume: str | Path | None = None, address: str | None = None, storage_url: str | None = None,
           ray_dashboard: bool = False, on_progress: Callable[[Progress], None] | None = None,
           on_dashboard: Callable[[str], None] | None = None, on_message: Callable[[str], None] | None = None,
           evaluate_test: bool = False) -> SearchOutcome:
    """Run (or resume) a search; returns the ranked leaderboard and where the best bundle is.

    ``on_dashboard(url)`` hears the Ray dashboard's URL (``ray_dashboard``, or the cluster's with ``address``);
    ``on_message`` gets the dataset check's warnings; ``evaluate_test`` scores the best bundle once on the test
    split at the end.
    """
    if importlib.util.find_spec("paddle") is None:
        raise AutoftError(PADDLE_MISSING)  # trials would all fail on it, one by one
    if ray_dashboard and not address:
        _check_ray_dashboard_deps()  # before a run folder is made
    if resume is not None:
        run_dir = Path(resume).resolve()
        cfg = load_run_config(run_dir)
    else:
        if cfg is None:
            raise ConfigError("search: give a config or --resume RUN_DIR")
        cfg = _absolute_paths(cfg)
        run_dir = new_run_dir(cfg, results_dir, name)
        check_writable(run_dir.parent, "--results-dir")
    check_writable(autoft_home(), "AUTOFT_HOME")
    # a resumed or shared study is opened before the data is decoded: a bad one fails fast, before anything is written
    storage = _storage(run_dir, storage_url) if resume is not None or storage_url else None
    _check_data(cfg, on_message or (lambda _m: None))
    data = load_trial_data(cfg)  # validates the data and fills the shared cache before any trial starts
    if evaluate_test and data.test is None:
        raise ConfigError(f"--evaluate-test: {data.source} has no test split")
    if resume is not None:
        lock, created = RunLock(run_dir, f"--resume {run_dir}"), False
        lock.acquire()
    else:
        lock, created = _claim_run_dir(run_dir)
    with lock:
        return _search_locked(cfg, run_dir, data, storage, created=created, resuming=resume is not None, address=address,
                              storage_url=storage_url, ray_dashboard=ray_dashboard, on_progress=on_progress,
                              on_dashboard=on_dashboard, evaluate_test=evaluate_test)


def _open_study(cfg: RunConfig, run_dir: Path, storage: Any, storage_url: str | None, created: bool,
                resuming: bool) -> Any:
    """config.yaml, trials/ and the storage; a new run folder is removed again if its storage cannot be opened."""
    try:
        (run_dir / "trials").mkdir(exist_ok=True)
        if not resuming:
            atomic_write_text(run_dir / CONFIG_FILE, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        storage = storage if storage is not None else _storage(run_dir, storage_url)
        _enqueue_first(cfg, storage, cfg.name, resuming)
        return storage
    except BaseException:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _search_locked(cfg: RunConfig, run_dir: Path, data: Any, storage: Any, *, created: bool, resuming: bool,
                   address: str | None, storage_url: str | None, ray_dashboard: bool,
                   on_progress: Callable[[Progress], None] | None, on_dashboard: Callable[[str], None] | None,
                   evaluate_test: bool) -> SearchOutcome:
    import ray

    storage = _open_study(cfg, run_dir, storage, storage_url, created, resuming)
    study_name = cfg.name
    counted = _prepare_resume(run_dir, storage, study_name, cfg.train.epochs) if resuming else 0
    remaining = cfg.search.trials - counted
    budget_flag = {"hit": False}
    interrupted = False
    if remaining > 0:
        started_ray = ray_init(address, ray_dashboard, on_dashboard)
        started = time.time()  # the budget counts from when trials can start
        deadline = started + cfg.search.time_budget if cfg.search.time_budget else None
        seed = cfg.search.seed + counted  # the same seed on resume would repeat the first configs
        searcher = make_searcher(cfg, storage, study_name, seed, deadline, budget_flag)
        recorder = Recorder(run_dir, cfg, searcher, on_progress, started)
        try:
            interrupted = run_tuner(cfg, run_dir, searcher=searcher, recorder=recorder, name="tune",
                                    num_samples=remaining, param_names=cfg.space.names,
                                    scheduler=make_scheduler(cfg, recorder),
                                    stop=budget_stopper(deadline, budget_flag))
        finally:
            if started_ray:
                ray.shutdown()
    if cfg.search.rerun_top_k and not interrupted and not budget_flag["hit"]:
        from autoft.run.selection import run_reruns

        run_reruns(cfg, run_dir, address=address, on_progress=on_progress)
    board = write_leaderboard(run_dir)
    best = promote_best(run_dir, board)  # by mean over reruns when there are some (autoft.run.selection)
    refit = cfg.search.final_fit == "train+val"
    if best is not None and refit and not interrupted:
        from autoft.run.selection import final_fit, select_winner

        best = final_fit(cfg, run_dir, select_winner(board.records) or board.best, data)
    score_test = evaluate_test or (refit and data.test is not None)  # once, on the final model
    test_metrics = _evaluate_test(run_dir, best, data) if score_test and best is not None else None
    if not interrupted:  # after Ctrl-C the user wants out; `autoft report RUN` draws it later
        try_write_report(run_dir, storage_url=storage_url)
    return SearchOutcome(run_dir=run_dir, leaderboard=board, best_model=best,
                         stopped_on_budget=budget_flag["hit"], interrupted=interrupted, test_metrics=test_metrics)


def _check_data(cfg: RunConfig, message: Callable[[str], None]) -> None:
    """The dataset check: its warnings are shown, its errors (training impossible) stop the search."""
    from autoft.data.check import check_for_config

    report = check_for_config(cfg)
    for warning in report.warnings:
        message(f"data warning: {warning}")
    report.raise_for_errors()


def _evaluate_test(run_dir: Path, best: Path, data: Any) -> dict[str, Any]:
    """The test split, scored once at the end and never used for selection; kept in test_metrics.json."""
    from autoft._fs import atomic_write_json
    from autoft.serving.evaluate import evaluate_bundle

    metrics = evaluate_bundle(best, "test", data=data)
    atomic_write_json(run_dir / "test_metrics.json", {"bundle": str(best), **metrics})
    return metrics


def _enqueue_first(cfg: RunConfig, storage: Any, study_name: str, resuming: bool) -> None:
    """`search.enqueue` (and PaddleHub init_values) run first; a resumed study already has them."""
    import optuna

    if resuming or not cfg.search.enqueue or cfg.search.scheduler == "pbt":  # pbt draws its population itself
        return
    study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize", load_if_exists=True)
    for params in cfg.search.enqueue:
        study.enqueue_trial(dict(params), skip_if_exists=True)
