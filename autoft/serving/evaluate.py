"""`evaluate_bundle`: accuracy and cross-entropy of a saved bundle on one split (the held-out test split).

The test split is never used to select anything during a search; this is the one place that reads it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from autoft.data import ImageData, Split, load_data
from autoft.data.source import SplitName
from autoft.errors import ConfigError, DataError
from autoft.serving.predict import Predictor

__all__ = ["evaluate_bundle"]


def evaluate_bundle(
    bundle_dir: str | Path,
    split: str = "test",
    *,
    data: ImageData | None = None,
    dataset: str | None = None,
    path: str | None = None,
    val_split: float = 0.2,
    seed: int = 0,
    flatten_nested: bool = False,
    batch_size: int = 64,
    device: str = "auto",
) -> dict[str, float | int]:
    """{"<split>_acc", "<split>_loss", "n"} of the bundle on `split` of `data` (or of the dataset/path given).

    Data loaded here is resized to the bundle's image size; pass the search's val_split and seed so "val"
    is the same split the search used.
    """
    which = _split_name(split)
    predictor = Predictor(bundle_dir, batch_size=batch_size, device=device)
    meta = predictor.meta
    if data is None:
        data = load_data(dataset=dataset, path=path, image_size=meta.image_size, val_split=val_split, seed=seed,
                         flatten_nested=flatten_nested)
    if tuple(data.class_names) != tuple(meta.class_names):
        raise DataError(f"{data.source}: classes {list(data.class_names)[:5]} do not match the bundle's "
                        f"{list(meta.class_names)[:5]}")
    if data.image_size != meta.image_size:
        raise DataError(f"{data.source}: images are {data.image_size}px, the bundle expects {meta.image_size}px")
    chosen = {SplitName.TRAIN: data.train, SplitName.VAL: data.val, SplitName.TEST: data.test}[which]
    if chosen is None or len(chosen) == 0:
        raise DataError(f"{data.source}: has no {which.value} split (a test split comes from test_list.txt, "
                        "a test/ folder or CSV rows with split=test)")
    loss, acc = _score(predictor, chosen, batch_size)
    return {f"{which.value}_acc": acc, f"{which.value}_loss": loss, "n": len(chosen)}


def _split_name(split: str) -> SplitName:
    try:
        return SplitName(split)
    except ValueError:
        raise ConfigError(f"split: must be one of train, val, test; got {split!r}") from None


def _score(predictor: Predictor, split: Split, batch_size: int) -> tuple[float, float]:
    loss_sum, correct = 0.0, 0
    for start in range(0, len(split), batch_size):
        logits = predictor.logits(np.asarray(split.images[start:start + batch_size])).astype(np.float64)
        labels = split.labels[start:start + batch_size]
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss_sum -= float(log_probs[np.arange(len(labels)), labels].sum())
        correct += int((logits.argmax(axis=1) == labels).sum())
    return loss_sum / len(split), correct / len(split)
