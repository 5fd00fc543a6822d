from __future__ import annotations

from pathlib import Path

import numpy as np

from autoft.data import ImageData, load_data


def _load(path: Path, cache_dir: Path, **kwargs) -> ImageData:
    return load_data(dataset=None, path=str(path), image_size=12, cache_dir=cache_dir, **kwargs)


def test_image_folder(image_folder: Path, cache_dir: Path) -> None:
    data = _load(image_folder, cache_dir)
    assert data.class_names == ("cat", "dog", "fox")
    assert len(data.train) + len(data.val) == 20
    assert data.test is None
    assert data.train.images.shape[1:] == (12, 12, 3) and data.train.images.dtype == np.uint8
    assert data.train.labels.dtype == np.int64
    assert data.source == f"{image_folder} (ImageFolder)"
    assert len(data.fingerprint) >= 16


def test_image_folder_ignores_other_files_and_finds_nested_images(
        image_folder: Path, cache_dir: Path, make_image) -> None:
    (image_folder / "README.txt").write_text("about")
    (image_folder / "cat" / "labels.json").write_text("{}")
    (image_folder / "cat" / ".hidden.jpg").write_text("not an image (macOS resource fork)")
    make_image(image_folder / "cat" / "more" / "deep.png")
    data = _load(image_folder, cache_dir)
    assert len(data.train) + len(data.val) == 21


def test_image_folder_with_split_folders(tmp_path: Path, cache_dir: Path, make_class_folder) -> None:
    root = tmp_path / "ds"
    make_class_folder(root / "train", {"a": 4, "b": 3, "c": 2})
    make_class_folder(root / "validation", {"a": 2, "b": 1}, start_seed=50)
    make_class_folder(root / "test", {"c": 2}, start_seed=80)
    data = _load(root, cache_dir)
    assert data.class_names == ("a", "b", "c")
    assert (len(data.train), len(data.val), len(data.test)) == (9, 3, 2)
    assert data.val.labels.tolist() == [0, 0, 1]
    assert data.test.labels.tolist() == [2, 2]


def test_a_class_named_train_is_not_a_split_folder(tmp_path: Path, cache_dir: Path, make_class_folder) -> None:
    root = tmp_path / "vehicles"
    make_class_folder(root, {"train": 3, "bus": 3})
    assert _load(root, cache_dir).class_names == ("bus", "train")


def _write_lists(root: Path, make_image, with_label_list: bool) -> None:
    for i in range(9):
        make_image(root / "imgs" / f"{i}.jpg", "RGB", (14, 10), seed=i)
    if with_label_list:
        (root / "label_list.txt").write_text("roses\ntulips\n\ndaisy\n")
        labels = ["0", "1", "2"]
    else:
        labels = ["roses", "tulips", "daisy"]
    train = [f"imgs/{i}.jpg {labels[i % 3]}" for i in range(6)]
    (root / "train_list.txt").write_text("\n".join(train[:3] + [""] + train[3:]) + "\n\n")
    (root / "validate_list.txt").write_text("".join(f"imgs/{i}.jpg\t{labels[i % 3]}\n" for i in (6, 7)))
    (root / "test_list.txt").write_text(f"imgs/8.jpg {labels[2]}\n")


def test_paddlehub_lists_with_label_list(tmp_path: Path, cache_dir: Path, make_image) -> None:
    _write_lists(tmp_path, make_image, with_label_list=True)
    data = _load(tmp_path, cache_dir)
    assert data.class_names == ("roses", "tulips", "daisy")
    assert data.train.labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert data.val.labels.tolist() == [0, 1]
    assert data.test.labels.tolist() == [2]
    assert "PaddleHub lists" in data.source


def test_paddlehub_lists_with_class_names_and_no_label_list(tmp_path: Path, cache_dir: Path, make_image) -> None:
    _write_lists(tmp_path, make_image, with_label_list=False)
    data = _load(tmp_path, cache_dir)
    assert data.class_names == ("daisy", "roses", "tulips")
    assert data.train.labels.tolist() == [1, 2, 0, 1, 2, 0]


def test_paddlehub_train_list_only_gets_a_val_split(tmp_path: Path, cache_dir: Path, make_image) -> None:
    for i in range(8):
        make_image(tmp_path / f"{i}.png", seed=i)
    (tmp_path / "train_list.txt").write_text("".join(f"{i}.png {i % 2}\n" for i in range(8)))
    data = _load(tmp_path, cache_dir, val_split=0.25)
    assert data.class_names == ("0", "1")
    assert (len(data.train), len(data.val)) == (6, 2)


def test_csv_with_split_column(tmp_path: Path, cache_dir: Path, make_image) -> None:
    rows = ["path,label,split"]
    for i in range(7):
        make_image(tmp_path / "pics" / f"{i}.bmp", seed=i)
        split = "train" if i < 4 else ("val" if i < 6 else "test")
        rows.append(f"pics/{i}.bmp,{'yes' if i % 2 else 'no'},{split}")
    csv_file = tmp_path / "data.csv"
    csv_file.write_text("\n".join(rows) + "\n")
    data = _load(csv_file, cache_dir)
    assert data.class_names == ("no", "yes")
    assert data.train.labels.tolist() == [0, 1, 0, 1]
    assert data.val.labels.tolist() == [0, 1]
    assert data.test.labels.tolist() == [0]
    assert data.source == f"{csv_file} (CSV)"


def test_csv_without_split_column(tmp_path: Path, cache_dir: Path, make_image) -> None:
    absolute = make_image(tmp_path / "elsewhere" / "x.png", seed=99)
    rows = ["label,path"] + [f"{'ab'[i % 2]},{i}.webp" for i in range(9)] + [f"a,{absolute}"]
    for i in range(9):
        make_image(tmp_path / f"{i}.webp", seed=i)
    (tmp_path / "all.csv").write_text("\n".join(rows) + "\n")
    data = _load(tmp_path / "all.csv", cache_dir, val_split=0.2)
    assert data.class_names == ("a", "b")
    assert len(data.train) + len(data.val) == 10
    assert np.bincount(data.val.labels).tolist() == [1, 1]


def test_flatten_nested_makes_every_folder_of_images_a_class(tmp_path: Path, cache_dir: Path,
                                                             make_class_folder) -> None:
    root = tmp_path / "nested"
    make_class_folder(root / "animals", {"cat": 3, "dog": 2})
    make_class_folder(root / "plants" / "trees", {"oak": 2}, start_seed=20)
    make_class_folder(root, {"rocks": 2}, start_seed=40)
    nested = _load(root, cache_dir, flatten_nested=True)
    assert nested.class_names == ("animals/cat", "animals/dog", "plants/trees/oak", "rocks")
    assert len(nested.train) + len(nested.val) == 9
    assert nested.source == f"{root} (ImageFolder, nested classes flattened)"
    plain = _load(root, cache_dir)  # opt-in: the default keeps top-level folders as classes
    assert plain.class_names == ("animals", "plants", "rocks") and plain.fingerprint != nested.fingerprint


def test_flatten_nested_with_split_folders(tmp_path: Path, cache_dir: Path, make_class_folder) -> None:
    root = tmp_path / "ds"
    make_class_folder(root / "train" / "a", {"x": 3, "y": 3})
    make_class_folder(root / "test" / "a", {"y": 1}, start_seed=30)
    data = _load(root, cache_dir, flatten_nested=True)
    assert data.class_names == ("a/x", "a/y") and len(data.test) == 1 and data.test.labels.tolist() == [1]
