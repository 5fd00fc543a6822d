"""Named data sets: `list_datasets()` and lookup by name (with a did-you-mean on typos)."""
from __future__ import annotations

import difflib
from collections.abc import Callable

from autoft.data.demo import load_demo
from autoft.data.fashion_mnist import load_fashion_mnist
from autoft.data.source import Source
from autoft.errors import DataError

__all__ = ["list_datasets", "get_source"]

_DATASETS: dict[str, Callable[[], Source]] = {
    "fashion-mnist-demo": load_demo,
    "fashion-mnist": load_fashion_mnist,
}


def list_datasets() -> list[str]:
    return sorted(_DATASETS)


def get_source(name: str) -> Source:
    if name not in _DATASETS:
        close = difflib.get_close_matches(name, list_datasets(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DataError(f"dataset: unknown name {name!r}{hint} (valid: {', '.join(list_datasets())})")
    return _DATASETS[name]()
