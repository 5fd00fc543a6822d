"""What the live display is told while a search runs (ray-free: the CLI's display imports it)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Progress"]


@dataclass(frozen=True)
class Progress:
    """A snapshot for the live display."""

    budget: int
    done: int
    running: int
    stopped: int
    failed: int
    interrupted: int
    best_val_acc: float | None
    best_params: dict[str, Any]
    elapsed: float
    last_event: str = ""
