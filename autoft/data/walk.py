"""Walking an ImageFolder: symlinks are followed, except a symlink back to a folder being walked (a loop).

Following symlinks is what users expect: a class folder may be a link to photos kept elsewhere, and a class
may be a folder of links to image files. A link to the folder itself or to one above it (`cat/loop -> ..`)
adds no image that is not already walked, yet following it would walk the tree again under the wrong class
(dog images counted as cat) until the OS gives up, so it is skipped with a warning naming the link.
Folders are told apart by (st_dev, st_ino), so a bind mount or a second path to the same folder is caught.
Hidden entries (``source.is_hidden``: names starting with ".", macOS "._*" resource forks included) are never
walked or read; ``hidden_images`` counts the image-named ones, for a caller that says what it skipped.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autoft.data.source import is_hidden, is_image_file, is_image_name
from autoft.errors import DataError

__all__ = ["Folder", "start", "subfolders", "image_names", "image_files", "hidden_images", "walk"]

log = logging.getLogger("autoft.data")

Identity = tuple[int, int]   # (st_dev, st_ino): one folder, however it is reached

_warned: set[str] = set()    # loops already reported in this process (check, then load, scan the same tree)


@dataclass(frozen=True)
class Folder:
    """A folder as reached from the data root (its path names classes), and every folder it lies in."""

    path: Path
    above: frozenset[Identity]   # this folder and all above it: on the walk path and on disk (real path)


def start(root: Path) -> Folder:
    """The walk's root; the folders on disk above it count as above it, so a link up to one is a loop too."""
    real = root.resolve()
    return Folder(root, frozenset(_identity(p) for p in (real, *real.parents)))


def subfolders(folder: Folder) -> list[Folder]:
    """Visible sub-folders (not starting with "."), sorted by name; a loop is skipped with a warning."""
    found = []
    for entry in _entries(folder.path):
        if not _is_dir(entry):
            continue
        ident = _identity(Path(entry.path))  # of the target, for a symlink
        if ident in folder.above:
            _warn_loop(Path(entry.path))
            continue
        found.append(Folder(Path(entry.path), folder.above | {ident} | _real_parents(entry)))
    return found


def _image_entries(folder: Folder) -> list[os.DirEntry]:
    return [e for e in _entries(folder.path) if is_image_file(Path(e.path)) and not _is_dir(e)]


def image_names(folder: Folder) -> list[Path]:
    """Every visible entry of `folder` with an image name that is not a folder, whatever it is (a FIFO or a
    dangling symlink included, for a caller that reports them one by one), sorted by name."""
    return [Path(e.path) for e in _image_entries(folder)]


def image_files(folder: Folder) -> list[Path]:
    """Image files directly in `folder` (symlinks to image files included), sorted by name."""
    found = []
    for entry in _image_entries(folder):
        path = Path(entry.path)
        if entry.is_symlink() and not path.exists():
            raise DataError(f"{path}: image symlink points to {os.readlink(path)}, which does not exist")
        if entry.is_file():  # a FIFO or a device named x.png is skipped: reading it could hang
            found.append(path)
    return found


def hidden_images(folder: Folder) -> int:
    """How many hidden entries of `folder` have an image name (not counting folders): what a walk skipped there."""
    return sum(1 for e in _scan(folder.path) if is_hidden(e.name) and is_image_name(e.name) and not _is_dir(e))


Files = Callable[[Folder], list[Path]]


def walk(folder: Folder, files: Files = image_files) -> list[tuple[Folder, list[Path]]]:
    """(folder, ``files(folder)``) for `folder` and every folder below it, depth first, by name."""
    found = [(folder, files(folder))]
    for sub in subfolders(folder):
        found.extend(walk(sub, files))
    return found


def _entries(folder: Path) -> list[os.DirEntry]:
    return [e for e in _scan(folder) if not is_hidden(e.name)]


def _scan(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        raise DataError(f"{folder}: cannot read the folder ({exc.strerror or exc})") from None


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows symlinks; False for a broken one
    except OSError:
        return False


def _identity(path: Path) -> Identity:
    st = path.stat()
    return st.st_dev, st.st_ino


def _real_parents(entry: os.DirEntry) -> frozenset[Identity]:
    # Only a symlink can land outside the walk path; a link under its target up to the target's parent is a loop.
    if not entry.is_symlink():
        return frozenset()
    return frozenset(_identity(p) for p in Path(entry.path).resolve().parents)


def _warn_loop(link: Path) -> None:
    if str(link) in _warned:
        return
    _warned.add(str(link))
    target = os.readlink(link) if link.is_symlink() else "the same folder (a bind mount)"
    log.warning("%s: skipped, a symlink to %s, which is this folder or one it lies in (a loop)", link, target)
