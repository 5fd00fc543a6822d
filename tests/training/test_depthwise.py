"""train.depthwise: the grouped training form of depthwise convolutions computes what Paddle's kernel computes."""
from __future__ import annotations

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
from paddle import nn

from autoft.backbones.factory import create
from autoft.config import load_config
from autoft.errors import ConfigError
from autoft.training.depthwise import GroupedDepthwiseConv2D, configure, depthwise_layers, group_size


@pytest.mark.parametrize("channels,size,kernel,stride,padding", [
    (32, 16, 3, 1, 1), (96, 16, 3, 2, 1), (144, 8, 5, 2, "SAME"), (72, 4, 3, 1, 1), (88, 2, 5, 1, 2)])
def test_one_layer_matches_paddles_depthwise_kernel(channels, size, kernel, stride, padding):
    rng = np.random.default_rng(channels)
    x = rng.standard_normal((4, channels, size, size)).astype(np.float32)
    upstream = rng.standard_normal((4, channels, -(-size // stride), -(-size // stride))).astype(np.float32)
    results = []
    for grouped in (False, True):
        paddle.seed(0)
        layer = nn.Conv2D(channels, channels, kernel, stride=stride, padding=padding, groups=channels)
        if grouped:
            assert configure(layer, "grouped", "cpu") == 1 and type(layer) is GroupedDepthwiseConv2D
        xt = paddle.to_tensor(x, stop_gradient=False)
        y = layer(xt)
        (y * paddle.to_tensor(upstream[:, :, :y.shape[2], :y.shape[3]])).sum().backward()
        results.append((y.numpy(), xt.grad.numpy(), layer.weight.grad.numpy(), layer.bias.grad.numpy()))
    for native, grouped in zip(*results):
        np.testing.assert_allclose(grouped, native, rtol=1e-4, atol=1e-4)


def test_group_sizes_divide_the_channels():
    assert group_size(96, 256) == 8 and group_size(1152, 1) == 16
    assert group_size(72, 4) == 12 and group_size(88, 4) == 11 and group_size(7, 4) == 7 and group_size(13, 64) == 1


def _trajectory(kind: str, steps: int) -> tuple[list[float], nn.Layer]:
    paddle.seed(0)
    model = create("mobilenet_v3_small", 5, "none")
    assert configure(model, kind, "cpu") == (len(depthwise_layers(model)) if kind == "grouped" else 0)
    model.train()
    opt = paddle.optimizer.Momentum(0.01, parameters=model.parameters())
    rng = np.random.default_rng(0)
    x = paddle.to_tensor(rng.standard_normal((8, 3, 32, 32)).astype(np.float32))
    y = paddle.to_tensor(rng.integers(0, 5, 8))
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.clear_grad()
        losses.append(float(loss))
    return losses, model


def test_a_50_step_loss_trajectory_matches_the_native_kernel():
    """Tolerance: each step's loss within 1e-3 relative or 1e-5 absolute (float32 sums in another order)."""
    native, native_model = _trajectory("native", 50)
    grouped, grouped_model = _trajectory("grouped", 50)
    assert depthwise_layers(grouped_model) and all(
        type(layer) is GroupedDepthwiseConv2D for layer in depthwise_layers(grouped_model))
    np.testing.assert_allclose(grouped, native, rtol=1e-3, atol=1e-5)
    assert grouped[-1] < grouped[0]  # it trained
    # eval mode runs Paddle's own kernel: the same outputs as the native model's, and the state dicts agree
    grouped_model.eval()
    native_model.eval()
    x = paddle.to_tensor(np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32))
    np.testing.assert_allclose(grouped_model(x).numpy(), native_model(x).numpy(), rtol=1e-2, atol=1e-3)
    assert set(grouped_model.state_dict()) == set(native_model.state_dict())


def test_auto_is_grouped_on_cpu_and_native_on_gpu_and_the_key_is_checked(tmp_path):
    assert configure(create("mobilenet_v3_small", 3, "none"), "auto", "gpu") == 0
    assert configure(create("mobilenet_v3_small", 3, "none"), "auto", "cpu") > 0
    bad = tmp_path / "c.yaml"
    bad.write_text("data: {dataset: fashion-mnist-demo}\ntrain: {depthwise: fast}\n")
    with pytest.raises(ConfigError, match="depthwise"):
        load_config(bad)


def test_a_grouped_model_exports_to_the_inference_engine_with_paddles_kernel(tmp_path):
    """The trials' evaluation exports the training model: the export must work and give the native logits."""
    from autoft.serving.engine import TOLERANCE, InferenceRunner, export_layer

    paddle.seed(0)
    model = create("mobilenet_v3_small", 4, "none")
    assert configure(model, "grouped", "cpu") > 0
    x = np.random.default_rng(2).standard_normal((3, 3, 32, 32)).astype(np.float32)
    model.eval()
    expected = model(paddle.to_tensor(x)).numpy()
    export_layer(model, 32, tmp_path)
    assert "depthwise_conv2d" in (tmp_path / "inference.json").read_text()  # Paddle's kernel, not the grouped form
    got = InferenceRunner(tmp_path, 1, False)(x)
    np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=TOLERANCE)
    model.train()  # training again after the export takes the grouped path
    assert type(depthwise_layers(model)[0]) is GroupedDepthwiseConv2D
