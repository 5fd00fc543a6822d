"""Predictor(bundle).predict(paths, top_k): everything it needs comes from the bundle."""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autoft.data import walk
from autoft.data.transforms import read_image
from autoft.errors import BundleError, DataError
from autoft.run.bundle import (
    META_FILE,
    WEIGHTS_FILE,
    Bundle,
    BundleMeta,
    BundleReplaced,
    check_weights_fit,
    is_bundle,
    load_bundle,
)
from autoft.serving.engine import INFERENCE_DIR, TOLERANCE, InferenceRunner, cached_export, check_batch, is_exported

log = logging.getLogger("autoft.serving.predict")

__all__ = ["Prediction", "Predictor", "Inputs", "find_inputs"]


@dataclass(frozen=True)
class Prediction:
    path: str
    top: tuple[tuple[str, float], ...] = ()   # (label, probability), most likely first
    error: str | None = None

    @property
    def label(self) -> str | None:
        return self.top[0][0] if self.top else None

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "error": self.error,
                "top": [{"label": label, "probability": round(p, 6)} for label, p in self.top]}


@dataclass(frozen=True)
class Inputs:
    """The files to predict, and how many hidden image-named files the folders among the inputs held (skipped)."""

    paths: list[Path]
    hidden: int = 0


def find_inputs(inputs: Iterable[str | Path]) -> Inputs:
    """Files as given; a folder becomes the files a training walk would take from it (``autoft.data.walk``: image
    suffixes, recursive, symlinks followed but not loops, hidden files and folders skipped), sorted. An entry with
    an image name that is not a regular file (a FIFO, a socket, a dangling link) is kept, so that predict reports
    it instead of skipping it."""
    out: list[Path] = []
    hidden = 0
    for item in inputs:
        path = Path(item)
        if not path.is_dir():
            out.append(path)
            continue
        found = walk.walk(walk.start(path), files=walk.image_names)
        out += sorted(p for _, files in found for p in files)
        hidden += sum(walk.hidden_images(folder) for folder, _ in found)
    return Inputs(out, hidden)


def _resolve_bundle(path: Path) -> Path:
    """A run folder means its best_model/ (recovered first if a crash mid-swap left it in `.best_model.old-*`)."""
    if not is_bundle(path) and is_bundle(path / "best_model"):
        return path / "best_model"
    return path


