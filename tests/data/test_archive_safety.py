"""Archive members that could write outside the extraction folder are refused before anything is written.

The main case is the real CVE-2025-4517 tar: 16 nested folders of 240-character names, each reached through a
one-letter symlink, so that a link's path through them is longer than PATH_MAX and Python 3.11.7's "data"
filter stops resolving it; then `escape -> <that link>/../..` and a file written through `escape`.
"""
from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from autoft.data import download_dataset
from autoft.data.archive import extract
from autoft.data.prepare import READY, dataset_dir
from autoft.errors import DataError
from cli_helpers import run

FileServer = Any  # tests/data/conftest.py's server: .root, .url, .requests, .cut_after

_STEPS = "abcdefghijklmnop"
_LONG = "d" * 240


def _add(tar: tarfile.TarFile, name: str, kind: bytes, link: str = "", data: bytes = b"") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data)
    tar.addfile(info, io.BytesIO(data))


def write_escape_tar(archive: Path, top: str = "top", levels_up: int = 2) -> Path:
    """The CVE-2025-4517 layout under `top/`; `escape/pwned.txt` lands `levels_up` folders above the target.

    Textually every link stays inside (`escape` -> a/b/…/p/lll/../.. normalises to a/…/o), but on disk
    `lll` -> ../…/.. (16 levels) climbs from d*16 back to the extraction root, so `escape` climbs past it.
    """
    with tarfile.open(archive, "w:gz") as tar:
        _add(tar, f"{top}/train_list.txt", tarfile.REGTYPE, data=b"a.png 0\n")
        path = top
        for step in _STEPS:
            _add(tar, f"{path}/{_LONG}", tarfile.DIRTYPE)
            _add(tar, f"{path}/{step}", tarfile.SYMTYPE, _LONG)
            path = f"{path}/{_LONG}"
        link = "/".join([top, *_STEPS, "l" * 254])
        _add(tar, link, tarfile.SYMTYPE, "../" * len(_STEPS))
        relative = link.removeprefix(f"{top}/")
        _add(tar, f"{top}/escape", tarfile.SYMTYPE, relative + "/.." * (1 + levels_up))  # +1: out of top/
        _add(tar, f"{top}/escape/pwned.txt", tarfile.REGTYPE, data=b"pwned")
    return archive


def _tar(archive: Path, kind: bytes, link: str) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        _add(tar, "top/train_list.txt", tarfile.REGTYPE, data=b"a.png 0\n")
        _add(tar, "top/link", kind, link)
    return archive


