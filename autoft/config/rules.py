"""Rules a config value must follow; each failure is one ConfigError line naming the key, the rule and the value."""
from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from autoft.config.space import quote
from autoft.errors import ConfigError

__all__ = ["check_run_name", "meta", "choice", "positive", "non_negative", "fraction", "open_fraction",
           "half_fraction", "epoch_or_steps", "at_least_two", "seed_value", "image_size", "auto_or_count",
           "parse_duration", "backbone_name", "pretrained_source", "unknown_key", "IMAGE_SIZES", "WEIGHT_SUFFIXES",
           "SEEDS", "head_width", "MAX_HEAD_HIDDEN"]

MAX_HEAD_HIDDEN = 16384  # units in the head's hidden layer: wider than any backbone's features
IMAGE_SIZES = (16, 1024)  # pixels per side: below, the backbones pool to nothing; above, one image fills a GPU
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".pdparams")  # what backbones.loading reads
SEEDS = 2**31  # numpy's RandomState takes < 2**32; search.seed + trials done and train.seed + k must fit too

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_run_name(key: str, name: object) -> str:
    """A run name is one path component: no separators, no `..`, not absolute (it names a folder under results/)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = repr(name) if isinstance(name, str) and len(name) < 120 else f"a {type(name).__name__}"
        raise ConfigError(f"{key}: must be letters, digits, '_', '-' or '.' (one folder name, not a path), "
                          f"got {shown}")
    return name


def meta(rule: Callable[[str, Any], Any] | None = None, help: str = "") -> dict[str, Any]:
    return {"rule": rule, "help": help}


def choice(options: Sequence[str]) -> Callable[[str, Any], Any]:
    def rule(key: str, value: Any) -> Any:
        if value not in options:
            hint = difflib.get_close_matches(str(value), options, n=1) if len(str(value)) < 100 else []
            did = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(f"{key}: unknown value {quote(value)}{did} valid: {', '.join(options)}")
        return value
    return rule


def positive(key: str, value: Any) -> Any:
    if value <= 0:
        raise ConfigError(f"{key}: must be > 0, got {quote(value)}")
    return value


def non_negative(key: str, value: Any) -> Any:
    if value < 0:
        raise ConfigError(f"{key}: must be >= 0, got {quote(value)}")
    return value


def fraction(key: str, value: Any) -> Any:
    if not 0 <= value < 1:
        raise ConfigError(f"{key}: must be in [0, 1), got {quote(value)}")
    return value


def open_fraction(key: str, value: Any) -> Any:
    if not 0 < value < 1:
        raise ConfigError(f"{key}: must be in (0, 1), got {quote(value)}")
    return value


def half_fraction(key: str, value: Any) -> Any:
    if not 0 < value <= 0.5:
        raise ConfigError(f"{key}: must be in (0, 0.5], got {quote(value)}")
    return value


def epoch_or_steps(key: str, value: Any) -> Any:
    if value == "epoch" or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    raise ConfigError(f"{key}: must be 'epoch' or a positive step count, got {quote(value)}")


def at_least_two(key: str, value: Any) -> Any:
    if value < 2:  # ASHA and HyperBand keep 1/reduction_factor of the trials: 1 keeps all and divides by log 1
        raise ConfigError(f"{key}: must be >= 2, got {quote(value)}")
    return value


def seed_value(key: str, value: Any) -> Any:
    if not 0 <= value < SEEDS:
        raise ConfigError(f"{key}: must be in [0, 2**31), got {quote(value)}")
    return value


def image_size(key: str, value: Any) -> Any:
    low, high = IMAGE_SIZES
    if not low <= value <= high:
        raise ConfigError(f"{key}: must be in [{low}, {high}] pixels, got {quote(value)}")
    return value


def auto_or_count(key: str, value: Any) -> Any:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    raise ConfigError(f"{key}: must be 'auto' or a positive integer, got {quote(value)}")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def head_width(key: str, value: Any) -> Any:
    if not 0 <= value <= MAX_HEAD_HIDDEN:
        raise ConfigError(f"{key}: must be 0 (a linear head) or a hidden width up to {MAX_HEAD_HIDDEN}, "
                          f"got {quote(value)}")
    return value


def parse_duration(key: str, value: Any) -> float | None:
    """'30m', '2h', '90s', '1.5h' or a number of seconds → seconds."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an int past 1e308
            seconds = math.inf
    else:
        m = _DURATION.match(str(value)) if isinstance(value, str) else None
        if not m:
            raise ConfigError(f"{key}: must be a duration like 90s, 30m, 2h or 1d, got {quote(value)}")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if not (math.isfinite(seconds) and seconds > 0):  # nan passes `<= 0`; inf is "no limit", which is null
        raise ConfigError(f"{key}: must be a positive, finite duration (null for no limit), got {quote(value)}")
    return seconds


def backbone_name(key: str, value: Any) -> Any:
    from autoft.backbones.registry import get_spec  # paddle-free: names and specs only

    try:
        get_spec(value)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    return value


def pretrained_source(key: str, value: Any) -> Any:
    """Checked here, once: a path the loader cannot read would otherwise fail every trial, one by one.

    Only names and suffixes are looked at; the file is not opened (backbones.loading reads it, safely).
    """
    if value in ("imagenet", "none"):
        return value
    path = Path(value).expanduser()  # relative to the current folder, as search._absolute_paths resolves it
    if path.is_dir():
        if not (path / "model.safetensors").is_file():
            raise ConfigError(f"{key}: a folder must be a bundle holding model.safetensors, got {quote(value, 200)}")
        return value
    if not path.is_file():
        raise ConfigError(f"{key}: must be imagenet, none, or an existing weights file or bundle folder; "
                          f"no such path {quote(value, 200)}")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ConfigError(f"{key}: a weights file must end in {', '.join(WEIGHT_SUFFIXES)}, got {quote(value, 200)}")
    return value


def unknown_key(key: str, valid: Sequence[str], where: str) -> ConfigError:
    hint = difflib.get_close_matches(key, valid, n=1) if len(key) < 100 else []  # difflib is quadratic
    did = f"; did you mean {hint[0]!r}?" if hint else ""
    return ConfigError(f"{where}: unknown key {quote(key)}{did} valid: {', '.join(valid)}")
