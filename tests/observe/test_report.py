"""results/<run>/report/: plots of a real finished search, report.html, and the skips for runs too small to plot."""
from __future__ import annotations

import base64
import html.parser
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from PIL import Image
from searched_run import searched_run

from autoft.config import config_from_dict, config_to_dict
from autoft.run.records import TrialRecord, TrialStatus
from autoft.observe.report import REPORT_DIR, REPORT_HTML, try_write_report, write_report
from autoft.search.run import SearchOutcome

PLOTS = ("optimization_history", "param_importances", "parallel_coordinate", "learning_curves", "confusion_matrix")
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def finished(shapes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> SearchOutcome:
    return searched_run(shapes_dir, tmp_path_factory)


def _complete_trials(run: Path) -> int:
    study = optuna.load_study(study_name=run.name, storage=f"sqlite:///{run / 'optuna.db'}")  # named after the folder
    return sum(t.state is optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_search_writes_nontrivial_plots(finished: SearchOutcome) -> None:
    out = finished.run_dir / REPORT_DIR
    expected = set(PLOTS)
    if _complete_trials(finished.run_dir) < 2:  # ASHA may stop two of the three trials
        expected.discard("param_importances")
    assert {p.stem for p in out.glob("*.png")} == expected
    for png in out.glob("*.png"):
        assert png.stat().st_size > 10_000, png
        with Image.open(png) as img:
            assert img.format == "PNG" and img.width >= 500 and img.height >= 300, (png, img.size)
            colours = img.convert("RGB").getcolors(maxcolors=1_000_000)
            assert colours is not None and len(colours) > 50, f"{png.name} is nearly blank"
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temp files left behind"


def test_cli_report_redraws_and_the_confusion_matrix_scores_the_best_model(finished: SearchOutcome) -> None:
    out = subprocess.run([sys.executable, "-m", "autoft.cli", "report", str(finished.run_dir)],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    page = finished.run_dir / REPORT_DIR / REPORT_HTML
    assert out.stdout.strip().splitlines()[-1] == f"Report: {page}"
    best = finished.leaderboard.best.best["val_acc"]
    # the matrix is the best bundle predicting the val split the trials were scored on: same accuracy
    assert re.search(rf"Accuracy {best:.4f} on \d+ validation images", out.stdout), out.stdout


class _Page(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: dict[str, str] = {}     # figure id -> src
        self.table_cells: list[str] = []
        self.ids: set[str] = set()
        self._figure = ""
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag in ("figure", "section"):
            self._figure = a.get("id") or ""
        elif tag == "img":
            self.images[self._figure] = a.get("src") or ""
        elif tag == "td":
            self._in_cell = True

    def handle_endtag(self, tag: str) -> None:
        self._in_cell = self._in_cell and tag != "td"

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.table_cells.append(data)


def test_report_html_is_self_contained_with_leaderboard_plots_and_config(finished: SearchOutcome) -> None:
    out = finished.run_dir / REPORT_DIR
    text = (out / REPORT_HTML).read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    assert {"leaderboard", "config"} <= page.ids
    for record in finished.leaderboard.records:
        assert record.trial_id in page.table_cells
    pngs = {p.stem: p for p in out.glob("*.png")}
    assert set(page.images) == set(pngs)
    for name, src in page.images.items():
        assert src == "data:image/png;base64," + base64.b64encode(pngs[name].read_bytes()).decode()
    assert not re.search(r"""(src|href)=['"](?!data:)""", text), "the page must not load anything"
    assert "efficientnet_lite0" in text and "learning_rate" in text
    # the failed row says why (training or validation loss, whichever diverges first)
    assert any(re.match(r"TrialError: (val_)?loss became (nan|inf)", c) for c in page.table_cells), page.table_cells


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="no /usr/bin/chromium (apt-get install -y chromium)")
def test_report_html_shows_table_and_every_image_in_a_browser(finished: SearchOutcome) -> None:
    page = finished.run_dir / REPORT_DIR / REPORT_HTML
    script = ("<script>window.onload=()=>{const imgs=[...document.images];document.title="
              "'loaded:'+imgs.filter(i=>i.complete&&i.naturalWidth>300).length+'/'+imgs.length+"
              "' rows:'+document.querySelectorAll('#leaderboard tbody tr').length}</script>")
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", script + "</body>"), encoding="utf-8")
    try:
        dom = _chromium_dom(probe.as_uri())
    finally:
        probe.unlink()
    images = len(list(page.parent.glob("*.png")))
    rows = len(finished.leaderboard.records)
    assert f"<title>loaded:{images}/{images} rows:{rows}</title>" in dom


def _chromium_dom(url: str) -> str:
    with tempfile.TemporaryDirectory(prefix="autoft-chromium-") as profile:
        out = subprocess.run(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--allow-file-access-from-files", "--virtual-time-budget=5000",
             "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def _tiny_run(tmp_path: Path, space: dict, values: list[float]) -> Path:
    """A run folder without training: config.yaml, one trial.json per value and a study with those trials."""
    raw = {"name": "tiny", "data": {"path": str(tmp_path), "image_size": 32}, "space": space}
    cfg = config_from_dict(raw)
    run = tmp_path / "run"
    (run / "trials").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    study = optuna.create_study(study_name="tiny", storage=f"sqlite:///{run / 'optuna.db'}", direction="maximize")
    for i, value in enumerate(values):
        trial = study.ask(cfg.space.to_optuna())
        history = ({"epoch": 1, "step": 4, "train_loss": 1.0, "val_loss": 1.1, "val_acc": value / 2},
                   {"epoch": 2, "step": 8, "train_loss": 0.8, "val_loss": 0.9, "val_acc": value})
        TrialRecord(trial_id=f"t{i}", params=trial.params, status=TrialStatus.COMPLETED, number=trial.number,
                    history=history, started=float(i), seconds=1.0).save(run / "trials" / f"t{i}")
        study.tell(trial, value)
    return run


def test_small_runs_skip_importances_and_confusion_matrix_with_a_note(tmp_path: Path) -> None:
    one_param = {"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}
    report = write_report(_tiny_run(tmp_path, one_param, [0.5, 0.7, 0.6]))
    notes = {p.name: p.note for p in report.plots if p.path is None}
    assert notes == {
        "param_importances": "skipped: a single searched parameter (learning_rate) is trivially all the importance",
        "confusion_matrix": "skipped: no best_model/ bundle (no trial finished)",
    }
    text = report.html.read_text(encoding="utf-8")
    assert "trivially all the importance" in text and "no best_model/ bundle" in text
    assert (report.dir / "learning_curves.png").is_file() and (report.dir / "optimization_history.png").is_file()


TWO_PARAMS = {"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
              "batch_size": {"type": "categorical", "choices": [8, 16]}}


def test_one_complete_trial_is_too_few_for_importances(tmp_path: Path) -> None:
    report = write_report(_tiny_run(tmp_path, TWO_PARAMS, [0.5]))
    plot = next(p for p in report.plots if p.name == "param_importances")
    assert plot.path is None
    assert plot.note == "skipped: parameter importances need at least 2 complete trials; this study has 1"


def test_importances_are_drawn_from_two_complete_trials_of_two_params(tmp_path: Path) -> None:
    report = write_report(_tiny_run(tmp_path, TWO_PARAMS, [0.5, 0.8, 0.6, 0.7]))
    plot = next(p for p in report.plots if p.name == "param_importances")
    assert plot.path == report.dir / "param_importances.png" and plot.path.stat().st_size > 10_000
    assert "over the 4 complete trials" in plot.note


def test_a_failing_report_is_a_warning_not_an_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="autoft.observe.report"):
        assert try_write_report(tmp_path) is None
    assert f"report not written (AutoftError: report {tmp_path}: not a run folder" in caplog.text
    assert f"autoft report {tmp_path}" in caplog.text


def _mixed_run(tmp_path: Path) -> Path:
    """Completed, stopped-early, interrupted and failed trials, as an ASHA search with a Ctrl-C leaves them."""
    run = _tiny_run(tmp_path, {**TWO_PARAMS, "regularization_coeff": {"type": "float", "low": 1e-6, "high": 1e-3,
                                                                       "log": True}}, [])
    rows = [("a", TrialStatus.COMPLETED, [0.41, 0.52], {"learning_rate": 1e-3, "batch_size": 8,
                                                         "regularization_coeff": 1e-5}),
            ("b", TrialStatus.STOPPED, [0.66], {"learning_rate": 3e-4, "batch_size": 16, "regularization_coeff": 1e-4}),
            ("c", TrialStatus.COMPLETED, [0.12, 0.10], {"learning_rate": 9e-3, "batch_size": 8,
                                                        "regularization_coeff": 2e-6}),
            ("d", TrialStatus.INTERRUPTED, [0.30], {"learning_rate": 2e-4, "batch_size": 16,
                                                    "regularization_coeff": 5e-4}),
            ("e", TrialStatus.FAILED, [], {"learning_rate": 1e-2, "batch_size": 8, "regularization_coeff": 1e-6})]
    for i, (tid, status, accs, params) in enumerate(rows):
        history = tuple({"epoch": e + 1, "val_acc": a, "val_loss": 1.0, "train_loss": 1.0} for e, a in enumerate(accs))
        TrialRecord(trial_id=tid, params=params, status=status, history=history, started=float(i), seconds=1.0,
                    error="TrialError: loss became nan" if status is TrialStatus.FAILED else None
                    ).save(run / "trials" / tid)
    return run


def test_history_has_every_scored_trial_in_start_order_with_integer_ticks(tmp_path: Path) -> None:
    from autoft.observe.report import figure

    run = _mixed_run(tmp_path)
    fig = figure(run, "optimization_history")
    ax = fig.axes[0]
    points = sorted((float(x), round(float(y), 4)) for c in ax.collections for x, y in c.get_offsets())
    assert points == [(1, 0.52), (2, 0.66), (3, 0.12), (4, 0.30)]  # the stopped 0.66 and interrupted 0.30 too
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"completed", "stopped early (scheduler)"}
    ticks = [t for t in ax.get_xticks() if 0.5 <= t <= 4.5]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
    best = [line for line in ax.get_lines() if "best so far" in str(line.get_label())][0]
    assert max(best.get_ydata()) == 0.66  # the best finished trial: stopped early counts, interrupted does not


def test_parallel_coordinates_show_the_worst_trial_and_full_axis_names(tmp_path: Path) -> None:
    from matplotlib import colormaps

    from autoft.observe.report import figure

    run = _mixed_run(tmp_path)
    fig = figure(run, "parallel_coordinate")
    ax = fig.axes[0]
    lines = [line for line in ax.get_lines() if len(line.get_xdata()) == 4]  # 3 params + val_acc
    assert len(lines) == 4  # every scored trial
    worst = colormaps["viridis"](0.0)
    assert any(tuple(line.get_color()) == worst for line in lines)  # dark, visible on white
    assert sum(line.get_linestyle() == "--" for line in lines) == 2  # stopped early, interrupted
    labels = [t.get_text().replace("\n", "") for t in ax.get_xticklabels()]
    assert labels == ["learning_rate", "batch_size", "regularization_coeff", "val_acc"]  # wrapped, never cut
    report = write_report(run)
    with Image.open(report.dir / "parallel_coordinate.png") as img:
        pixels = np.asarray(img.convert("RGB"), dtype=np.int16).reshape(-1, 3)
        dark = np.array([round(255 * c) for c in worst[:3]])
        assert int((np.abs(pixels - dark).max(axis=1) <= 12).sum()) > 50  # the worst trial's line is drawn
    text = report.html.read_text(encoding="utf-8")
    assert "<th>#</th>" in text


# --- a report never makes things worse: the study is only read, and a report is never replaced by a poorer one ---

def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "AUTOFT_DEBUG"}
    return subprocess.run([sys.executable, "-m", "autoft.cli", *args], capture_output=True, text=True, timeout=300,
                          env=env)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _move_the_study(run: Path, where: str, tmp_path: Path) -> tuple[str, Path]:
    """The run's optuna.db moved to tmp_path/moved.db while the run still names its old place (or a server that
    does not answer); returns what the error must name and the path no command may create."""
    (run / "optuna.db").rename(tmp_path / "moved.db")
    gone = tmp_path / "gone" / "optuna.db"
    gone.parent.mkdir()  # the folder is still there, so SQLite could create the file in it
    storage = {"sqlite": f"sqlite:///{gone}", "own": None, "server": "postgresql://autoft@127.0.0.1:9/autoft"}[where]
    (run / "study.json").write_text(json.dumps({"study": "tiny", "storage": storage}))
    return (storage or str(run / "optuna.db")), (gone if where == "sqlite" else run / "optuna.db")


@pytest.mark.parametrize("where", ["sqlite", "own", "server"])
def test_a_moved_study_keeps_a_report_that_has_importances(where: str, tmp_path: Path) -> None:
    run = _tiny_run(tmp_path, TWO_PARAMS, [0.5, 0.8, 0.6, 0.7])
    write_report(run)
    before = _files(run / REPORT_DIR)
    assert "param_importances.png" in before
    named, never_made = _move_the_study(run, where, tmp_path)
    out = _cli("report", str(run))
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("autoft: error: report: ") and named in lines[0], out.stderr
    assert "has the parameter importances" in lines[0] and "--storage" in lines[0]
    assert _files(run / REPORT_DIR) == before  # untouched
    assert not never_made.exists()
    redraw = _cli("report", str(run), "--storage", f"sqlite:///{tmp_path / 'moved.db'}")  # where it lives now
    assert redraw.returncode == 0, redraw.stderr
    assert "Parameter importances: " + str(run / REPORT_DIR / "param_importances.png") in redraw.stdout


@pytest.mark.parametrize("where", ["sqlite", "server"])
def test_a_moved_study_without_a_report_draws_one_from_the_trial_files(where: str, tmp_path: Path) -> None:
    run = _tiny_run(tmp_path, TWO_PARAMS, [0.5, 0.8, 0.6, 0.7])
    named, never_made = _move_the_study(run, where, tmp_path)
    out = _cli("report", str(run))
    assert out.returncode == 0, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("autoft: warning: ") and named in lines[0], out.stderr
    assert "drawn from the trial files alone" in lines[0]
    assert not never_made.exists()
    assert {p.name for p in (run / REPORT_DIR).iterdir()} == {
        "optimization_history.png", "parallel_coordinate.png", "learning_curves.png", REPORT_HTML}
    assert f"Parameter importances: skipped: {run / 'study.json'}: storage" in out.stdout


def test_a_server_that_never_answers_is_waited_for_at_most_the_connect_timeout(tmp_path: Path) -> None:
    run = _tiny_run(tmp_path, TWO_PARAMS, [0.5, 0.8])
    with socket.socket() as server:  # accepts connections (the kernel's backlog) and never says a word
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        (run / "study.json").write_text(json.dumps({"study": "tiny", "storage": f"postgresql://u@127.0.0.1:{port}/db"}))
        started = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "autoft.cli", "report", str(run)], capture_output=True, text=True,
                             timeout=120, env={**os.environ, "AUTOFT_CONNECT_TIMEOUT": "2"})
        waited = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    assert "no answer from the database server in 2 s" in out.stderr and waited < 30, (waited, out.stderr)
    assert (run / REPORT_DIR / REPORT_HTML).is_file()


