"""results/<run>/report/: PNG plots of a finished search and a self-contained report.html that shows them.

The optimisation history, parallel coordinates and learning curves are drawn from the run's own trial.json records
(every scored trial, stopped early or not); Optuna draws the parameter importances from the study; the confusion
matrix comes from the best bundle's predictions on the validation split (the test split after a train+val final
fit, when there is one). A plot that cannot be made is left out with a note saying why.

The study is only read: its SQLite file is opened read-only (a moved one is never re-created empty) and no table is
made in a server database. When it cannot be read, the report is drawn from the trial files alone, unless the
report there has the parameter importances: a report is never replaced by one that lacks them.
"""
from __future__ import annotations

import base64
import html
import io
import logging
import re
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from autoft._fs import atomic_write_bytes, atomic_write_text, make_tmp_dir, recover_dir, swap_dir
from autoft.errors import AutoftError, ConfigError
from autoft.run.bundle import is_bundle
from autoft.run.escape import printable
from autoft.run.layout import BEST_DIR, RunDir
from autoft.run.leaderboard import Leaderboard, is_blank, load_leaderboard
from autoft.run.records import TrialStatus
from autoft.run.storage import STUDY_FILE, StudyRef, open_read_only, read_study, shown_url

__all__ = ["Plot", "Report", "write_report", "try_write_report", "figure", "trial_order", "REPORT_DIR",
           "REPORT_HTML"]

REPORT_DIR = "report"
REPORT_HTML = "report.html"
TOP_K_CURVES = 5
_log = logging.getLogger(__name__)


class _Skip(Exception):
    """A plot that does not apply to this run; the message says why."""


@dataclass(frozen=True)
class Plot:
    name: str              # the PNG's file stem
    title: str
    path: Path | None      # None when skipped
    note: str = ""         # why it was skipped, or what it shows


@dataclass(frozen=True)
class Report:
    dir: Path
    html: Path
    plots: tuple[Plot, ...]


@dataclass(frozen=True)
class _Run:
    """What the plots read: the run folder, its config, its ranked trials and (when reachable) its study."""

    dir: Path
    cfg: Any
    board: Leaderboard
    study: Any | None
    study_note: str


