"""The frozen-backbone feature cache: head-only trials train on backbone features computed once and shared.

With ``train.freeze_backbone: true`` the backbone runs in eval mode and never changes, so its output for an
image is fixed. The first such trial computes the pooled features of the (non-augmented) train and val images
and publishes them as float32 .npy files; every later trial with the same backbone, weights, image size and
data memory-maps them and trains only the head, in seconds. Feature-cached head training therefore ignores
``train.augment`` (an augmented image would need a new backbone pass); ``AUTOFT_FEATURE_CACHE=0`` turns the
cache off and trains on augmented images through the frozen backbone instead.

Layout: ``<AUTOFT_HOME>/cache/features/<key>/{train,val}_features.npy + meta.json``. An entry is written in a
temporary folder and renamed into place (readers never see half of one); a lock file makes trials that start
together wait for the first one's computation instead of repeating it.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from autoft.data import ImageData, normalize
from autoft._fs import autoft_home
from autoft.errors import TrialError

if TYPE_CHECKING:
    from autoft.training.fit import TrainLoop

__all__ = ["FEATURES_VERSION", "CachedFeatures", "enabled", "features_dir", "weights_digest", "feature_key",
           "load_or_compute", "head_only_training"]

FEATURES_VERSION = 1
_META = "meta.json"
_SPLITS = ("train", "val")

EpochFn = Callable[["TrainLoop", int], dict[str, float]]
Scorer = Callable[[], dict[str, float]]


@dataclass(frozen=True, eq=False)
class CachedFeatures:
    """Backbone outputs, float32 [N, D] (read-only memmaps), row i = image i of the split."""

    key: str
    train: np.ndarray
    val: np.ndarray
    computed: bool  # True when this call computed them, False on a cache hit


def enabled() -> bool:
    """The cache is on unless ``AUTOFT_FEATURE_CACHE=0`` (benchmarks, or to train head-only with augmentation)."""
    return os.environ.get("AUTOFT_FEATURE_CACHE", "1") != "0"


def features_dir() -> Path:
    return autoft_home() / "cache" / "features"


def weights_digest(layer: nn.Layer) -> str:
    """sha256 of a layer's state (parameters and BatchNorm statistics): names the exact weights, whatever file
    or bundle they came from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(layer.state_dict().items()):
        value = np.ascontiguousarray(tensor.numpy())
        digest.update(f"{name}:{value.dtype}:{value.shape};".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def feature_key(backbone: str, digest: str, image_size: int, data_fingerprint: str) -> str:
    """24 hex chars naming one backbone + weights + image size + data set."""
    payload = {"backbone": backbone, "weights": digest, "image_size": image_size, "data": data_fingerprint,
               "version": FEATURES_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def load_or_compute(model: nn.Layer, data: ImageData, *, batch_size: int = 64, cache_dir: Path | None = None,
                    log: Callable[[str], None] | None = None) -> CachedFeatures:
    """The features of ``model.backbone`` for ``data``'s train and val images, computed on a cache miss."""
    log = log or (lambda _m: None)
    key = feature_key(model.spec.name, weights_digest(model.backbone), data.image_size, data.fingerprint)
    root = Path(cache_dir) if cache_dir is not None else features_dir()
    entry = root / key
    found = _try_load(entry, key, data)
    if found is not None:
        log(f"feature cache: reusing {entry}")
        return CachedFeatures(key, *found, computed=False)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f".{key}.lock"):
        found = _try_load(entry, key, data)  # another trial computed them while this one waited
        if found is not None:
            log(f"feature cache: reusing {entry} (computed by another trial meanwhile)")
            return CachedFeatures(key, *found, computed=False)
        started = time.perf_counter()
        _compute(model, data, entry, key, batch_size)
    found = _try_load(entry, key, data)
    if found is None:
        raise TrialError(f"{entry}: feature cache entry is unreadable right after writing it")
    log(f"feature cache: computed {len(data.train) + len(data.val)} images' features into {entry} "
        f"in {time.perf_counter() - started:.1f}s")
    return CachedFeatures(key, *found, computed=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _try_load(entry: Path, key: str, data: ImageData) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        meta = json.loads((entry / _META).read_text())
        if meta.get("key") != key or meta.get("version") != FEATURES_VERSION:
            return None
        arrays = tuple(np.load(entry / f"{name}_features.npy", mmap_mode="r") for name in _SPLITS)
    except (OSError, ValueError):
        return None
    if [len(a) for a in arrays] != [len(data.train), len(data.val)]:
        return None
    return arrays


@paddle.no_grad()
def _compute(model: nn.Layer, data: ImageData, entry: Path, key: str, batch_size: int) -> None:
    tmp = entry.with_name(f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        model.backbone.eval()
        mean, std = tuple(model.spec.mean), tuple(model.spec.std)
        for name in _SPLITS:
            images = getattr(data, name).images
            out = np.lib.format.open_memmap(tmp / f"{name}_features.npy", mode="w+", dtype=np.float32,
                                            shape=(len(images), model.spec.feature_dim))
            for start in range(0, len(images), batch_size):
                x = paddle.to_tensor(normalize(images[start:start + batch_size], mean, std))
                out[start:start + batch_size] = model.backbone(x).numpy()
            out.flush()
            del out
        meta = {"key": key, "version": FEATURES_VERSION, "backbone": model.spec.name,
                "image_size": data.image_size, "data_fingerprint": data.fingerprint,
                "counts": {"train": len(data.train), "val": len(data.val)}, "dim": model.spec.feature_dim}
        (tmp / _META).write_text(json.dumps(meta, indent=1))
        _publish(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _publish(tmp: Path, entry: Path) -> None:
    if entry.exists():  # damaged or stale (the caller found it unreadable): move it aside first
        trash = entry.with_name(f".trash-{entry.name}-{uuid.uuid4().hex[:8]}")
        with contextlib.suppress(OSError):
            entry.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
    tmp.rename(entry)


def head_only_training(loop: TrainLoop, log: Callable[[str], None]) -> tuple[EpochFn, Scorer]:
    """(train one epoch, evaluate) for ``trainer.fit`` that run only the head, on cached features.

    The batch order, the lr schedule, the penalty and the NaN checks are the trainer's; only the backbone pass is
    replaced by a lookup, so with ``augment: false`` the result matches training through the frozen backbone.
    """
    feats = load_or_compute(loop.model, loop.data, batch_size=max(64, loop.cfg.batch_size * 2), log=log)
    train_labels, val = loop.data.train.labels, loop.data.val

    def epoch_fn(lp: TrainLoop, epoch: int) -> dict[str, float]:
        return _train_head_epoch(lp, epoch, feats.train, train_labels)

    def scorer() -> dict[str, float]:
        return _evaluate_head(loop.model.head, feats.val, val.labels, loop.cfg.batch_size * 2)

    return epoch_fn, scorer


def _train_head_epoch(loop: TrainLoop, epoch: int, feats: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``trainer.train_one_epoch`` with features for images: same shuffling, logging and step evaluations."""
    from autoft.training.fit import _batches, _maybe_log, _set_train_mode

    cfg = loop.cfg
    rng = np.random.default_rng([cfg.seed, epoch])
    paddle.seed(cfg.seed * 100_003 + epoch)
    loop.strategy.on_epoch_start(epoch)
    _set_train_mode(loop.model, True)
    total, count = 0.0, 0
    for idx in _batches(len(labels), cfg.batch_size, rng):
        idx = idx[loop.rank::loop.world]
        value = _head_step(loop, feats[idx], labels[idx], epoch)
        total, count = total + value, count + 1
        loop.loss_sum, loop.loss_count = loop.loss_sum + value, loop.loss_count + 1
        _maybe_log(loop, epoch, value)
        if isinstance(cfg.eval_interval, int) and loop.step % cfg.eval_interval == 0:
            loop.on_eval(loop, epoch, loop.step / loop.steps_per_epoch)
            _set_train_mode(loop.model, True)
    return {"train_loss": total / max(count, 1)}


def _head_step(loop: TrainLoop, feats: np.ndarray, labels: np.ndarray, epoch: int) -> float:
    """``trainer.train_step`` on features: head forward and penalty, then the trainer's checks and step."""
    from autoft.training.fit import optimise

    data_loss = F.cross_entropy(loop.model.head(paddle.to_tensor(np.ascontiguousarray(feats))),
                                paddle.to_tensor(labels))
    penalty = loop.strategy.penalty(loop.model)
    return optimise(loop, data_loss, data_loss if penalty is None else data_loss + penalty, epoch)


@paddle.no_grad()
def _evaluate_head(head: nn.Layer, feats: np.ndarray, labels: np.ndarray, batch_size: int) -> dict[str, Any]:
    """``trainer.evaluate`` on features → {"val_loss", "val_acc"}."""
    head.eval()
    loss_sum = paddle.zeros([], dtype="float32")
    correct = paddle.zeros([], dtype="int64")
    for start in range(0, len(labels), batch_size):
        logits = head(paddle.to_tensor(np.ascontiguousarray(feats[start:start + batch_size])))
        y = paddle.to_tensor(labels[start:start + batch_size])
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(axis=1) == y).astype("int64").sum()
    loss, right = paddle.stack([loss_sum, correct.astype("float32")]).numpy()
    return {"val_loss": float(loss) / len(labels), "val_acc": float(right) / len(labels)}
