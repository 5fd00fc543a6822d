"""Bad data input is one `autoft: error:` line and exit 2 (search and `datasets check`); odd but valid data loads.

Bad: an unquoted comma in a CSV label, text files that are not UTF-8, a data path that is a device or a FIFO,
an image symlink that points nowhere, a list entry that is a FIFO. Valid, with the right images, labels and
class counts: list files and CSVs with a BOM and/or CRLF line ends, folders of symlinked images, symlinked
class folders outside the tree, and symlink loops (skipped with a warning naming the link).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import assert_one_line_exit_2, image, make_lists, run, search_yaml

from autoft.data import check_dataset, load_data
from autoft.data.loader import open_source
from autoft.data.source import SplitName

COLOURS = {"cat": (220, 20, 20), "dog": (20, 220, 20), "fox": (20, 20, 220)}   # one channel per class
_FAST = {"model": {"pretrained": "none"}}   # --dry-run probes a training step: no weights needed for that


def _solid(path: Path, colour: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 20), colour).save(path)
    return path


def _write(path: Path, lines: list[str], *, bom: bool = False, crlf: bool = False, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    end = "\r\n" if crlf else "\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + "".join(line + end for line in lines).encode(encoding))
    return path


# ---- bad input: each setup(tmp) builds real files and returns the data path --------------------------------

def bad_csv_extra_field(tmp: Path) -> Path:
    image(tmp / "img" / "a.png")
    image(tmp / "img" / "b.png")
    return _write(tmp / "data.csv", ["path,label", "img/a.png,cat", "img/b.png,golden, retriever"])


def bad_csv_cp1252(tmp: Path) -> Path:
    image(tmp / "img" / "a.png")
    image(tmp / "img" / "b.png")
    return _write(tmp / "data.csv", ["path,label", "img/a.png,cat", "img/b.png,café"], encoding="cp1252")


def bad_label_list_gbk(tmp: Path) -> Path:
    make_lists(tmp / "data", ["img/a.png 0", "img/b.png 1"], ["cat", "dog"])
    _write(tmp / "data" / "label_list.txt", ["猫", "狗"], encoding="gbk")   # 猫 happens to be valid UTF-8; 狗 is not
    return tmp / "data"


def bad_train_list_latin1(tmp: Path) -> Path:
    make_lists(tmp / "data", ["img/a.png 0", "img/b.png 1"], ["cat", "dog"])
    image(tmp / "data" / "img" / "é.png")
    _write(tmp / "data" / "train_list.txt", ["img/a.png 0", "img/b.png 1", "img/é.png 1"], encoding="latin-1")
    return tmp / "data"


def bad_dev_null(tmp: Path) -> Path:
    return Path(os.devnull)


def bad_fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "data")
    return tmp / "data"


def bad_fifo_named_csv(tmp: Path) -> Path:
    os.mkfifo(tmp / "data.csv")
    return tmp / "data.csv"


def bad_broken_image_symlink(tmp: Path) -> Path:
    for name in ("cat/1.png", "cat/2.png", "dog/1.png"):
        image(tmp / "data" / name)
    os.symlink(tmp / "deleted.png", tmp / "data" / "dog" / "2.png")
    return tmp / "data"


def bad_list_entry_is_fifo(tmp: Path) -> Path:
    make_lists(tmp / "data", ["img/a.png 0", "img/pipe.png 1"], ["cat", "dog"])
    os.mkfifo(tmp / "data" / "img" / "pipe.png")
    return tmp / "data"


BAD_DATA: list[tuple[str, Callable[[Path], Path], tuple[str, ...]]] = [
    ("csv-extra-field", bad_csv_extra_field,
     ("data.csv:3: 3 fields but the header has 2", 'quote a label holding a comma', "' retriever'")),
    ("csv-cp1252", bad_csv_cp1252, ("data.csv line 3: not UTF-8 (byte 0xe9 at column 14)", "save the file as UTF-8")),
    ("label-list-gbk", bad_label_list_gbk, ("label_list.txt line 2: not UTF-8 (byte 0xb9 at column 1)",)),
    ("train-list-latin1", bad_train_list_latin1, ("train_list.txt line 3: not UTF-8 (byte 0xe9",)),
    ("dev-null", bad_dev_null, (f"{os.devnull}: data path must be a folder (ImageFolder or PaddleHub lists) or a "
                                ".csv file; it is a character device",)),
    ("fifo", bad_fifo, ("data: data path must be a folder", "it is a FIFO")),
    ("fifo-named-csv", bad_fifo_named_csv, ("data.csv: data path must be a folder", "it is a FIFO")),
    ("broken-image-symlink", bad_broken_image_symlink,
     ("dog/2.png: image symlink points to", "deleted.png, which does not exist")),
    ("list-entry-is-fifo", bad_list_entry_is_fifo, ("train_list.txt:2: image", "pipe.png is not a regular file")),
]
_IDS = [name for name, _, _ in BAD_DATA]


@pytest.mark.parametrize("setup, needles", [(s, n) for _, s, n in BAD_DATA], ids=_IDS)
def test_search_refuses_bad_data_in_one_line(setup: Callable[[Path], Path], needles: tuple[str, ...],
                                             tmp_path: Path) -> None:
    data = setup(tmp_path)
    config = search_yaml(tmp_path, data={"path": str(data)})
    results = tmp_path / "results"
    out = run("search", str(config), "--results-dir", str(results), cwd=tmp_path, timeout=120)
    _assert_line(out, needles, results)


@pytest.mark.parametrize("setup, needles", [(s, n) for _, s, n in BAD_DATA], ids=_IDS)
def test_datasets_check_refuses_bad_data_in_one_line(setup: Callable[[Path], Path], needles: tuple[str, ...],
                                                     tmp_path: Path) -> None:
    out = run("datasets", "check", str(setup(tmp_path)), cwd=tmp_path, timeout=120)
    _assert_line(out, needles)
    assert out.stdout == ""


def _assert_line(out, needles: tuple[str, ...], results: Path | None = None) -> None:
    assert_one_line_exit_2(out, needles[0], results)
    for needle in needles[1:]:
        assert needle in out.stderr, out.stderr


# ---- symlinks: followed, except loops -------------------------------------------------------------------------

def _loopy_folder(tmp: Path) -> Path:
    """cat: 2 images; dog: 3 images + ext/ (a link to a folder outside, 1 image); four loops, one per kind."""
    root = tmp / "data"
    for i in range(2):
        _solid(root / "cat" / f"{i}.png", COLOURS["cat"])
    for i in range(3):
        _solid(root / "dog" / f"{i}.png", COLOURS["dog"])
    _solid(tmp / "outside" / "o.png", COLOURS["dog"])
    os.symlink("..", root / "cat" / "loop")             # the reported bug: dog images counted as cat
    os.symlink("../..", root / "cat" / "up")            # above the data root, which it holds
    os.symlink(".", root / "dog" / "self")
    os.symlink(tmp / "outside", root / "dog" / "ext")   # outside the tree: followed
    os.symlink(root, tmp / "outside" / "back")          # ... but not back into the tree from there
    return root


_LOOPS = ("cat/loop", "cat/up", "dog/self", "dog/ext/back")


def test_symlink_loops_are_skipped_and_class_counts_stay_right(tmp_path: Path, cache_dir: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    root = _loopy_folder(tmp_path)
    source = open_source(root)
    assert source.class_names == ("cat", "dog")
    train = source.splits[SplitName.TRAIN]
    assert np.bincount(train.labels).tolist() == [2, 4]
    assert sorted(str(Path(p).relative_to(root)) for p in train.items) == [
        "cat/0.png", "cat/1.png", "dog/0.png", "dog/1.png", "dog/2.png", "dog/ext/o.png"]
    assert all(any(f"{root / link}: skipped, a symlink to" in m and "(a loop)" in m for m in caplog.messages)
               for link in _LOOPS), caplog.messages
    data = load_data(dataset=None, path=str(root), image_size=8, cache_dir=cache_dir)
    assert np.bincount(np.concatenate([data.train.labels, data.val.labels])).tolist() == [2, 4]
    _assert_colours(data)


def test_symlink_loops_with_flattened_nested_classes(tmp_path: Path) -> None:
    source = open_source(_loopy_folder(tmp_path), flatten_nested=True)
    assert source.class_names == ("cat", "dog", "dog/ext")
    assert np.bincount(source.splits[SplitName.TRAIN].labels).tolist() == [2, 3, 1]


def test_symlink_loops_in_split_folders(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for split, per_class in (("train", 3), ("val", 1)):
        for name in ("cat", "dog"):
            for i in range(per_class + (name == "dog")):
                _solid(root / split / name / f"{i}.png", COLOURS[name])
    os.symlink("../..", root / "train" / "cat" / "loop")   # back to the data root: train/ and val/ again
    os.symlink(".", root / "all")                          # a top-level loop must not break the split layout
    report = check_dataset(root)
    assert report.class_names == ("cat", "dog")
    assert report.counts == {SplitName.TRAIN: (3, 4), SplitName.VAL: (1, 2)} and report.ok


def test_datasets_check_counts_a_loopy_folder_right_and_names_each_loop(tmp_path: Path) -> None:
    root = _loopy_folder(tmp_path)
    out = run("datasets", "check", str(root), timeout=120)
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines()[2:5]}
    assert rows == {"cat": ["2"], "dog": ["4"], "total": ["6"]}, out.stdout
    warnings = out.stderr.strip().splitlines()
    assert len(warnings) == len(_LOOPS) and "Traceback" not in out.stderr, out.stderr
    for link in _LOOPS:
        assert any(w.startswith(f"autoft: {root / link}: skipped") for w in warnings), out.stderr


def test_folder_of_symlinked_images_and_a_symlinked_class_folder(tmp_path: Path, cache_dir: Path) -> None:
    photos = tmp_path / "photos"
    root = tmp_path / "data"
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir()
    for i in range(3):
        os.symlink(_solid(photos / f"c{i}.jpg", COLOURS["cat"]), root / "cat" / f"{i}.jpg")
    for i in range(4):
        os.symlink(os.path.relpath(_solid(photos / f"d{i}.png", COLOURS["dog"]), root / "dog"),
                   root / "dog" / f"{i}.png")   # relative links, as `ln -s ../../photos/d0.png` makes
    for i in range(2):
        _solid(tmp_path / "foxes" / f"{i}.png", COLOURS["fox"])
    os.symlink(tmp_path / "foxes", root / "fox")
    source = open_source(root)
    assert source.class_names == ("cat", "dog", "fox")
    assert np.bincount(source.splits[SplitName.TRAIN].labels).tolist() == [3, 4, 2]
    data = load_data(dataset=None, path=str(root), image_size=8, cache_dir=cache_dir)
    assert np.bincount(np.concatenate([data.train.labels, data.val.labels])).tolist() == [3, 4, 2]
    _assert_colours(data)


def _assert_colours(data) -> None:
    """Every decoded image is the colour of its label's class: the links led to the right files."""
    for split in (data.train, data.val):
        channel = split.images.reshape(len(split), -1, 3).mean(axis=1).argmax(axis=1)
        expected = [int(np.argmax(COLOURS[data.class_names[label]])) for label in split.labels]
        assert channel.tolist() == expected


