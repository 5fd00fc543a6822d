"""What `autoft` prints: the live search display (``Display``), its progress line, and the leaderboard tables."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autoft.search.progress import Progress

__all__ = ["make_console", "Display", "progress_line", "ray_dashboard_line", "print_board", "print_reruns", "fmt",
           "fmt_seconds"]


def make_console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)  # long paths stay whole when piped or captured


def ray_dashboard_line(url: str) -> str:
    token = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"  # ray.init sets it when token auth is on
    return f"Ray dashboard: {url}" + ("  (it asks for the token `ray get-auth-token` prints)" if token else "")


class Display:
    """Live trial counts in a terminal; one line per event otherwise; nothing with --quiet."""

    def __init__(self, console: Any, *, quiet: bool, plain: bool) -> None:
        self.console, self.quiet, self.plain = console, quiet, plain
        self.live: Any = None

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
        line = progress_line(p)
        if self.live is not None:
            self.live.update(f"{line}\n[dim]{p.last_event}[/dim]")
        else:
            print(f"{line} | {p.last_event}", flush=True)


def progress_line(p: Progress) -> str:
    finished = p.done + p.stopped + p.failed
    best = f"{p.best_val_acc:.4f}" if p.best_val_acc is not None else "-"
    eta = ""
    if finished and finished < p.budget:
        eta = f" eta ~{fmt_seconds(p.elapsed / finished * (p.budget - finished))}"
    params = ", ".join(f"{k}={fmt(v)}" for k, v in p.best_params.items())
    return (f"trials {finished}/{p.budget}: {p.done} done, {p.stopped} stopped early, {p.running} running, "
            f"{p.failed} failed | best val_acc {best} ({params}) | {fmt_seconds(p.elapsed)}{eta}")


def fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def fmt_seconds(s: float) -> str:
    return f"{int(s // 60)}m{int(s % 60):02d}s"


def print_board(console: Any, board: Any) -> None:
    """A rich table in a terminal; the Markdown table (pipe-friendly, never wrapped) otherwise."""
    from rich.table import Table

    from autoft.run.leaderboard import markdown

    if not console.is_terminal:
        print(markdown(board), end="")
        return
    table = Table(title="Leaderboard (ranked by val_acc)")
    for col in board.table.columns:
        table.add_column(str(col), overflow="fold")
    for row in board.table.itertuples(index=False):
        table.add_row(*("" if v is None or v != v else fmt(v) for v in row))
    console.print(table)


def print_reruns(board: Any) -> None:
    """search.rerun_top_k's mean ± std table, when the run has reruns."""
    from autoft.run.selection import rerun_markdown

    text = rerun_markdown(board.records)
    if text:
        print(text, end="")
