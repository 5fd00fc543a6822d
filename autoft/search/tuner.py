"""Ray itself: start or attach (``ray_init``), how many trials fit at once, and one Tune run of the trainable
(``run_tuner``), used by the search and by the reruns."""
from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune import Callback
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import SearchAlgorithm, Searcher

from autoft.config import RunConfig
from autoft.run.layout import RunDir
from autoft.search.recorder import Recorder, RecorderCallback
from autoft.search.trial import TrialJob, trainable

__all__ = ["ray_init", "max_concurrent", "run_tuner"]


def ray_init(address: str | None, dashboard: bool, on_dashboard: Callable[[str], None] | None = None) -> bool:
    """Start (or attach to) Ray; True when this call started it, so the search also shuts it down."""

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

    if cfg.search.max_concurrent != "auto":
        return int(cfg.search.max_concurrent)
    res = ray.cluster_resources()
    need = cfg.search.resources_per_trial
    slots = int(res.get("CPU", 1) // need.cpu)
    if need.gpu > 0:
        slots = min(slots, int(res.get("GPU", 0) // need.gpu))
    return max(1, slots)


def run_tuner(cfg: RunConfig, run_dir: Path, *, searcher: Searcher | SearchAlgorithm, recorder: Recorder, name: str,
              num_samples: int, param_names: Sequence[str], scheduler: TrialScheduler | None = None,
              stop: Callable[[str, dict[str, Any]], bool] | None = None, callbacks: Sequence[Callback] = ()) -> bool:
    """Run up to ``num_samples`` trials of ``cfg`` under Tune; True when Ctrl-C (or a crash) left trials running,
    which are then marked interrupted."""
    job = TrialJob(cfg=cfg, run_dir=str(run_dir), param_names=tuple(param_names))
    res = cfg.search.resources_per_trial
    fn = tune.with_resources(tune.with_parameters(trainable, job=job), {"cpu": res.cpu, "gpu": res.gpu})
    ray_dir = RunDir(run_dir).ray
    attempt = len(list(ray_dir.glob(f"{name}-*"))) if ray_dir.is_dir() else 0
    tuner = tune.Tuner(
        fn,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=num_samples,
                                    max_concurrent_trials=max_concurrent(cfg), reuse_actors=True),
        run_config=tune.RunConfig(name=f"{name}-{attempt}", storage_path=str(ray_dir), verbose=0,
                                  callbacks=[RecorderCallback(recorder), *callbacks], stop=stop,
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