def write_report(run_dir: str | Path, *, storage_url: str | None = None) -> Report:
    """Draw every plot and write report.html into run_dir/report/ (the folder swapped in whole); returns what was
    drawn and skipped."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # Optuna's plots use pyplot; no display is needed (or wanted) for PNGs
    run = _load_run(Path(run_dir), storage_url)
    dest = RunDir(run.dir).report
    if run.study is None:
        _keep_a_richer_report(run, dest)
        _log.warning("warning: %s; the report is drawn from the trial files alone (no parameter importances)",
                     run.study_note)
    tmp = make_tmp_dir(dest)
    try:
        plots = tuple(_draw(tmp, name, title, builder, run) for name, title, builder in _PLOTS)
        atomic_write_text(tmp / REPORT_HTML, _html(run, plots))
        swap_dir(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    plots = tuple(replace(p, path=dest / p.path.name) if p.path is not None else p for p in plots)
    return Report(dir=dest, html=dest / REPORT_HTML, plots=plots)


def _keep_a_richer_report(run: _Run, dest: Path) -> None:
    """Only the study gives the parameter importances: a report that has them is not redrawn without it."""
    if (recover_dir(dest) / f"{_IMPORTANCES}.png").is_file():
        raise AutoftError(f"report: {run.study_note}; {dest} has the parameter importances, which need the study, "
                          "so it is kept as it is (pass --storage URL where the study lives now)")


def try_write_report(run_dir: str | Path, *, storage_url: str | None = None) -> Report | None:
    """write_report for the end of a search: a failure is a logged warning, never a failed search."""
    try:
        return write_report(run_dir, storage_url=storage_url)
    except Exception as exc:  # the search's results are on disk already; a broken plot must not hide them
        _log.warning("report not written (%s: %s); retry with: autoft report %s", type(exc).__name__, exc, run_dir)
        return None


def _load_run(run_dir: Path, storage_url: str | None) -> _Run:
    run = RunDir(run_dir)
    cfg = run.load_config("report")
    study, note = _load_study(run, read_study(run, cfg.name), storage_url)
    return _Run(dir=run_dir, cfg=cfg, board=load_leaderboard(run_dir), study=study, study_note=note)


def _load_study(run: RunDir, ref: StudyRef, storage_url: str | None) -> tuple[Any | None, str]:
    """The run's study where study.json says it lives, or None and why not; ``storage_url`` (--storage) overrides
    it, and a storage so named that does not give the study is an error."""
    import optuna

    url = storage_url or ref.url
    what = "report --storage" if storage_url is not None else f"{run.path / STUDY_FILE}: storage"
    label = f"{what} {shown_url(url)}" if url else str(run.optuna_db)
    try:
        return optuna.load_study(study_name=ref.name, storage=open_read_only(run.path, url, what)), ""
    except (KeyError, ConfigError) as exc:  # KeyError: no such study there
        note = str(exc) if isinstance(exc, ConfigError) else f"{label}: no study named {ref.name!r}"
    if storage_url is not None:
        raise ConfigError(note)
    return None, note


def _draw(out: Path, name: str, title: str, builder: Callable[[_Run], tuple[Any, str]], run: _Run) -> Plot:
    import matplotlib
    import matplotlib.pyplot as plt

    path = out / f"{name}.png"
    try:
        # Optuna's plots switch pyplot to its ggplot style globally; rc_context puts the caller's style back.
        with warnings.catch_warnings(), matplotlib.rc_context():
            warnings.simplefilter("ignore")  # Optuna's matplotlib backend is marked experimental
            fig, note = builder(run)
    except _Skip as skip:
        return Plot(name, title, None, f"skipped: {skip}")
    except Exception as exc:  # one broken plot leaves the others (and the page) intact
        _log.warning("report: %s not drawn (%s: %s)", name, type(exc).__name__, exc)
        return Plot(name, title, None, f"not drawn: {type(exc).__name__}: {exc}")
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        atomic_write_bytes(path, buf.getvalue())
    finally:
        plt.close(fig)
    return Plot(name, title, path, note)


def _complete_trials(run: _Run) -> list[Any]:
    from optuna.trial import TrialState

    if run.study is None:
        raise _Skip(run.study_note)
    return run.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _figure_of(ax: Any) -> Any:
    ax = ax.flatten()[0] if isinstance(ax, np.ndarray) else ax
    fig = ax.figure
    fig.set_size_inches(9, 5.5)
    return fig


def _scored(run: _Run) -> list[Any]:
    """Every trial with a val_acc that is not still running — stopped early, interrupted and failed ones too — in
    the order they started (trial.json: the run's own record, whatever the study's storage holds)."""
    return sorted((r for r in run.board.records if r.best is not None and r.best.get("val_acc") is not None
                   and r.status is not TrialStatus.RUNNING), key=_start_order)


def _start_order(record: Any) -> tuple[float, str]:
    return record.started, record.trial_id


def trial_order(run_board: Leaderboard) -> dict[str, int]:
    """trial id → its place in the order trials started (1, 2, …): the history plot's x and the report table's #."""
    return {r.trial_id: i for i, r in enumerate(sorted(run_board.records, key=_start_order), start=1)}


def _marks(status: TrialStatus) -> dict[str, Any]:
    if status is TrialStatus.COMPLETED:
        return {"marker": "o", "facecolors": "tab:blue", "edgecolors": "tab:blue"}
    if status is TrialStatus.STOPPED:
        return {"marker": "o", "facecolors": "none", "edgecolors": "tab:orange"}
    return {"marker": "x", "c": "tab:red"}


def _optimization_history(run: _Run) -> tuple[Any, str]:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    scored = _scored(run)
    if not scored:
        raise _Skip("no trial reported an evaluation")
    order = trial_order(run.board)
    fig = Figure(figsize=(9, 5.5))
    ax = fig.subplots()
    labels = {TrialStatus.COMPLETED: "completed", TrialStatus.STOPPED: "stopped early (scheduler)"}
    for status in dict.fromkeys(r.status for r in scored):
        group = [r for r in scored if r.status is status]
        ax.scatter([order[r.trial_id] for r in group], [float(r.best["val_acc"]) for r in group], s=36, zorder=3,
                   label=labels.get(status, status.value), **_marks(status))
    best, xs, ys = -np.inf, [], []
    for r in scored:
        if r.status.finished:
            best = max(best, float(r.best["val_acc"]))
            xs.append(order[r.trial_id])
            ys.append(best)
    if xs:
        ax.step(xs + [max(order[r.trial_id] for r in scored)], ys + [ys[-1]], where="post", color="tab:green",
                label="best so far (finished trials)", zorder=2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="trial, in the order trials started (# in the table below)", ylabel="val_acc",
           title=f"val_acc of {len(scored)} scored trials")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    return fig, ("Each scored trial's val_acc as the leaderboard ranks it (its best evaluated epoch), in the order "
                 "trials started; hollow: stopped early by the scheduler; the line: the best finished trial so far.")


