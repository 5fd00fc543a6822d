"""`load_data`: resolve a source, plan the splits, decode once into the shared cache, return ImageData."""
from __future__ import annotations

import numbers
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autoft.data import cache
from autoft.data.csvfile import load_csv
from autoft.data.dataset import ImageData
from autoft.data.folder import load_folder
from autoft.data.lists import is_list_folder, load_lists
from autoft.data.registry import get_source
from autoft.data.source import ArrayDecoder, RawSplit, Source, SplitName
from autoft.data.splitting import cap_per_class, stratified_split
from autoft.data.transforms import stored_size
from autoft.errors import ConfigError, DataError

if TYPE_CHECKING:
    from autoft.config import RunConfig

__all__ = ["load_data", "ImageSurvey", "survey_images", "open_source"]


def load_data(
    *,
    dataset: str | None,
    path: str | None,
    image_size: int,
    val_split: float = 0.2,
    seed: int = 0,
    max_train_per_class: int | None = None,
    max_val_per_class: int | None = None,
    cache_dir: str | Path | None = None,
    flatten_nested: bool = False,
    also_sizes: tuple[int, ...] = (),
) -> ImageData:
    """Load a named data set or a path (ImageFolder, PaddleHub lists, CSV), decoded and resized to image_size.

    The first call decodes every image into `cache_dir` (default <autoft_home>/cache/data); later calls
    with the same inputs memory-map the cached arrays and decode nothing. `flatten_nested`: in an
    ImageFolder, every folder of images is a class named by its relative path ("animals/cat"). `also_sizes`: other
    image sizes whose cache entries are made in the same pass (each image decoded once), for a search that draws the
    image size from its space.
    """
    _check_args(dataset, path, image_size, val_split, max_train_per_class)
    source = _source(dataset, path, flatten_nested)
    plan, params = _plan(source, val_split, seed, max_train_per_class, max_val_per_class)
    sizes = sorted({image_size, *also_sizes})
    keys = {size: cache.fingerprint(source.content_hash, size, params) for size in sizes}
    directory = Path(cache_dir).expanduser() if cache_dir is not None else cache.default_cache_dir()
    splits = cache.load_or_build_sizes(source, plan, keys, directory)[image_size]
    key = keys[image_size]
    if len(splits[SplitName.VAL]) == 0:
        raise DataError(f"{source.description}: the validation split is empty (no class has 2 or more images)")
    return ImageData(
        class_names=source.class_names,
        train=splits[SplitName.TRAIN],
        val=splits[SplitName.VAL],
        test=splits.get(SplitName.TEST),
        fingerprint=key,
        source=source.description,
    )


@dataclass(frozen=True)
class ImageSurvey:
    """What a plan needs to know of a data source before anything is decoded."""

    train: int          # training images, as load_data would split them
    val: int            # validation images
    classes: int
    native: int | None  # the median shorter side of a few training images as stored (None: none readable)


def survey_images(*, dataset: str | None, path: str | None, val_split: float = 0.2, seed: int = 0,
                  flatten_nested: bool = False, sample: int = 24) -> ImageSurvey:
    """Counts per split as load_data would make them, and the images' stored size (file headers only, or the raw
    array's shape), from one listing of the source: nothing is decoded."""
    source = _source(dataset, path, flatten_nested)
    plan, _params = _plan(source, val_split, seed, None)
    return ImageSurvey(train=len(plan[SplitName.TRAIN]), val=len(plan[SplitName.VAL]),
                       classes=len(source.class_names), native=_native_size(source, sample))


