"""The 1000 ImageNet class names, so a model with its ImageNet head can name what it sees."""
from __future__ import annotations

import functools
import importlib.resources

__all__ = ["imagenet_class_names"]


@functools.lru_cache(maxsize=1)
def _names() -> tuple[str, ...]:
    # Keras' imagenet_class_index.json names (as in pytorch/hub's imagenet_classes.txt), "_" read as " ".
    text = importlib.resources.files("autoft.backbones").joinpath("imagenet_classes.txt").read_text("utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def imagenet_class_names() -> list[str]:
    """1000 ImageNet class names; index = class id (281 'tabby', 285 'Egyptian cat', 967 'espresso')."""
    return list(_names())
