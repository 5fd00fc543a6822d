"""`autoft search --warm-start RUN`: an earlier run's best param sets go first (``search.enqueue``)."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from autoft.config import RunConfig
from autoft.config.space import Param
from autoft.errors import ConfigError
from autoft.run.layout import RunDir
from autoft.run.records import read_trials

__all__ = ["warm_start", "top_params"]


def _fits(param: Param, value: Any) -> bool:
    """The same rule as an enqueued trial's (config): a value the current space cannot take is left out."""
    try:
        param.check(param.name, value)
    except ConfigError:
        return False
    return True


def top_params(run_dir: str | Path, cfg: RunConfig, k: int) -> list[dict[str, Any]]:
    """The ``k`` best finished trials' params of ``run_dir``, kept to the keys (and values) ``cfg.space`` has.

    A key the current space lacks is dropped; a value outside its current range is dropped too (the sampler
    picks it). Reruns (``extra.rerun_of``) repeat a param set and are skipped.
    """
    run = RunDir.require(run_dir, "--warm-start", ConfigError)
    scored = [r for r in read_trials(run.path)
              if r.status.finished and r.best is not None and "rerun_of" not in r.extra]
    scored.sort(key=lambda r: (-float(r.require_best()["val_acc"]),
                               float(r.require_best().get("val_loss", math.inf))))
    space = {p.name: p for p in cfg.space}
    out: list[dict[str, Any]] = []
    for record in scored:
        params = {key: v for key, v in record.params.items() if key in space and _fits(space[key], v)}
        if params and params not in out:
            out.append(params)
        if len(out) == k:
            break
    return out


def warm_start(cfg: RunConfig, run_dir: str | Path) -> RunConfig:
    """``cfg`` with ``run_dir``'s top ``search.warm_start_top_k`` param sets enqueued before its own."""
    found = top_params(run_dir, cfg, cfg.search.warm_start_top_k)
    if not found:
        raise ConfigError(f"--warm-start {run_dir}: no finished trial with params in the current space")
    enqueue = tuple(found) + tuple(e for e in cfg.search.enqueue if e not in found)
    return dataclasses.replace(cfg, search=dataclasses.replace(cfg.search, enqueue=enqueue))
