"""paddle.vision.models backbones with Paddle's own published ImageNet weights (URL + md5 from paddle)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from autoft.backbones.registry import BackboneSpec, register

# ImageNet mean/std on the 0..255 scale, as paddle.vision's weights were trained with.
_MEAN = (123.675, 116.28, 103.53)
_STD = (58.395, 57.12, 57.375)

_BASE = "https://paddle-hapi.bj.bcebos.com/models/"


@dataclass(frozen=True)
class _PaddleModel:
    factory: str  # paddle.vision.models function
    feature_dim: int
    dropout: float  # before the head Linear, as in paddle's own classifier
    head_prefix: str  # keys of the final Linear in paddle's checkpoint; they become head.fc.*
    filename: str  # under _BASE; URLs and md5s are paddle 3.3.1's `model_urls` (paddle/vision/models/*.py)
    md5: str


_MODELS: dict[str, _PaddleModel] = {
    "resnet18": _PaddleModel("resnet18", 512, 0.0, "fc.", "resnet18.pdparams", "cf548f46534aa3560945be4b95cd11c4"),
    "resnet34": _PaddleModel("resnet34", 512, 0.0, "fc.", "resnet34.pdparams", "8d2275cf8706028345f78ac0e1d31969"),
    "resnet50": _PaddleModel("resnet50", 2048, 0.0, "fc.", "resnet50.pdparams", "ca6f485ee1ab0492d38f323885b0ad80"),
    "resnet101": _PaddleModel(
        "resnet101", 2048, 0.0, "fc.", "resnet101.pdparams", "02f35f034ca3858e1e54d4036443c92d"
    ),
    "resnet152": _PaddleModel(
        "resnet152", 2048, 0.0, "fc.", "resnet152.pdparams", "7ad16a2f1e7333859ff986138630fd7a"
    ),
    "mobilenet_v1": _PaddleModel(
        "mobilenet_v1", 1024, 0.0, "fc.", "mobilenetv1_1.0.pdparams", "3033ab1975b1670bef51545feb65fc45"
    ),
    "mobilenet_v2": _PaddleModel(
        "mobilenet_v2", 1280, 0.2, "classifier.1.", "mobilenet_v2_x1.0.pdparams", "0340af0a901346c8d46f4529882fb63d"
    ),
    "mobilenet_v3_small": _PaddleModel(
        "mobilenet_v3_small", 1024, 0.2, "classifier.3.",
        "mobilenet_v3_small_x1.0.pdparams", "34fe0e7c1f8b00b2b056ad6788d0590c",
    ),  # fmt: skip
    "mobilenet_v3_large": _PaddleModel(
        "mobilenet_v3_large", 1280, 0.2, "classifier.3.",
        "mobilenet_v3_large_x1.0.pdparams", "118db5792b4e183b925d8e8e334db3df",
    ),  # fmt: skip
    "shufflenet_v2": _PaddleModel(
        "shufflenet_v2_x1_0", 1024, 0.0, "_fc.", "shufflenet_v2_x1_0.pdparams", "122d42478b9e81eb49f8a9ede327b1a4"
    ),
}
_RESNET_GROUPS = (("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",))


def _family(name: str) -> str:
    return "resnet" if name.startswith("resnet") else "mobilenet" if name.startswith("mobilenet") else "shufflenet"


def _converter(head_prefix: str) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """paddle.vision keys -> Classifier keys: the last Linear becomes ``head.fc``, the rest ``backbone.net``."""

    def convert(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {
            f"head.fc.{k[len(head_prefix):]}" if k.startswith(head_prefix) else f"backbone.net.{k}": v
            for k, v in raw.items()
        }

    return convert


def _imagenet(name: str, convert: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]) -> Callable[[], Any]:
    def load() -> dict[str, np.ndarray]:
        from autoft.backbones import weights
        from autoft.backbones.pdparams import read_pdparams

        entry = _MODELS[name]
        path = weights.fetch(f"ImageNet weights for {name}", _BASE + entry.filename, entry.md5)
        # md5-checked, yet still read without unpickling: a mirror or a hand-placed cache file can be anything.
        return convert(read_pdparams(path))

    return load


def _builder(name: str) -> Callable[[], Any]:
    def build() -> Any:
        from paddle import nn
        from paddle.vision import models

        from autoft.backbones.classifier import PooledBackbone

        fn_name, feature_dim = _MODELS[name].factory, _MODELS[name].feature_dim
        factories: dict[str, Callable[..., Any]] = {  # explicit table rather than getattr(models, fn_name)
            "resnet18": models.resnet18, "resnet34": models.resnet34, "resnet50": models.resnet50,
            "resnet101": models.resnet101, "resnet152": models.resnet152, "mobilenet_v1": models.mobilenet_v1,
            "mobilenet_v2": models.mobilenet_v2, "mobilenet_v3_small": models.mobilenet_v3_small,
            "mobilenet_v3_large": models.mobilenet_v3_large, "shufflenet_v2_x1_0": models.shufflenet_v2_x1_0,
        }
        factory = factories[fn_name]  # the names are fixed and checked here
        if name.startswith("mobilenet_v3"):
            # v3's pretrained classifier starts with Linear(960|576 -> 1280|1024) + Hardswish: keep those in the
            # backbone so its ImageNet features (and 1000-class head) are used as trained.
            net = factory(num_classes=1000)
            net.classifier = nn.Sequential(nn.Linear(net.lastconv_out_channels, feature_dim), nn.Hardswish())
        else:
            net = factory(num_classes=0)  # with_pool=True: ends in global average pooling, [N, C, 1, 1]
        return PooledBackbone(net, groups=_RESNET_GROUPS if name.startswith("resnet") else None)

    return build


def _register_all() -> None:
    for name, m in _MODELS.items():
        spec = BackboneSpec(
            name=name,
            family=_family(name),
            default_image_size=224,
            mean=_MEAN,
            std=_STD,
            feature_dim=m.feature_dim,
            weights=f"Paddle's paddle.vision ImageNet weights: {_BASE}{m.filename} (md5 {m.md5})",
        )
        convert = _converter(m.head_prefix)
        register(spec, dropout=m.dropout, imagenet=_imagenet(name, convert), convert=convert)(_builder(name))


_register_all()