def _wrapped(name: str, width: int = 14) -> str:
    """An axis label on lines of about ``width``, broken after an underscore or a dot, never cut."""
    lines = [""]
    for part in re.split(r"(?<=[_.])", name):
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(lines)


def _axis(run: _Run, name: str, values: list[Any]) -> tuple[list[float], list[tuple[float, str]]]:
    """One parallel axis: each value placed in [0, 1] (log where the space is log, categories evenly) and ticks."""
    param = run.cfg.space.get(name)
    choices = getattr(param, "choices", None)
    if choices is None and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        choices = tuple(dict.fromkeys(values))
    if choices is not None:
        index = {str(c): i for i, c in enumerate(choices)}
        spread = max(1, len(choices) - 1)
        return ([index.get(str(v), 0) / spread for v in values],
                [(i / spread, str(c)) for i, c in enumerate(choices)])
    low = float(getattr(param, "low", min(values)))
    high = float(getattr(param, "high", max(values)))
    log = bool(getattr(param, "log", False)) and low > 0
    f = (lambda x: np.log10(x)) if log else (lambda x: x)
    span = (f(high) - f(low)) or 1.0
    ticks = [(0.0, f"{low:.3g}"), (0.5, f"{(10 ** ((f(low) + f(high)) / 2)) if log else (low + high) / 2:.3g}"),
             (1.0, f"{high:.3g}")]
    return [float((f(float(v)) - f(low)) / span) for v in values], ticks


def _param_importances(run: _Run) -> tuple[Any, str]:
    from optuna.visualization.matplotlib import plot_param_importances

    complete = _complete_trials(run)
    params = {name for t in complete for name in t.params}
    if len(complete) < 2:
        raise _Skip(f"parameter importances need at least 2 complete trials; this study has {len(complete)}")
    if len(params) < 2:
        raise _Skip(f"a single searched parameter ({', '.join(params) or 'none'}) is trivially all the importance")
    evaluator, method = _importance_evaluator()
    assert run.study is not None  # _complete_trials skips the plot without one
    return _figure_of(plot_param_importances(run.study, evaluator=evaluator, target_name="val_acc")), \
        f"How much each hyperparameter matters to val_acc ({method} over the {len(complete)} complete trials)."


def _importance_evaluator() -> tuple[Any, str]:
    """Optuna's default fANOVA needs scikit-learn, which autoft does not require; PED-ANOVA does without."""
    import importlib.util

    import optuna

    if importlib.util.find_spec("sklearn") is not None:
        return optuna.importance.FanovaImportanceEvaluator(seed=0), "fANOVA"
    return optuna.importance.PedAnovaImportanceEvaluator(), "PED-ANOVA"


def _parallel_coordinate(run: _Run) -> tuple[Any, str]:
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    scored = [r for r in _scored(run) if r.params]
    if not scored:
        raise _Skip("no scored trial with searched parameters")
    names = list(dict.fromkeys(k for r in scored for k in r.params))
    accs = [float(r.best["val_acc"]) for r in scored]
    axes = [_axis(run, n, [r.params.get(n) for r in scored]) for n in names]
    low, high = min(accs), max(accs)
    acc_pos = [(a - low) / ((high - low) or 1.0) for a in accs]
    acc_ticks = [(0.0, f"{low:.4f}"), (1.0, f"{high:.4f}")] if high > low else [(0.0, f"{low:.4f}")]
    columns = [pos for pos, _ in axes] + [acc_pos]
    fig = Figure(figsize=(max(8.0, 1.7 * (len(names) + 1)), 5.5))
    ax = fig.subplots()
    cmap, norm = colormaps["viridis"], Normalize(vmin=low, vmax=high if high > low else low + 1e-9)
    for i in sorted(range(len(scored)), key=lambda i: accs[i]):  # the best drawn last, on top
        ax.plot(range(len(columns)), [c[i] for c in columns], color=cmap(norm(accs[i])), linewidth=1.6, alpha=0.9,
                linestyle="-" if scored[i].status is TrialStatus.COMPLETED else "--")
    for x, ticks in enumerate([t for _, t in axes] + [acc_ticks]):
        ax.axvline(x, color="0.4", linewidth=0.8)
        for y, label in ticks:
            ax.text(x + 0.04, y, label, fontsize="x-small", va="center", ha="left", color="0.2")
    ax.set_xticks(range(len(columns)), [_wrapped(n) for n in names] + ["val_acc"], fontsize="small")
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(columns) - 0.6)
    ax.set_ylim(-0.05, 1.05)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="val_acc", fraction=0.03)
    stopped = sum(r.status is not TrialStatus.COMPLETED for r in scored)
    ax.set_title(f"{len(scored)} scored trials" + (f" (dashed: {stopped} stopped early or not finished)"
                                                   if stopped else ""))
    return fig, ("One line per scored trial through its hyperparameter values (log axes where the space is log), "
                 "coloured by val_acc (dark: low, yellow: high); dashed: stopped early or not finished.")


