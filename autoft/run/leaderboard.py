"""Rank trials, write leaderboard.csv/.md (cells escaped by autoft.run.escape), promote the winner's bundle to
best_model/."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoft._fs import atomic_write_text
from autoft.run.bundle import copy_bundle, is_bundle
from autoft.run.escape import CSV_LINE_END, csv_cell, md_cell
from autoft.run.layout import BEST_DIR, RunDir
from autoft.run.records import TrialRecord, read_trials

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Leaderboard", "is_blank", "rank", "write_leaderboard", "promote_best", "load_leaderboard", "BEST_DIR"]

FIXED_COLUMNS = ["rank", "trial_id", "status"]
METRIC_COLUMNS = ["val_acc", "val_loss", "best_epoch", "epochs_run", "seconds", "error"]
EXTRA_COLUMNS = ["cost_per_epoch", "rerun_of"]
INT_COLUMNS = ("rank", "best_epoch", "epochs_run")


@dataclass(frozen=True)
class Leaderboard:
    table: pd.DataFrame
    records: tuple[TrialRecord, ...]   # in rank order

    @property
    def best(self) -> TrialRecord | None:
        first = self.records[0] if self.records else None
        return first if first is not None and first.status.finished and first.best else None


def _sort_key(record: TrialRecord) -> tuple[Any, ...]:
    """Finished trials by their best epoch; then unfinished ones that scored (interrupted, running) the same way;
    then the trials with no score at all."""
    best = record.best
    if best is None or best.get("val_acc") is None:
        return (2, 0.0, 0.0, record.seconds, record.started)
    loss = float(best.get("val_loss", math.inf))
    group = 0 if record.status.finished else 1
    return (group, -float(best["val_acc"]), loss if math.isfinite(loss) else math.inf, record.seconds,
            record.started)


def rank(records: list[TrialRecord]) -> Leaderboard:
    """val_acc desc, ties lower val_loss then fewer seconds; failed/interrupted/running trials last."""
    import pandas as pd

    ordered = sorted(records, key=_sort_key)
    taken = set(FIXED_COLUMNS + METRIC_COLUMNS + EXTRA_COLUMNS)  # a param named "rank" would overwrite the rank
    param_names: list[str] = []
    for r in ordered:
        param_names += [k for k in r.params if k not in param_names and k not in taken]
    rows = []
    for i, r in enumerate(ordered, start=1):
        best = r.best or {}
        row: dict[str, Any] = {"rank": i, "trial_id": r.trial_id, "status": r.status.value}
        row.update({k: r.params.get(k) for k in param_names})
        row.update({"val_acc": best.get("val_acc"), "val_loss": best.get("val_loss"),
                    "best_epoch": best.get("epoch"), "epochs_run": r.epochs_run,
                    "seconds": round(r.seconds, 1), "error": r.error or "",
                    "rerun_of": r.extra.get("rerun_of") or "", "cost_per_epoch": r.extra.get("cost_per_epoch")})
        rows.append(row)
    columns = FIXED_COLUMNS + param_names + METRIC_COLUMNS
    if any("cost_per_epoch" in r.extra for r in ordered):  # a searched backbone or image size (search.costs)
        columns.insert(columns.index("seconds") + 1, "cost_per_epoch")
    if any("rerun_of" in r.extra for r in ordered):  # search.rerun_top_k
        columns.append("rerun_of")
    table = pd.DataFrame(rows, columns=columns)
    for column in INT_COLUMNS:  # counts stay integers in the CSV (a missing one is an empty cell, not NaN → 2.0)
        table[column] = table[column].astype("Int64")
    return Leaderboard(table=table, records=tuple(ordered))


def is_blank(v: Any) -> bool:
    """A table cell with no value: None, NaN or pandas' NA (a missing integer)."""
    return v is None or (isinstance(v, float) and math.isnan(v)) or type(v).__name__ == "NAType"


def _markdown(table: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
        if is_blank(v):
            return ""
        return f"{v:.4g}" if isinstance(v, float) else md_cell(str(v))

    lines = ["| " + " | ".join(md_cell(str(c)) for c in table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _csv(table: pd.DataFrame) -> str:
    from pandas.api.types import is_numeric_dtype

    safe = table.rename(columns=lambda c: csv_cell(str(c)))
    for i in range(safe.shape[1]):  # by position: two params may escape to one name
        if not is_numeric_dtype(safe.iloc[:, i]):
            safe.iloc[:, i] = safe.iloc[:, i].map(lambda v: csv_cell(v) if isinstance(v, str) else v)
    return safe.to_csv(index=False, lineterminator=CSV_LINE_END)


def write_leaderboard(run_dir: Path) -> Leaderboard:
    board = rank(read_trials(run_dir))
    atomic_write_text(Path(run_dir) / "leaderboard.csv", _csv(board.table))
    from autoft.run.selection import rerun_markdown

    atomic_write_text(Path(run_dir) / "leaderboard.md", _markdown(board.table) + rerun_markdown(board.records))
    return board


def promote_best(run_dir: Path, board: Leaderboard) -> Path | None:
    """Copy the winner's bundle to run_dir/best_model (atomic swap); after reruns, the best mean's best run."""
    from autoft.run.selection import select_winner

    best = select_winner(board.records) or board.best
    if best is None:
        return None
    run = RunDir(Path(run_dir))
    src = run.trial_bundle(best.trial_id)
    if not is_bundle(src):
        return None
    return copy_bundle(src, run.best_model)


def load_leaderboard(run_dir: Path, what: str = "leaderboard") -> Leaderboard:
    return rank(read_trials(RunDir.require(run_dir, what).path))


def markdown(board: Leaderboard) -> str:
    return _markdown(board.table)
