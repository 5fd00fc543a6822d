"""The only module that imports ray and optuna: Tuner + OptunaSearch + scheduler, trial folders, resume."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib.util
import logging
import os
import re
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from autoft.fileio import atomic_write_text
from autoft.config import RunConfig, config_from_dict, config_to_dict
from autoft.errors import PADDLE_MISSING, AutoftError, ConfigError
from autoft.leaderboard import Leaderboard, promote_best, write_leaderboard
from autoft.records import TrialRecord, TrialStatus, read_trials
from autoft.report import try_write_report

__all__ = ["search", "SearchOutcome", "Progress", "load_trial_data", "load_run_config"]

CONFIG_FILE = "config.yaml"
WORKER_KEYS = ("cpu_threads", "gpu_ids")  # what a trial says about its worker, kept in trial.json `extra`


@dataclass(frozen=True)
class Progress:
    """A snapshot for the live display."""

    budget: int
    done: int
    running: int
    stopped: int
    failed: int
    interrupted: int
    best_val_acc: float | None
    best_params: dict[str, Any]
    elapsed: float
    last_event: str = ""


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


def load_trial_data(cfg: RunConfig) -> Any:
    """The same decoded arrays for every trial (the preprocessing cache makes repeats instant)."""
    from autoft.data import load_for_config

    return load_for_config(cfg)


@dataclass(frozen=True)
class TrialJob:
    """What every trial needs, shipped once through the object store."""

    cfg: RunConfig
    run_dir: str
    param_names: tuple[str, ...]


_OUT_OF_MEMORY = re.compile(r"out of memory|ResourceExhausted|cannot allocate", re.IGNORECASE)


def _error_line(exc: BaseException) -> str:
    """The error's last line as trial.json and the leaderboard show it; out of memory marks the params infeasible."""
    message = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__
    if isinstance(exc, MemoryError) or _OUT_OF_MEMORY.search(f"{type(exc).__name__} {exc}"):
        return f"infeasible: out of memory with these params ({line}); try a smaller batch_size or image_size"
    return line