def _learning_curves(run: _Run) -> tuple[Any, str]:
    from matplotlib.figure import Figure

    top = [r for r in run.board.records if r.history and r.status is not TrialStatus.RUNNING][:TOP_K_CURVES]
    if not top:
        raise _Skip("no trial reported an evaluation")
    fig = Figure(figsize=(12, 5))
    acc_ax, loss_ax = fig.subplots(1, 2)
    for rank, record in enumerate(top, start=1):
        epochs = [float(h.get("epoch", i + 1)) for i, h in enumerate(record.history)]
        label = f"#{rank} {record.trial_id}"
        line, = acc_ax.plot(epochs, [h.get("val_acc", np.nan) for h in record.history], marker="o", label=label)
        colour = line.get_color()
        loss_ax.plot(epochs, [h.get("train_loss", np.nan) for h in record.history], color=colour, marker=".")
        loss_ax.plot(epochs, [h.get("val_loss", np.nan) for h in record.history], color=colour, marker="o",
                     linestyle="--")
    acc_ax.set(title="Validation accuracy", xlabel="epoch", ylabel="val_acc")
    loss_ax.set(title="Loss (solid: train, dashed: val; colours as on the left)", xlabel="epoch",
                ylabel="cross-entropy")
    for ax in (acc_ax, loss_ax):
        ax.grid(alpha=0.3)
    acc_ax.legend(fontsize="small")  # one entry per trial; the loss panel's colours are the same trials
    return fig, f"The top {len(top)} trials of the leaderboard, one evaluation per point (from trial.json)."


def _confusion_matrix(run: _Run) -> tuple[Any, str]:
    from matplotlib.figure import Figure

    from autoft.data import load_for_config
    from autoft.serving.predict import Predictor

    bundle = run.dir / BEST_DIR
    if not is_bundle(bundle):
        raise _Skip(f"no {BEST_DIR}/ bundle (no trial finished)")
    predictor = Predictor(bundle)
    data = load_for_config(run.cfg)
    names = list(predictor.meta.class_names)
    if names != list(data.class_names):
        raise _Skip(f"{BEST_DIR}/ classes {names} differ from the data's {list(data.class_names)}")
    # a final fit trained best_model/ on train+val: its validation score is not held out, so the test split
    # (scored once anyway) is shown when there is one, and the caption says so when there is not
    refit = predictor.meta.metrics.get("final_fit") == "train+val"
    split, val = ("test", data.test) if refit and data.test is not None else ("validation", data.val)
    predicted = np.concatenate([predictor.logits(np.asarray(val.images[i:i + 64])).argmax(axis=1)
                                for i in range(0, len(val), 64)])
    matrix = np.zeros((len(names), len(names)), dtype=np.int64)
    np.add.at(matrix, (val.labels, predicted), 1)
    accuracy = float(np.trace(matrix)) / max(1, len(val))
    side = min(14.0, 4.0 + 0.45 * len(names))
    fig = Figure(figsize=(side + 1.5, side))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ticks = range(len(names))
    ax.set_xticks(ticks, names, rotation=45, ha="right")
    ax.set_yticks(ticks, names)
    ax.set(xlabel="predicted", ylabel="true", title=f"{BEST_DIR} on the {split} split ({len(val)} images)")
    if len(names) <= 30:
        threshold = matrix.max() / 2
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center", color="white" if count > threshold else "black")
    caveat = ""
    if refit and split == "validation":
        caveat = " best_model/ was refit on train+val (search.final_fit), so these images are not held out."
    elif refit:
        caveat = " best_model/ was refit on train+val (search.final_fit): the test split is the held-out one."
    return fig, (f"Rows: true class, columns: predicted. Accuracy {accuracy:.4f} on {len(val)} {split} images."
                 + caveat)


