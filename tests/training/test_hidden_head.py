"""model.head_hidden: a hidden layer in the head, trained through images or cached features, kept in bundle.json
and served by Predictor."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

paddle = pytest.importorskip("paddle")

from autoft.backbones import create, registry  # noqa: E402
from autoft.backbones.registry import Entry  # noqa: E402
from autoft.config import apply_params, config_from_dict  # noqa: E402
from autoft.data import ImageData, Split  # noqa: E402
from autoft.errors import BundleError, ConfigError  # noqa: E402
from autoft.run.bundle import load_bundle  # noqa: E402
from autoft.serving.predict import Predictor  # noqa: E402
from autoft.training.fit import fit  # noqa: E402
from tiny import TinyBackbone, tiny_spec  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:When training, we now always track global mean")
SPEC = tiny_spec("tiny_hidden")
COLOURS = np.array([[220, 40, 40], [40, 200, 40], [40, 40, 220]], dtype=np.float64)


@pytest.fixture(autouse=True)
def tiny_backbone(monkeypatch):
    registry.list_backbones()
    monkeypatch.setitem(registry._REGISTRY, SPEC.name,
                        Entry(SPEC, TinyBackbone, 0.0, imagenet=dict, convert=lambda tensors: tensors))


def colour_split(n: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % 3
    images = COLOURS[labels][:, None, None, :] + rng.normal(0, 40, (n, 16, 16, 3))
    return Split(np.clip(images, 0, 255).astype(np.uint8), labels)


def data() -> ImageData:
    return ImageData(("red", "green", "blue"), colour_split(60, 1), colour_split(30, 2), None, "fp-hidden", "synthetic")


def test_the_head_gets_a_hidden_layer_of_the_asked_width() -> None:
    linear, mlp = create(SPEC.name, 3, "none"), create(SPEC.name, 3, "none", head_hidden=32)
    assert linear.head.hidden is None and linear.head.fc.weight.shape == [16, 3]
    assert mlp.head.hidden[0].weight.shape == [16, 32] and mlp.head.fc.weight.shape == [32, 3]
    assert mlp(paddle.randn([2, 3, 16, 16])).shape == [2, 3]
    with pytest.raises(ConfigError, match="head_hidden"):
        create(SPEC.name, 3, "none", head_hidden=-1)


@pytest.mark.parametrize("freeze", [False, True])
def test_a_hidden_head_trains_is_kept_in_the_bundle_and_predict_serves_it(tmp_path: Path, freeze: bool,
                                                                          monkeypatch) -> None:
    monkeypatch.setenv("AUTOFT_HOME", str(tmp_path / "home"))
    cfg = config_from_dict({"model": {"backbone": SPEC.name, "pretrained": "none", "head_hidden": 24},
                            "train": {"epochs": 3, "batch_size": 10, "learning_rate": 0.01,
                                      "freeze_backbone": freeze, "checkpoint_dir": str(tmp_path / "ckpt")}})
    result = fit(cfg, data(), bundle_dir=tmp_path / "bundle")
    assert result.best_val_acc >= 0.9
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.meta.head_hidden == 24
    images = colour_split(9, 3).images
    predictor = Predictor(tmp_path / "bundle", device="cpu")
    assert float(np.abs(predictor.logits(images) - predictor.reference_logits(images)).max()) < 1e-4
    assert (predictor.logits(images).argmax(1) == np.arange(9) % 3).mean() >= 0.8


def test_a_bundle_json_with_a_bad_head_hidden_is_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AUTOFT_HOME", str(tmp_path / "home"))
    cfg = config_from_dict({"model": {"backbone": SPEC.name, "pretrained": "none", "head_hidden": 8},
                            "train": {"epochs": 1, "batch_size": 10, "checkpoint_dir": str(tmp_path / "ckpt")}})
    fit(cfg, data(), bundle_dir=tmp_path / "bundle")
    meta = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
    for value, match in ((-3, "head_hidden: must be a whole number"), (16, "do not fit|shape")):
        (tmp_path / "bundle" / "bundle.json").write_text(json.dumps({**meta, "head_hidden": value}))
        with pytest.raises(BundleError, match=match):
            Predictor(tmp_path / "bundle", device="cpu")


def test_head_hidden_is_checked_in_the_config() -> None:
    assert config_from_dict({}).model.head_hidden == 0
    with pytest.raises(ConfigError, match=r"model.head_hidden: must be 0 \(a linear head\) or a hidden width"):
        config_from_dict({"model": {"head_hidden": -4}})
    cfg = config_from_dict({"space": {"model.head_hidden": {"type": "categorical", "choices": [0, 256]}}})
    assert list(cfg.space.names) == ["model.head_hidden"]
    assert apply_params(cfg, {"model.head_hidden": 256}).model.head_hidden == 256