def _native_size(source: Source, sample: int) -> int | None:
    if isinstance(source.decode, ArrayDecoder):  # indices into one raw array: its shape says it
        return int(min(source.decode.images().shape[1:3]))
    items = source.splits[SplitName.TRAIN].items
    sides = []
    for item in list(items[::max(1, len(items) // sample)])[:sample]:
        if isinstance(item, np.ndarray):
            sides.append(min(item.shape[:2]))
        elif isinstance(item, (str, Path)):
            try:
                sides.append(min(stored_size(item)))
            except DataError:  # unreadable (a decompression bomb too): the cache build reports it, once
                continue
    return int(np.median(sides)) if sides else None


def _source(dataset: str | None, path: str | None, flatten_nested: bool) -> Source:
    return get_source(dataset) if dataset is not None else open_source(Path(str(path)), flatten_nested=flatten_nested)


def open_source(path: Path, *, flatten_nested: bool = False) -> Source:
    """Pick the reader for a path: a .csv file, a folder with train_list.txt, else an ImageFolder."""
    path = path.expanduser().absolute()
    if not path.exists():
        raise DataError(f"{path}: data path does not exist")
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return load_csv(path)
        raise DataError(f"{path}: data path must be a folder (ImageFolder or PaddleHub lists) or a .csv file")
    if not path.is_dir():
        # /dev/null, a FIFO, a socket: is_file() and is_dir() only stat, so a FIFO is never opened (it would hang).
        raise DataError(f"{path}: data path must be a folder (ImageFolder or PaddleHub lists) or a .csv file; "
                        f"it is {_kind_of(path)}")
    if not any(path.iterdir()):
        raise DataError(f"{path}: data folder is empty")
    if is_list_folder(path):
        return load_lists(path)
    return load_folder(path, flatten_nested=flatten_nested)


def _kind_of(path: Path) -> str:
    mode = path.stat().st_mode
    kinds = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _check_args(dataset: str | None, path: str | None, image_size: int, val_split: float,
                max_train_per_class: int | None) -> None:
    if (dataset is None) == (path is None):
        raise ConfigError(f"data: give exactly one of dataset or path, got dataset={dataset!r}, path={path!r}")
    if not isinstance(image_size, numbers.Integral) or isinstance(image_size, bool) or image_size < 1:
        raise ConfigError(f"data.image_size: must be an integer >= 1, got {image_size!r}")
    if not 0 < val_split < 1:
        raise ConfigError(f"data.val_split: must be in (0, 1), got {val_split!r}")
    if max_train_per_class is not None and max_train_per_class < 1:
        raise ConfigError(f"data.max_train_per_class: must be >= 1, got {max_train_per_class!r}")


def _plan(
    source: Source, val_split: float, seed: int, max_train_per_class: int | None, max_val_per_class: int | None = None
) -> tuple[dict[SplitName, RawSplit], dict[str, Any]]:
    """Final per-split items (val split made and train capped when needed) and the parameters that shaped them."""
    plan = dict(source.splits)
    params: dict[str, Any] = {"val_split": None, "seed": None, "max_train_per_class": max_train_per_class}
    if SplitName.VAL not in plan:
        train_idx, val_idx = stratified_split(plan[SplitName.TRAIN].labels, val_split, seed)
        plan[SplitName.VAL] = plan[SplitName.TRAIN].take(val_idx)
        plan[SplitName.TRAIN] = plan[SplitName.TRAIN].take(train_idx)
        params.update(val_split=val_split, seed=seed)
    for split, cap in ((SplitName.TRAIN, max_train_per_class), (SplitName.VAL, max_val_per_class)):
        if cap is not None:
            plan[split] = plan[split].take(cap_per_class(plan[split].labels, cap, seed))
            params["seed"] = seed
    if max_val_per_class is not None:
        params["max_val_per_class"] = max_val_per_class
    return plan, params


def load_for_config(cfg: RunConfig, *, every_size: bool = False) -> ImageData:
    """The arrays a run trains on. search, train and --dry-run split alike (search.seed), so their val_acc compare.
    ``every_size``: also make the cache entries of every image size the space can draw, in the same pass (the
    search's driver does, before its trials start)."""
    from autoft.config import resolve_image_size, searched_image_sizes

    d = cfg.data
    return load_data(dataset=d.dataset, path=d.path, image_size=resolve_image_size(cfg), val_split=d.val_split,
                     seed=cfg.search.seed, max_train_per_class=d.max_train_per_class,
                     max_val_per_class=d.max_val_per_class, flatten_nested=d.flatten_nested,
                     also_sizes=searched_image_sizes(cfg) if every_size else ())
