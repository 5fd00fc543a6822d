"""Classifier = a backbone giving pooled features + a new head (dropout + Linear ``head.fc``)."""
from __future__ import annotations

import itertools
from collections.abc import Sequence

import paddle
from paddle import nn

from autoft.backbones.registry import BackboneSpec

__all__ = ["Classifier", "Head", "PooledBackbone", "chunk_groups"]


class Head(nn.Layer):
    """Dropout and a linear classifier on the backbone's features; with ``hidden`` > 0 a hidden layer of that width
    (Linear, ReLU, dropout) comes first. The classifier is ``fc`` either way, so a linear head's weights keep their
    names (``head.fc.*``)."""

    def __init__(self, in_features: int, num_classes: int, dropout: float, hidden: int = 0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.hidden = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout)) if hidden else None
        self.fc = nn.Linear(hidden or in_features, num_classes)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.dropout(x)
        return self.fc(x if self.hidden is None else self.hidden(x))


class Classifier(nn.Layer):
    """``forward(x)``: x float32 [N,3,H,W], already normalised with ``spec.mean``/``spec.std`` -> logits."""

    def __init__(self, spec: BackboneSpec, backbone: nn.Layer, num_classes: int, dropout: float,
                 head_hidden: int = 0) -> None:
        super().__init__()
        self.spec = spec
        self.num_classes = num_classes
        self.backbone = backbone
        self.head = Head(spec.feature_dim, num_classes, dropout, head_hidden)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.head(self.backbone(x))

    def layer_groups(self) -> list[list[paddle.Tensor]]:
        """Parameters in groups ordered input -> output; the last group is the head's parameters.

        Used for discriminative learning rates and gradual unfreezing, so every parameter is in exactly one
        group. Batch-norm running statistics, which Paddle keeps as non-trainable parameters, are left out:
        they are not optimised, and filtering on ``trainable`` instead would change the groups once a
        strategy freezes some of them.
        """
        stats = {id(p) for n, p in self.named_parameters() if n.endswith(("._mean", "._variance"))}
        groups = [*self.backbone.param_groups(), list(self.head.parameters())]
        return [[p for p in group if id(p) not in stats] for group in groups]


def chunk_groups(units: Sequence[nn.Layer], n_groups: int) -> list[list[paddle.Tensor]]:
    """Split ``units`` (sublayers in forward order) into at most ``n_groups`` contiguous parameter groups."""
    units = [u for u in units if list(u.parameters())]
    n_groups = min(n_groups, len(units))
    bounds = [round(i * len(units) / n_groups) for i in range(n_groups + 1)]
    return [[p for u in units[a:b] for p in u.parameters()] for a, b in itertools.pairwise(bounds)]


class PooledBackbone(nn.Layer):
    """Wraps a paddle.vision model built without its classifier (it ends in global pooling) as ``net``.

    ``groups`` names ``net``'s sublayers per parameter group, input to output; without it, the sublayers (with
    containers split into their children) are cut into ``n_groups`` contiguous groups.
    """

    def __init__(self, net: nn.Layer, groups: Sequence[Sequence[str]] | None = None, n_groups: int = 6) -> None:
        super().__init__()
        self.net = net
        self._groups = groups
        self._n_groups = n_groups

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return paddle.flatten(self.net(x), 1)

    def param_groups(self) -> list[list[paddle.Tensor]]:
        if self._groups is not None:
            children = dict(self.net.named_children())
            return [[p for name in names for p in children[name].parameters()] for names in self._groups]
        units: list[nn.Layer] = []
        for child in self.net.children():
            is_container = isinstance(child, (nn.Sequential, nn.LayerList))
            units.extend(child.children() if is_container else [child])
        return chunk_groups(units, self._n_groups)
