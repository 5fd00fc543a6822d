"""`check_dataset` / `autoft datasets check`: counts, leakage between splits, corrupt files, tiny images."""
from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from autoft.cli.app import main
from autoft.data import check_dataset, format_report
from autoft.data.source import SplitName
from autoft.errors import DataError


def _tree(root: Path, make_image, counts: dict[str, dict[str, int]]) -> Path:
    seed = 0
    for split, per_class in counts.items():
        for name, n in per_class.items():
            for i in range(n):
                make_image(root / split / name / f"{name}{i}.png", size=(40, 40), seed=seed)
                seed += 1
    return root


def test_planted_duplicates_across_splits_are_reported_as_leakage(tmp_path: Path,
                                                                  make_image: Callable[..., Path]) -> None:
    root = _tree(tmp_path / "photos", make_image, {"train": {"cat": 12, "dog": 12}, "val": {"cat": 4, "dog": 4},
                                                    "test": {"cat": 4, "dog": 4}})
    shutil.copy(root / "train/cat/cat0.png", root / "val/cat/copy_of_train.png")
    shutil.copy(root / "train/dog/dog3.png", root / "test/dog/copy_of_train.png")
    shutil.copy(root / "train/dog/dog3.png", root / "train/dog/again.png")  # a within-split copy too
    report = check_dataset(root)
    assert report.ok
    assert report.counts == {SplitName.TRAIN: (12, 13), SplitName.VAL: (5, 4), SplitName.TEST: (4, 5)}
    groups = sorted(sorted(Path(name).relative_to(root).as_posix() for _, name in d.members)
                    for d in report.duplicates)
    assert groups == [["test/dog/copy_of_train.png", "train/dog/again.png", "train/dog/dog3.png"],
                      ["train/cat/cat0.png", "val/cat/copy_of_train.png"]]
    assert [d.splits for d in report.duplicates if SplitName.VAL in d.splits] == [(SplitName.TRAIN, SplitName.VAL)]
    leak = [w for w in report.warnings if w.startswith("leakage")]
    assert leak and "2 image(s) appear in more than one split (1 across train/test, 1 across train/val)" in leak[0]


def test_no_duplicates_no_leakage_warning(tmp_path: Path, make_image: Callable[..., Path]) -> None:
    root = _tree(tmp_path / "photos", make_image, {"train": {"cat": 3, "dog": 3}, "val": {"cat": 1, "dog": 1}})
    report = check_dataset(root)
    assert report.duplicates == () and report.warnings == () and report.errors == ()


def test_planted_corrupt_files_are_found(tmp_path: Path, make_image: Callable[..., Path]) -> None:
    root = _tree(tmp_path / "photos", make_image, {"train": {"cat": 30, "dog": 30}})
    jpeg = make_image(root / "train/cat/photo.jpg", size=(200, 200), seed=99)
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])  # truncated: the header still parses
    (root / "train/dog/garbage.png").write_bytes(b"\x89PNG not really")
    report = check_dataset(root)
    assert sorted(Path(u.split(":")[0]).name for u in report.unreadable) == ["garbage.png", "photo.jpg"]
    assert report.counts[SplitName.TRAIN] == (30, 30)
    assert report.ok and any(w.startswith("2 unreadable or corrupt file(s)") for w in report.warnings)


def test_a_class_with_only_corrupt_files_is_an_error(tmp_path: Path, make_image: Callable[..., Path]) -> None:
    root = _tree(tmp_path / "photos", make_image, {"train": {"cat": 3}})
    (root / "train/dog").mkdir()
    for i in range(2):
        (root / f"train/dog/bad{i}.jpg").write_bytes(b"nope")
    report = check_dataset(root)
    assert not report.ok
    assert report.errors[0] == "class(es) with no readable training images: dog"
    with pytest.raises(DataError, match=r"photos .*: class\(es\) with no readable training images: dog \(\+1 more\)"):
        report.raise_for_errors()


def test_imbalance_and_tiny_images_are_warnings(tmp_path: Path, make_image: Callable[..., Path]) -> None:
    root = _tree(tmp_path / "photos", make_image, {"train": {"big": 22, "small": 2}})
    make_image(root / "train/small/tiny.png", size=(31, 64), seed=500)
    report = check_dataset(root, imbalance_ratio=5)
    assert report.ok and report.tiny == (str(root / "train/small/tiny.png"),)
    assert report.warnings[0] == "class imbalance: 'big' has 22 training images, 'small' 3 (more than 5x)"
    assert "1 image(s) smaller than 32 px" in report.warnings[1]
    assert len(report.warnings) == 2  # no validation split is normal: the table says one is made from train
    assert "no validation split: one is made from train" in format_report(report)


def test_format_report_is_a_short_table(tmp_path: Path, make_image: Callable[..., Path]) -> None:
    root = _tree(tmp_path / "photos", make_image, {"train": {f"class{i:02d}": 2 for i in range(25)},
                                                    "val": {f"class{i:02d}": 1 for i in range(25)}})
    text = format_report(check_dataset(root))
    lines = text.splitlines()
    assert lines[1].split() == ["class", "train", "val"] and lines[2].split() == ["class00", "2", "1"]
    assert "… 5 more classes" in text and lines[-3].split() == ["total", "50", "25"]
    assert lines[-1] == "OK"


def test_check_by_name_uses_the_registry() -> None:
    report = check_dataset("fashion-mnist-demo")
    assert report.counts[SplitName.TRAIN] == (300,) * 10 and report.ok
    assert len(report.tiny) == 4000  # 28x28 images: a warning, not an error


def test_cli_check_prints_the_table_and_exits_2_on_errors(
        tmp_path: Path, make_image: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    good = _tree(tmp_path / "good", make_image, {"train": {"a": 2, "b": 2}, "val": {"a": 1, "b": 1}})
    main(["datasets", "check", str(good)])
    assert capsys.readouterr().out.splitlines()[-1] == "OK"
    bad = _tree(tmp_path / "bad", make_image, {"train": {"a": 2}})
    (bad / "train/b").mkdir()
    (bad / "train/b/x.png").write_bytes(b"broken")
    with pytest.raises(SystemExit) as exit_info:
        main(["datasets", "check", str(bad)])
    captured = capsys.readouterr()
    assert exit_info.value.code == 2 and "error: class(es) with no readable training images: b" in captured.out
    assert captured.err.startswith("autoft: error:")
