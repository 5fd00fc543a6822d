"""evaluate_bundle: test-split accuracy and loss of a saved bundle, checked against Predictor on the same files."""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("paddle")

from autoft.backbones import create, get_spec  # noqa: E402
from autoft.run.bundle import BundleMeta, save_bundle  # noqa: E402
from autoft.training.checkpoint import model_weights  # noqa: E402
from autoft.errors import ConfigError, DataError  # noqa: E402
from autoft.serving.evaluate import evaluate_bundle  # noqa: E402
from autoft.serving.predict import Predictor  # noqa: E402


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    import paddle

    paddle.seed(0)
    spec = get_spec("mobilenet_v3_small")
    meta = BundleMeta(backbone=spec.name, num_classes=2, class_names=("a", "b"), image_size=32,
                      mean=tuple(spec.mean), std=tuple(spec.std))
    weights = model_weights(create(spec.name, 2, "none"))
    rng = np.random.default_rng(0)
    for key, value in weights.items():  # a fresh head gives near-tied logits; make the classes differ clearly
        if key.startswith("head.") and value.ndim == 2:
            weights[key] = rng.normal(0, 50, value.shape).astype(value.dtype)
    return save_bundle(tmp_path / "bundle", weights, meta)


def test_test_split_metrics_match_the_predictor(bundle: Path, tmp_path: Path, make_class_folder: Callable) -> None:
    root = tmp_path / "ds"
    make_class_folder(root / "train", {"a": 2, "b": 2})
    make_class_folder(root / "val", {"a": 1, "b": 1}, start_seed=10)
    test_files = make_class_folder(root / "test", {"a": 4, "b": 3}, start_seed=20)
    result = evaluate_bundle(bundle, "test", path=str(root), device="cpu")
    preds = Predictor(bundle, device="cpu").predict(test_files, top_k=2)
    truth = ["a"] * 4 + ["b"] * 3
    acc = sum(p.label == t for p, t in zip(preds, truth)) / 7
    loss = -sum(math.log(dict(p.top)[t]) for p, t in zip(preds, truth)) / 7
    assert result["n"] == 7 and result["test_acc"] == pytest.approx(acc)
    assert result["test_loss"] == pytest.approx(loss, rel=1e-4)


def test_missing_test_split_and_other_classes_are_errors(bundle: Path, tmp_path: Path,
                                                         make_class_folder: Callable) -> None:
    make_class_folder(tmp_path / "no_test", {"a": 3, "b": 3})
    with pytest.raises(DataError, match=r"has no test split"):
        evaluate_bundle(bundle, "test", path=str(tmp_path / "no_test"), device="cpu")
    make_class_folder(tmp_path / "other", {"x": 3, "y": 3})
    with pytest.raises(DataError, match=r"classes \['x', 'y'\] do not match the bundle's \['a', 'b'\]"):
        evaluate_bundle(bundle, "val", path=str(tmp_path / "other"), device="cpu")
    with pytest.raises(ConfigError, match=r"split: must be one of train, val, test; got 'dev'"):
        evaluate_bundle(bundle, "dev", path=str(tmp_path / "other"))
