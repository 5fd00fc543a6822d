"""Backbones: a registry of pretrained feature extractors and the Classifier (backbone + new head) they build.

Listing and specs never import paddle; ``Classifier``, ``create`` and ``load_pretrained`` are imported from
paddle-dependent code on first access.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autoft.backbones.imagenet import imagenet_class_names
from autoft.backbones.registry import BackboneSpec, get_spec, list_backbones

if TYPE_CHECKING:
    from autoft.backbones.classifier import Classifier
    from autoft.backbones.factory import create
    from autoft.backbones.loading import load_pretrained

__all__ = [
    "BackboneSpec",
    "Classifier",
    "create",
    "get_spec",
    "imagenet_class_names",
    "list_backbones",
    "load_pretrained",
]


def __getattr__(name: str) -> Any:
    # PEP 562 lazy attributes: these need paddle, and `autoft backbones` / `--help` must not import it.
    if name == "Classifier":
        from autoft.backbones.classifier import Classifier

        return Classifier
    if name == "create":
        from autoft.backbones.factory import create

        return create
    if name == "load_pretrained":
        from autoft.backbones.loading import load_pretrained

        return load_pretrained
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
