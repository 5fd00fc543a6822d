"""Error classes. User errors (exit 2) derive from AutoftError; TrialError is a failed trial."""
from __future__ import annotations

__all__ = ["AutoftError", "ConfigError", "DataError", "BundleError", "WeightsError", "TrialError", "PADDLE_MISSING"]

PADDLE_MISSING = "PaddlePaddle is not installed: pip install 'autoft[cpu]' (or 'autoft[gpu]' with CUDA)"


class AutoftError(Exception):
    """A user error: the CLI prints its message on one line and exits with code 2."""


class ConfigError(AutoftError):
    """The YAML, a --set override or a CLI flag breaks a rule."""


class DataError(AutoftError):
    """The data cannot be read or cannot be trained on."""


class BundleError(AutoftError):
    """A folder is not a valid bundle, or a bundle cannot be loaded."""


class WeightsError(AutoftError):
    """Pretrained weights are missing, unsafe or do not fit the model."""


class TrialError(Exception):
    """One trial failed (exception, NaN loss, timeout); the search records it and goes on."""
