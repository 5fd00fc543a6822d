"""Named data sets over HTTP from 127.0.0.1: download, resume, checksums, safe extraction, ready marker."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import socket
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from autoft.cli.app import main
from autoft.data import download_dataset, load_data
from autoft.data.archive import extract
from autoft.data.download import fetch, part_path
from autoft.data.prepare import CHECKSUM, READY, dataset_dir
from autoft.errors import DataError

FileServer = Any  # tests/data/conftest.py's server: .root, .url, .requests, .cut_after

FLOWERS = ["roses", "tulips", "daisy", "sunflowers", "dandelion"]
SPLITS = {"train_list.txt": 3, "validate_list.txt": 2, "test_list.txt": 1}


@pytest.fixture
def flowers_archive(tmp_path: Path, file_server: FileServer, monkeypatch: pytest.MonkeyPatch,
                    make_paddlehub_tree: Callable[..., Path], make_tar_gz: Callable[[Path, Path], Path]) -> Path:
    """flower_photos.tar.gz in PaddleHub's layout, served at $AUTOFT_DATASETS_URL."""
    tree = make_paddlehub_tree(tmp_path / "build" / "flower_photos", FLOWERS, SPLITS)
    archive = make_tar_gz(file_server.root / "flower_photos.tar.gz", tree)
    monkeypatch.setenv("AUTOFT_DATASETS_URL", file_server.url)
    return archive


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/"


