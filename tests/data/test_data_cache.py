from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from autoft.data import cache, load_data, transforms
from autoft.data.cache import default_cache_dir


def _forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise AssertionError("decoded an image on a cache hit")

    monkeypatch.setattr(transforms, "read_image", boom)
    monkeypatch.setattr(transforms, "preprocess_image", boom)


def _load(path: Path, cache_dir: Path, **kwargs):
    return load_data(dataset=None, path=str(path), image_size=kwargs.pop("image_size", 10), cache_dir=cache_dir,
                     **kwargs)


def test_second_load_decodes_nothing_and_returns_the_same(
        image_folder: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _load(image_folder, cache_dir)
    _forbid_decoding(monkeypatch)
    second = _load(image_folder, cache_dir)
    assert second.fingerprint == first.fingerprint
    assert np.array_equal(second.train.images, first.train.images)
    assert np.array_equal(second.val.labels, first.val.labels)


def test_cached_images_are_read_only_memmaps(image_folder: Path, cache_dir: Path) -> None:
    data = _load(image_folder, cache_dir)
    images = data.train.images
    assert isinstance(images, np.memmap)
    assert images.dtype == np.uint8 and images.shape == (len(data.train), 10, 10, 3)
    assert not images.flags.writeable
    entry = cache_dir / data.fingerprint
    assert sorted(p.name for p in entry.iterdir()) == [
        "meta.json", "train_images.npy", "train_labels.npy", "val_images.npy", "val_labels.npy"]
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["class_names"] == ["cat", "dog", "fox"]
    assert meta["counts"] == {"train": len(data.train), "val": len(data.val)}
    assert not [p for p in cache_dir.iterdir() if p.name.startswith(".")]  # no temp dirs left behind


def test_fingerprint_follows_inputs(image_folder: Path, cache_dir: Path) -> None:
    base = _load(image_folder, cache_dir).fingerprint
    assert _load(image_folder, cache_dir, image_size=12).fingerprint != base
    assert _load(image_folder, cache_dir, val_split=0.5).fingerprint != base
    assert _load(image_folder, cache_dir, seed=3).fingerprint != base
    assert _load(image_folder, cache_dir, max_train_per_class=2).fingerprint != base
    target = sorted((image_folder / "dog").iterdir())[0]
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    assert _load(image_folder, cache_dir).fingerprint != base


def test_fingerprint_does_not_depend_on_where_the_folder_is(image_folder: Path, tmp_path: Path) -> None:
    base = _load(image_folder, tmp_path / "c1").fingerprint
    moved = image_folder.rename(tmp_path / "moved")
    assert _load(moved, tmp_path / "c2").fingerprint == base


def test_default_cache_dir_is_under_autoft_home(
        image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = load_data(dataset=None, path=str(image_folder), image_size=8)
    assert default_cache_dir() == tmp_path / "autoft_home" / "cache" / "data"
    assert (default_cache_dir() / data.fingerprint / "meta.json").is_file()
    monkeypatch.delenv("AUTOFT_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "autoft" / "cache" / "data"


def test_losing_the_publish_race_uses_the_winners_entry(
        image_folder: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    winner = _load(image_folder, cache_dir / "winner")
    winner_meta = (cache_dir / "winner" / winner.fingerprint / "meta.json").stat().st_ino
    real_build = cache._build

    def build_then_other_process_publishes(tmp: Path, *args, **kwargs) -> None:
        real_build(tmp, *args, **kwargs)
        os.rename(cache_dir / "winner" / winner.fingerprint, cache_dir / winner.fingerprint)

    monkeypatch.setattr(cache, "_build", build_then_other_process_publishes)
    monkeypatch.setattr(cache, "_try_load", _miss_once(cache._try_load))
    data = _load(image_folder, cache_dir)
    assert data.fingerprint == winner.fingerprint
    assert np.array_equal(data.train.images, winner.train.images)
    assert (cache_dir / data.fingerprint / "meta.json").stat().st_ino == winner_meta
    assert [p.name for p in cache_dir.iterdir() if p.name.startswith(".")] == []


def _miss_once(real):
    calls = []

    def try_load(entry: Path, key: str):
        calls.append(entry)
        return None if len(calls) == 1 else real(entry, key)

    return try_load


def test_damaged_entry_is_rebuilt(image_folder: Path, cache_dir: Path) -> None:
    data = _load(image_folder, cache_dir)
    (cache_dir / data.fingerprint / "val_images.npy").unlink()
    again = _load(image_folder, cache_dir)
    assert np.array_equal(again.val.images, data.val.images)


def test_build_failure_leaves_no_entry(
        image_folder: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transforms, "read_image", lambda *a: (_ for _ in ()).throw(RuntimeError("disk gone")))
    with pytest.raises(RuntimeError, match="disk gone"):
        _load(image_folder, cache_dir)
    assert list(cache_dir.iterdir()) == []


_CHILD = """
import sys
from autoft.data import load_data
print(load_data(dataset=None, path=sys.argv[1], image_size=10, cache_dir=sys.argv[2]).fingerprint)
"""


def test_concurrent_processes_share_one_entry(image_folder: Path, cache_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(cache.__file__).parents[2])] + sys.path)}
    children = [subprocess.Popen([sys.executable, "-c", _CHILD, str(image_folder), str(cache_dir)],
                                 stdout=subprocess.PIPE, text=True, env=env) for _ in range(3)]
    prints = {child.communicate(timeout=60)[0].strip() for child in children}
    assert all(child.returncode == 0 for child in children)
    assert len(prints) == 1
    assert [p.name for p in cache_dir.iterdir()] == list(prints)


def test_several_image_sizes_are_cached_from_one_decode_per_image(
        image_folder: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A search that draws data.image_size from its space: the driver makes every size's entry in one pass, each
    file decoded once; each entry then equals a load at that size alone."""
    opened: list[str] = []
    read_images = transforms.read_images

    def counting(path, sizes):
        opened.append(str(path))
        return read_images(path, sizes)

    monkeypatch.setattr(transforms, "read_images", counting)
    data = _load(image_folder, cache_dir, image_size=12, also_sizes=(8, 20))
    files = sorted(str(p) for p in image_folder.rglob("*") if p.is_file())
    assert sorted(opened) == files  # one multi-size decode per file for its three sizes (a JPEG: once per draft scale)
    entries = sorted(p.name for p in cache_dir.iterdir())
    assert len(entries) == 3 and data.fingerprint in entries
    _forbid_decoding(monkeypatch)
    monkeypatch.setattr(transforms, "read_images", lambda *a: pytest.fail("decoded on a cache hit"))
    loaded = {size: _load(image_folder, cache_dir, image_size=size) for size in (8, 12, 20)}  # all cache hits
    assert sorted(d.fingerprint for d in loaded.values()) == entries
    assert loaded[12].fingerprint == data.fingerprint
    monkeypatch.undo()
    for size, cached in loaded.items():
        assert cached.train.images.shape[1:] == (size, size, 3)
        fresh = _load(image_folder, tmp := cache_dir.parent / f"alone-{size}", image_size=size)
        assert fresh.fingerprint == cached.fingerprint and np.array_equal(fresh.val.labels, cached.val.labels)
        assert np.array_equal(fresh.train.images, cached.train.images), size  # the same pixels, JPEG drafts too
        assert len(list(tmp.iterdir())) == 1


def test_a_searched_image_size_lists_its_values_when_few() -> None:
    from autoft.config import config_from_dict, searched_image_sizes

    def sizes(space: dict) -> tuple[int, ...]:
        return searched_image_sizes(config_from_dict({"data": {"dataset": "fashion-mnist-demo"}, "space": space}))

    assert sizes({"data.image_size": {"type": "categorical", "choices": [96, 64]}}) == (64, 96)
    assert sizes({"data.image_size": {"type": "int", "low": 32, "high": 48, "step": 8}}) == (32, 40, 48)
    assert sizes({"data.image_size": {"type": "int", "low": 32, "high": 64}}) == ()  # 33 sizes: trials decode
    assert sizes({"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2}}) == ()
