"""PaddleHub AutoDL Finetuner files: ``param_list`` → autoft's space and init values, and its key names → ours."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autoft.config.rules import unknown_key
from autoft.config.space import quote
from autoft.errors import ConfigError

__all__ = ["PADDLEHUB_ALIASES", "param_list"]

# PaddleHub AutoDL Finetuner names → ours.
PADDLEHUB_ALIASES = {"weight_decay": "regularization_coeff", "num_epoch": "epochs", "warmup_prop": "warmup_proportion",
                      "lr": "learning_rate"}


def param_list(raw: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """PaddleHub AutoDL Finetuner `param_list` → (space mapping, init values, the key each init value came from)."""
    if not isinstance(raw, list):
        raise ConfigError(f"param_list: must be a list of parameters, got {quote(raw)}")
    space: dict[str, Any] = {}
    init: dict[str, Any] = {}
    keys: dict[str, str] = {}
    given: dict[str, int] = {}
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping) or "name" not in item:
            raise ConfigError(f"param_list[{i}]: must be a mapping with `name`, got {quote(item)}")
        valid = ("name", "init_value", "type", "greater_than", "lower_than")
        for key in item:
            if key not in valid:
                raise unknown_key(str(key), valid, f"param_list[{i}]")
        if not isinstance(item["name"], str):
            raise ConfigError(f"param_list[{i}].name: must be a string, got {quote(item['name'])}")
        name = PADDLEHUB_ALIASES.get(item["name"], item["name"])
        if name in given:  # `lr` and `learning_rate` are one parameter
            raise ConfigError(f"param_list[{i}].name: {name} is already given by param_list[{given[name]}]")
        given[name] = i
        kind = item.get("type", "float")
        if kind not in ("float", "int"):
            raise ConfigError(f"param_list[{i}].type: must be float or int, got {quote(kind)}")
        for key in ("greater_than", "lower_than"):
            if key not in item:
                raise ConfigError(f"param_list[{i}]: `{key}` is required")
        space[name] = {"type": kind, "low": item["greater_than"], "high": item["lower_than"]}
        if "init_value" in item:
            init[name] = item["init_value"]
            keys[name] = f"param_list[{i}].init_value"
    return space, init, keys
