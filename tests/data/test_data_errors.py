from __future__ import annotations

import logging
from pathlib import Path

import pytest

from autoft.data import load_data
from autoft.errors import ConfigError, DataError


def _load(path: Path, cache_dir: Path, **kwargs):
    return load_data(dataset=None, path=str(path), image_size=8, cache_dir=cache_dir, **kwargs)


def test_missing_path(tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere: data path does not exist"):
        _load(tmp_path / "nowhere", cache_dir)


def test_empty_folder(tmp_path: Path, cache_dir: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: data folder is empty"):
        _load(tmp_path / "empty", cache_dir)


def test_folder_of_loose_images_has_no_classes(tmp_path: Path, cache_dir: Path, make_image) -> None:
    make_image(tmp_path / "loose" / "a.png")
    with pytest.raises(DataError, match=r"loose: no class sub-folders"):
        _load(tmp_path / "loose", cache_dir)


def test_wrong_file_type(tmp_path: Path, cache_dir: Path) -> None:
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(DataError, match=r"data\.txt: data path must be a folder .* or a \.csv file"):
        _load(tmp_path / "data.txt", cache_dir)


def test_class_folder_without_images(image_folder: Path, cache_dir: Path) -> None:
    (image_folder / "emu").mkdir()
    (image_folder / "emu" / "notes.txt").write_text("no pictures yet")
    with pytest.raises(DataError, match=r"folder/emu: class folder has no images"):
        _load(image_folder, cache_dir)


def test_single_class(tmp_path: Path, cache_dir: Path, make_class_folder) -> None:
    make_class_folder(tmp_path / "one", {"cat": 3})
    with pytest.raises(DataError, match=r"one: found 1 class folder\(s\) \['cat'\]; need at least 2 classes"):
        _load(tmp_path / "one", cache_dir)


def test_split_folders_with_a_class_missing_from_train(tmp_path: Path, cache_dir: Path, make_class_folder) -> None:
    make_class_folder(tmp_path / "ds" / "train", {"a": 2, "b": 2})
    make_class_folder(tmp_path / "ds" / "val", {"a": 1, "zebra": 1})
    with pytest.raises(DataError, match=r"ds/val/zebra: class is not in .*ds/train \(train classes: a, b\)"):
        _load(tmp_path / "ds", cache_dir)


def test_list_file_names_a_missing_image(tmp_path: Path, cache_dir: Path, make_image) -> None:
    make_image(tmp_path / "a.jpg")
    (tmp_path / "train_list.txt").write_text("a.jpg 0\n\nmissing/b.jpg 1\n")
    with pytest.raises(DataError, match=r"train_list\.txt:3: image .*missing/b\.jpg does not exist"):
        _load(tmp_path, cache_dir)


def test_list_label_outside_label_list(tmp_path: Path, cache_dir: Path, make_image) -> None:
    for name in "abc":
        make_image(tmp_path / f"{name}.png")
    (tmp_path / "label_list.txt").write_text("\n".join(["w", "x", "y", "z", "q"]) + "\n")
    (tmp_path / "train_list.txt").write_text("a.png 0\nb.png 1\n")
    (tmp_path / "validate_list.txt").write_text("c.png 7\n")
    with pytest.raises(DataError, match=r"validate_list\.txt:1: label 7 is outside label_list\.txt \(5 classes\)"):
        _load(tmp_path, cache_dir)


def test_list_line_without_label(tmp_path: Path, cache_dir: Path, make_image) -> None:
    make_image(tmp_path / "a.png")
    (tmp_path / "train_list.txt").write_text("a.png\n")
    with pytest.raises(DataError, match=r"train_list\.txt:1: expected '<image path> <label>', got 'a\.png'"):
        _load(tmp_path, cache_dir)


def test_csv_without_required_columns(tmp_path: Path, cache_dir: Path) -> None:
    (tmp_path / "d.csv").write_text("file,class\nx.png,a\n")
    with pytest.raises(DataError, match=r"d\.csv: header must have columns path,label\[,split\]; missing"):
        _load(tmp_path / "d.csv", cache_dir)


def test_csv_bad_split_value(tmp_path: Path, cache_dir: Path, make_image) -> None:
    make_image(tmp_path / "x.png")
    (tmp_path / "d.csv").write_text("path,label,split\nx.png,a,holdout\n")
    with pytest.raises(DataError, match=r"d\.csv:2: split must be one of train, val, test; got 'holdout'"):
        _load(tmp_path / "d.csv", cache_dir)


def test_csv_missing_image(tmp_path: Path, cache_dir: Path) -> None:
    (tmp_path / "d.csv").write_text("path,label\nghost.png,a\n")
    with pytest.raises(DataError, match=r"d\.csv:2: image .*ghost\.png does not exist"):
        _load(tmp_path / "d.csv", cache_dir)


def test_unknown_dataset_suggests_the_nearest_name(cache_dir: Path) -> None:
    with pytest.raises(DataError, match=r"unknown name 'fashion-mnist-dem'; did you mean 'fashion-mnist-demo'\? "
                                        r"\(valid: dogcat, fashion-mnist, fashion-mnist-demo, flowers, food101, "
                                        r"indoor67, stanforddogs\)"):
        load_data(dataset="fashion-mnist-dem", path=None, image_size=8, cache_dir=cache_dir)


@pytest.mark.parametrize("kwargs,message", [
    ({"dataset": None, "path": None}, "give exactly one of dataset or path"),
    ({"dataset": "fashion-mnist-demo", "path": "x"}, "give exactly one of dataset or path"),
    ({"image_size": 0}, r"data\.image_size: must be an integer >= 1, got 0"),
    ({"val_split": 1.0}, r"data\.val_split: must be in \(0, 1\), got 1\.0"),
    ({"max_train_per_class": 0}, r"data\.max_train_per_class: must be >= 1, got 0"),
])
def test_bad_arguments(cache_dir: Path, kwargs: dict, message: str) -> None:
    args = {"dataset": "fashion-mnist-demo", "path": None, "image_size": 8, "cache_dir": cache_dir, **kwargs}
    with pytest.raises(ConfigError, match=message):
        load_data(**args)


def _corrupt(files: list[Path], count: int) -> list[Path]:
    for path in files[:count]:
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 3)
    return files[:count]


def test_a_few_corrupt_images_are_skipped_and_reported_once(
        tmp_path: Path, cache_dir: Path, make_class_folder, caplog: pytest.LogCaptureFixture) -> None:
    files = make_class_folder(tmp_path / "f", {"a": 20, "b": 20})
    broken = _corrupt(files[::20], 2)  # one in each class, 2 of 40 = 5%
    with caplog.at_level(logging.WARNING, logger="autoft.data"):
        data = _load(tmp_path / "f", cache_dir)
        _load(tmp_path / "f", cache_dir)  # cache hit: no second report
    assert len(data.train) + len(data.val) == 38
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "skipped 2 unreadable image(s) of 40" in warnings[0] and broken[0].name in warnings[0]
    assert len(data.train.images) == len(data.train.labels)


def test_more_than_five_percent_corrupt_is_an_error(tmp_path: Path, cache_dir: Path, make_class_folder) -> None:
    files = make_class_folder(tmp_path / "f", {"a": 10, "b": 10})
    _corrupt(files[5:], 2)
    with pytest.raises(DataError, match=r"2 of 20 images are unreadable \(more than 5%\): .*not a readable image"):
        _load(tmp_path / "f", cache_dir)
    assert [p for p in cache_dir.iterdir() if not p.name.startswith(".trash")] == []


def test_class_with_only_corrupt_training_images(tmp_path: Path, cache_dir: Path, make_class_folder) -> None:
    files = make_class_folder(tmp_path / "f", {"a": 40, "b": 1})
    _corrupt(files[40:], 1)
    with pytest.raises(DataError, match=r"class\(es\) \['b'\] have no readable training images"):
        _load(tmp_path / "f", cache_dir)


def test_every_class_with_a_single_image_leaves_val_empty(
        tmp_path: Path, cache_dir: Path, make_class_folder) -> None:
    make_class_folder(tmp_path / "f", {"a": 1, "b": 1})
    with pytest.raises(DataError, match=r"the validation split is empty"):
        _load(tmp_path / "f", cache_dir)
