from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autoft.data import load_data
from autoft.data.splitting import cap_per_class, stratified_split


def test_stratified_split_counts_per_class() -> None:
    labels = np.array([0] * 10 + [1] * 5 + [2] * 2 + [3] * 1)
    train, val = stratified_split(labels, 0.2, seed=0)
    assert np.bincount(labels[val], minlength=4).tolist() == [2, 1, 1, 0]
    assert np.bincount(labels[train], minlength=4).tolist() == [8, 4, 1, 1]
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(labels)))


def test_stratified_split_is_seeded() -> None:
    labels = np.repeat(np.arange(3), 20)
    first, second = stratified_split(labels, 0.3, seed=1), stratified_split(labels, 0.3, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not np.array_equal(first[1], stratified_split(labels, 0.3, seed=2)[1])


def test_cap_per_class() -> None:
    labels = np.array([0] * 7 + [1] * 2)
    kept = cap_per_class(labels, 3, seed=0)
    assert np.bincount(labels[kept]).tolist() == [3, 2]
    assert np.array_equal(kept, cap_per_class(labels, 3, seed=0))


def test_load_data_split_is_deterministic_and_seed_dependent(
        tmp_path: Path, make_class_folder) -> None:
    root = tmp_path / "f"
    make_class_folder(root, {"a": 10, "b": 10})

    def val_images(seed: int, cache: str) -> np.ndarray:
        data = load_data(dataset=None, path=str(root), image_size=8, val_split=0.3, seed=seed,
                         cache_dir=tmp_path / cache)
        assert np.bincount(data.val.labels).tolist() == [3, 3]
        return np.asarray(data.val.images)

    assert np.array_equal(val_images(0, "c1"), val_images(0, "c2"))
    assert not np.array_equal(val_images(0, "c1"), val_images(1, "c1"))


@pytest.mark.parametrize("cap,expected", [(2, [2, 2, 2]), (5, [5, 5, 3])])
def test_max_train_per_class(image_folder: Path, cache_dir: Path, cap: int, expected: list[int]) -> None:
    # image_folder has 10/6/4 images; val_split 0.2 takes 2/1/1 and leaves 8/5/3 for train before the cap.
    data = load_data(dataset=None, path=str(image_folder), image_size=8, max_train_per_class=cap,
                     cache_dir=cache_dir)
    assert np.bincount(data.train.labels).tolist() == expected
    assert np.bincount(data.val.labels).tolist() == [2, 1, 1]
