"""Make a named data set ready on disk: download (or take a hand-placed file), verify, extract, mark ready.

<AUTOFT_HOME>/datasets/<name>/ holds:
  <archive>            while being verified and extracted (hand-placed archives go here too); removed after
  <archive>.part       a partial download, resumed by the next call
  extracted/           the extracted archive
  .checksum            "<sha256>  <file>" per downloaded file (sha256sum format), written after the first
                       verified download; every later download or hand-placed file must match it
  .ready               JSON written last and atomically: only then is the data set complete
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from autoft._fs import atomic_write_text, autoft_home
from autoft.data import fashion_mnist
from autoft.data.archive import extract
from autoft.data.catalog import DatasetInfo, Layout, Remote
from autoft.data.download import OfflineError, fetch, file_digests
from autoft.errors import DataError

__all__ = ["dataset_dir", "source_url", "prepare_dataset", "ready_root", "READY", "CHECKSUM"]

READY = ".ready"
CHECKSUM = ".checksum"
_EXTRACTED = "extracted"


def dataset_dir(name: str) -> Path:
    return autoft_home() / "datasets" / name


def source_url(info: DatasetInfo, remote: Remote) -> str:
    """The file's URL: base from $AUTOFT_DATASETS_URL_<NAME>, else $AUTOFT_DATASETS_URL, else the catalog."""
    base = os.environ.get(info.env_url_override) or os.environ.get("AUTOFT_DATASETS_URL") or info.base_url
    return base.rstrip("/") + "/" + remote.filename


def prepare_dataset(info: DatasetInfo, *, progress: bool = True, force: bool = False) -> Path:
    """Make `info` ready and return the folder a loader reads (the one holding train_list.txt, or the idx files)."""
    if info.layout is Layout.BUNDLED:
        from autoft.data.demo import DEMO_NPZ

        return DEMO_NPZ.parent
    if info.layout is Layout.IDX and not force:
        with contextlib.suppress(DataError):
            return fashion_mnist.find_fashion_mnist()  # the Debian package's files, or ones already here
    folder = dataset_dir(info.name)
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder):
        if force:
            _unmark(folder)
        root = ready_root(info)
        if root is not None:
            return root
        _unmark(folder)
        if info.layout is Layout.IDX:
            return _prepare_files(info, folder, progress)
        return _prepare_archives(info, folder, progress)


def ready_root(info: DatasetInfo) -> Path | None:
    """The data folder when `info` is marked ready and its recorded checksums agree; None when not ready."""
    folder = dataset_dir(info.name)
    try:
        marker = json.loads((folder / READY).read_text())
    except (OSError, ValueError):
        return None
    recorded = read_checksums(folder)
    for remote in info.files:
        sha = marker.get("sha256", {}).get(remote.filename)
        if sha is None or recorded.get(remote.filename) != sha or remote.sha256 not in (None, sha):
            raise DataError(f"{folder}: {remote.filename} was marked ready with sha256 {sha} but {CHECKSUM} or the "
                            f"catalog says {remote.sha256 or recorded.get(remote.filename)}; delete {folder} "
                            f"and run `autoft datasets download {info.name}` again")
    root = folder / marker.get("root", "")
    return root if root.is_dir() else None


def _prepare_archives(info: DatasetInfo, folder: Path, progress: bool) -> Path:
    tmp = folder / f".extracting-{uuid.uuid4().hex[:8]}"
    try:
        digests = {}
        for remote in info.files:
            archive, fresh = _obtain(info, remote, folder, progress)
            digests[remote.filename] = _verified_sha256(info, remote, archive, fresh)
            try:
                extract(archive, tmp)
            except DataError:
                if fresh:
                    archive.unlink()
                raise
        rel = _find_list_root(tmp, info)
        shutil.rmtree(folder / _EXTRACTED, ignore_errors=True)
        tmp.rename(folder / _EXTRACTED)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _mark_ready(folder, digests, f"{_EXTRACTED}/{rel}")
    for remote in info.files:
        (folder / remote.filename).unlink(missing_ok=True)
    return folder / _EXTRACTED / rel


def _prepare_files(info: DatasetInfo, folder: Path, progress: bool) -> Path:
    digests = {}
    for remote in info.files:
        path, fresh = _obtain(info, remote, folder, progress)
        digests[remote.filename] = _verified_sha256(info, remote, path, fresh)
    _mark_ready(folder, digests, "")
    return folder


def _obtain(info: DatasetInfo, remote: Remote, folder: Path, progress: bool) -> tuple[Path, bool]:
    """The file on disk, downloading it unless it was placed there; True when downloaded by this call."""
    dest = folder / remote.filename
    if dest.is_file():
        return dest, False
    url = source_url(info, remote)
    try:
        fetch(url, dest, progress=progress)
    except OfflineError as exc:
        raise DataError(f"{info.name}: cannot download {url} ({str(exc).split(': ', 1)[-1]}). Offline? Fetch "
                        f"that file by other means and put it at {dest}, then run `autoft datasets download "
                        f"{info.name}` (or start the search: it picks the file up from there)") from None
    return dest, True


def _verified_sha256(info: DatasetInfo, remote: Remote, path: Path, fresh: bool) -> str:
    """Check the published digest, then the recorded one; a mismatching download is deleted."""
    digests = file_digests(path)
    recorded = read_checksums(path.parent).get(remote.filename)
    expected = [("md5", remote.md5, "published"), ("sha256", remote.sha256, "published"),
                ("sha256", recorded, f"recorded in {path.parent / CHECKSUM}")]
    for kind, value, origin in expected:
        if value is not None and digests[kind] != value:
            if fresh:
                path.unlink()
            what = "the download was deleted; run the command again" if fresh else "replace or delete that file"
            raise DataError(f"{info.name}: checksum mismatch for {path.name}: {kind} {digests[kind]}, expected "
                            f"{value} ({origin}); {what}")
    return digests["sha256"]


def _find_list_root(extracted: Path, info: DatasetInfo) -> str:
    if (extracted / info.list_root / "train_list.txt").is_file():
        return info.list_root
    found = sorted(extracted.rglob("train_list.txt"), key=lambda p: (len(p.parts), str(p)))
    if not found:
        raise DataError(f"{info.name}: the archive holds no train_list.txt (expected PaddleHub's layout: "
                        f"{info.list_root}/train_list.txt, validate_list.txt, label_list.txt)")
    return found[0].parent.relative_to(extracted).as_posix()


def read_checksums(folder: Path) -> dict[str, str]:
    try:
        lines = (folder / CHECKSUM).read_text().splitlines()
    except OSError:
        return {}
    return {name.lstrip("*"): sha for sha, _, name in (line.partition("  ") for line in lines) if name}


def _mark_ready(folder: Path, digests: dict[str, str], root: str) -> None:
    recorded = {**read_checksums(folder), **digests}
    atomic_write_text(folder / CHECKSUM, "".join(f"{sha}  {name}\n" for name, sha in sorted(recorded.items())))
    atomic_write_text(folder / READY, json.dumps({"root": root, "sha256": digests}, indent=1))


def _unmark(folder: Path) -> None:
    (folder / READY).unlink(missing_ok=True)
    shutil.rmtree(folder / _EXTRACTED, ignore_errors=True)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One preparer per data set across processes (e.g. a search driver and a CLI download)."""
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