class Predictor:
    """Loads a bundle once; predicts batches of image files."""

    def __init__(self, bundle: str | Path, *, batch_size: int = 32, device: str = "auto",
                 threads: int | None = None) -> None:
        self.bundle_dir = _resolve_bundle(Path(bundle))
        self.crop_ratio = 1.0
        self.batch_size = batch_size
        self.fast: InferenceRunner | None = None
        threads = threads or os.cpu_count() or 1
        if is_exported(self.bundle_dir) and not is_bundle(self.bundle_dir):  # `autoft export` output
            self.meta: BundleMeta = _read_meta(self.bundle_dir)
            self.model = None
            self.fast = InferenceRunner(self.bundle_dir, threads, _select_device(device) == "gpu")
            return
        loaded, weights = _read_bundle(self.bundle_dir)  # before paddle loads: a broken bundle fails in no time
        self.bundle_dir = loaded.path
        self.meta = loaded.meta
        self.weights_digest = _digest(weights)
        gpu = _select_device(device) == "gpu"
        self.model = self._build(weights)
        self.fast = self._fast_runner(threads, gpu)

    def _fast_runner(self, threads: int, gpu: bool) -> InferenceRunner | None:
        """paddle.inference over a static export of the bundle: the bundle's own `autoft export` output, else one
        made once and cached by the weights' hash. Any failure keeps the (slower) dynamic-graph model."""
        try:
            folder = self.bundle_dir / INFERENCE_DIR
            if not is_exported(folder):
                folder = cached_export(self)
            runner = InferenceRunner(folder, threads, gpu)
            batch = check_batch(self.meta.image_size, 2)
            drift = float(np.max(np.abs(runner(self.normalize(batch)) - self.reference_logits(batch))))
            if not drift <= 10 * TOLERANCE:
                raise BundleError(f"its logits differ by {drift:.1e}")
            return runner
        except Exception as exc:  # a missing inference library or an unexportable op: dygraph still works
            log.debug("predict: no static export for %s (%s); using the dynamic graph", self.bundle_dir, exc)
            return None

    @classmethod
    def imagenet(cls, backbone: str, *, batch_size: int = 32, device: str = "auto") -> Predictor:
        """The backbone's own 1000-class ImageNet head, to check its pretrained weights."""
        from autoft.backbones import create, get_spec, imagenet_class_names

        spec = get_spec(backbone)
        self = cls.__new__(cls)
        self.meta = BundleMeta(backbone=backbone, num_classes=1000, class_names=tuple(imagenet_class_names()),
                               image_size=spec.default_image_size, mean=spec.mean, std=spec.std)
        self.crop_ratio = 224 / 256  # ImageNet eval: shorter side to size/0.875, centre crop
        self.batch_size = batch_size
        self.fast = None
        _select_device(device)
        self.model = create(backbone, 1000, "imagenet")
        self.model.eval()
        return self

    def _build(self, weights: dict[str, np.ndarray]) -> Any:
        import paddle

        from autoft.backbones import create

        model = create(self.meta.backbone, self.meta.num_classes, "none", self.meta.head_hidden)
        hidden = f", a {self.meta.head_hidden}-wide hidden head layer" if self.meta.head_hidden else ""
        check_weights_fit(weights, {k: v.shape for k, v in model.state_dict().items()},
                          str(self.bundle_dir / WEIGHTS_FILE),
                          f"{self.meta.backbone} with {self.meta.num_classes} classes{hidden} ({META_FILE})")
        model.set_state_dict({k: paddle.to_tensor(v) for k, v in weights.items()})
        model.eval()
        return model

    def _load(self, path: Path) -> np.ndarray:
        """The model's input from an image file: the one preprocessing training uses (``read_image``), with this
        predictor's crop ratio."""
        return read_image(path, self.meta.image_size, self.crop_ratio)

    def normalize(self, batch: np.ndarray) -> np.ndarray:
        """uint8 NHWC images → the model's float32 input."""
        from autoft.data import normalize

        return normalize(batch, self.meta.mean, self.meta.std)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """uint8 NHWC images → logits, through the static export when there is one."""
        if self.fast is not None:
            return self.fast(self.normalize(batch))
        return self.reference_logits(batch)

    def reference_logits(self, batch: np.ndarray) -> np.ndarray:
        """The bundle's weights in Paddle's dynamic graph: what every export is checked against."""
        import paddle

        if self.model is None:
            raise BundleError(f"{self.bundle_dir}: an exported model has no dynamic-graph reference")
        with paddle.no_grad():
            return self.model(paddle.to_tensor(self.normalize(batch))).numpy()

    def predict(self, paths: Sequence[str | Path], top_k: int = 5) -> list[Prediction]:
        """One Prediction per path, in order; unreadable files get an error and the rest are still predicted."""
        top_k = max(1, min(top_k, self.meta.num_classes))
        results: dict[int, Prediction] = {}
        good: list[tuple[int, np.ndarray]] = []
        for i, p in enumerate(map(Path, paths)):
            try:
                good.append((i, self._load(p)))
            except DataError as exc:
                results[i] = Prediction(path=str(p), error=str(exc))
        for start in range(0, len(good), self.batch_size):
            chunk = good[start:start + self.batch_size]
            probs = _softmax(self.logits(np.stack([img for _, img in chunk])))
            for (i, _), row in zip(chunk, probs, strict=True):
                order = np.argsort(-row)[:top_k]
                top = tuple((self.meta.class_names[j], float(row[j])) for j in order)
                results[i] = Prediction(path=str(paths[i]), top=top)
        return [results[i] for i in range(len(paths))]


def _read_bundle(folder: Path) -> tuple[Bundle, dict[str, np.ndarray]]:
    """The bundle and its weights from one and the same version of the folder (a search may swap in a new one)."""
    for _ in range(2):
        loaded = load_bundle(folder)
        try:
            return loaded, loaded.weights()
        except BundleReplaced:
            continue
    loaded = load_bundle(folder)
    return loaded, loaded.weights()


def _digest(weights: dict[str, np.ndarray]) -> str:
    """Of the weights in memory (not the file, which a swap may have replaced since they were read)."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(weights):
        array = np.ascontiguousarray(weights[name])
        h.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        h.update(array.data)
    return h.hexdigest()


def _read_meta(folder: Path) -> BundleMeta:
    import json

    file = folder / META_FILE
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"{file}: unreadable ({exc})") from None
    if not isinstance(raw, dict):
        raise BundleError(f"{file}: must hold a JSON object, got {type(raw).__name__}")
    return BundleMeta.from_json(raw, str(file))


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _select_device(device: str) -> str:
    """'cpu' or 'gpu' (auto: gpu when Paddle has CUDA); also made Paddle's current device."""
    import paddle

    chosen = "gpu" if device != "cpu" and paddle.device.is_compiled_with_cuda() else "cpu"
    paddle.set_device(chosen)
    return chosen