def _cpu_threads() -> int:
    """Set this worker's CPU threads to the CPUs Ray assigned the trial (at least 1); returns the count.

    Paddle uses one thread unless told otherwise: at import it sets OMP_NUM_THREADS=1 when unset. Ray sets
    OMP_NUM_THREADS from an actor's num_cpus only when it is unset, and a driver that imported paddle passes its
    1 on to every worker; so the trial sets the variable itself (read by the OpenMP runtime when paddle is first
    imported in the worker) and, after the import, paddle's math-library threads (MKL + omp_set_num_threads).
    """
    import math

    import ray

    threads = max(1, math.floor(ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    return threads


def _trainable(config: dict[str, Any], job: TrialJob) -> None:
    """One Ray Tune trial: a Paddle fine-tune reporting each evaluation through tune.report."""
    threads = _cpu_threads()
    import paddle
    import ray
    from ray import tune

    from autoft.config import apply_params
    from autoft.errors import TrialError
    from autoft.pbt import TrialCheckpoints
    from autoft.trainer import fit
    from autoft.visuallog import TrialLog

    paddle.disable_signal_handler()
    paddle.disable_static()  # dygraph mode is per thread in Paddle, and Tune runs a trial in its own thread
    paddle.base.core.set_num_threads(threads)
    worker = {"cpu_threads": threads, "gpu_ids": [str(i) for i in ray.get_gpu_ids()]}  # → trial.json extra
    trial_id = tune.get_context().get_trial_id()
    trial_dir = Path(job.run_dir) / "trials" / trial_id
    trial_dir.mkdir(parents=True, exist_ok=True)
    (trial_dir / "error.txt").unlink(missing_ok=True)
    started = time.time()
    timeout = job.cfg.search.trial_timeout
    best = {"val_acc": -1.0}

    def check_time() -> None:
        if timeout is not None and time.time() - started > timeout:
            raise TrialError(f"trial exceeded search.trial_timeout ({timeout:g} s)")

    def report(metrics: dict[str, Any]) -> None:
        best["val_acc"] = max(best["val_acc"], float(metrics["val_acc"]))
        visual.write(metrics)
        tune.report({**metrics, "best_val_acc": best["val_acc"], **worker},
                    checkpoint=checkpoints.for_report(metrics))
        checkpoints.after_report(metrics)
        check_time()

    log_file = (trial_dir / "train.log").open("a", encoding="utf-8")
    params = {k: config[k] for k in job.param_names if k in config}
    visual = TrialLog(trial_dir, params, warn=lambda message: log_file.write(message + "\n"))

    def log(message: str) -> None:
        log_file.write(message + "\n")
        log_file.flush()
        check_time()

    checkpoints = TrialCheckpoints.for_trial(job.cfg, trial_id, log)  # pbt, and retries that resume
    try:
        cfg = checkpoints.configure(apply_params(job.cfg, params), params)
        fit(cfg, load_trial_data(cfg), bundle_dir=trial_dir / "bundle", report=report, log=log,
            restore=checkpoints.restore, checkpoint_dir=checkpoints.directory)
    except Exception as exc:  # not SystemExit: Ray ends a finished function trial with it
        atomic_write_text(trial_dir / "error.txt", _error_line(exc) + "\n")
        raise
    finally:
        checkpoints.cleanup()
        visual.close()
        log_file.close()


def _make_sampler(cfg: RunConfig, seed: int) -> Any:
    import optuna

    name = cfg.search.sampler
    if name == "tpe":
        startup = max(2, min(10, cfg.search.trials // 3))
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True, n_startup_trials=startup)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler({p.name: p.grid() for p in cfg.space}, seed=seed)
    from autoft.space import CategoricalParam

    categorical = [p.name for p in cfg.space if isinstance(p, CategoricalParam)]
    if name in ("cmaes", "qmc") and categorical:  # Optuna's own warning would repeat at every trial
        logging.getLogger("autoft").info(f"search.sampler: {name} samples {', '.join(categorical)} independently "
                                         "(at random): it models only numeric parameters")
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    try:
        import torch  # noqa: F401  (Optuna's GPSampler needs it)
    except ImportError:
        raise ConfigError("search.sampler: 'gp' needs PyTorch (pip install torch); use tpe, random, grid, cmaes "
                          "or qmc") from None
    return optuna.samplers.GPSampler(seed=seed)


def _make_scheduler(cfg: RunConfig, recorder: Any = None) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, MedianStoppingRule

    s, epochs = cfg.search, cfg.train.epochs
    common = {"time_attr": "epoch", "metric": "val_acc", "mode": "max"}
    if s.scheduler == "asha":
        return ASHAScheduler(max_t=epochs, grace_period=min(s.grace_period, epochs),
                             reduction_factor=s.reduction_factor, **common)
    if s.scheduler == "hyperband":
        return HyperBandScheduler(max_t=epochs, reduction_factor=s.reduction_factor, **common)
    if s.scheduler == "median":
        return MedianStoppingRule(grace_period=s.grace_period, min_samples_required=2, **common)
    if s.scheduler == "pbt":
        from autoft.pbt import make_pbt_scheduler

        return make_pbt_scheduler(cfg, recorder)
    return FIFOScheduler()


def _make_searcher(cfg: RunConfig, storage: Any, study_name: str, seed: int, deadline: float | None,
                   budget_flag: dict[str, bool]) -> Any:
    from ray.tune.search import Searcher
    from ray.tune.search.optuna import OptunaSearch

    if cfg.search.scheduler == "pbt":  # members change params while they run: recorded to Optuna at the end
        from autoft.pbt import make_pbt_searcher

        return make_pbt_searcher(cfg, storage, study_name, seed, deadline, budget_flag)
    epochs = cfg.train.epochs

    class _Search(OptunaSearch):
        """Tags Optuna trials with their Ray id, says PRUNED for trials the scheduler stopped, honours the budget."""

        def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
            if deadline is not None and time.time() >= deadline:
                budget_flag["hit"] = True
                return Searcher.FINISHED
            params = super().suggest(trial_id)
            self._ot_trials[trial_id].set_user_attr("ray_trial_id", trial_id)
            return params

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            if result and not error and trial_id in self._ot_trials and "val_acc" in result:
                # Tune gives the result that ends a trial (ASHA's stop, the last epoch) only to this hook, so
                # Optuna would miss that epoch's intermediate value; a repeat of a reported step is a no-op.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self._ot_trials[trial_id].report(float(result["val_acc"]), int(result["training_iteration"]))
            if result and not error and float(result.get("epoch", epochs)) < epochs:
                self._ot_trials[trial_id].set_user_attr("stopped_early", True)
                result = None  # OptunaSearch tells PRUNED for a result-less, error-less completion
            elif result and not error:
                result = {**result, "val_acc": result.get("best_val_acc", result.get("val_acc"))}
            super().on_trial_complete(trial_id, result, error)

        def optuna_number(self, trial_id: str) -> int | None:
            trial = self._ot_trials.get(trial_id)
            return trial.number if trial is not None else None

    return _Search(space=cfg.space.to_optuna(), metric="val_acc", mode="max", sampler=_make_sampler(cfg, seed),
                   storage=storage, study_name=study_name)


class _Recorder:
    """A Ray Tune callback: keeps trial.json current (the driver is its only writer) and feeds the display."""

    def __init__(self, run_dir: Path, cfg: RunConfig, searcher: Any, on_progress: Callable[[Progress], None] | None,
                 started: float) -> None:
        self.run_dir, self.cfg, self.searcher = run_dir, cfg, searcher
        self.on_progress, self.started = on_progress, started
        self.records: dict[str, TrialRecord] = {r.trial_id: r for r in read_trials(run_dir)}

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment state; a live display (locks, terminals) stays behind.
        return {**self.__dict__, "on_progress": None}

    def _save(self, record: TrialRecord, event: str) -> None:
        self.records[record.trial_id] = record
        record.save(self.run_dir / "trials" / record.trial_id)
        if self.on_progress is not None:
            self.on_progress(self.snapshot(event))

    def snapshot(self, event: str = "") -> Progress:
        recs = list(self.records.values())
        count = Counter(r.status for r in recs)
        scored = [r for r in recs if r.best is not None and r.status is not TrialStatus.FAILED]
        best = max(scored, key=lambda r: r.best["val_acc"], default=None)
        return Progress(budget=self.cfg.search.trials, done=count[TrialStatus.COMPLETED],
                        running=count[TrialStatus.RUNNING], stopped=count[TrialStatus.STOPPED],
                        failed=count[TrialStatus.FAILED], interrupted=count[TrialStatus.INTERRUPTED],
                        best_val_acc=best.best["val_acc"] if best else None,
                        best_params=best.params if best else {}, elapsed=time.time() - self.started,
                        last_event=event)

    def start(self, trial: Any) -> None:
        params = {k: trial.config[k] for k in self.cfg.space.names if k in trial.config}
        old = self.records.get(trial.trial_id)
        # a restart (a pbt exploit, a max_failures retry) continues the same record
        record = TrialRecord(trial_id=trial.trial_id, params=params, status=TrialStatus.RUNNING,
                             number=self.searcher.optuna_number(trial.trial_id),
                             started=old.started if old else time.time(), history=old.history if old else (),
                             extra=old.extra if old else {})
        self._save(record, f"{trial.trial_id} {'restarted' if old else 'started'}")

    def annotate(self, trial_id: str, extra: dict[str, Any]) -> None:
        """Merge ``extra`` into the trial's record (a rerun's origin and seed)."""
        record = self.records.get(trial_id)
        if record is not None:
            self._save(dataclasses.replace(record, extra={**record.extra, **extra}), f"{trial_id} {extra}")

    def exploit(self, trial_id: str, entry: dict[str, Any]) -> None:
        """A pbt exploit: ``trial_id`` took ``entry['donor']``'s weights and perturbed params."""
        record = self.records.get(trial_id)
        if record is not None:
            extra = {**record.extra, "exploits": [*record.extra.get("exploits", []), entry]}
            self._save(dataclasses.replace(record, extra=extra), f"{trial_id} cloned {entry['donor']}")

    def result(self, trial: Any, result: dict[str, Any]) -> None:
        keep = ("epoch", "step", "train_loss", "val_loss", "val_acc", "lr", "seconds")
        record = self.records.get(trial.trial_id)
        if record is not None:
            extra = {**record.extra, **{k: result[k] for k in WORKER_KEYS if k in result}}
            record = dataclasses.replace(record.with_result({k: result[k] for k in keep if k in result}), extra=extra)
            self._save(record,
                       f"{trial.trial_id} epoch {result.get('epoch')}: val_acc {result.get('val_acc', 0):.3f}")

    def complete(self, trial: Any) -> None:
        record = self.records.get(trial.trial_id)
        if record is None:
            return
        early = record.epochs_run < self.cfg.train.epochs
        status = TrialStatus.STOPPED if early else TrialStatus.COMPLETED
        number = record.number if record.number is not None else self.searcher.optuna_number(trial.trial_id)
        self._save(dataclasses.replace(record, status=status, seconds=time.time() - record.started, number=number),
                   f"{trial.trial_id} {status.value}")

    def error(self, trial: Any) -> None:
        record = self.records.get(trial.trial_id)
        if record is None:
            return
        error_file = self.run_dir / "trials" / trial.trial_id / "error.txt"
        text = error_file.read_text(encoding="utf-8").strip() if error_file.is_file() else ""
        if not text:
            text = _ray_error_line(trial)
        self._save(dataclasses.replace(record, status=TrialStatus.FAILED, error=text,
                                       seconds=time.time() - record.started), f"{trial.trial_id} failed: {text}")

    def interrupt_running(self) -> bool:
        """Mark trials still running when Tune returned (Ctrl-C stops them); True if there were any."""
        running = [r for r in self.records.values() if r.status is TrialStatus.RUNNING]
        for record in running:
            self._save(dataclasses.replace(record, status=TrialStatus.INTERRUPTED, seconds=time.time() - record.started,
                                           error="interrupted: the search stopped while it ran"),
                       f"{record.trial_id} interrupted")
        return bool(running)


def _ray_error_line(trial: Any) -> str:
    path = getattr(trial, "error_file", None)
    try:
        lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()] if path else []
    except OSError:
        lines = []
    return lines[-1].strip() if lines else "the trial's worker died"


def _tune_callback(recorder: _Recorder) -> Any:
    from ray.tune import Callback

    class _Cb(Callback):
        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            recorder.start(trial)

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            recorder.result(trial, result)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            recorder.complete(trial)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            recorder.error(trial)

    return _Cb()


def _budget_stopper(deadline: float | None, budget_flag: dict[str, bool]) -> Any:
    """Past the time budget, each running trial stops at its next evaluation (the end of its current epoch)."""
    if deadline is None:
        return None

    def stop(trial_id: str, result: dict[str, Any]) -> bool:
        if time.time() >= deadline:
            budget_flag["hit"] = True
            return True
        return False

    return stop


def new_run_dir(cfg: RunConfig, results_dir: str | Path, name: str | None) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(results_dir).resolve() / (name or f"{cfg.name}-{stamp}")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"--name {run_dir.name}: {run_dir} already holds a run; pick another name or --resume it")
    return run_dir


def load_run_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not Path(run_dir).is_dir():
        raise AutoftError(f"--resume {run_dir}: no such run folder")
    if not path.is_file():
        raise AutoftError(f"--resume {run_dir}: not a run folder ({CONFIG_FILE} missing)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        raise AutoftError(f"--resume {run_dir}: cannot read {CONFIG_FILE} ({type(exc).__name__})") from None
    return config_from_dict(raw, source=str(path))


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
    url = url or f"sqlite:///{run_dir / 'optuna.db'}"
    try:
        return optuna.storages.RDBStorage(url, heartbeat_interval=None)
    except Exception as exc:  # SQLAlchemy raises many kinds for a bad URL
        raise ConfigError(f"--storage {url}: cannot open ({type(exc).__name__}: {exc})") from None


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


def _ray_init(address: str | None, dashboard: bool, on_dashboard: Callable[[str], None] | None = None) -> bool:
    """Start (or attach to) Ray; True when this call started it, so the search also shuts it down."""
    import ray

    if ray.is_initialized():
        return False
    # Ray keeps token auth on; its notice about it is not news to an autoft user. Failed trials are recorded in
    # trial.json and the leaderboard, so Tune's own tracebacks on the console only repeat them (AUTOFT_DEBUG=1 shows).
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    if os.environ.get("AUTOFT_DEBUG") != "1":
        for name in ("ray.tune", "ray.train", "ray.air"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    kwargs: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": False}
    if address:
        context = ray.init(address=address, **kwargs)
    else:
        context = ray.init(include_dashboard=dashboard, _temp_dir=tempfile.mkdtemp(prefix="autoft-ray-"), **kwargs)
    url = getattr(context, "dashboard_url", None)
    if on_dashboard is not None and url:
        on_dashboard(url if "://" in url else f"http://{url}")
    return True


def _check_ray_dashboard_deps() -> None:
    try:
        import ray.dashboard.optional_deps  # noqa: F401  (Ray's own test for its `default` extra)
    except ImportError:
        raise ConfigError("--ray-dashboard: the Ray dashboard needs ray[default]; "
                          "pip install 'autoft[ray-dashboard]'") from None


def _max_concurrent(cfg: RunConfig) -> int:
    import ray

    if cfg.search.max_concurrent != "auto":
        return int(cfg.search.max_concurrent)
    res = ray.cluster_resources()
    need = cfg.search.resources_per_trial
    slots = int(res.get("CPU", 1) // need.cpu)
    if need.gpu > 0:
        slots = min(slots, int(res.get("GPU", 0) // need.gpu))
    return max(1, slots)


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
    import ray
    from ray import tune

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
    _check_data(cfg, on_message or (lambda _m: None))
    data = load_trial_data(cfg)  # validates the data and fills the shared cache before any trial starts
    if evaluate_test and data.test is None:
        raise ConfigError(f"--evaluate-test: {data.source} has no test split")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "trials").mkdir(exist_ok=True)
    if resume is None:
        atomic_write_text(run_dir / CONFIG_FILE, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    storage = _storage(run_dir, storage_url)
    study_name = cfg.name
    counted = _prepare_resume(run_dir, storage, study_name, cfg.train.epochs) if resume is not None else 0
    remaining = cfg.search.trials - counted
    budget_flag = {"hit": False}
    interrupted = False
    if remaining > 0:
        _enqueue_first(cfg, storage, study_name, resume is not None)
        started_ray = _ray_init(address, ray_dashboard, on_dashboard)
        started = time.time()  # the budget counts from when trials can start
        deadline = started + cfg.search.time_budget if cfg.search.time_budget else None
        seed = cfg.search.seed + counted  # the same seed on resume would repeat the first configs
        searcher = _make_searcher(cfg, storage, study_name, seed, deadline, budget_flag)
        recorder = _Recorder(run_dir, cfg, searcher, on_progress, started)
        job = TrialJob(cfg=cfg, run_dir=str(run_dir), param_names=tuple(cfg.space.names))
        res = cfg.search.resources_per_trial
        trainable = tune.with_resources(tune.with_parameters(_trainable, job=job), {"cpu": res.cpu, "gpu": res.gpu})
        attempt = sum(1 for p in (run_dir / "ray").glob("tune*")) if (run_dir / "ray").is_dir() else 0
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=_make_scheduler(cfg, recorder), num_samples=remaining,
                                        max_concurrent_trials=_max_concurrent(cfg), reuse_actors=True),
            run_config=tune.RunConfig(name=f"tune-{attempt}", storage_path=str(run_dir / "ray"), verbose=0,
                                      callbacks=[_tune_callback(recorder)],
                                      stop=_budget_stopper(deadline, budget_flag),
                                      failure_config=tune.FailureConfig(max_failures=cfg.search.max_failures)),
        )
        try:
            tuner.fit()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            # Tune handles Ctrl-C itself (it stops the trials and returns): trials left running mean it did
            interrupted = recorder.interrupt_running() or interrupted
            if started_ray:
                ray.shutdown()
    if cfg.search.rerun_top_k and not interrupted and not budget_flag["hit"]:
        from autoft.winner import run_reruns

        run_reruns(cfg, run_dir, address=address, on_progress=on_progress)
    board = write_leaderboard(run_dir)
    best = promote_best(run_dir, board)  # by mean over reruns when there are some (autoft.winner)
    refit = cfg.search.final_fit == "train+val"
    if best is not None and refit and not interrupted:
        from autoft.winner import final_fit, select_winner

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
    from autoft.fileio import atomic_write_json
    from autoft.evaluate import evaluate_bundle

    metrics = evaluate_bundle(best, "test", data=data)
    atomic_write_json(run_dir / "test_metrics.json", {"bundle": str(best), **metrics})
    return metrics


def _enqueue_first(cfg: RunConfig, storage: Any, study_name: str, resuming: bool) -> None:
    """`search.enqueue` (and PaddleHub init_values) run first; a resumed study already has them."""
    import optuna

    if resuming or not cfg.search.enqueue:
        return
    study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize", load_if_exists=True)
    for params in cfg.search.enqueue:
        study.enqueue_trial(dict(params), skip_if_exists=True)