# ---- BOM and CRLF: valid ------------------------------------------------------------------------------------

ENDINGS = [pytest.param(True, False, id="bom"), pytest.param(False, True, id="crlf"),
           pytest.param(True, True, id="bom+crlf")]


def _lists_tree(root: Path, *, bom: bool, crlf: bool) -> Path:
    """cat/dog: 3 + 3 train, 1 + 1 validate, 1 + 1 test; every list file (and label_list.txt) BOM/CRLF."""
    files = {name: [] for name in ("train_list.txt", "validate_list.txt", "test_list.txt")}
    for index, name in enumerate(("cat", "dog")):
        for i in range(5):
            list_file = "train_list.txt" if i < 3 else ("validate_list.txt", "test_list.txt")[i - 3]
            files[list_file].append(f"img/{name}{i}.png {index}")
            _solid(root / "img" / f"{name}{i}.png", COLOURS[name])
    for list_file, lines in files.items():
        _write(root / list_file, lines, bom=bom, crlf=crlf)
    _write(root / "label_list.txt", ["cat", "dog"], bom=bom, crlf=crlf)
    return root


@pytest.mark.parametrize("bom, crlf", ENDINGS)
def test_list_files_with_bom_or_crlf_load(bom: bool, crlf: bool, tmp_path: Path, cache_dir: Path) -> None:
    root = _lists_tree(tmp_path / "data", bom=bom, crlf=crlf)
    source = open_source(root)
    assert source.class_names == ("cat", "dog")
    splits = {split: [Path(p).name for p in raw.items] for split, raw in source.splits.items()}
    assert splits == {SplitName.TRAIN: ["cat0.png", "cat1.png", "cat2.png", "dog0.png", "dog1.png", "dog2.png"],
                      SplitName.VAL: ["cat3.png", "dog3.png"], SplitName.TEST: ["cat4.png", "dog4.png"]}
    assert source.splits[SplitName.TRAIN].labels.tolist() == [0, 0, 0, 1, 1, 1]
    data = load_data(dataset=None, path=str(root), image_size=8, cache_dir=cache_dir)
    assert (len(data.train), len(data.val), len(data.test)) == (6, 2, 2)
    assert data.val.labels.tolist() == [0, 1] and data.test.labels.tolist() == [0, 1]
    _assert_colours(data)


