"""EfficientNet-Lite: the port against reference logits, real photos, and the architecture rules."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import paddle
import pytest

from autoft.backbones import create, get_spec
from autoft.backbones.efficientnet_lite import block_args, round_filters

CATS = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def lite0(shared_home: Path) -> paddle.nn.Layer:
    model = create("efficientnet_lite0", 1000)
    model.eval()
    return model


def _logits(model: paddle.nn.Layer, x: np.ndarray) -> np.ndarray:
    with paddle.no_grad():
        return model(paddle.to_tensor(x)).numpy()


def test_matches_shared_reference_logits(helpers: SimpleNamespace, lite0: paddle.nn.Layer) -> None:
    if not helpers.shared_reference.is_file():
        pytest.skip(f"{helpers.shared_reference} not present (only beside the dev clone and in CI)")
    ref = np.load(helpers.shared_reference)
    assert np.abs(_logits(lite0, ref["inputs"]) - ref["logits"]).max() < 1e-3
    assert np.abs(_logits(lite0, ref["random_inputs"]) - ref["random_logits"]).max() < 1e-3
    with paddle.no_grad():
        features = lite0.backbone(paddle.to_tensor(ref["inputs"])).numpy()
    assert np.abs(features - ref["features_mean"]).max() < 1e-3


def test_matches_own_low_resolution_reference(helpers: SimpleNamespace, lite0: paddle.nn.Layer) -> None:
    ref = np.load(helpers.data / "efficientnet_lite0_128.npz")
    logits = _logits(lite0, helpers.to_input(ref["crops"]))
    assert np.abs(logits - ref["logits"]).max() < 1e-3
    assert logits.argmax(1).tolist() == [285, 967]


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_pretrained_recognises_cat_and_espresso(helpers: SimpleNamespace, shared_home: Path, name: str) -> None:
    size = get_spec(name).default_image_size
    model = create(name, 1000)
    model.eval()
    crops = np.stack([helpers.photo_crop("chelsea", size), helpers.photo_crop("coffee", size)])
    top5 = np.argsort(-_logits(model, helpers.to_input(crops)), axis=1)[:, :5]
    assert CATS & set(top5[0].tolist()), top5[0]
    assert {967, 968} & set(top5[1].tolist()), top5[1]


def test_scaling_rules() -> None:
    assert [round_filters(c, 1.1) for c in (16, 24, 40, 80, 112, 192, 320)] == [16, 24, 48, 88, 120, 208, 352]
    for width, depth, n_blocks in [(1.0, 1.0, 16), (1.0, 1.1, 21), (1.1, 1.2, 21)]:
        blocks, stages = block_args(width, depth)
        assert len(blocks) == n_blocks
        assert stages.count(0) == 1 and stages.count(6) == 1  # first and last stage are never deepened
        assert blocks[0][3] == 32  # stem stays 32 wide


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_imagenet_weights_fit_scaled_variants(shared_home: Path, name: str) -> None:
    model = create(name, 10)  # raises if any backbone tensor is missing or misshapen
    last = model.backbone.blocks[-1].project.bn.weight.shape[0]
    assert model.backbone.conv_head.conv.weight.shape == [1280, last, 1, 1]


def test_same_padding_is_asymmetric_for_stride_two() -> None:
    from autoft.backbones.efficientnet_lite_net import ConvBN

    paddle.seed(0)
    for kernel, pads in [(3, (0, 1)), (5, (1, 2))]:
        layer = ConvBN(2, 4, kernel, stride=2, act=False)
        layer.eval()
        x = paddle.randn([1, 2, 8, 8])
        manual = paddle.nn.functional.conv2d(paddle.nn.functional.pad(x, [pads[0], pads[1], pads[0], pads[1]]),
                                             layer.conv.weight, stride=2)
        np.testing.assert_allclose(layer.conv(x).numpy(), manual.numpy(), atol=1e-5)


def test_drop_connect_only_in_training(shared_home: Path) -> None:
    model = create("efficientnet_lite0", 3)
    x = paddle.randn([2, 3, 64, 64])
    model.eval()
    with paddle.no_grad():
        a, b = model.backbone(x).numpy(), model.backbone(x).numpy()
    np.testing.assert_array_equal(a, b)
    rates = [block.drop_rate for block in model.backbone.blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.2 * 15 / 16) and rates == sorted(rates)


def test_layer_groups_cover_every_trainable_parameter_once(shared_home: Path) -> None:
    model = create("efficientnet_lite0", 5, pretrained="none")
    groups = model.layer_groups()
    assert 6 <= len(groups) <= 9
    flat = [id(p) for g in groups for p in g]
    trainable = [id(p) for p in model.parameters() if p.trainable]  # batch-norm statistics are not trainable
    assert len(flat) == len(set(flat)) and set(flat) == set(trainable)
    assert [id(p) for p in groups[-1]] == [id(p) for p in model.head.parameters()]
    assert all(groups)
