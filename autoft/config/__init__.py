"""The YAML config: frozen dataclasses and Enums (schema), their rules, the loader, PaddleHub files, the space."""
from __future__ import annotations

from autoft.config.schema import (OPTIMIZERS, RunConfig, TrainConfig, apply_params, config_from_dict, config_to_dict,
                                  demo_config_path, first_config, load_config, parse_duration, parse_set,
                                  read_yaml_file, resolve_image_size)

__all__ = ["RunConfig", "TrainConfig", "OPTIMIZERS", "apply_params", "config_from_dict", "config_to_dict",
           "demo_config_path", "first_config", "load_config", "parse_duration", "parse_set", "read_yaml_file",
           "resolve_image_size"]