def test_a_storage_given_that_cannot_be_read_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    run = _tiny_run(tmp_path, TWO_PARAMS, [0.5, 0.8])
    missing = tmp_path / "elsewhere" / "x.db"
    out = _cli("report", str(run), "--storage", f"sqlite:///{missing}")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == f"autoft: error: report --storage sqlite:///{missing}: no such file"
    assert not missing.parent.exists() and not (run / REPORT_DIR).exists()
    other = tmp_path / "other.db"
    optuna.create_study(study_name="someone-else", storage=f"sqlite:///{other}")
    out = _cli("report", str(run), "--storage", f"sqlite:///{other}")
    assert out.returncode == 2 and out.stderr.strip() == (f"autoft: error: report --storage sqlite:///{other}: "
                                                          "no study named 'tiny'")
    assert not (run / REPORT_DIR).exists()


BAD_TRIALS = {  # trial id: (fields replaced in a real trial.json, the field the warning names)
    "p": ({"params": 5}, "'params'"),
    "s": ({"status": 7}, "'status'"),
    "a": ({"history": [{"epoch": 1, "val_acc": "abc"}]}, "'history'[0]['val_acc']"),
    "e": ({"history": [{"epoch": None, "val_acc": 0.5}]}, "'history'[0]['epoch']"),
    "b": ({"best": [1], "metrics": "abc", "number": []}, "'number'"),  # best, metrics: not trial.json fields
    "n": ({"params": {"learning_rate": [[[[[[[["deep"]]]]]]]]}}, "'params'['learning_rate']"),
}


