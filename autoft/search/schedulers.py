"""Ray Tune trial schedulers by ``search.scheduler``: one factory per ``Scheduler`` member (tests check the
registry covers the Enum that config validation reads)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, MedianStoppingRule, TrialScheduler

from autoft.config import RunConfig
from autoft.config.schema import Scheduler
from autoft.search.costs import COMPUTE, Measured, cost_aware, cost_range
from autoft.search.pbt import PbtScheduler
from autoft.search.recorder import Recorder

__all__ = ["SCHEDULER_FACTORIES", "make_scheduler"]

SchedulerFactory = Callable[[RunConfig, "Recorder | None", "Measured | None"], TrialScheduler]
_COMMON: dict[str, Any] = {"time_attr": "epoch", "metric": "val_acc", "mode": "max"}


def _asha(cfg: RunConfig, recorder: Recorder | None, costs: Measured | None) -> TrialScheduler:
    """Rungs in epochs; when the space searches the backbone or the image size, rungs in ``compute`` (epochs of
    the space's cheapest configuration, autoft.search.costs), so a trial is compared with the others after the
    same compute: a configuration 3× as costly meets its first rung after a third of the epochs. ``costs``: the
    seconds per epoch measured for each (backbone, image size), else FLOPs say what each costs."""
    s, epochs = cfg.search, cfg.train.epochs
    if cost_aware(cfg):
        cheapest, dearest = cost_range(cfg, costs)
        # Ray annotates max_t as int; its rungs are computed in floats, and compute units are fractional
        return ASHAScheduler(max_t=epochs * dearest / cheapest,  # type: ignore[arg-type]
                             grace_period=min(s.grace_period, epochs), reduction_factor=s.reduction_factor,
                             **{**_COMMON, "time_attr": COMPUTE})
    return ASHAScheduler(max_t=epochs, grace_period=min(s.grace_period, epochs), reduction_factor=s.reduction_factor,
                         **_COMMON)


def _hyperband(cfg: RunConfig, recorder: Recorder | None, costs: Measured | None) -> TrialScheduler:
    return HyperBandScheduler(max_t=cfg.train.epochs, reduction_factor=cfg.search.reduction_factor, **_COMMON)


def _median(cfg: RunConfig, recorder: Recorder | None, costs: Measured | None) -> TrialScheduler:
    return MedianStoppingRule(grace_period=cfg.search.grace_period, min_samples_required=2, **_COMMON)


def _fifo(cfg: RunConfig, recorder: Recorder | None, costs: Measured | None) -> TrialScheduler:
    return FIFOScheduler()


def _pbt(cfg: RunConfig, recorder: Recorder | None, costs: Measured | None) -> TrialScheduler:
    return PbtScheduler.for_config(cfg, recorder)


SCHEDULER_FACTORIES: dict[Scheduler, SchedulerFactory] = {
    Scheduler.ASHA: _asha, Scheduler.HYPERBAND: _hyperband, Scheduler.MEDIAN: _median, Scheduler.FIFO: _fifo,
    Scheduler.PBT: _pbt,
}


def make_scheduler(cfg: RunConfig, recorder: Recorder | None = None, costs: Measured | None = None) -> TrialScheduler:
    return SCHEDULER_FACTORIES[Scheduler(cfg.search.scheduler)](cfg, recorder, costs)
