"""What `autoft` prints: the live search display (``Display``), its progress line, and the leaderboard tables."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from autoft.run.escape import csv_text, printable

if TYPE_CHECKING:
    from autoft.search.progress import Progress

__all__ = ["make_console", "Display", "EtaSmoother", "progress_line", "short_name", "board_lines", "ray_dashboard_line",
           "print_board", "print_reruns", "fmt", "fmt_seconds", "PREDICT_FORMATS", "format_predictions"]


def make_console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)  # long paths stay whole when piped or captured


def ray_dashboard_line(url: str) -> str:
    token = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"  # ray.init sets it when token auth is on
    return f"Ray dashboard: {url}" + ("  (it asks for the token `ray get-auth-token` prints)" if token else "")


class Display:
    """Live trial counts in a terminal, fitted to its width; one line per event otherwise; nothing with --quiet."""

    def __init__(self, console: Any, *, quiet: bool, plain: bool, time_budget: float | None = None) -> None:
        self.console, self.quiet, self.plain = console, quiet, plain
        self.live: Any = None
        self.eta = EtaSmoother(time_budget)

    def __enter__(self) -> Display:
        if not self.quiet and not self.plain:
            from rich.live import Live

            self.live = Live(console=self.console, refresh_per_second=4, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def note(self, message: str) -> None:
        """A line that stays (above a live display), printed even with --quiet: the user asked for it."""
        if self.live is not None:
            self.live.console.print(message)
        else:
            print(message, flush=True)

    def update(self, p: Progress) -> None:
        if self.quiet:
            return
        eta = self.eta.update(p)
        if self.live is not None:
            from rich.text import Text

            width = self.console.width
            said = printable(p.last_event)  # a trial's error text may hold anything
            event = said if len(said) <= width else said[:width - 1] + "…"
            self.live.update(Text(f"{progress_line(p, width=width, eta=eta)}\n{event}", no_wrap=True,
                                  overflow="crop"))
        else:
            print(f"{progress_line(p, eta=eta)} | {printable(p.last_event)}", flush=True)


class EtaSmoother:
    """The time left, from the finished trials' pace, smoothed so that one fast or slow trial does not make it
    jump (an exponential average of the estimate, counted down between events), and never past the time budget."""

    WEIGHT = 0.3  # of a new estimate: one event moves the ETA at most ~1.6x up or ~0.7x down

    def __init__(self, time_budget: float | None = None) -> None:
        self.time_budget = time_budget
        self.value: float | None = None
        self.at: float = 0.0

    def update(self, p: Progress) -> float | None:
        finished = p.done + p.stopped + p.failed
        if not finished or finished >= p.budget:
            self.value = None if finished >= p.budget else self.value
            return self._capped(self.value, p) if self.value is not None else None
        raw = p.elapsed / finished * (p.budget - finished)
        if self.value is None:
            self.value = raw
        else:
            held = max(0.0, self.value - (p.elapsed - self.at))
            self.value = held + self.WEIGHT * (raw - held)
        self.at = p.elapsed
        return self._capped(self.value, p)

    def _capped(self, value: float, p: Progress) -> float:
        if self.time_budget is not None:
            value = min(value, max(0.0, self.time_budget - p.elapsed))
        return value


def progress_line(p: Progress, *, width: int | None = None, eta: float | None = None) -> str:
    """The live line. At ``width`` columns it is fitted: the best trial's params are shortened (``lr=5.4e-04``),
    then the elapsed time goes, then params from the last, then the done/stopped/failed breakdown and the running
    count; the counts, best val_acc and the ETA stay. ``eta`` defaults to the finished trials' pace."""
    finished = p.done + p.stopped + p.failed
    if eta is None and finished and finished < p.budget:
        eta = p.elapsed / finished * (p.budget - finished)
    best = f"{p.best_val_acc:.4f}" if p.best_val_acc is not None else "-"
    params = ", ".join(f"{k}={fmt(v)}" for k, v in p.best_params.items())
    shorts = [f"{short_name(k)}={_cell(k, v)}" for k, v in p.best_params.items()]
    variants: list[tuple[bool, bool, bool, str | None]] = [  # (running, done/stopped/failed, elapsed, params)
        (True, True, True, params), (True, True, True, ", ".join(shorts)), (True, True, False, ", ".join(shorts))]
    variants += [(True, True, False, ", ".join(shorts[:k]) + ", …") for k in range(len(shorts) - 1, 0, -1)]
    variants += [(True, True, False, None), (True, False, False, None), (False, False, False, None)]
    line = ""
    for running, breakdown, elapsed, shown in variants:
        detail = ([f"{p.done} done, {p.stopped} stopped early"] if breakdown else []) + \
                 ([f"{p.running} running"] if running else []) + ([f"{p.failed} failed"] if breakdown else [])
        head = f"trials {finished}/{p.budget}" + (": " + ", ".join(detail) if detail else "")
        best_part = f"best val_acc {best}" + (f" ({shown})" if shown is not None else "")
        times = [fmt_seconds(p.elapsed)] if elapsed else []
        times += [f"eta ~{fmt_seconds(eta)}"] if eta is not None else []
        line = " | ".join(x for x in (head, best_part, " ".join(times)) if x)
        if width is None or len(line) <= width:
            return line
    return line if len(line) <= (width or 0) else line[:max(1, (width or 1) - 1)] + "…"


def fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def fmt_seconds(s: float) -> str:
    return f"{int(s // 60)}m{int(s % 60):02d}s"


# searched parameters as a narrow terminal shows them (the CSV and Markdown keep the full names)
SHORT_NAMES = {"learning_rate": "lr", "regularization_coeff": "reg", "batch_size": "batch", "optimizer": "opt",
               "weight_decay": "wd", "head_hidden": "hidden", "image_size": "px", "freeze_backbone": "frozen",
               "label_smoothing": "smooth", "warmup_proportion": "warmup", "dropout": "dropout"}


def short_name(name: str) -> str:
    """``train.learning_rate`` → ``lr``; an unknown long name keeps each part's first letters."""
    last = name.rsplit(".", 1)[-1]
    if last in SHORT_NAMES:
        return SHORT_NAMES[last]
    return last if len(last) <= 12 else "_".join(part[:4] for part in last.split("_") if part)[:12]


def _cell(column: str, v: Any) -> str:
    """A table cell: never cut, numbers compact (val_acc to 4 places, small rates in e-notation), text on one line
    with its control characters escaped (a trial.json may hold anything)."""
    from autoft.run.leaderboard import is_blank

    if is_blank(v):
        return ""
    if isinstance(v, bool) or not isinstance(v, float):
        return printable(str(v))
    if column in ("val_acc", "val_loss"):
        return f"{v:.4f}"
    if column == "seconds":
        return f"{v:.0f}" if v >= 100 else f"{v:.1f}"
    return f"{v:.1e}" if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e5) else f"{v:.3g}"


# the order columns are given up in when the terminal is narrow: the first ones always stay
_PRIORITY = ("rank", "trial_id", "val_acc", "status", "<params>", "seconds", "cost_per_epoch", "epochs_run",
             "best_epoch", "val_loss", "rerun_of", "error")
_NUMERIC = ("rank", "seconds", "cost_per_epoch", "best_epoch", "epochs_run", "val_acc", "val_loss")


