"""``create(name, num_classes, pretrained)``: a registered backbone with a new head and its pretrained weights."""
from __future__ import annotations

from autoft.backbones.classifier import Classifier
from autoft.backbones.loading import load_pretrained
from autoft.backbones.registry import get_entry
from autoft.errors import ConfigError

__all__ = ["create"]


def create(name: str, num_classes: int, pretrained: str = "imagenet", head_hidden: int = 0) -> Classifier:
    """Build backbone ``name`` with a new ``num_classes`` head and load ``pretrained`` weights.

    ``pretrained`` is "imagenet", "none" (random init) or a path to a .pdparams / .safetensors / .pth file or
    a bundle folder. ``head_hidden`` > 0 puts a hidden layer of that width in the head (``model.head_hidden``).
    """
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive int, but got {num_classes!r}")
    if not isinstance(head_hidden, int) or isinstance(head_hidden, bool) or head_hidden < 0:
        raise ConfigError(f"head_hidden must be an int >= 0, but got {head_hidden!r}")
    entry = get_entry(name)
    model = Classifier(entry.spec, entry.build(), num_classes, entry.dropout, head_hidden)
    load_pretrained(model, pretrained)
    return model