def test_tampered_trial_files_of_a_real_run_are_named_and_skipped(finished: SearchOutcome, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished.run_dir, run, ignore=shutil.ignore_patterns("ray"))
    real = json.loads(next((run / "trials").glob("*/trial.json")).read_text())
    for tid, (fields, _) in BAD_TRIALS.items():
        (run / "trials" / tid).mkdir()
        (run / "trials" / tid / "trial.json").write_text(json.dumps({**real, "trial_id": tid, **fields}))
    hostile = {**real, "trial_id": "hostile", "status": "failed", "history": [],
               "error": "TrialError: <b>bold</b> & \x1b[31mred\n=cmd"}
    (run / "trials" / "hostile").mkdir()
    (run / "trials" / "hostile" / "trial.json").write_text(json.dumps(hostile))
    for command in ("leaderboard", "report"):
        out = _cli(command, str(run))
        assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-3000:]
        warned = [line for line in out.stderr.splitlines() if "trial.json" in line]
        assert len(warned) == len(BAD_TRIALS), out.stderr
        for tid, (_, field) in BAD_TRIALS.items():
            line = next(w for w in warned if str(run / "trials" / tid / "trial.json") in w)
            assert line.startswith("autoft: warning: ") and f"field {field} " in line and line.endswith("skipped")
        assert "\x1b" not in out.stdout
    text = (run / REPORT_DIR / REPORT_HTML).read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    assert "TrialError: <b>bold</b> & \\x1b[31mred\\n=cmd" in page.table_cells  # shown as text, on one line
    assert "<b>bold" not in text and "\x1b" not in text
    shown = {r.trial_id for r in finished.leaderboard.records} | {"hostile"}
    assert shown <= set(page.table_cells) and not set(BAD_TRIALS) & set(page.table_cells)
