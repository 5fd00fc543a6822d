"""One trial, as it runs inside a Ray worker: a Paddle fine-tune reporting each evaluation to Tune."""
from __future__ import annotations

import contextlib
import faulthandler
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoft._fs import atomic_write_text
from autoft.config import RunConfig
from autoft.run.layout import RunDir

__all__ = ["TrialJob", "load_trial_data", "error_line", "out_of_memory_line", "crash_report",
           "trainable"]



def load_trial_data(cfg: RunConfig, *, every_size: bool = False) -> Any:
    """The same decoded arrays for every trial (the preprocessing cache makes repeats instant). ``every_size``: the
    driver also fills the cache for each image size the space draws, decoding each image once."""
    from autoft.data import load_for_config

    return load_for_config(cfg, every_size=every_size)


@dataclass(frozen=True)
class TrialJob:
    """What every trial needs, shipped once through the object store."""

    cfg: RunConfig
    run_dir: str
    param_names: tuple[str, ...]
    costs: dict[tuple[str, int], float] | None = None  # measured epoch seconds (autoft.search.costs)


_OUT_OF_MEMORY = re.compile(r"out of memory|ResourceExhausted|cannot allocate", re.IGNORECASE)


def error_line(exc: BaseException) -> str:
    """The error's last line as trial.json and the leaderboard show it; out of memory marks the params infeasible."""
    message = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__
    if isinstance(exc, MemoryError) or _OUT_OF_MEMORY.search(f"{type(exc).__name__} {exc}"):
        return out_of_memory_line(line)
    return line


def out_of_memory_line(detail: str) -> str:
    """One wording for every out-of-memory death: raised in the trial, or its worker killed by Ray or the OS."""
    return f"infeasible: out of memory with these params ({detail}); try a smaller batch_size or image_size"


@contextlib.contextmanager
def crash_report(path: Path) -> Iterator[None]:
    """Inside the block, a fatal signal (SIGSEGV, SIGBUS, SIGFPE, SIGABRT, SIGILL: native code crashing, which
    kills the process before Python can record anything) makes faulthandler write the signal's name and every
    thread's stack to ``path`` as the process dies; the file is removed when no signal came. Paddle's own handler
    must be off (``paddle.disable_signal_handler()``): installed after faulthandler's, it replaces it."""
    was_enabled = faulthandler.is_enabled()
    with path.open("w", encoding="utf-8") as file:
        faulthandler.disable()  # enable() on an enabled faulthandler keeps sigactions that Paddle's import replaced
        faulthandler.enable(file=file, all_threads=True)
        try:
            yield
        finally:
            faulthandler.disable()
            if was_enabled:
                faulthandler.enable(all_threads=False)  # as Ray's workers have it, on stderr
    if path.stat().st_size == 0:
        path.unlink()


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


def trainable(config: dict[str, Any], job: TrialJob) -> None:
    """One Ray Tune trial: a Paddle fine-tune reporting each evaluation through tune.report."""
    threads = _cpu_threads()
    import paddle
    import ray
    from ray import tune

    from autoft.config import apply_params
    from autoft.errors import TrialError
    from autoft.observe.visuallog import TrialLog
    from autoft.search.checkpoints import TrialCheckpoints
    from autoft.search.costs import COMPUTE, cost_aware, relative_cost
    from autoft.training.fit import fit

    paddle.disable_signal_handler()
    paddle.disable_static()  # dygraph mode is per thread in Paddle, and Tune runs a trial in its own thread
    paddle.base.core.set_num_threads(threads)
    worker = {"cpu_threads": threads, "gpu_ids": [str(i) for i in ray.get_gpu_ids()],  # → trial.json extra
              "node_id": ray.get_runtime_context().get_node_id(), "hostname": socket.gethostname(),
              "pid": os.getpid()}  # the worker process: what to look for in Ray's logs when it died
    trial_id = tune.get_context().get_trial_id()
    run = RunDir(Path(job.run_dir))
    trial_dir = run.trial(trial_id)
    trial_dir.mkdir(parents=True, exist_ok=True)
    run.trial_error(trial_id).unlink(missing_ok=True)
    started = time.time()
    timeout = job.cfg.search.trial_timeout
    best = {"val_acc": -1.0}

    def check_time() -> None:
        if timeout is not None and time.time() - started > timeout:
            raise TrialError(f"trial exceeded search.trial_timeout ({timeout:g} s)")

    def report(metrics: dict[str, Any]) -> None:
        best["val_acc"] = max(best["val_acc"], float(metrics["val_acc"]))
        visual.write(metrics)
        cost = {COMPUTE: float(metrics["epoch"]) * epoch_cost} if epoch_cost is not None else {}
        tune.report({**metrics, "best_val_acc": best["val_acc"], **cost, **worker},
                    checkpoint=checkpoints.for_report(metrics))
        checkpoints.after_report(metrics)
        check_time()

    log_file = run.trial_log(trial_id).open("a", encoding="utf-8")
    params = {k: config[k] for k in job.param_names if k in config}
    # a searched backbone or image size
    epoch_cost = relative_cost(job.cfg, params, job.costs) if cost_aware(job.cfg) else None
    if epoch_cost is not None:
        worker["cost_per_epoch"] = round(epoch_cost, 4)  # → trial.json extra

    def warn(message: str) -> None:
        log_file.write(message + "\n")

    visual = TrialLog(trial_dir, params, warn=warn)

    def log(message: str) -> None:
        warn(message)
        log_file.flush()
        check_time()

    checkpoints = TrialCheckpoints.for_trial(job.cfg, trial_id, log)  # pbt, and retries that resume
    try:
        with crash_report(run.trial_crash(trial_id)):  # read by the driver's recorder when the worker dies
            cfg = checkpoints.configure(apply_params(job.cfg, params), params)
            fit(cfg, load_trial_data(cfg), bundle_dir=run.trial_bundle(trial_id), report=report, log=log,
                restore=checkpoints.restore, checkpoint_dir=checkpoints.directory)
    except Exception as exc:  # not SystemExit: Ray ends a finished function trial with it
        atomic_write_text(run.trial_error(trial_id), error_line(exc) + "\n")
        raise
    finally:
        checkpoints.cleanup()
        visual.close()
        log_file.close()
