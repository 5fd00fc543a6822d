"""paddle.vision backbones: every one builds, maps Paddle's own keys, and fetches ImageNet weights by URL."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import threading
from pathlib import Path
from typing import Callable

import numpy as np
import paddle
import pytest
from paddle.vision import models

import autoft.backbones.vision as vision
from autoft.backbones import create, get_spec, list_backbones
from autoft.errors import WeightsError

VISION = [n for n in list_backbones() if get_spec(n).family != "efficientnet_lite"]
PADDLE_MODELS: dict[str, Callable[..., paddle.nn.Layer]] = {
    "resnet18": models.resnet18, "mobilenet_v1": models.mobilenet_v1, "mobilenet_v2": models.mobilenet_v2,
    "mobilenet_v3_small": models.mobilenet_v3_small, "mobilenet_v3_large": models.mobilenet_v3_large,
    "shufflenet_v2": models.shufflenet_v2_x1_0,
}  # fmt: skip


@pytest.mark.parametrize("name", VISION)
def test_builds_and_classifies(name: str) -> None:
    model = create(name, 5, pretrained="none")
    model.eval()
    with paddle.no_grad():
        features = model.backbone(paddle.rand([2, 3, 64, 64]))
        logits = model(paddle.rand([2, 3, 64, 64]))
    assert features.shape == [2, get_spec(name).feature_dim]
    assert logits.shape == [2, 5]
    groups = model.layer_groups()
    assert 5 <= len(groups) - 1 <= 8 and all(groups)
    flat = [id(p) for g in groups for p in g]
    assert len(flat) == len(set(flat)) and set(flat) == {id(p) for p in model.parameters() if p.trainable}
    assert [id(p) for p in groups[-1]] == [id(model.head.fc.weight), id(model.head.fc.bias)]


@pytest.mark.parametrize("name", list(PADDLE_MODELS))
def test_paddle_vision_checkpoint_maps_onto_classifier(tmp_path: Path, name: str) -> None:
    paddle.seed(0)
    reference = PADDLE_MODELS[name](num_classes=1000)
    reference.eval()
    paddle.save(reference.state_dict(), str(tmp_path / "native.pdparams"))
    model = create(name, 1000, pretrained=str(tmp_path / "native.pdparams"))
    model.eval()
    x = paddle.rand([1, 3, 64, 64])
    np.testing.assert_allclose(model(x).numpy(), reference(x).numpy(), atol=1e-6)


def test_imagenet_download_convert_and_cache(tmp_path: Path, autoft_home: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    paddle.seed(0)
    reference = models.resnet18(num_classes=1000)
    served = tmp_path / "served"
    served.mkdir()
    paddle.save(reference.state_dict(), str(served / "resnet18.pdparams"))
    md5 = hashlib.md5((served / "resnet18.pdparams").read_bytes()).hexdigest()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(vision, "_BASE", f"http://127.0.0.1:{httpd.server_address[1]}/")
        monkeypatch.setitem(vision._MODELS, "resnet18", dataclasses.replace(vision._MODELS["resnet18"], md5=md5))
        model = create("resnet18", 1000)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert (autoft_home / "weights" / "resnet18.pdparams").is_file()
    assert (autoft_home / "weights" / "resnet18.safetensors").is_file()
    np.testing.assert_array_equal(model.head.fc.weight.numpy(), reference.fc.weight.numpy())
    again = create("resnet18", 10)  # server is gone: served from the safetensors cache
    np.testing.assert_array_equal(again.backbone.net.conv1.weight.numpy(), reference.conv1.weight.numpy())


def test_imagenet_offline_error_names_url_and_path(autoft_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vision, "_BASE", "http://127.0.0.1:9/")  # discard port: connection refused
    with pytest.raises(WeightsError) as info:
        create("resnet50", 10)
    message = str(info.value)
    assert message.startswith("ImageNet weights for resnet50 are not cached and cannot be downloaded (")
    expected_path = autoft_home / "weights" / "resnet50.pdparams"
    assert message.endswith(f"download http://127.0.0.1:9/resnet50.pdparams and put it at {expected_path}")


def test_specs_name_paddles_urls() -> None:
    assert "https://paddle-hapi.bj.bcebos.com/models/resnet50.pdparams" in get_spec("resnet50").weights
    assert "shufflenet_v2_x1_0.pdparams" in get_spec("shufflenet_v2").weights
