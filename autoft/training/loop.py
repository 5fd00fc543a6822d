"""The one epoch loop and evaluation, for full training (images through the model) and head-only training
(cached backbone features through the head): ``train_one_epoch`` and ``evaluate_arrays`` take what differs,
the batches and the data loss, or the layer and the input preparation.

Small pieces, each returning a metric dict (timm style); ``fit`` wires them to the strategy, the report
callback, bundles and checkpoints.
"""
from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from autoft.config import TrainConfig
from autoft.data import ImageData, Split, augment, normalize
from autoft.errors import DataError, TrialError
from autoft.training.strategies import Strategy

__all__ = ["TrainLoop", "Batches", "DataLoss", "steps_per_epoch", "batches", "set_train_mode", "image_batches",
           "image_loss", "train_step", "optimise", "log_progress", "train_one_epoch", "evaluate", "evaluate_arrays"]

Log = Callable[[str], None]


@dataclass
class TrainLoop:
    """What a training step needs (built by ``fit``; benchmarks may build one); the step and loss counters live
    here rather than in closures."""

    cfg: TrainConfig
    model: nn.Layer
    net: nn.Layer  # model, or its DataParallel wrapper
    strategy: Strategy
    data: ImageData
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    steps_per_epoch: int
    on_eval: Callable[[TrainLoop, int, float], None]
    log: Log
    scaler: Any = None
    rank: int = 0
    world: int = 1
    step: int = 0
    loss_sum: float = 0.0  # since the last evaluation
    loss_count: int = 0
    log_sum: float = 0.0  # since the last log line
    log_count: int = 0
    log_time: float = field(default_factory=time.perf_counter)

    def take_train_loss(self) -> float:
        """Mean training loss since the previous call (the previous evaluation); resets the running sum."""
        mean = self.loss_sum / self.loss_count if self.loss_count else float("nan")
        self.loss_sum, self.loss_count = 0.0, 0
        return mean


# (inputs, labels) per step of 1-based epoch, in order: images, or cached backbone features
Batches = Callable[[TrainLoop, int], Iterable[tuple[np.ndarray, np.ndarray]]]
# the data loss of one batch of inputs (no penalty)
DataLoss = Callable[[TrainLoop, np.ndarray, np.ndarray], paddle.Tensor]


