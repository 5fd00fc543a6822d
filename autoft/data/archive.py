"""Safe extraction of .tar(.gz/.bz2/.xz) and .zip archives: nothing may land outside the target folder.

Every member is checked before anything is written: absolute names, `..` components, links whose target
leaves the folder, and device or FIFO members are refused with a DataError naming the member. tar extraction
then also runs under Python's "data" filter, which re-checks each link against the files already written.
"""
from __future__ import annotations

import posixpath
import stat
import tarfile
import zipfile
from pathlib import Path

from autoft.errors import DataError

__all__ = ["extract", "is_archive"]

_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


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
        try:
            tar.extractall(target, members=members, filter="data")
        except tarfile.FilterError as exc:
            raise DataError(f"{archive}: refused unsafe member ({exc})") from None


def _check_tar_member(archive: Path, member: tarfile.TarInfo) -> None:
    _check_name(archive, member.name)
    if member.issym():
        _check_link(archive, member.name, posixpath.join(posixpath.dirname(member.name), member.linkname),
                    member.linkname)
    elif member.islnk():
        _check_link(archive, member.name, member.linkname, member.linkname)
    elif not (member.isfile() or member.isdir()):
        raise DataError(f"{archive}: refused member {member.name!r}: not a regular file, folder or link")


def _extract_zip(archive: Path, target: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            _check_name(archive, info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                # zipfile writes links as small text files; a link out of the folder is refused all the same.
                link = zf.read(info).decode("utf-8", "replace")
                _check_link(archive, info.filename, posixpath.join(posixpath.dirname(info.filename), link), link)
        zf.extractall(target, members=infos)


def _check_name(archive: Path, name: str) -> None:
    normal = name.replace("\\", "/")
    if normal.startswith("/") or (len(normal) > 1 and normal[1] == ":"):
        raise DataError(f"{archive}: refused member {name!r}: absolute path")
    if ".." in normal.split("/"):
        raise DataError(f"{archive}: refused member {name!r}: '..' leads out of the target folder")


def _check_link(archive: Path, name: str, resolved: str, link: str) -> None:
    normal = posixpath.normpath(resolved.replace("\\", "/"))
    if link.startswith("/") or normal == ".." or normal.startswith("../"):
        raise DataError(f"{archive}: refused member {name!r}: link to {link!r} points out of the target folder")
