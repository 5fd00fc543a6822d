"""Forward passes that do not train, through Paddle's inference engine (``train.eval_engine``).

The per-epoch validation of trials, reruns and the final fit, the frozen-trunk feature cache and the dry-run's
validation estimate run on a static inference program exported from the model's *current* weights: on CPU that
engine (oneDNN) runs a forward tens of times faster than the dynamic graph. Paddle's inference passes fold
BatchNorm into the convolutions and rewrite the graph, so a built predictor cannot take new weights: each
evaluation exports again into a private temporary folder (about a second for EfficientNet-Lite0, measured by
benchmarks/eval_throughput.py), then runs every batch through the engine. ``auto`` falls back to the dynamic graph
for the rest of the run, with one log line, if an export fails; ``dygraph`` never exports.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import paddle
from paddle import nn

from autoft.config.schema import EvalEngine
from autoft.data import Split, normalize
from autoft.errors import DataError
from autoft.serving.engine import InferenceRunner, export_layer
from autoft.training.loop import evaluate

__all__ = ["Evaluator", "Forward", "EngineForward", "cpu_threads", "metrics_from_logits", "make_forward",
           "make_evaluator", "engine_threads"]

Log = Callable[[str], None]
Evaluator = Callable[[nn.Layer, Split, tuple[float, float, float], tuple[float, float, float], int],
                     dict[str, float]]


def engine_threads() -> int:
    """The CPU threads this process may use: OMP_NUM_THREADS when set (a trial sets it to Ray's CPUs), else all."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return os.cpu_count() or 1


@contextlib.contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Paddle's CPU math (the dynamic graph's kernels) and inference engines built inside the block use ``n``
    threads; the process's setting comes back afterwards. For work in the driver once no trial runs (the final
    fit, the test split, the report): Paddle sets OMP_NUM_THREADS=1 in a process that left it unset."""
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(max(1, n))
    paddle.base.core.set_num_threads(max(1, n))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = old
        paddle.base.core.set_num_threads(engine_threads() if old is not None else 1)


def metrics_from_logits(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Mean cross-entropy and accuracy → {"val_loss", "val_acc"} (float64 log-softmax, as F.cross_entropy)."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    labels = np.asarray(labels, dtype=np.int64)
    loss = -log_probs[np.arange(len(labels)), labels].mean()
    return {"val_loss": float(loss), "val_acc": float((logits.argmax(axis=1) == labels).mean())}


class Forward:
    """A layer's eval-mode forward over uint8 images (batched, normalised); the dynamic graph's."""

    def __init__(self, layer: nn.Layer, mean: tuple[float, float, float], std: tuple[float, float, float]) -> None:
        self.layer, self.mean, self.std = layer, mean, std

    def batch(self, x: np.ndarray) -> np.ndarray:
        with paddle.no_grad():
            return self.layer(paddle.to_tensor(x)).numpy()

    def __call__(self, images: np.ndarray, batch_size: int, out: np.ndarray | None = None) -> np.ndarray:
        """Outputs for every image, written into ``out`` (e.g. a memmap) when given."""
        self.layer.eval()
        chunks = []
        for start in range(0, len(images), batch_size):
            y = self.batch(normalize(images[start:start + batch_size], self.mean, self.std))
            if out is None:
                chunks.append(y)
            else:
                out[start:start + len(y)] = y
        if out is not None:
            return out
        return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)


class EngineForward(Forward):
    """The same forward through Paddle's inference engine, on an export of the layer's weights as they are now."""

    def __init__(self, layer: nn.Layer, mean: tuple[float, float, float], std: tuple[float, float, float],
                 image_size: int, gpu: bool = False, threads: int | None = None) -> None:
        super().__init__(layer, mean, std)
        self.folder = Path(tempfile.mkdtemp(prefix="autoft-engine-"))
        try:
            export_layer(layer, image_size, self.folder)
            self.runner = InferenceRunner(self.folder, threads or engine_threads(), gpu)
        except BaseException:
            self.close()
            raise

    def batch(self, x: np.ndarray) -> np.ndarray:
        return self.runner(x)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> EngineForward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_forward(layer: nn.Layer, mean: tuple[float, float, float], std: tuple[float, float, float],
                 image_size: int, engine: str, log: Log | None = None) -> Forward:
    """The engine's forward (``auto``, ``inference``) or the dynamic graph's (``dygraph``, or ``auto`` when the
    export fails: said once through ``log``)."""
    kind = EvalEngine(engine)
    if kind is EvalEngine.DYGRAPH:
        return Forward(layer, mean, std)
    try:
        return EngineForward(layer, mean, std, image_size, gpu=paddle.get_device().startswith("gpu"))
    except Exception as exc:
        if kind is EvalEngine.INFERENCE:
            raise
        if log is not None:
            line = str(exc).strip().splitlines()
            log(f"train.eval_engine auto: the inference export failed ({type(exc).__name__}: "
                f"{line[0][:160] if line else ''}); evaluating with the dynamic graph")
        return Forward(layer, mean, std)


def make_evaluator(engine: str, image_size: int, log: Log | None = None) -> Evaluator:
    """``evaluate(model, split, mean, std, batch_size)`` for ``train.eval_engine``; ``auto`` remembers a failed
    export and stays on the dynamic graph afterwards."""
    state = {"engine": engine}

    def run(model: nn.Layer, split: Split, mean: tuple[float, float, float], std: tuple[float, float, float],
            batch_size: int) -> dict[str, float]:
        if len(split.labels) == 0:
            raise DataError("the validation split is empty; set data.val_split > 0 or give a validation list")
        if state["engine"] == EvalEngine.DYGRAPH.value:
            return evaluate(model, split, mean, std, batch_size)
        forward = make_forward(model, mean, std, image_size, state["engine"], log)
        if not isinstance(forward, EngineForward):
            state["engine"] = EvalEngine.DYGRAPH.value
            return evaluate(model, split, mean, std, batch_size)
        with forward:
            logits = forward(split.images, max(batch_size, 64))
        return metrics_from_logits(logits, split.labels)

    return run
