"""Faster CPU training steps for depthwise convolutions (``train.depthwise``).

Paddle's CPU convolution loops over every sample and every group, so a depthwise layer (one group per channel)
makes batch x channels tiny matrix products, forward and backward: 83-91 % of an EfficientNet-Lite0 or
MobileNetV3 training step (benchmarks/train_throughput.py times every layer). The same layer written as a grouped
convolution with a block-diagonal weight, groups of ``g`` channels each, does ``g`` times the arithmetic in ``g``
times fewer, larger products, which is 2-7x faster per layer here. The weight stays the layer's own
``[C, 1, k, k]`` parameter (checkpoints, bundles and pretrained weights are unchanged); the block-diagonal weight
is that parameter times a fixed 0/1 mask, so its gradient is the depthwise gradient. Evaluation, exports and
layers that nothing trains through use Paddle's own depthwise kernel.
"""
from __future__ import annotations

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from autoft.config.schema import Depthwise

__all__ = ["group_size", "use_grouped_depthwise", "depthwise_layers", "resolve", "configure"]


_MASKS: dict[tuple[int, int], paddle.Tensor] = {}


def group_size(channels: int, out_pixels: int) -> int:
    """Channels per group: 8 where the output has >= 64 pixels, else 16 (measured per layer shape on
    EfficientNet-Lite0 at 32-64 px), lowered to a divisor of ``channels``."""
    target = 8 if out_pixels >= 64 else 16
    for g in range(min(target, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


def _mask(channels: int, g: int) -> paddle.Tensor:
    key = (channels, g)
    if key not in _MASKS:
        eye = np.tile(np.eye(g, dtype=np.float32), (channels // g, 1))[:, :, None, None]
        _MASKS[key] = paddle.to_tensor(eye, place=paddle.CPUPlace())
    return _MASKS[key]


def depthwise_layers(model: nn.Layer) -> list[nn.Conv2D]:
    """The model's depthwise convolutions that the grouped form can stand in for (NCHW, zero padding, one
    filter per channel)."""
    # isinstance only narrows the type; the exact type leaves out Conv2D subclasses with a forward of their own
    return [layer for layer in model.sublayers(include_self=True)
            if isinstance(layer, nn.Conv2D) and type(layer) in (nn.Conv2D, GroupedDepthwiseConv2D) and layer._groups > 1
            and layer._groups == layer._in_channels == layer._out_channels
            and layer._data_format == "NCHW" and layer._padding_mode == "zeros"]


class GroupedDepthwiseConv2D(nn.Conv2D):
    """An ``nn.Conv2D`` depthwise layer that trains as a block-diagonal grouped convolution (the class of a
    built layer is swapped to this one; nothing else about it changes)."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if not self.training or (self.weight.stop_gradient and x.stop_gradient):
            return nn.Conv2D.forward(self, x)
        channels = self._in_channels
        out_pixels = -(-x.shape[2] // self._stride[0]) * -(-x.shape[3] // self._stride[1])
        g = group_size(channels, out_pixels)
        if g == 1:
            return nn.Conv2D.forward(self, x)
        return F.conv._conv_nd(x, self.weight * _mask(channels, g), bias=self.bias, stride=self._stride,
                               padding=self._updated_padding, padding_algorithm=self._padding_algorithm,
                               dilation=self._dilation, groups=channels // g, data_format=self._data_format,
                               channel_dim=self._channel_dim, op_type="conv2d", use_cudnn=False)


def use_grouped_depthwise(model: nn.Layer) -> int:
    """Swap every eligible depthwise layer of ``model`` to the grouped training form; → how many."""
    layers = depthwise_layers(model)
    for layer in layers:
        layer.__class__ = GroupedDepthwiseConv2D
    return len(layers)


def resolve(kind: str, device: str) -> str:
    """What ``train.depthwise`` means on ``device`` ("cpu" or "gpu"): "grouped" or "native" (auto = grouped on CPU)."""
    choice = Depthwise(kind)
    if choice is Depthwise.NATIVE or (choice is Depthwise.AUTO and device != "cpu"):
        return Depthwise.NATIVE.value
    return Depthwise.GROUPED.value


def configure(model: nn.Layer, kind: str, device: str) -> int:
    """Apply ``train.depthwise`` to a built model on ``device`` ("cpu" or "gpu"); → the layers swapped."""
    if resolve(kind, device) == Depthwise.NATIVE.value:
        return 0
    return use_grouped_depthwise(model)
