"""An unpickler that resolves only allow-listed globals: the shared core of the .pth and .pdparams readers.

Unpickling calls whatever a pickle names (os.system, builtins.exec, functools.partial...). Every GLOBAL,
STACK_GLOBAL, INST and OBJ opcode goes through ``find_class``; here it answers only from an allow-list of
plain containers plus the format's own stand-ins, and raises WeightsError for anything else, so a refused
callable is never even imported, let alone called.
"""
from __future__ import annotations

import collections
import io
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autoft.errors import WeightsError

__all__ = ["CONTAINERS", "UNREADABLE", "RestrictedUnpickler", "text", "first_line"]


def _latin1(value: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Protocol 2 writes each bytes object as _codecs.encode(str, "latin1"); no other codec is ever needed,
    # and refusing the rest keeps the compression codecs (zlib_codec, bz2_codec) out of reach.
    if not isinstance(value, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise ValueError(f"_codecs.encode is allowed only as encode(str, 'latin1'), not {encoding!r}")
    return value.encode("latin1")


def _empty_bytes(*args: Any) -> bytes:
    # Protocol 2 writes b"" as builtins.bytes(); bytes(n) would allocate n bytes, so only the empty call is allowed.
    if args:
        raise ValueError("builtins.bytes is allowed only without arguments")
    return b""


_BUILTINS: dict[str, Any] = {
    "dict": dict, "list": list, "tuple": tuple, "set": set, "frozenset": frozenset, "bytes": _empty_bytes,
}
CONTAINERS: Mapping[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): _latin1,
    **{("builtins", name): value for name, value in _BUILTINS.items()},
    # protocols 0-2 spell the module the Python 2 way; pickle's own find_class would map it, ours does not
    **{("__builtin__", name): value for name, value in _BUILTINS.items()},
}

# What a malformed or truncated pickle raises while being read with the allow-list (a refused global raises
# WeightsError instead). MemoryError: a length field can claim more bytes than the file holds.
UNREADABLE: tuple[type[BaseException], ...] = (
    pickle.UnpicklingError, EOFError, ValueError, KeyError, IndexError, TypeError, AttributeError,
    OverflowError, MemoryError,
)


class RestrictedUnpickler(pickle.Unpickler):
    """``find_class`` answers from ``allowed`` only; ``reader`` and ``what`` word the refusal."""

    def __init__(self, stream: io.BufferedIOBase, source: Path, allowed: Mapping[tuple[str, str], Any], *,
                 reader: str, what: str, encoding: str = "ASCII") -> None:
        super().__init__(stream, encoding=encoding)
        self.source = source
        self._allowed = allowed
        self._reader = reader
        self._what = what

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise WeightsError(
                f"the {self._reader} reader refuses to load {module}.{name} from {self.source}: "
                f"only {self._what} and plain containers are allowed"
            ) from None


def text(value: Any) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def first_line(exc: BaseException) -> str:
    """``Type: message`` on one line, for error messages that must stay one line."""
    lines = str(exc).splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