def _csv(tmp: Path, *, bom: bool, crlf: bool) -> Path:
    """A quoted label holding a comma, a trailing empty field: both fine."""
    lines = ["path,label,split"]
    for name, label in (("cat", "cat"), ("dog", '"golden, retriever"')):
        lines += [f"img/{name}{i}.png,{label},train" for i in range(3)] + [f"img/{name}3.png,{label},val,"]
        for i in range(4):
            _solid(tmp / "img" / f"{name}{i}.png", COLOURS[name])
    return _write(tmp / "data.csv", lines, bom=bom, crlf=crlf)


@pytest.mark.parametrize("bom, crlf", ENDINGS)
def test_csv_with_bom_or_crlf_loads(bom: bool, crlf: bool, tmp_path: Path, cache_dir: Path) -> None:
    csv_file = _csv(tmp_path, bom=bom, crlf=crlf)
    source = open_source(csv_file)
    assert source.class_names == ("cat", "golden, retriever")
    assert source.splits[SplitName.TRAIN].labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert [Path(p).name for p in source.splits[SplitName.VAL].items] == ["cat3.png", "dog3.png"]
    data = load_data(dataset=None, path=str(csv_file), image_size=8, cache_dir=cache_dir)
    assert (len(data.train), len(data.val), data.test) == (6, 2, None)
    assert data.val.labels.tolist() == [0, 1]


@pytest.mark.parametrize("make", [
    pytest.param(lambda tmp: _lists_tree(tmp / "data", bom=True, crlf=True), id="lists"),
    pytest.param(lambda tmp: _csv(tmp, bom=True, crlf=True), id="csv"),
])
def test_search_dry_run_trains_on_bom_crlf_files(make: Callable[[Path], Path], tmp_path: Path) -> None:
    config = search_yaml(tmp_path, data={"path": str(make(tmp_path))}, **_FAST)
    out = run("search", str(config), "--dry-run", "--results-dir", str(tmp_path / "results"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 classes, 6 train / 2 val images" in out.stdout, out.stdout
    assert "probe" in out.stdout and not (tmp_path / "results").exists()
