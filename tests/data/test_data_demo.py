from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autoft.data import list_datasets, load_data
from autoft.data.demo import DEMO_NPZ
from autoft.data.fashion_mnist import CLASS_NAMES, find_fashion_mnist
from autoft.errors import DataError


def test_list_datasets() -> None:
    assert list_datasets() == ["dogcat", "fashion-mnist", "fashion-mnist-demo", "flowers", "food101", "indoor67",
                               "stanforddogs"]


def test_demo_loads_10_classes_3000_train_1000_val(cache_dir: Path) -> None:
    data = load_data(dataset="fashion-mnist-demo", path=None, image_size=32, cache_dir=cache_dir)
    assert data.class_names == CLASS_NAMES and len(CLASS_NAMES) == 10
    assert data.train.images.shape == (3000, 32, 32, 3) and len(data.val) == 1000 and data.test is None
    assert np.bincount(data.train.labels).tolist() == [300] * 10
    assert np.bincount(data.val.labels).tolist() == [100] * 10
    assert data.source == "fashion-mnist-demo (bundled)"
    first = np.asarray(data.train.images[0])
    assert (first[..., 0] == first[..., 1]).all()  # grayscale replicated to RGB


def test_demo_cap_and_cache_hit(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autoft.data import transforms

    data = load_data(dataset="fashion-mnist-demo", path=None, image_size=16, max_train_per_class=5,
                     cache_dir=cache_dir)
    assert np.bincount(data.train.labels).tolist() == [5] * 10
    monkeypatch.setattr(transforms, "preprocess_image", lambda *a: pytest.fail("decoded on a cache hit"))
    again = load_data(dataset="fashion-mnist-demo", path=None, image_size=16, max_train_per_class=5,
                      cache_dir=cache_dir)
    assert again.fingerprint == data.fingerprint


def test_demo_file_is_small_self_describing_and_attributed() -> None:
    assert DEMO_NPZ.stat().st_size < 3_000_000
    with np.load(DEMO_NPZ) as npz:
        assert tuple(npz["class_names"].tolist()) == CLASS_NAMES
        assert npz["x_train"].shape == (3000, 28, 28) and npz["x_train"].dtype == np.uint8
        assert npz["x_val"].shape == (1000, 28, 28)
    licence = (DEMO_NPZ.parent / "FASHION_MNIST_LICENSE.txt").read_text()
    assert "Zalando" in licence and "MIT" in licence and "github.com/zalandoresearch/fashion-mnist" in licence


def test_full_fashion_mnist_missing_files_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from autoft.data import fashion_mnist

    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", tmp_path / "none")
    with pytest.raises(DataError, match=r"fashion-mnist: the files .* are in none of .*apt install"):
        find_fashion_mnist()


def _has_fashion_mnist() -> bool:
    try:
        find_fashion_mnist()
    except DataError:
        return False
    return True


@pytest.mark.skipif(not _has_fashion_mnist(), reason="Fashion-MNIST idx files not installed")
def test_full_fashion_mnist(cache_dir: Path) -> None:
    data = load_data(dataset="fashion-mnist", path=None, image_size=8, val_split=0.1, max_train_per_class=3,
                     cache_dir=cache_dir)
    assert (len(data.train), len(data.val), len(data.test)) == (30, 6000, 10000)
    assert np.bincount(data.test.labels).tolist() == [1000] * 10
