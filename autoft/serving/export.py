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

from autoft.run.bundle import META_FILE
from autoft.errors import BundleError, ConfigError
from autoft._fs import atomic_write_json

__all__ = ["export_bundle", "ExportResult", "FORMATS", "TOLERANCE", "INFERENCE_DIR", "PREFIX", "is_exported",
           "jit_save", "program_file", "check_batch"]

FORMATS = ("paddle", "onnx")
TOLERANCE = 1e-4
INFERENCE_DIR = "inference"
PREFIX = "inference"
ONNX_FILE = "model.onnx"
_PROGRAM_SUFFIXES = (".json", ".pdmodel")


@dataclass(frozen=True)
class ExportResult:
    path: Path           # the folder written
    files: tuple[Path, ...]
    max_abs_diff: float  # exported vs bundle logits on the check images


def is_exported(folder: str | Path) -> bool:
    """A Paddle inference export with its bundle.json (what ``export_bundle(..., "paddle")`` writes)."""
    folder = Path(folder)
    return (folder / META_FILE).is_file() and any((folder / f"{PREFIX}{s}").is_file() for s in _PROGRAM_SUFFIXES)


def export_bundle(bundle: str | Path, fmt: str = "paddle", out: str | Path | None = None,
                  check_images: int = 4) -> ExportResult:
    """Export ``bundle`` as ``fmt`` into ``out``; raises BundleError when the export's outputs drift."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format: must be one of {', '.join(FORMATS)}, got {fmt!r}")
    from autoft.serving.predict import Predictor

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


def check_batch(size: int, count: int) -> np.ndarray:
    """Fixed pseudo-images (uint8 NHWC), the same on every run: smooth gradients plus noise."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    base = (ramp[None, :, None, None] + ramp[None, None, :, None]) / 2
    noise = rng.normal(0, 40, size=(count, size, size, 3)).astype(np.float32)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def program_file(folder: Path) -> Path:
    """inference.json (Paddle 3's PIR) or inference.pdmodel (older Paddle)."""
    for suffix in _PROGRAM_SUFFIXES:
        if (folder / f"{PREFIX}{suffix}").is_file():
            return folder / f"{PREFIX}{suffix}"
    raise BundleError(f"{folder}: no {PREFIX}.json or {PREFIX}.pdmodel (not a Paddle inference export)")


def jit_save(predictor: Any, dest: Path) -> tuple[Path, ...]:
    import paddle

    size = predictor.meta.image_size
    dest.mkdir(parents=True, exist_ok=True)
    predictor.model.eval()
    spec = paddle.static.InputSpec([None, 3, size, size], "float32", name="image")
    paddle.jit.save(predictor.model, str(dest / PREFIX), input_spec=[spec])
    atomic_write_json(dest / META_FILE, predictor.meta.to_json())  # the meta of these weights, not a re-read
    return tuple(sorted(p for p in dest.iterdir() if p.name.startswith(PREFIX) or p.name == META_FILE))


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
