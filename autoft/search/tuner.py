"""The Ray Tune + Optuna pieces a search is made of: sampler, scheduler, searcher, the recorder that keeps
trial.json current, the time-budget stopper, Ray start-up, and running a Tuner over trials."""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoft.config import RunConfig
from autoft.errors import ConfigError
from autoft.run.records import TrialRecord, TrialStatus, read_trials

__all__ = ["Progress", "WORKER_KEYS", "make_sampler", "make_scheduler", "make_searcher", "Recorder", "tune_callback",
           "budget_stopper", "ray_init", "max_concurrent", "run_tuner"]

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


def make_sampler(cfg: RunConfig, seed: int) -> Any:
    import optuna

    name = cfg.search.sampler
    if name == "tpe":
        startup = max(2, min(10, cfg.search.trials // 3))
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True, n_startup_trials=startup)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler({p.name: p.grid() for p in cfg.space}, seed=seed)
    from autoft.config.space import CategoricalParam

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


def make_scheduler(cfg: RunConfig, recorder: Any = None) -> Any:
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
        from autoft.search.pbt import make_pbt_scheduler

        return make_pbt_scheduler(cfg, recorder)
    return FIFOScheduler()


def make_searcher(cfg: RunConfig, storage: Any, study_name: str, seed: int, deadline: float | None,
                   budget_flag: dict[str, bool]) -> Any:
    from ray.tune.search import Searcher
    from ray.tune.search.optuna import OptunaSearch

    if cfg.search.scheduler == "pbt":  # members change params while they run: recorded to Optuna at the end
        from autoft.search.pbt import make_pbt_searcher

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

    return _Search(space=cfg.space.to_optuna(), metric="val_acc", mode="max", sampler=make_sampler(cfg, seed),
                   storage=storage, study_name=study_name)


class Recorder:
    """A Ray Tune callback: keeps trial.json current (the driver is its only writer) and feeds the display."""

    def __init__(self, run_dir: Path, cfg: RunConfig, searcher: Any, on_progress: Callable[[Progress], None] | None,
                 started: float) -> None:
        self.run_dir, self.cfg, self.searcher = run_dir, cfg, searcher
        self.on_progress, self.started = on_progress, started
        self.records: dict[str, TrialRecord] = {r.trial_id: r for r in read_trials(run_dir)}
        self.oom_kills = os_oom_kills()  # a worker death is an OOM kill if the kernel's count rose since

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
            text, self.oom_kills = ray_error_line(trial, self.oom_kills)
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


_RAY_OOM = re.compile(r"OutOfMemoryError|running low on memory", re.IGNORECASE)  # Ray's memory monitor
_WORKER_DIED = re.compile(r"ActorDiedError|WorkerCrashedError|worker (process )?(has )?died|SIGKILL", re.IGNORECASE)


def os_oom_kills() -> int | None:
    """How many processes the Linux OOM killer has ended (cgroup kills included); None where it is not known."""
    try:
        for line in Path("/proc/vmstat").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def ray_error_line(trial: Any, oom_kills: int | None) -> tuple[str, int | None]:
    """The last line of Ray's error file for a trial that died outside Python; an OOM death says so.

    Ray words an OS kill as "the worker died" with a list of possible causes; the kernel's OOM-kill count tells
    whether memory was the one. Returns the line and the count to compare the next death against.
    """
    from autoft.search.trial import out_of_memory_line

    path = getattr(trial, "error_file", None)
    try:
        text = Path(path).read_text(errors="replace") if path else ""
    except OSError:
        text = ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    line = lines[-1] if lines else "the trial's worker died"
    now = os_oom_kills()
    if _RAY_OOM.search(text):
        return out_of_memory_line(f"Ray's memory monitor killed the trial's worker: {line[:160]}"), now
    if (not text or _WORKER_DIED.search(text)) and None not in (now, oom_kills) and now > oom_kills:
        return out_of_memory_line("the operating system's out-of-memory killer ended the trial's worker"), now
    return line, now


def tune_callback(recorder: Recorder) -> Any:
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


def budget_stopper(deadline: float | None, budget_flag: dict[str, bool]) -> Any:
    """Past the time budget, each running trial stops at its next evaluation (the end of its current epoch)."""
    if deadline is None:
        return None

    def stop(trial_id: str, result: dict[str, Any]) -> bool:
        if time.time() >= deadline:
            budget_flag["hit"] = True
            return True
        return False

    return stop


def ray_init(address: str | None, dashboard: bool, on_dashboard: Callable[[str], None] | None = None) -> bool:
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


def max_concurrent(cfg: RunConfig) -> int:
    import ray

    if cfg.search.max_concurrent != "auto":
        return int(cfg.search.max_concurrent)
    res = ray.cluster_resources()
    need = cfg.search.resources_per_trial
    slots = int(res.get("CPU", 1) // need.cpu)
    if need.gpu > 0:
        slots = min(slots, int(res.get("GPU", 0) // need.gpu))
    return max(1, slots)


def run_tuner(cfg: RunConfig, run_dir: Path, *, searcher: Any, recorder: Recorder, name: str, num_samples: int,
              param_names: Sequence[str], scheduler: Any = None, stop: Any = None, callbacks: Sequence[Any] = ()) -> bool:
    """Run up to ``num_samples`` trials of ``cfg`` under Tune; True when Ctrl-C (or a crash) left trials running,
    which are then marked interrupted."""
    from ray import tune

    from autoft.search.trial import TrialJob, trainable

    job = TrialJob(cfg=cfg, run_dir=str(run_dir), param_names=tuple(param_names))
    res = cfg.search.resources_per_trial
    fn = tune.with_resources(tune.with_parameters(trainable, job=job), {"cpu": res.cpu, "gpu": res.gpu})
    attempt = len(list((run_dir / "ray").glob(f"{name}-*"))) if (run_dir / "ray").is_dir() else 0
    tuner = tune.Tuner(
        fn,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=num_samples,
                                    max_concurrent_trials=max_concurrent(cfg), reuse_actors=True),
        run_config=tune.RunConfig(name=f"{name}-{attempt}", storage_path=str(run_dir / "ray"), verbose=0,
                                  callbacks=[tune_callback(recorder), *callbacks], stop=stop,
                                  failure_config=tune.FailureConfig(max_failures=cfg.search.max_failures)))
    interrupted = False
    try:
        tuner.fit()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        # Tune handles Ctrl-C itself (it stops the trials and returns): trials left running mean it did
        interrupted = recorder.interrupt_running() or interrupted
    return interrupted
