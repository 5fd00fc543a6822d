"""The frozen-backbone feature cache: head-only trials train on backbone features computed once and shared.

With ``train.freeze_backbone: true`` the backbone runs in eval mode and never changes, so its output for an
image is fixed. The first such trial computes the pooled features of the (non-augmented) train and val images
and publishes them as float32 .npy files; every later trial with the same backbone, weights, image size and
data memory-maps them and trains only the head, in seconds. Feature-cached head training therefore ignores
``train.augment`` (an augmented image would need a new backbone pass); ``AUTOFT_FEATURE_CACHE=0`` turns the
cache off and trains on augmented images through the frozen backbone instead.

Layout: ``<AUTOFT_HOME>/cache/features/<key>/{train,val}_features.npy + meta.json``. An entry is written in a
temporary folder and swapped into place (``autoft._fs.swap_dir``: readers never see half of one); a lock file
makes trials that start together wait for the first one's computation instead of repeating it.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from autoft._fs import autoft_home, make_tmp_dir, recover_dir, swap_dir
from autoft.data import ImageData
from autoft.errors import TrialError
from autoft.training.evaluation import EngineForward, Forward, make_forward
from autoft.training.loop import TrainLoop, batches, evaluate_arrays, train_one_epoch

__all__ = ["FEATURES_VERSION", "CachedFeatures", "FeatureBatches", "enabled", "features_dir", "weights_digest",
           "feature_key", "load_or_compute", "publish_train_plus_val", "head_only_training", "head_loss"]

FEATURES_VERSION = 1
_META = "meta.json"
_SPLITS = ("train", "val")

EpochFn = Callable[[TrainLoop, int], dict[str, float]]
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
                    log: Callable[[str], None] | None = None, engine: str = "auto") -> CachedFeatures:
    """The features of ``model.backbone`` for ``data``'s train and val images, computed on a cache miss (through
    Paddle's inference engine unless ``engine`` is ``dygraph``, see training.evaluation)."""
    log = log or (lambda _m: None)
    key = feature_key(model.spec.name, weights_digest(model.backbone), data.image_size, data.fingerprint)
    root = Path(cache_dir) if cache_dir is not None else features_dir()
    entry = root / key
    found = _try_load(recover_dir(entry), key, data)
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
        _compute(model, data, entry, key, batch_size, engine, log)
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


def _compute(model: nn.Layer, data: ImageData, entry: Path, key: str, batch_size: int, engine: str,
             log: Callable[[str], None]) -> None:
    forward: Forward | None = None
    try:
        forward = make_forward(model.backbone, tuple(model.spec.mean), tuple(model.spec.std), data.image_size,
                               engine, log)
        _publish(entry, key, model, data, lambda name, out: forward(getattr(data, name).images, batch_size, out=out))
    finally:
        if isinstance(forward, EngineForward):
            forward.close()


def _publish(entry: Path, key: str, model: nn.Layer, data: ImageData,
             fill: Callable[[str, np.ndarray], object]) -> None:
    """Write an entry for ``data`` (``fill(split, out)`` writes a split's rows) and swap it into place."""
    tmp = make_tmp_dir(entry)
    try:
        for name in _SPLITS:
            out = np.lib.format.open_memmap(tmp / f"{name}_features.npy", mode="w+", dtype=np.float32,
                                            shape=(len(getattr(data, name)), model.spec.feature_dim))
            fill(name, out)
            out.flush()
            del out
        meta = {"key": key, "version": FEATURES_VERSION, "backbone": model.spec.name,
                "image_size": data.image_size, "data_fingerprint": data.fingerprint,
                "counts": {"train": len(data.train), "val": len(data.val)}, "dim": model.spec.feature_dim}
        (tmp / _META).write_text(json.dumps(meta, indent=1))
        swap_dir(tmp, entry)  # an entry already there is damaged or stale: the caller found it unreadable
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish_train_plus_val(model: nn.Layer, data: ImageData, merged: ImageData, *, cache_dir: Path | None = None,
                           log: Callable[[str], None] | None = None, engine: str = "auto") -> None:
    """Give ``merged`` (``data``'s train and val images as one training split, its val split as val: a final fit's
    data) a cache entry made from ``data``'s, so the refit trains on the features the search computed instead of
    running the backbone over every image again."""
    log = log or (lambda _m: None)
    if len(merged.train) != len(data.train) + len(data.val) or merged.fingerprint == data.fingerprint:
        raise ValueError("merged must be data's train+val with a fingerprint of its own")
    source = load_or_compute(model, data, cache_dir=cache_dir, log=log, engine=engine)
    key = feature_key(model.spec.name, weights_digest(model.backbone), merged.image_size, merged.fingerprint)
    root = Path(cache_dir) if cache_dir is not None else features_dir()
    entry = root / key
    with _locked(root / f".{key}.lock"):
        if _try_load(recover_dir(entry), key, merged) is not None:
            return
        parts = {"train": (source.train, source.val), "val": (source.val,)}

        def fill(name: str, out: np.ndarray) -> None:
            at = 0
            for part in parts[name]:
                out[at:at + len(part)] = part
                at += len(part)

        _publish(entry, key, model, merged, fill)
    log(f"feature cache: train+val features for the final fit from {root / source.key}")


@dataclass(frozen=True, eq=False)
class FeatureBatches:
    """The loop's ``Batches`` over cached features: the same shuffled steps as the images would take."""

    feats: np.ndarray
    labels: np.ndarray

    def __call__(self, loop: TrainLoop, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng([loop.cfg.seed, epoch])
        for idx in batches(len(self.labels), loop.cfg.batch_size, rng):
            idx = idx[loop.rank::loop.world]
            yield self.feats[idx], self.labels[idx]


def head_loss(loop: TrainLoop, feats: np.ndarray, labels: np.ndarray) -> paddle.Tensor:
    """The loop's ``DataLoss`` on features: cross-entropy of the head alone."""
    logits = loop.model.head(paddle.to_tensor(np.ascontiguousarray(feats)))
    return F.cross_entropy(logits, paddle.to_tensor(labels))


def head_only_training(loop: TrainLoop, log: Callable[[str], None]) -> tuple[EpochFn, Scorer]:
    """(train one epoch, evaluate) for ``fit`` that run only the head, on cached features.

    The batch order, the lr schedule, the penalty and the NaN checks are the loop's; only the backbone pass is
    replaced by a lookup, so with ``augment: false`` the result matches training through the frozen backbone.
    """
    feats = load_or_compute(loop.model, loop.data, batch_size=max(64, loop.cfg.batch_size * 2), log=log,
                            engine=loop.cfg.eval_engine)
    epoch_fn = functools.partial(train_one_epoch, inputs=FeatureBatches(feats.train, loop.data.train.labels),
                                 data_loss=head_loss)
    scorer = functools.partial(evaluate_arrays, loop.model.head, feats.val, loop.data.val.labels,
                               loop.cfg.batch_size * 2)
    return epoch_fn, scorer
