"""Named data sets: `list_datasets()`, `dataset_info(name)` (with a did-you-mean on typos), `get_source(name)`."""
from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from pathlib import Path

from autoft.data.catalog import CATALOG, DatasetInfo, Layout
from autoft.data.demo import load_demo
from autoft.data.fashion_mnist import find_fashion_mnist, load_fashion_mnist
from autoft.data.lists import load_lists
from autoft.data.prepare import prepare_dataset
from autoft.data.source import Source
from autoft.errors import DataError

__all__ = ["list_datasets", "dataset_info", "get_source", "download_dataset"]


def list_datasets() -> list[str]:
    return sorted(CATALOG)


def dataset_info(name: str) -> DatasetInfo:
    if name not in CATALOG:
        close = difflib.get_close_matches(name, list_datasets(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DataError(f"dataset: unknown name {name!r}{hint} (valid: {', '.join(list_datasets())})")
    return CATALOG[name]


def download_dataset(name: str, *, progress: bool = True, force: bool = False) -> Path:
    """Download, verify and extract a named data set (a no-op when ready); return the folder loaders read."""
    return prepare_dataset(dataset_info(name), progress=progress, force=force)


def get_source(name: str) -> Source:
    """The named data set as a Source, downloading and extracting it first when it is not ready yet."""
    info = dataset_info(name)
    return _LOADERS[info.layout](info)


def _load_bundled(info: DatasetInfo) -> Source:
    return load_demo()


def _load_idx(info: DatasetInfo) -> Source:
    try:
        find_fashion_mnist()
    except DataError:
        prepare_dataset(info)
    return load_fashion_mnist()


def _load_lists(info: DatasetInfo) -> Source:
    root = prepare_dataset(info)
    source = load_lists(root)
    return dataclasses.replace(source, description=f"{info.name} ({source.description})")


_LOADERS: dict[Layout, Callable[[DatasetInfo], Source]] = {
    Layout.BUNDLED: _load_bundled,
    Layout.IDX: _load_idx,
    Layout.PADDLEHUB_LISTS: _load_lists,
}