def _zip_with_symlink(archive: Path, link: str) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("top/train_list.txt", "a.png 0\n")
        info = zipfile.ZipInfo("top/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16  # how Info-ZIP stores a symlink
        zf.writestr(info, link)
    return archive


MALICIOUS: dict[str, tuple[Callable[[Path], Path], str, str]] = {
    # name: (writer, archive file name, what the refusal names)
    "cve-2025-4517": (write_escape_tar, "escape.tar.gz", "'top/a': symbolic link to 'ddd"),
    "symlink-inside": (lambda p: _tar(p, tarfile.SYMTYPE, "train_list.txt"), "sym.tar.gz",
                       "'top/link': symbolic link to 'train_list.txt'"),
    "symlink-out": (lambda p: _tar(p, tarfile.SYMTYPE, "../../pwned.txt"), "out.tar.gz",
                    "'top/link': symbolic link to '../../pwned.txt'"),
    "hard-link": (lambda p: _tar(p, tarfile.LNKTYPE, "top/train_list.txt"), "hard.tar",
                  "'top/link': hard link to 'top/train_list.txt'"),
    "zip-symlink": (lambda p: _zip_with_symlink(p, "../../pwned.txt"), "sym.zip",
                    "'top/link': symbolic link to '../../pwned.txt'"),
}


def _everything(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_the_cve_tar_really_escapes_pythons_data_filter(tmp_path: Path) -> None:
    # Without our link refusal (tarfile's "data" filter alone, as before) the file lands outside: the case is real.
    archive = write_escape_tar(tmp_path / "escape.tar.gz")
    target = tmp_path / "sandbox" / "target"
    target.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        try:
            tar.extractall(target, filter="data")
        except tarfile.FilterError:
            pytest.skip("this Python's tarfile has the CVE-2025-4517 fix")
    assert (tmp_path / "pwned.txt").read_text() == "pwned"


@pytest.mark.parametrize("case", list(MALICIOUS))
def test_link_members_are_refused_and_nothing_is_written(tmp_path: Path, case: str) -> None:
    writer, filename, named = MALICIOUS[case]
    archive = writer(tmp_path / filename)
    target = tmp_path / "sandbox" / "target"
    with pytest.raises(DataError) as info:
        extract(archive, target)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{archive}: refused member {named}"), message
    assert "links are refused wherever they point" in message
    assert _everything(tmp_path / "sandbox") == ["target"] and not any(target.iterdir())
    assert not list(tmp_path.rglob("pwned.txt"))


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_decompression_bombs_are_refused_before_writing(tmp_path: Path, suffix: str) -> None:
    zeros = bytes(80 << 20)  # 80 MiB of zeros compress to ~80 KB: over 100x and over the 64 MiB floor
    archive = tmp_path / f"bomb{suffix}"
    if suffix == ".zip":
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("top/zeros.bin", zeros)
    else:
        with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
            _add(tar, "top/zeros.bin", tarfile.REGTYPE, data=zeros)
    target = tmp_path / "sandbox" / "target"
    with pytest.raises(DataError, match=rf"bomb{suffix}: refused: its members declare \d+ bytes, over 100 times "
                                        r"the archive's size .*decompression bomb$"):
        extract(archive, target)
    assert _everything(tmp_path / "sandbox") == ["target"]


def test_a_good_archive_is_renamed_into_place_and_merges_with_the_next(tmp_path: Path) -> None:
    first, second = tmp_path / "one.tar.gz", tmp_path / "two.zip"
    with tarfile.open(first, "w:gz") as tar:
        _add(tar, "top/a.txt", tarfile.REGTYPE, data=b"a")
        _add(tar, "top/same.txt", tarfile.REGTYPE, data=b"old")
    with zipfile.ZipFile(second, "w") as zf:
        zf.writestr("top/b.txt", "b")
        zf.writestr("top/same.txt", "new")
    target = tmp_path / "sandbox" / "target"
    extract(first, target)
    extract(second, target)
    assert _everything(tmp_path / "sandbox") == ["target", "target/top", "target/top/a.txt", "target/top/b.txt",
                                                 "target/top/same.txt"]  # no staging folder left beside it
    assert (target / "top" / "same.txt").read_text() == "new"


def test_served_cve_tar_through_the_cli_leaves_nothing_ready(
        tmp_path: Path, file_server: FileServer, monkeypatch: pytest.MonkeyPatch) -> None:
    write_escape_tar(file_server.root / "flower_photos.tar.gz", top="flower_photos", levels_up=3)
    monkeypatch.setenv("AUTOFT_DATASETS_URL", file_server.url)
    out = run("datasets", "download", "flowers", cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    # stderr also carries the download's progress lines (`autoft: download …: done`); the error is one line
    errors = [line for line in out.stderr.splitlines() if not line.startswith("autoft: download ")]
    assert len(errors) == 1 and errors[0].startswith("autoft: error: ") and "Traceback" not in out.stderr, out.stderr
    assert "flower_photos.tar.gz: refused member 'flower_photos/a': symbolic link" in errors[0]
    folder = dataset_dir("flowers")
    assert _everything(folder) == [".lock"]  # no archive, no extraction, no ready marker
    assert not list(tmp_path.rglob("pwned.txt"))
    assert file_server.requests == [("/flower_photos.tar.gz", None)]


def test_served_symlink_tar_is_refused_by_download_dataset(
        tmp_path: Path, file_server: FileServer, monkeypatch: pytest.MonkeyPatch) -> None:
    _tar(file_server.root / "dog-cat.tar.gz", tarfile.SYMTYPE, "/etc/passwd")
    monkeypatch.setenv("AUTOFT_DATASETS_URL", file_server.url)
    with pytest.raises(DataError, match=r"dog-cat\.tar\.gz: refused member 'top/link': symbolic link to "
                                        r"'/etc/passwd'"):
        download_dataset("dogcat", progress=False)
    folder = dataset_dir("dogcat")
    assert not (folder / READY).exists() and _everything(folder) == [".lock"]
