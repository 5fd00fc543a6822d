"""Forward passes that do not train, through Paddle's inference engine (``train.eval_engine``).

The per-epoch validation of trials, reruns and the final fit, the frozen-trunk feature cache and the dry-run's
validation estimate run on a static inference program exported from the model's *current* weights: on CPU that
engine (oneDNN) runs a forward tens of times faster than the dynamic graph. Paddle's inference passes fold
BatchNorm into the convolutions and rewrite the graph, so a built predictor cannot take new weights: each
evaluation saves the weights again into a private temporary folder and builds a new engine. The program itself is
traced once per model (``StaticTwin``, a ``paddle.jit.to_static`` wrapper that shares the model's parameters) and
traced again only when the model's structure changes, so an evaluation after the first saves weights (~0.07 s for
EfficientNet-Lite0) rather than re-tracing (~0.8 s); building the engine takes ~0.5 s more (measured by
benchmarks/eval_throughput.py). The engine runs batches of about 2^18 pixels (``engine_batch``: 256 images at 32
px, 64 at 64 px), oneDNN's fastest here. ``auto`` falls back to the dynamic graph for the rest of the run, with one
log line, if an export fails; ``dygraph`` never exports.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paddle
from paddle import nn

from autoft.config.schema import EvalEngine
from autoft.data import Split, normalize
from autoft.errors import DataError
from autoft.serving.engine import InferenceRunner, export_layer
from autoft.training.loop import evaluate

__all__ = ["Evaluator", "Forward", "EngineForward", "StaticTwin", "cpu_threads", "engine_batch", "structure",
           "metrics_from_logits", "make_forward", "make_evaluator", "engine_threads"]

Log = Callable[[str], None]
Evaluator = Callable[[nn.Layer, Split, tuple[float, float, float], tuple[float, float, float], int],
                     dict[str, float]]


def engine_batch(image_size: int) -> int:
    """The engine's batch: a power of two near 2^18 pixels, 16 to 256 images (measured on CPU with oneDNN for
    EfficientNet-Lite0 and MobileNetV3-Small at 32 and 64 px: larger batches at small images, smaller at large)."""
    return int(min(256, max(16, 2 ** round(np.log2(2 ** 18 / max(1, image_size) ** 2)))))


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


class StaticTwin(nn.Layer):
    """``layer``'s eval-mode forward as a ``paddle.jit.to_static`` program over the layer's own parameters: saving
    it again after training steps writes the current weights without tracing the model again. ``signature`` names
    the structure it was traced for (the parameters' identities): a model whose layers were swapped needs a new
    twin."""

    def __init__(self, layer: nn.Layer, image_size: int) -> None:
        super().__init__()
        self.layer = layer
        self.signature = structure(layer)
        spec = paddle.static.InputSpec([None, 3, image_size, image_size], "float32", name="image")
        # the traced program stands in for the class's forward on this instance (Layer.__call__ calls it)
        traced = paddle.jit.to_static(self._forward, input_spec=[spec], full_graph=True)
        self.forward = traced  # type: ignore[method-assign]

    def _forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.layer(x)


def structure(layer: nn.Layer) -> tuple[int, ...]:
    """What a traced program depends on besides the weights' values: which parameter objects the layer holds."""
    return tuple(id(p) for p in layer.parameters())


class EngineForward(Forward):
    """The same forward through Paddle's inference engine, on an export of the layer's weights as they are now
    (through ``twin`` when given: its program, traced once, with the current weights)."""

    def __init__(self, layer: nn.Layer, mean: tuple[float, float, float], std: tuple[float, float, float],
                 image_size: int, gpu: bool = False, threads: int | None = None,
                 twin: StaticTwin | None = None) -> None:
        super().__init__(layer, mean, std)
        self.batch_size = engine_batch(image_size)
        self.folder = Path(tempfile.mkdtemp(prefix="autoft-engine-"))
        try:
            export_layer(twin if twin is not None else layer, image_size, self.folder)
            self.runner = InferenceRunner(self.folder, threads or engine_threads(), gpu)
        except BaseException:
            self.close()
            raise

    def batch(self, x: np.ndarray) -> np.ndarray:
        return self.runner(x)

    def __call__(self, images: np.ndarray, batch_size: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """As ``Forward``'s, in the engine's own batches (``engine_batch``) unless ``batch_size`` is given."""
        return super().__call__(images, batch_size or self.batch_size, out)

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
        return EngineForward(layer, mean, std, image_size, gpu=_on_gpu())
    except Exception as exc:
        if kind is EvalEngine.INFERENCE:
            raise
        if log is not None:
            line = str(exc).strip().splitlines()
            log(f"train.eval_engine auto: the inference export failed ({type(exc).__name__}: "
                f"{line[0][:160] if line else ''}); evaluating with the dynamic graph")
        return Forward(layer, mean, std)


def _on_gpu() -> bool:
    return paddle.get_device().startswith("gpu")


def make_evaluator(engine: str, image_size: int, log: Log | None = None) -> Evaluator:
    """``evaluate(model, split, mean, std, batch_size)`` for ``train.eval_engine``; ``auto`` remembers a failed
    export and stays on the dynamic graph afterwards. The model's program is traced once (a ``StaticTwin``, kept
    while the model and its structure stay the same); each evaluation saves the current weights with it."""
    state: dict[str, Any] = {"engine": engine, "twin": None, "untraceable": False}

    def traced(model: nn.Layer, mean: tuple[float, float, float],
               std: tuple[float, float, float]) -> EngineForward | None:
        """The engine on the twin's program (traced now if the model or its structure is new); None once that
        failed: fresh exports (make_forward) from then on."""
        if state["untraceable"]:
            return None
        twin = state["twin"]
        try:
            if twin is None or twin.layer is not model or twin.signature != structure(model):
                twin = state["twin"] = StaticTwin(model, image_size)
            return EngineForward(model, mean, std, image_size, gpu=_on_gpu(), twin=twin)
        except Exception:
            state["untraceable"], state["twin"] = True, None
            return None

    def run(model: nn.Layer, split: Split, mean: tuple[float, float, float], std: tuple[float, float, float],
            batch_size: int) -> dict[str, float]:
        if len(split.labels) == 0:
            raise DataError("the validation split is empty; set data.val_split > 0 or give a validation list")
        if state["engine"] == EvalEngine.DYGRAPH.value:
            return evaluate(model, split, mean, std, batch_size)
        forward = traced(model, mean, std) or make_forward(model, mean, std, image_size, state["engine"], log)
        if not isinstance(forward, EngineForward):
            state["engine"] = EvalEngine.DYGRAPH.value
            return evaluate(model, split, mean, std, batch_size)
        with forward:
            logits = forward(split.images)
        return metrics_from_logits(logits, split.labels)

    return run
