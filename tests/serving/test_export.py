"""`autoft export`: Paddle inference (and ONNX where installed) round trips, checked against the bundle."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from autoft.run.bundle import BundleMeta, save_bundle
from autoft.errors import BundleError, ConfigError
from autoft.serving.engine import is_exported
from autoft.serving.export import export_bundle
from autoft.serving.predict import Predictor, find_inputs


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained efficientnet_lite0 with a 3-class head at 32 px: export must not care how good it is."""
    import paddle

    from autoft.backbones import create
    from autoft.training.checkpoint import model_weights

    paddle.seed(0)
    model = create("efficientnet_lite0", 3, "none")
    spec = model.spec
    meta = BundleMeta(backbone=spec.name, num_classes=3, class_names=("blue", "green", "red"), image_size=32,
                      mean=tuple(spec.mean), std=tuple(spec.std))
    return save_bundle(tmp_path_factory.mktemp("export") / "bundle", model_weights(model), meta)


def _probabilities(predictor: Predictor, images: list[Path]) -> np.ndarray:
    return np.array([[p for _, p in sorted(pred.top)] for pred in predictor.predict(images, top_k=3)])


def test_paddle_export_predicts_like_the_bundle(bundle: Path, shapes_dir: Path) -> None:
    result = export_bundle(bundle, "paddle")
    assert result.path == bundle / "inference" and is_exported(result.path)
    assert {p.name for p in result.files} >= {"bundle.json", "inference.pdiparams"}
    assert result.max_abs_diff <= 1e-4
    images = find_inputs([shapes_dir]).paths[:12]
    exported = Predictor(result.path)
    assert exported.meta.class_names == ("blue", "green", "red")
    np.testing.assert_allclose(_probabilities(exported, images), _probabilities(Predictor(bundle), images), atol=1e-5)


def test_cli_export_to_a_folder_and_predict_from_it(bundle: Path, shapes_dir: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "autoft.cli"]
    out = subprocess.run(cmd + ["export", str(bundle), "--out", str(tmp_path / "served")], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "max |logit diff|" in out.stdout
    one = next((shapes_dir / "red").iterdir())
    pred = subprocess.run(cmd + ["predict", str(tmp_path / "served"), str(one), "--json"], capture_output=True,
                          text=True, timeout=300)
    assert pred.returncode == 0, pred.stderr
    assert len(json.loads(pred.stdout.splitlines()[0])["top"]) == 3


def test_a_drifting_export_is_refused(bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import autoft.serving.export as export

    real = export._run_paddle
    monkeypatch.setattr(export, "_run_paddle", lambda dest, x: real(dest, x) + 1e-3)
    with pytest.raises(BundleError, match=r"logits differ from the bundle's by 1\.00e-03"):
        export_bundle(bundle, "paddle", tmp_path / "bad")


def test_unknown_format_and_missing_onnx_extra_are_one_line_errors(bundle: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="--format: must be one of paddle, onnx, got 'tflite'"):
        export_bundle(bundle, "tflite")
    monkeypatch.setitem(sys.modules, "paddle2onnx", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"--format onnx needs paddle2onnx .*pip install 'autoft\[onnx\]'"):
        export_bundle(bundle, "onnx", tmp_path / "onnx")


def test_onnx_export_matches_the_bundle(bundle: Path, tmp_path: Path) -> None:
    pytest.importorskip("paddle2onnx")
    pytest.importorskip("onnxruntime")
    result = export_bundle(bundle, "onnx", tmp_path / "onnx")
    assert (tmp_path / "onnx" / "model.onnx").stat().st_size > 1_000_000
    assert (tmp_path / "onnx" / "bundle.json").is_file()
    assert result.max_abs_diff <= 1e-4
