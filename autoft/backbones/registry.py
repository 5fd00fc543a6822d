"""The backbone registry: a name -> (spec, builder, ImageNet weights source) dict filled by ``@register``.

Importing this module, listing names and reading specs never imports paddle: the builders import it inside.
Building a model from an entry is ``factory.create``'s job.
"""
from __future__ import annotations

import difflib
import fnmatch
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from autoft.errors import ConfigError

__all__ = ["BackboneSpec", "Entry", "register", "list_backbones", "get_spec", "get_entry"]


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    family: str  # "efficientnet_lite" | "resnet" | "mobilenet" | "shufflenet"
    default_image_size: int
    mean: tuple[float, float, float]  # on the 0..255 pixel scale: x_norm = (x - mean) / std
    std: tuple[float, float, float]
    feature_dim: int  # size of the pooled features fed to the head
    weights: str  # one line: where the ImageNet weights come from


@dataclass(frozen=True)
class Entry:
    """What the registry knows about one backbone beyond its public spec."""

    spec: BackboneSpec
    build: Callable[[], Any]  # -> paddle Layer mapping [N,3,H,W] to [N, feature_dim]
    dropout: float  # dropout before the head's Linear
    imagenet: Callable[[], dict[str, np.ndarray]]  # ImageNet weights, keyed by Classifier names
    convert: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]  # native file keys -> Classifier keys


_REGISTRY: dict[str, Entry] = {}
# The modules whose import fills the registry; imported on first lookup so that importing this module is cheap.
_PROVIDERS = ("autoft.backbones.vision", "autoft.backbones.efficientnet_lite")


def register(
    spec: BackboneSpec,
    *,
    dropout: float,
    imagenet: Callable[[], dict[str, np.ndarray]],
    convert: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """Decorator: register ``build`` (no arguments, returns the backbone Layer) under ``spec.name``."""

    def decorate(build: Callable[[], Any]) -> Callable[[], Any]:
        if spec.name in _REGISTRY:
            raise ValueError(f"backbone {spec.name!r} is registered twice")
        _REGISTRY[spec.name] = Entry(spec, build, dropout, imagenet, convert)
        return build

    return decorate


def _entries() -> dict[str, Entry]:
    for module in _PROVIDERS:
        importlib.import_module(module)
    return _REGISTRY


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered backbone names matching the fnmatch ``pattern``, sorted."""
    return sorted(name for name in _entries() if fnmatch.fnmatchcase(name, pattern))


def get_entry(name: str) -> Entry:
    entries = _entries()
    if name not in entries:
        valid = sorted(entries)
        close = difflib.get_close_matches(str(name), valid, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown backbone {name!r}; {hint}valid: {', '.join(valid)}")
    return entries[name]


def get_spec(name: str) -> BackboneSpec:
    """The spec of backbone ``name``; an unknown name raises ConfigError with the nearest valid name."""
    return get_entry(name).spec
