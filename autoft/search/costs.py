"""What an epoch of a configuration costs, relative to the cheapest configuration the space can draw: when
``space:`` searches the backbone or the image size, trials differ in cost, and ASHA compares them at equal compute
(``compute`` = epochs × that relative cost) instead of at equal epochs.

The cost of an epoch is measured: before the first trial, a probe times each (backbone, image size) the space can
draw (``measured_costs``: a training step and an engine forward on a trial's CPU threads; kept in the run folder's
costs.json). Without a measurement (more than MAX_PROBED combinations, or a caller that has none) it is the
backbone's FLOPs per pixel (EfficientNet-Lite0 : Lite1 : Lite2 = 1 : 1.35 : 1.64; other backbones count as 1) times
the pixel count, which overstates what larger images cost on a CPU at small sizes, where a step's fixed work weighs
(benchmarks/data/curves-demo-cost.json: Lite0 at 80 px 1.45x Lite0 at 48 px measured, 2.78x by FLOPs). The number of
images is the same for every trial of a search.
"""
from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autoft._fs import atomic_write_text
from autoft.config import RunConfig, resolve_image_size
from autoft.config.space import CategoricalParam
from autoft.training.autoplan import pixel_cost

__all__ = ["COMPUTE", "COST_KEYS", "COSTS_FILE", "Measured", "combination", "combinations", "cost_aware",
           "relative_cost",
           "cost_range", "measure", "measured_costs", "stored_costs"]

COMPUTE = "compute"  # the result key: epochs so far × relative_cost
Measured = Mapping[tuple[str, int], float]  # (backbone, image size) -> seconds per epoch

log = logging.getLogger("autoft.search")

BACKBONE_KEYS = ("model.backbone", "backbone")
SIZE_KEYS = ("data.image_size", "image_size")
COST_KEYS = (*BACKBONE_KEYS, *SIZE_KEYS)


def cost_aware(cfg: RunConfig) -> bool:
    """True when the space searches what changes an epoch's cost (the backbone or the image size)."""
    return any(name in COST_KEYS for name in cfg.space.names)


def _pick(params: Mapping[str, Any], keys: tuple[str, ...], default: Any) -> Any:
    return next((params[k] for k in keys if k in params), default)


def _values(cfg: RunConfig, keys: tuple[str, ...], default: Any) -> list[Any]:
    for key in keys:
        param = cfg.space.get(key)
        if param is not None:
            return list(param.choices) if isinstance(param, CategoricalParam) else [param.low, param.high]
    return [default]


def combinations(cfg: RunConfig) -> list[tuple[str, int]]:
    """Every (backbone, image size) the space can draw (an integer range of sizes: its two ends)."""
    return [(str(b), int(s)) for b, s in itertools.product(_values(cfg, BACKBONE_KEYS, cfg.model.backbone),
                                                          _values(cfg, SIZE_KEYS, resolve_image_size(cfg)))]


def _epoch_cost(backbone: str, size: int, measured: Measured | None) -> float:
    if measured is None:
        return pixel_cost(backbone, size)
    if (backbone, size) in measured:
        return float(measured[(backbone, size)])
    # a size inside a searched integer range: linear in the pixel count between the measured sizes around it
    sizes = sorted(s for b, s in measured if b == backbone)
    below = max((s for s in sizes if s < size), default=sizes[0])
    above = min((s for s in sizes if s > size), default=sizes[-1])
    if below == above:  # outside what was measured: the nearest, scaled by the pixel count
        return float(measured[(backbone, below)]) * (size / below) ** 2
    t = (size ** 2 - below ** 2) / (above ** 2 - below ** 2)
    return float(measured[(backbone, below)]) * (1 - t) + float(measured[(backbone, above)]) * t


def _usable(cfg: RunConfig, measured: Measured | None) -> Measured | None:
    """Measured costs when they cover every combination the space can draw, else None (FLOPs for all)."""
    if measured and all(c in measured for c in combinations(cfg)):
        return measured
    return None


def cost_range(cfg: RunConfig, measured: Measured | None = None) -> tuple[float, float]:
    """(cheapest, dearest) epoch cost over every backbone × image size the space can draw."""
    measured = _usable(cfg, measured)
    costs = [_epoch_cost(b, s, measured) for b, s in combinations(cfg)]
    return min(costs), max(costs)


