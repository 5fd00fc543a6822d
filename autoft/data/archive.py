"""Safe extraction of .tar(.gz/.bz2/.xz) and .zip archives: nothing may land outside the target folder.

Every member is checked before anything is written, and the archive is refused (DataError naming it and the
member) for: an absolute name, a `..` component, any link (tar symlinks and hard links, zip entries whose mode
says symlink), a device or FIFO, or more declared bytes than a decompression bomb check allows. Links are
refused wherever they point: PaddleHub's archives hold none, and a chain of links that each look inside the
folder can end in one that points out of it (CVE-2025-4517, which Python 3.11's tarfile "data" filter misses:
it resolves a path through links only while it is shorter than PATH_MAX). Extraction then goes into a fresh
folder beside the target, which is renamed into place only once every member is out.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tarfile
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

from autoft.errors import DataError

__all__ = ["extract", "is_archive"]

_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
# Photos barely compress (ratio ~1); list files and headers a little more. An archive that claims more than
# _MAX_RATIO times its own size (and more than _FLOOR_BYTES) is a bomb, not a data set.
_MAX_RATIO = 100
_FLOOR_BYTES = 64 << 20
_TAR_HEADER = 512  # bytes each tar member costs on disk and in the count, however small its data


def is_archive(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(_TAR_SUFFIXES) or name.endswith(".zip")


def extract(archive: Path, target: Path) -> None:
    """Extract `archive` into the folder `target` (created); DataError for an unsafe or unreadable archive."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.lower().endswith(".zip"):
            _extract_zip(archive, target)
        elif archive.name.lower().endswith(_TAR_SUFFIXES):
            _extract_tar(archive, target)
        else:
            raise DataError(f"{archive}: unknown archive type (expected {', '.join(_TAR_SUFFIXES)} or .zip)")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{archive}: not a readable archive ({type(exc).__name__}: {exc})") from None


def _extract_tar(archive: Path, target: Path) -> None:
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        for member in members:
            _check_tar_member(archive, member)
        _check_size(archive, sum(m.size + _TAR_HEADER for m in members))
        with _staging(target) as staging:
            try:
                # "data" on top of our checks: it also drops setuid bits and rejects what a future tar type adds
                tar.extractall(staging, members=members, filter="data")
            except tarfile.FilterError as exc:
                raise DataError(f"{archive}: refused unsafe member ({exc})") from None


def _check_tar_member(archive: Path, member: tarfile.TarInfo) -> None:
    _check_name(archive, member.name)
    if member.issym() or member.islnk():
        kind = "symbolic link" if member.issym() else "hard link"
        _refuse_link(archive, member.name, kind, member.linkname)
    if not (member.isfile() or member.isdir()):
        raise DataError(f"{archive}: refused member {member.name!r}: not a regular file or folder")


def _extract_zip(archive: Path, target: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            _check_zip_member(archive, zf, info)
        _check_size(archive, sum(info.file_size for info in infos))
        with _staging(target) as staging:
            zf.extractall(staging, members=infos)


def _check_zip_member(archive: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    _check_name(archive, info.filename)
    mode = info.external_attr >> 16  # the Unix st_mode, when the zip was made on Unix; 0 otherwise
    if stat.S_ISLNK(mode):
        # zipfile would write the link as a small file holding its target; refused all the same, as in tar
        _refuse_link(archive, info.filename, "symbolic link", _zip_link_target(zf, info))
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise DataError(f"{archive}: refused member {info.filename!r}: not a regular file or folder")


def _zip_link_target(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> str:
    """The first bytes of a link entry, for the message only: never the whole entry, which could be a bomb."""
    try:
        with zf.open(info) as entry:
            return entry.read(200).decode("utf-8", "replace")
    except (RuntimeError, zipfile.BadZipFile, NotImplementedError, OSError):  # encrypted, corrupt, odd method
        return "?"


def _check_name(archive: Path, name: str) -> None:
    normal = name.replace("\\", "/")
    if normal.startswith("/") or (len(normal) > 1 and normal[1] == ":"):
        raise DataError(f"{archive}: refused member {name!r}: absolute path")
    if ".." in normal.split("/"):
        raise DataError(f"{archive}: refused member {name!r}: '..' leads out of the target folder")


def _refuse_link(archive: Path, name: str, kind: str, link: str) -> None:
    raise DataError(f"{archive}: refused member {name!r}: {kind} to {link!r:.80}; links are refused wherever they "
                    f"point, since a chain of them can end in one that points out of the target folder")


def _check_size(archive: Path, declared: int) -> None:
    limit = max(_FLOOR_BYTES, _MAX_RATIO * archive.stat().st_size)
    if declared > limit:
        raise DataError(f"{archive}: refused: its members declare {declared} bytes, over {_MAX_RATIO} times the "
                        f"archive's size (limit {limit} bytes): a decompression bomb")


@contextlib.contextmanager
def _staging(target: Path) -> Iterator[Path]:
    """A fresh folder beside `target` to extract into; its contents move into `target` only on success."""
    staging = target.with_name(f".{target.name}.extracting-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        yield staging
        _move_into(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_into(source: Path, target: Path) -> None:
    """Move `source`'s entries into `target`: one rename when `target` is empty, else merged entry by entry."""
    if not any(target.iterdir()):
        os.replace(source, target)  # rename(2) may replace an empty folder
        return
    for entry in source.iterdir():
        dest = target / entry.name
        if entry.is_dir() and dest.is_dir() and not dest.is_symlink():
            _move_into(entry, dest)
            continue
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        elif dest.is_symlink() or dest.exists():
            dest.unlink()
        os.replace(entry, dest)  # a later archive's file wins, as extracting over the folder would
