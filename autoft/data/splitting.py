"""Seeded, stratified train/val splitting and per-class capping of the train split (on labels only)."""
from __future__ import annotations

import numpy as np

__all__ = ["stratified_split", "cap_per_class"]


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return sorted (train, val) indices; val takes round(n * fraction) of each class, at least 1 where n >= 2."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_val = min(max(round(len(members) * fraction), 1), len(members) - 1)
        val.append(members[:n_val])
        train.append(members[n_val:])
    return _sorted(train), _sorted(val)


def cap_per_class(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Sorted indices keeping at most `limit` items of each class, chosen at random (seeded)."""
    rng = np.random.default_rng([seed, 1])  # an independent stream from the val split's
    kept = [rng.permutation(np.flatnonzero(labels == cls))[:limit] for cls in np.unique(labels)]
    return _sorted(kept)


def _sorted(parts: list[np.ndarray]) -> np.ndarray:
    if not parts:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(parts)).astype(np.int64)