def board_lines(board: Any, width: int | None) -> tuple[list[str], list[str]]:
    """The leaderboard as aligned text lines fitted to ``width`` columns (None: every column), and the names of the
    columns left out. Columns are kept by priority (rank, id, val_acc, status, the searched params, seconds, …);
    a cell is never broken or cut, except the error text, which is shortened when it is what does not fit."""

    table = board.table
    columns = list(table.columns)
    params = [c for c in columns if c not in _PRIORITY]
    order = [c for key in _PRIORITY for c in (params if key == "<params>" else [key]) if c in columns]
    heads = {c: printable(short_name(c) if c in params and width is not None else c) for c in columns}
    cells = {c: [_cell(c, v) for v in table[c]] for c in columns}
    widths = {c: max([len(heads[c])] + [len(x) for x in cells[c]]) for c in columns}
    empty = {c for c in ("error", "rerun_of") if c in columns and not any(cells[c])}
    kept: list[str] = []
    for c in order:
        if c in empty and width is not None:
            continue  # an empty column is not worth a place
        used = sum(widths[k] for k in kept) + 2 * len(kept)
        if width is None or used + widths[c] <= width:
            kept.append(c)
        elif c == "error" and width - used >= 12:  # the message, shortened, where 12+ columns remain
            widths[c] = width - used
            kept.append(c)
    kept.sort(key=columns.index)  # shown in the table's own order
    left_out = [printable(c) for c in columns if c not in kept and c not in empty]

    def row(values: dict[str, str]) -> str:
        out = []
        for c in kept:
            text = values[c]
            if len(text) > widths[c]:
                text = text[:widths[c] - 1] + "…"
            out.append(text.rjust(widths[c]) if c in _NUMERIC else text.ljust(widths[c]))
        return "  ".join(out).rstrip()

    lines = [row(heads), "  ".join("-" * widths[c] for c in kept)]
    lines += [row({c: cells[c][i] for c in kept}) for i in range(len(table))]
    return lines, left_out


def print_board(console: Any, board: Any, *, wide: bool = False, run: Any = None) -> None:
    """In a terminal: the table fitted to its width (``wide``: every column, however wide), and what was left out;
    piped: the Markdown table (pipe-friendly, never wrapped), as leaderboard.md holds it."""
    from autoft.run.leaderboard import markdown

    if not console.is_terminal:
        print(markdown(board), end="")
        return
    lines, left_out = board_lines(board, None if wide else console.width)
    text = "Leaderboard (ranked by val_acc)\n" + "\n".join(lines)
    if left_out and not wide:
        import textwrap

        where = f"autoft leaderboard {run} --wide" if run is not None else "autoft leaderboard RUN --wide"
        hint = (f"{len(left_out)} more column{'s' if len(left_out) > 1 else ''} ({', '.join(left_out)}): "
                f"{where}, or leaderboard.md / leaderboard.csv")
        text += "\n" + "\n".join(textwrap.wrap(hint, console.width, break_long_words=False, break_on_hyphens=False))
    console.print(text, markup=False, highlight=False, soft_wrap=True, crop=False)


def print_reruns(board: Any) -> None:
    """search.rerun_top_k's mean ± std table, when the run has reruns."""
    from autoft.run.selection import rerun_markdown

    text = rerun_markdown(board.records)
    if text:
        print(text, end="")


PREDICT_FORMATS = ("text", "json", "jsonl", "csv")


def format_predictions(preds: Sequence[Any], kind: str) -> str:
    """`autoft predict`'s stdout: text (readable images only; errors go to stderr), one JSON array, JSON Lines
    (one object per image: path, top, error) or CSV (one row per image and label; an unreadable image is one
    row with its error). Text is one line per image, control characters in names escaped; JSON keeps every name
    exactly (escaped as JSON does); CSV quotes as RFC 4180 does and puts ``'`` before a cell a spreadsheet would
    run as a formula."""

    if kind == "json":
        return json.dumps([p.to_json() for p in preds], indent=1) + "\n"
    if kind == "jsonl":
        return "".join(json.dumps(p.to_json()) + "\n" for p in preds)
    if kind == "csv":
        rows: list[list[Any]] = [["path", "rank", "label", "probability", "error"]]
        for p in preds:
            if p.error:
                rows.append([p.path, "", "", "", p.error])
            rows += [[p.path, rank, label, f"{prob:.6f}", ""] for rank, (label, prob) in enumerate(p.top, start=1)]
        return csv_text(rows)
    return "".join(printable(f"{p.path}: " + ", ".join(f"{label} {prob:.3f}" for label, prob in p.top)) + "\n"
                   for p in preds if not p.error)
