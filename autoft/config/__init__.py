"""The config: frozen dataclasses and Enums (schema), the rules each value follows (rules), YAML in (loader),
PaddleHub AutoDL Finetuner files (paddlehub) and the search space (space)."""
from __future__ import annotations

from autoft.config.loader import demo_config_path, load_config, parse_set, read_yaml_file
from autoft.config.rules import parse_duration
from autoft.config.schema import (
                                  OPTIMIZERS,
                                  RunConfig,
                                  TrainConfig,
                                  apply_params,
                                  config_from_dict,
                                  config_to_dict,
                                  first_config,
                                  inert_searched_keys,
                                  resolve_image_size,
                                  searched_image_sizes,
)

__all__ = ["RunConfig", "TrainConfig", "OPTIMIZERS", "apply_params", "config_from_dict", "config_to_dict",
           "demo_config_path", "first_config", "inert_searched_keys", "load_config", "parse_duration", "parse_set",
           "read_yaml_file", "resolve_image_size", "searched_image_sizes"]
