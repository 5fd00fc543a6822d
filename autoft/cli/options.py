"""Options and arguments several commands share."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

__all__ = ["SetOpt", "RunDir", "Quiet"]

SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a config key: --set train.epochs=1")]
RunDir = Annotated[Path, typer.Argument(help="A run folder, e.g. results/demo-20260101-120000")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the final summary.")]
