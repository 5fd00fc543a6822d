"""Options and arguments several commands share."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["SetOpt", "ParamFile", "RunDir", "Quiet"]

SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", metavar="KEY=VALUE", help="Override a config key, e.g. --set train.epochs=1 (repeatable)")]
RunDir = Annotated[Path, typer.Argument(help="A run folder, e.g. results/demo-20260101-120000")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the final summary.")]
ParamFile = Annotated[Path | None, typer.Option(
    "--param-file", metavar="FILE",
    help="The search space from FILE: PaddleHub's hparam.yaml (param_list:) or a file with space: (replaces the "
         "config's)")]