def test_download_checksum_extract_then_load_through_the_list_loader(
        flowers_archive: Path, file_server: FileServer, cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = load_data(dataset="flowers", path=None, image_size=16, cache_dir=cache_dir)
    assert data.class_names == tuple(FLOWERS)
    assert (len(data.train), len(data.val), len(data.test)) == (15, 10, 5)
    assert data.source.startswith("flowers (") and "PaddleHub lists" in data.source
    folder = dataset_dir("flowers")
    assert (folder / CHECKSUM).read_text() == f"{_sha256(flowers_archive)}  flower_photos.tar.gz\n"
    assert json.loads((folder / READY).read_text())["root"] == "extracted/flower_photos"
    assert not (folder / "flower_photos.tar.gz").exists() and not part_path(folder / "flower_photos.tar.gz").exists()
    assert "autoft: download flower_photos.tar.gz: done" in capsys.readouterr().err  # not a TTY: plain lines
    served = len(file_server.requests)
    again = load_data(dataset="flowers", path=None, image_size=16, cache_dir=cache_dir)
    assert len(file_server.requests) == served and again.fingerprint == data.fingerprint


def test_cut_connection_is_resumed_with_a_range_request(flowers_archive: Path, file_server: FileServer) -> None:
    size = flowers_archive.stat().st_size
    file_server.cut_after["flower_photos.tar.gz"] = size // 3
    root = download_dataset("flowers", progress=False)
    assert (root / "label_list.txt").read_text().split() == FLOWERS
    assert file_server.requests == [("/flower_photos.tar.gz", None),
                                    ("/flower_photos.tar.gz", f"bytes={size // 3}-")]
    assert json.loads((dataset_dir("flowers") / READY).read_text())["sha256"] == {
        "flower_photos.tar.gz": _sha256(flowers_archive)}


def test_an_interrupted_download_keeps_its_part_file_and_the_next_call_resumes(
        tmp_path: Path, file_server: FileServer) -> None:
    payload = bytes(range(256)) * 400
    (file_server.root / "blob.bin").write_bytes(payload)
    file_server.cut_after["blob.bin"] = 10_000
    dest = tmp_path / "out" / "blob.bin"
    with pytest.raises(DataError, match=r"blob\.bin: download interrupted after 10000 bytes .*run it again"):
        fetch(file_server.url + "blob.bin", dest, attempts=1, progress=False)
    assert not dest.exists() and part_path(dest).stat().st_size == 10_000
    fetch(file_server.url + "blob.bin", dest, progress=False)
    assert dest.read_bytes() == payload and not part_path(dest).exists()
    assert file_server.requests[-1] == ("/blob.bin", "bytes=10000-")


def test_a_complete_part_file_is_finished_without_refetching(tmp_path: Path, file_server: FileServer) -> None:
    (file_server.root / "blob.bin").write_bytes(b"x" * 500)
    dest = tmp_path / "blob.bin"
    part_path(dest).write_bytes(b"x" * 500)  # killed after the last byte, before the rename
    fetch(file_server.url + "blob.bin", dest, progress=False)
    assert dest.read_bytes() == b"x" * 500


def test_checksum_mismatch_is_an_error_and_nothing_is_marked_ready(flowers_archive: Path) -> None:
    folder = dataset_dir("flowers")
    folder.mkdir(parents=True)
    (folder / CHECKSUM).write_text(f"{'0' * 64}  flower_photos.tar.gz\n")  # recorded by an earlier download
    with pytest.raises(DataError, match=r"flowers: checksum mismatch for flower_photos\.tar\.gz: sha256 \w{64}, "
                                        r"expected 0{64} \(recorded in .*\.checksum\); the download was deleted"):
        download_dataset("flowers", progress=False)
    assert sorted(p.name for p in folder.iterdir()) == [".checksum", ".lock"]


def test_published_md5_mismatch_fails_fashion_mnist(
        file_server: FileServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from autoft.data import fashion_mnist

    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", tmp_path / "no-debian-package")
    for name in fashion_mnist.FILES.values():
        (file_server.root / name).write_bytes(gzip.compress(b"not the real file"))
    monkeypatch.setenv("AUTOFT_DATASETS_URL_FASHION_MNIST", file_server.url)
    with pytest.raises(DataError, match=r"checksum mismatch for train-images-idx3-ubyte\.gz: md5 \w+, expected "
                                        r"8d4fb7e6c68d591d4c3dfef9ec88bf0d \(published\)"):
        download_dataset("fashion-mnist", progress=False)
    folder = dataset_dir("fashion-mnist")
    assert not (folder / READY).exists() and not (folder / "train-images-idx3-ubyte.gz").exists()


def test_a_changed_checksum_record_stops_later_loads(flowers_archive: Path) -> None:
    download_dataset("flowers", progress=False)
    (dataset_dir("flowers") / CHECKSUM).write_text(f"{'1' * 64}  flower_photos.tar.gz\n")
    with pytest.raises(DataError, match=r"marked ready with sha256 \w{64} but \.checksum .* delete .*flowers and run"):
        download_dataset("flowers", progress=False)


def test_an_extraction_without_ready_marker_is_done_again(flowers_archive: Path, file_server: FileServer,
                                                         make_paddlehub_tree: Callable[..., Path]) -> None:
    stale = dataset_dir("flowers") / "extracted" / "flower_photos"
    make_paddlehub_tree(stale, ["a", "b"], {"train_list.txt": 1})  # a killed run's leftovers, never marked ready
    root = download_dataset("flowers", progress=False)
    assert (root / "label_list.txt").read_text().split() == FLOWERS and len(file_server.requests) == 1


def test_offline_error_names_url_and_place_then_a_hand_placed_archive_is_used(
        flowers_archive: Path, monkeypatch: pytest.MonkeyPatch, cache_dir: Path) -> None:
    url = _closed_port_url()
    monkeypatch.setenv("AUTOFT_DATASETS_URL_FLOWERS", url)  # the per-entry variable wins over the global one
    dest = dataset_dir("flowers") / "flower_photos.tar.gz"
    with pytest.raises(DataError, match=rf"flowers: cannot download {url}flower_photos\.tar\.gz \(.*\)\. Offline\? "
                                        rf".*put it at {dest}, then run `autoft datasets download flowers`"):
        load_data(dataset="flowers", path=None, image_size=16, cache_dir=cache_dir)
    dest.write_bytes(flowers_archive.read_bytes())
    data = load_data(dataset="flowers", path=None, image_size=16, cache_dir=cache_dir)
    assert len(data.test) == 5 and not dest.exists()


def test_http_404_is_a_data_error(file_server: FileServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOFT_DATASETS_URL", file_server.url)
    with pytest.raises(DataError, match=r"/dog-cat\.tar\.gz: HTTP 404"):
        download_dataset("dogcat", progress=False)


def test_archive_without_lists_is_refused(tmp_path: Path, file_server: FileServer, monkeypatch: pytest.MonkeyPatch,
                                          make_tar_gz: Callable[[Path, Path], Path]) -> None:
    (tmp_path / "Indoor67" / "kitchen").mkdir(parents=True)
    make_tar_gz(file_server.root / "Indoor67.tar.gz", tmp_path / "Indoor67")
    monkeypatch.setenv("AUTOFT_DATASETS_URL", file_server.url)
    with pytest.raises(DataError, match=r"indoor67: the archive holds no train_list\.txt"):
        download_dataset("indoor67", progress=False)
    assert not (dataset_dir("indoor67") / READY).exists()


def _tar_with(archive: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        ok = tarfile.TarInfo("top/fine.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data))
    return archive


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize(("member", "reason"), [
    (_member("top/../../evil.txt"), "'..' leads out"),
    (_member("/tmp/evil.txt"), "absolute path"),
    (_member("top/link", tarfile.SYMTYPE, "../../outside"), "points out of the target"),
    (_member("top/link", tarfile.SYMTYPE, "/etc/passwd"), "points out of the target"),
    (_member("top/hard", tarfile.LNKTYPE, "../outside.txt"), "points out of the target"),
    (_member("top/fifo", tarfile.FIFOTYPE), "not a regular file"),
])
def test_malicious_tar_members_are_refused(tmp_path: Path, member: tarfile.TarInfo, reason: str) -> None:
    archive = _tar_with(tmp_path / "bad.tar.gz", member, b"pwned")
    target = tmp_path / "sandbox" / "target"
    with pytest.raises(DataError, match=rf"bad\.tar\.gz: refused member .*{reason}"):
        extract(archive, target)
    assert sorted(p.name for p in (tmp_path / "sandbox").rglob("*")) == ["target"]  # nothing written at all


def test_links_inside_the_target_are_refused_too(tmp_path: Path) -> None:
    """PaddleHub's archives hold no links, and a chain of harmless-looking ones can escape (CVE-2025-4517)."""
    archive = _tar_with(tmp_path / "ok.tar.gz", _member("top/alias.txt", tarfile.SYMTYPE, "fine.txt"))
    with pytest.raises(DataError, match="alias.txt"):
        extract(archive, tmp_path / "target")
    assert not (tmp_path / "target" / "top" / "alias.txt").exists()


def test_malicious_zip_is_refused_and_a_good_zip_extracts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("top/ok.txt", "ok")
        zf.writestr("../evil.txt", "pwned")
    with pytest.raises(DataError, match=r"refused member '\.\./evil\.txt'"):
        extract(bad, tmp_path / "target")
    assert not (tmp_path / "evil.txt").exists()
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("top/ok.txt", "ok")
    extract(good, tmp_path / "target")
    assert (tmp_path / "target" / "top" / "ok.txt").read_text() == "ok"


def test_served_malicious_archive_leaves_nothing_ready(file_server: FileServer, monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    _tar_with(file_server.root / "StanfordDogs-120.tar.gz", _member("StanfordDogs-120/../../../escape.txt"), b"x")
    monkeypatch.setenv("AUTOFT_DATASETS_URL", file_server.url)
    with pytest.raises(DataError, match="refused member"):
        download_dataset("stanforddogs", progress=False)
    folder = dataset_dir("stanforddogs")
    assert sorted(p.name for p in folder.iterdir()) == [".lock"]  # no archive, no extraction, no marker
    assert not list(tmp_path.rglob("escape.txt"))


def test_cli_download_prints_where_and_errors_are_one_line(
        flowers_archive: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    main(["datasets", "download", "flowers"])
    out = capsys.readouterr().out
    assert f"flowers: ready at {dataset_dir('flowers') / 'extracted' / 'flower_photos'} (5 classes" in out
    assert "CC-BY 2.0" in out
    monkeypatch.setenv("AUTOFT_DATASETS_URL", _closed_port_url())
    with pytest.raises(SystemExit) as exit_info:
        main(["datasets", "download", "dogcat"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "put it at" in err


def test_bundled_and_debian_datasets_need_no_download() -> None:
    from autoft.data.demo import DEMO_NPZ

    assert download_dataset("fashion-mnist-demo") == DEMO_NPZ.parent