_IMPORTANCES = "param_importances"  # the one plot drawn from the study
_PLOTS: tuple[tuple[str, str, Callable[[_Run], tuple[Any, str]]], ...] = (
    ("optimization_history", "Optimisation history", _optimization_history),
    (_IMPORTANCES, "Parameter importances", _param_importances),
    ("parallel_coordinate", "Parallel coordinates", _parallel_coordinate),
    ("learning_curves", "Learning curves of the top trials", _learning_curves),
    ("confusion_matrix", "Confusion matrix of the best model", _confusion_matrix),
)


def figure(run_dir: str | Path, name: str) -> Any:
    """One report plot's matplotlib Figure (``name`` as its PNG's stem), drawn as write_report draws it."""
    builders = {n: b for n, _t, b in _PLOTS}
    if name not in builders:
        raise KeyError(f"no report plot named {name!r}; there are {', '.join(builders)}")
    return builders[name](_load_run(Path(run_dir), None))[0]


_STYLE = """body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;color:#222}
table{border-collapse:collapse;font-size:.9rem}th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
th{background:#f3f3f3}figure{margin:1.5rem 0}img{max-width:100%;border:1px solid #eee}
pre{background:#f7f7f7;padding:1rem;overflow:auto}.note{color:#666;font-style:italic}"""


def _html(run: _Run, plots: tuple[Plot, ...]) -> str:
    name = html.escape(printable(run.dir.name))
    config = RunDir(run.dir).config_file.read_text(encoding="utf-8")
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>autoft report: {name}</title>"
             f"<style>{_STYLE}</style></head><body><h1>autoft report: {name}</h1>", _summary(run),
             "<h2>Leaderboard</h2>", _table(run.board), "<h2>Plots</h2>", *map(_figure, plots),
             f"<h2>Config</h2><pre id='config'>{html.escape(config)}</pre>", "</body></html>"]
    return "\n".join(parts) + "\n"


def _summary(run: _Run) -> str:
    def e(text: str) -> str:
        return html.escape(printable(text))

    records = run.board.records
    status = ", ".join(f"{n} {s.value}" for s in TrialStatus if (n := sum(r.status is s for r in records)))
    best = run.board.best
    line = "No trial finished."
    if best is not None:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
        line = f"Best val_acc <b>{best.require_best()['val_acc']:.4f}</b> (trial {e(best.trial_id)}: {e(params)})."
    return (f"<p>{len(records)} of {run.cfg.search.trials} trials: {e(status or 'none')}. {line}</p>"
            f"<p class='note'>Written {e(time.strftime('%Y-%m-%d %H:%M:%S'))} from {e(str(run.dir))}</p>")


def _figure(plot: Plot) -> str:
    title, note = html.escape(plot.title), html.escape(plot.note)
    if plot.path is None:
        return f"<section id='{plot.name}'><h3>{title}</h3><p class='note'>{note}</p></section>"
    data = base64.b64encode(plot.path.read_bytes()).decode("ascii")
    return (f"<figure id='{plot.name}'><h3>{title}</h3><img alt='{title}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{note}</figcaption></figure>")


def _fmt(v: Any) -> str:
    """A cell's text: from trial.json, so on one line and without control characters (nor a lone surrogate, which
    UTF-8 cannot write)."""
    if is_blank(v):
        return ""
    return f"{v:.4g}" if isinstance(v, float) else printable(str(v))


def _table(board: Leaderboard) -> str:
    """The leaderboard, with ``#``: each trial's place in the order trials started (the history plot's x)."""
    order = trial_order(board)
    head = "".join(f"<th>{html.escape(_fmt(c))}</th>" for c in ("#", *board.table.columns))
    rows = "".join("<tr>" + f"<td>{order.get(str(row.trial_id), '')}</td>" +
                   "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
                   for row in board.table.itertuples(index=False))
    return f"<table id='leaderboard'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