def combination(cfg: RunConfig, params: Mapping[str, Any]) -> tuple[str, int]:
    """The (backbone, image size) a trial with sampled ``params`` trains."""
    return (str(_pick(params, BACKBONE_KEYS, cfg.model.backbone)),
            int(_pick(params, SIZE_KEYS, resolve_image_size(cfg))))


def relative_cost(cfg: RunConfig, params: Mapping[str, Any], measured: Measured | None = None) -> float:
    """One epoch of the configuration ``params`` in epochs of the space's cheapest configuration (>= 1).
    ``measured``: seconds per epoch of each (backbone, image size), used instead of FLOPs when it has them all."""
    measured = _usable(cfg, measured)
    cheapest, _ = cost_range(cfg, measured)
    return _epoch_cost(*combination(cfg, params), measured) / cheapest


COSTS_FILE = "costs.json"  # in the run folder: what the probe measured, read again on --resume
MAX_PROBED = 8


def measure(cfg: RunConfig, n_train: int, n_val: int) -> dict[tuple[str, int], float]:
    """Seconds per epoch of each (backbone, image size) the space can draw, estimated from a probe of each on a
    trial's CPU threads (autoft.training.autoplan.probe_config: a training step at the trial's batch size and an
    engine forward) times the training and validation images."""
    from autoft.training.autoplan import probe_config

    threads = max(1, math.floor(cfg.search.resources_per_trial.cpu))  # what a trial gets (search.trial)
    out = {}
    for backbone, size in combinations(cfg):
        probe = probe_config(backbone, size, batch=max(2, min(int(cfg.train.batch_size), 32)), threads=threads)
        out[(backbone, size)] = n_train * probe.train_seconds + n_val * probe.infer_seconds
    return out


def stored_costs(run_dir: Path) -> Measured | None:
    """What the run's probe measured (costs.json), or None: absent, or not what a probe writes (then a warning
    says why and the search measures again — a tampered file must not divide by zero or feed NaN to ASHA)."""
    path = Path(run_dir) / COSTS_FILE
    if not path.is_file():
        return None
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["seconds_per_epoch"]
        costs = {(_text(r["backbone"]), _int(r["image_size"])): _seconds(r["seconds"]) for r in rows}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: %s; measuring the costs again", path, str(exc).splitlines()[0] if str(exc) else
                    type(exc).__name__)
        return None
    return costs or None


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"backbone must be a name, got {value!r}")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"image_size must be a positive integer, got {value!r}")
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"seconds must be a positive finite number, got {value!r}")
    return float(value)


def measured_costs(cfg: RunConfig, run_dir: Path, n_train: int, n_val: int) -> Measured | None:
    """The search's measured epoch costs when its space searches the backbone or the image size (at most
    MAX_PROBED combinations, CPU trials): read from the run folder's costs.json, or probed in a Ray worker (where
    trials run) and written there. None: FLOPs say what each costs (also for GPU trials, and when the probe fails)."""
    if not cost_aware(cfg) or len(combinations(cfg)) > MAX_PROBED or cfg.search.resources_per_trial.gpu > 0:
        return None
    path = Path(run_dir) / COSTS_FILE
    stored = stored_costs(run_dir)
    if _usable(cfg, stored):  # a resumed search whose space still draws what was measured
        return stored
    import ray

    try:
        probe = ray.remote(num_cpus=max(1.0, cfg.search.resources_per_trial.cpu))(measure)
        costs = ray.get(probe.remote(cfg, n_train, n_val))
    except Exception as exc:  # noqa: BLE001 - a probe that cannot run leaves the FLOPs estimate, not a failed search
        log.warning("could not measure the configurations' costs (%s); using FLOPs", str(exc).splitlines()[0])
        return None
    rows = [{"backbone": b, "image_size": s, "seconds": round(v, 3)} for (b, s), v in sorted(costs.items())]
    atomic_write_text(path, json.dumps({"seconds_per_epoch": rows, "how": "probe: a trial's CPU threads, random "
                                        "weights, a training step and an engine forward per configuration"},
                                       indent=1) + "\n")
    return costs
