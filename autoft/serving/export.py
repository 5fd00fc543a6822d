"""`autoft export`: a bundle as a Paddle inference model (paddle.jit.save) or ONNX, checked against the bundle.

Paddle: ``<out>/inference.json`` + ``inference.pdiparams`` (``.pdmodel`` on older Paddle) with a copy of
``bundle.json`` (classes, image size, mean/std), so ``autoft predict <out>`` serves it. Default ``<out>`` is
``BUNDLE/inference/``. ONNX (``pip install 'autoft[onnx]'``: paddle2onnx + onnxruntime): ``<out>/model.onnx``
(default ``<out>`` = the bundle folder) plus ``bundle.json``. Either way the exported model runs on a few images
and must give the bundle's logits within ``TOLERANCE``; a larger difference is a BundleError.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autoft._fs import atomic_write_json
from autoft.errors import BundleError, ConfigError
from autoft.run.bundle import META_FILE
from autoft.serving.engine import INFERENCE_DIR, PREFIX, TOLERANCE, check_batch, jit_save, program_file
from autoft.serving.predict import Predictor

__all__ = ["export_bundle", "ExportResult", "FORMATS", "ONNX_FILE"]

FORMATS = ("paddle", "onnx")
ONNX_FILE = "model.onnx"


@dataclass(frozen=True)
class ExportResult:
    path: Path           # the folder written
    files: tuple[Path, ...]
    max_abs_diff: float  # exported vs bundle logits on the check images


def export_bundle(bundle: str | Path, fmt: str = "paddle", out: str | Path | None = None,
                  check_images: int = 4) -> ExportResult:
    """Export ``bundle`` as ``fmt`` into ``out``; raises BundleError when the export's outputs drift."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format: must be one of {', '.join(FORMATS)}, got {fmt!r}")
    predictor = Predictor(bundle, device="cpu")
    bundle = Path(bundle)
    batch = check_batch(predictor.meta.image_size, check_images)
    expected = predictor.reference_logits(batch)
    if fmt == "paddle":
        dest = Path(out) if out is not None else predictor.bundle_dir / INFERENCE_DIR
        files = jit_save(predictor, dest)
        got = _run_paddle(dest, predictor.normalize(batch))
    else:
        dest = Path(out) if out is not None else predictor.bundle_dir
        files = _onnx(predictor, dest)
        got = _run_onnx(dest / ONNX_FILE, predictor.normalize(batch))
    diff = float(np.max(np.abs(got - expected)))
    if not diff <= TOLERANCE:
        raise BundleError(f"export: the {fmt} model's logits differ from the bundle's by {diff:.2e} "
                          f"(> {TOLERANCE:g}); not trusted, see {dest}")
    return ExportResult(path=dest, files=files, max_abs_diff=diff)


def _run_paddle(dest: Path, x: np.ndarray) -> np.ndarray:
    import paddle

    layer = paddle.jit.load(str(dest / PREFIX))
    layer.eval()
    with paddle.no_grad():
        return layer(paddle.to_tensor(x)).numpy()


def _onnx(predictor: Any, dest: Path) -> tuple[Path, ...]:
    try:
        import paddle2onnx
    except ImportError:
        raise ConfigError("--format onnx needs paddle2onnx and onnxruntime: pip install 'autoft[onnx]'") from None
    with tempfile.TemporaryDirectory(prefix="autoft-export-") as tmp:
        jit_save(predictor, Path(tmp))
        program = program_file(Path(tmp))
        dest.mkdir(parents=True, exist_ok=True)
        paddle2onnx.export(str(program), str(Path(tmp) / f"{PREFIX}.pdiparams"), save_file=str(dest / ONNX_FILE),
                           opset_version=13, enable_onnx_checker=True)
    if not (dest / META_FILE).is_file():
        atomic_write_json(dest / META_FILE, predictor.meta.to_json())
    return (dest / ONNX_FILE, dest / META_FILE)


def _run_onnx(model: Path, x: np.ndarray) -> np.ndarray:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("--format onnx checks the model with onnxruntime: pip install 'autoft[onnx]'") from None
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.asarray(session.run(None, {name: x.astype(np.float32)})[0])
