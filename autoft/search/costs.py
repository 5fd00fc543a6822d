"""What an epoch of a configuration costs, relative to the cheapest configuration the space can draw: when
``space:`` searches the backbone or the image size, trials differ in cost, and ASHA compares them at equal compute
(``compute`` = epochs × that relative cost) instead of at equal epochs.

The cost of an epoch is the backbone's FLOPs per pixel (EfficientNet-Lite0 : Lite1 : Lite2 = 1 : 1.35 : 1.64; other
backbones count as 1) times the pixel count; the number of images is the same for every trial of a search.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from autoft.config import RunConfig, resolve_image_size
from autoft.training.autoplan import pixel_cost

__all__ = ["COMPUTE", "COST_KEYS", "cost_aware", "relative_cost", "cost_range"]

COMPUTE = "compute"  # the result key: epochs so far × relative_cost

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
            choices = getattr(param, "choices", None)
            return list(choices) if choices is not None else [param.low, param.high]
    return [default]


def cost_range(cfg: RunConfig) -> tuple[float, float]:
    """(cheapest, dearest) epoch cost over every backbone × image size the space can draw."""
    costs = [pixel_cost(str(b), s) for b, s in itertools.product(_values(cfg, BACKBONE_KEYS, cfg.model.backbone),
                                                       _values(cfg, SIZE_KEYS, resolve_image_size(cfg)))]
    return min(costs), max(costs)


def relative_cost(cfg: RunConfig, params: Mapping[str, Any]) -> float:
    """One epoch of the configuration ``params`` in epochs of the space's cheapest configuration (>= 1)."""
    cheapest, _ = cost_range(cfg)
    backbone = _pick(params, BACKBONE_KEYS, cfg.model.backbone)
    size = _pick(params, SIZE_KEYS, resolve_image_size(cfg))
    return pixel_cost(str(backbone), size) / cheapest