def steps_per_epoch(num_train: int, batch_size: int) -> int:
    """Full batches only (constant shapes, no 1-sample BatchNorm batch); a set smaller than a batch is one batch."""
    return max(1, num_train // batch_size)


def batches(num: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """The sample indices of each step of one epoch, shuffled by ``rng``."""
    order = rng.permutation(num)
    for i in range(steps_per_epoch(num, batch_size)):
        # sorted: a memmap reads faster in file order, and the batch order inside a step does not matter
        yield np.sort(order[i * batch_size:(i + 1) * batch_size])


def set_train_mode(model: nn.Layer, freeze_backbone: bool) -> None:
    model.train()
    if freeze_backbone:
        model.backbone.eval()  # BatchNorm statistics of a frozen backbone stay the pretrained ones


def image_batches(loop: TrainLoop, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(images, labels) per step, in order. Each batch augments with its own generator (seed, epoch, batch), so
    ``num_workers`` > 0 threads can prepare the next batches while Paddle trains, with the same result."""
    cfg, split = loop.cfg, loop.data.train
    order = batches(len(split), cfg.batch_size, np.random.default_rng([cfg.seed, epoch]))

    def prepare(i: int, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = idx[loop.rank::loop.world]
        images = split.images[idx]
        if cfg.augment:
            images = augment(images, np.random.default_rng([cfg.seed, epoch, i]))
        return images, split.labels[idx]

    if cfg.num_workers == 0:
        yield from (prepare(i, idx) for i, idx in enumerate(order))
        return
    with ThreadPoolExecutor(cfg.num_workers, thread_name_prefix="autoft-batches") as pool:
        ahead: deque = deque()
        for i, idx in enumerate(order):
            ahead.append(pool.submit(prepare, i, idx))
            if len(ahead) > cfg.num_workers:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()


def image_loss(loop: TrainLoop, images: np.ndarray, labels: np.ndarray) -> paddle.Tensor:
    """Cross-entropy of the full model (``loop.net``) on uint8 images, under AMP when the loop has a scaler."""
    x = paddle.to_tensor(normalize(images, loop.mean, loop.std))
    y = paddle.to_tensor(labels)
    if loop.scaler is None:
        return F.cross_entropy(loop.net(x), y)
    with paddle.amp.auto_cast():
        return F.cross_entropy(loop.net(x), y)


def train_step(loop: TrainLoop, inputs: np.ndarray, labels: np.ndarray, epoch: int,
               data_loss: DataLoss = image_loss) -> float:
    """One optimisation step; returns the data loss. NaN/inf (data loss or penalty) raises TrialError at once."""
    value = data_loss(loop, inputs, labels)
    penalty = loop.strategy.penalty(loop.model)
    return optimise(loop, value, value if penalty is None else value + penalty, epoch)


def optimise(loop: TrainLoop, data_loss: paddle.Tensor, loss: paddle.Tensor, epoch: int) -> float:
    """Check the loss (NaN/inf raises TrialError), backward, optimiser step; returns the data loss's value."""
    if loss is data_loss:
        value = total = float(loss)
    else:
        value, total = (float(v) for v in paddle.stack([data_loss, loss]).numpy())
    if not math.isfinite(total):
        raise TrialError(f"loss became {total} at epoch {epoch}, step {loop.step + 1}")
    (loss if loop.scaler is None else loop.scaler.scale(loss)).backward()
    loop.strategy.step(loop.scaler)
    loop.step += 1
    return value


def log_progress(loop: TrainLoop, epoch: int, value: float) -> None:
    """Add a step's loss to the running log; every ``log_interval`` steps, one line with its mean and speed."""
    loop.log_sum += value
    loop.log_count += 1
    if loop.step % loop.cfg.log_interval:
        return
    now = time.perf_counter()
    speed = loop.log_count * loop.cfg.batch_size / max(now - loop.log_time, 1e-9)
    loop.log(f"epoch {epoch} step {loop.step} loss {loop.log_sum / loop.log_count:.4f} "
             f"lr {loop.strategy.lr:.3g} {speed:.1f} img/s")
    loop.log_sum, loop.log_count, loop.log_time = 0.0, 0, now


def train_one_epoch(loop: TrainLoop, epoch: int, *, inputs: Batches = image_batches,
                    data_loss: DataLoss = image_loss) -> dict[str, float]:
    """Shuffle, (augment,) train one epoch on ``inputs`` with ``data_loss``; calls ``loop.on_eval`` at step-based
    evaluations. → {"train_loss"}."""
    cfg = loop.cfg
    paddle.seed(cfg.seed * 100_003 + epoch)  # per epoch: a restored run continues as an unbroken one
    loop.strategy.on_epoch_start(epoch)
    set_train_mode(loop.model, cfg.freeze_backbone)
    total, count = 0.0, 0
    for batch, labels in inputs(loop, epoch):
        value = train_step(loop, batch, labels, epoch, data_loss)
        total, count = total + value, count + 1
        loop.loss_sum, loop.loss_count = loop.loss_sum + value, loop.loss_count + 1
        log_progress(loop, epoch, value)
        if isinstance(cfg.eval_interval, int) and loop.step % cfg.eval_interval == 0:
            loop.on_eval(loop, epoch, loop.step / loop.steps_per_epoch)
            set_train_mode(loop.model, cfg.freeze_backbone)
    return {"train_loss": total / max(count, 1)}


def evaluate(model: nn.Layer, split: Split, mean: tuple[float, float, float], std: tuple[float, float, float],
             batch_size: int) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` over ``split``'s images → {"val_loss", "val_acc"}."""
    return evaluate_arrays(model, split.images, split.labels, batch_size, lambda b: normalize(b, mean, std))


@paddle.no_grad()
def evaluate_arrays(layer: nn.Layer, inputs: np.ndarray, labels: np.ndarray, batch_size: int,
                    prepare: Callable[[np.ndarray], np.ndarray] = np.ascontiguousarray) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``layer`` (in eval mode) on ``prepare(inputs[batch])`` → {"val_loss",
    "val_acc"}; one host sync."""
    if len(labels) == 0:
        raise DataError("the validation split is empty; set data.val_split > 0 or give a validation list")
    layer.eval()
    loss_sum = paddle.zeros([], dtype="float32")
    correct = paddle.zeros([], dtype="int64")
    for start in range(0, len(labels), batch_size):
        logits = layer(paddle.to_tensor(prepare(inputs[start:start + batch_size])))
        y = paddle.to_tensor(labels[start:start + batch_size])
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(axis=1) == y).astype("int64").sum()
    loss, right = paddle.stack([loss_sum, correct.astype("float32")]).numpy()
    return {"val_loss": float(loss) / len(labels), "val_acc": float(right) / len(labels)}
