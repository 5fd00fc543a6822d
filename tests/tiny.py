"""A tiny real Paddle backbone for trainer and strategy tests: three conv+BN blocks and global pooling."""
from __future__ import annotations

import paddle
from paddle import nn

from autoft.backbones.registry import BackboneSpec


def tiny_spec(name: str) -> BackboneSpec:
    return BackboneSpec(name=name, family="test", default_image_size=16, mean=(127.5,) * 3, std=(64.0,) * 3,
                        feature_dim=16, weights="none")


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2D(cin, cout, 3, stride=stride, padding=1), nn.BatchNorm2D(cout), nn.ReLU())


class TinyBackbone(nn.Layer):
    """Three layer groups below the head."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.LayerList([_block(3, 8, 1), _block(8, 16, 2), _block(16, 16, 2)])
        self.pool = nn.AdaptiveAvgPool2D(1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        for block in self.blocks:
            x = block(x)
        return paddle.flatten(self.pool(x), 1)

    def param_groups(self) -> list[list[paddle.Tensor]]:
        return [list(b.parameters()) for b in self.blocks]
