"""The `autoft` command: parse, call the public API, print. Heavy modules are imported inside commands."""
from __future__ import annotations

import errno
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from autoft.cli.datasets import datasets_app
from autoft.cli.display import (
    PREDICT_FORMATS,
    Display,
    format_predictions,
    make_console,
    print_board,
    print_reruns,
    ray_dashboard_line,
)
from autoft.cli.options import ParamFile, Quiet, RunDir, SetOpt
from autoft.errors import PADDLE_MISSING, AutoftError
from autoft.run.escape import printable

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Hyperparameter-search fine-tuning for image classification (Paddle + Ray Tune + Optuna).")
app.add_typer(datasets_app, name="datasets")


def _planned_config(data: Path | None, dataset: str | None, time_budget: str | None, preset: str,
                    overrides: list[str], param_file: Path | None, started: float, dry_run: bool) -> Any:
    """A search without a YAML: probe, plan, print the plan; the plan's config with --set applied (None: a dry
    run, which stops after the plan)."""
    from autoft.config import config_from_dict, parse_duration, parse_set
    from autoft.config.loader import set_dotted
    from autoft.data.loader import survey_images
    from autoft.training.autoplan import check_preset, make_auto_plan, probe_device

    check_preset(preset)  # before the probe spends any time
    if data is not None and dataset is not None:
        raise AutoftError(f"--dataset {dataset}: give either DATA or --dataset, not both")
    if param_file is not None:
        raise AutoftError("--param-file: a search without a YAML makes its own space; write a YAML to give one")
    budget = parse_duration("--time-budget", time_budget if time_budget is not None else "10m")
    if budget is None or not 0 < budget < 10 ** 9:
        raise AutoftError(f"--time-budget: must be a positive duration like 10m, got {time_budget!r}")
    spec = {"dataset": dataset} if dataset is not None else {"path": str(Path(str(data)).resolve())}
    source = dataset if dataset is not None else str(data)
    survey = survey_images(dataset=spec.get("dataset"), path=spec.get("path"))
    workers = max(1, os.cpu_count() or 1)
    plan = make_auto_plan(data=spec, source=source, counts=(survey.train, survey.val, survey.classes),
                          budget=budget, preset=preset, probe=probe_device(), workers=workers,
                          spent=time.time() - started, native=survey.native)
    raw = plan.config
    for key, value in parse_set(overrides):
        set_dotted(raw, key, value)
    cfg = config_from_dict(raw, source="the plan")
    for line in plan.lines():
        print(line, flush=True)
    if dry_run:
        print("dry run: nothing was trained or written; without --dry-run this plan becomes the run's config.yaml")
        return None
    return cfg


def _first_line(exc: BaseException) -> str:
    """An exception as one line: its message's first line, else its class name."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _err(message: str) -> None:
    """One line on stderr: a file name holding a newline or an escape sequence is shown escaped, never acted on."""
    sys.stderr.write(f"autoft: error: {printable(message)}\n")


@app.command(short_help="Search hyperparameters: Optuna, Ray Tune, Paddle.")
def search(
    config: Annotated[Path | None, typer.Argument(
        metavar="CONFIG|DATA",
        help="A search YAML (default: the bundled demo), or data without a YAML: an image folder, a PaddleHub "
             "list folder or a .csv")] = None,
    time_budget: Annotated[str | None, typer.Option(
        "--time-budget", metavar="DURATION",
        help="The whole search's time, e.g. 10m (overrides search.time_budget; without a YAML: 10m unless given)")
    ] = None,
    dataset: Annotated[str | None, typer.Option(
        "--dataset", help="Search a named dataset without a YAML (autoft datasets list)")] = None,
    preset: Annotated[str, typer.Option(
        "--preset", metavar="fast|balanced|best", help="Without a YAML: fewer, cheaper trials or more, larger ones")
    ] = "balanced",
    trials: Annotated[int | None, typer.Option(help="Override search.trials")] = None,
    name: Annotated[str | None, typer.Option(help="Run folder name (default NAME-TIMESTAMP)")] = None,
    results_dir: Annotated[Path, typer.Option(help="Where run folders go")] = Path("results"),
    resume: Annotated[Path | None, typer.Option(help="Continue a killed or stopped run folder")] = None,
    address: Annotated[str | None, typer.Option(
        help="Attach to a Ray cluster: HEAD:6379, auto, or ray://HEAD:10001 (autoft[client])")] = None,
    storage: Annotated[str | None, typer.Option(
        help="Optuna storage URL, e.g. postgresql://user@host/db (default: RUN/optuna.db)")] = None,
    study: Annotated[str | None, typer.Option(
        help="Join (or start) this study in --storage (default: a new one named after the run folder)")] = None,
    set_: SetOpt = None,
    param_file: ParamFile = None,
    ray_dashboard: Annotated[bool, typer.Option(
        "--ray-dashboard", help="Start the local Ray with its dashboard")] = False,
    quiet: Quiet = False,
    plain: Annotated[bool, typer.Option("--plain", help="One log line per event instead of a live display")] = False,
    evaluate_test: Annotated[bool, typer.Option(
        "--evaluate-test", help="Score the best bundle once on the test split at the end")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Validate config, data and weights, probe 2 steps, print the plan")] = False,
    warm_start: Annotated[Path | None, typer.Option(
        help="Try this earlier run's top search.warm_start_top_k param sets first")] = None,
) -> None:
    """Search hyperparameters: Optuna picks values, Ray Tune runs Paddle fine-tunes, the best is kept."""
    from autoft._fs import autoft_home, check_writable
    from autoft.config import load_config

    started = time.time()
    check_writable(autoft_home(), "AUTOFT_HOME")  # the data cache and weights are written there, --dry-run too
    if address is not None and not address.strip():
        raise AutoftError("--address '': give a Ray address (HEAD:6379, auto or ray://HEAD:10001), or leave the "
                          "flag out to start a local Ray")
    overrides = list(set_ or []) + ([f"search.trials={trials}"] if trials is not None else [])
    if resume is not None and (config is not None or overrides or param_file is not None or dataset is not None
                               or time_budget is not None):
        raise AutoftError("--resume continues a run with its saved config; drop CONFIG, --set, --param-file, "
                          "--dataset, --time-budget and --trials")
    zero_config = dataset is not None or (config is not None and (config.is_dir() or config.suffix.lower() == ".csv"))
    cfg = None
    if zero_config:  # (a resume with data was refused above)
        cfg = _planned_config(config, dataset, time_budget, preset, overrides, param_file, started, dry_run)
        if cfg is None:
            return
    elif resume is None:
        if time_budget is not None:
            overrides.append(f"search.time_budget={time_budget}")
        cfg = load_config(config, overrides, param_file=param_file)
    if cfg is not None and warm_start is not None:
        from autoft.run.warmstart import warm_start as with_warm_start

        cfg = with_warm_start(cfg, warm_start)
    if dry_run:
        from autoft.run.layout import RunDir as Run
        from autoft.training.plan import format_plan, make_plan

        if cfg is None:
            assert resume is not None  # every other path built a config (or returned) above
            cfg = Run(Path(resume)).load_config("--resume")
        print(format_plan(cfg, make_plan(cfg)))
        return
    from autoft.search.run import search as run_search

    console = make_console()
    display = Display(console, quiet=quiet, plain=plain or not console.is_terminal,
                      time_budget=cfg.search.time_budget if cfg is not None else None)
    with display:
        outcome = run_search(cfg, results_dir=results_dir, name=name, resume=resume, address=address,
                             storage_url=storage, study=study, ray_dashboard=ray_dashboard, on_progress=display.update,
                             on_dashboard=lambda url: display.note(ray_dashboard_line(url)),
                             on_message=display.note, evaluate_test=evaluate_test)
    run = outcome.run_dir
    print_board(console, outcome.leaderboard, run=run)
    print_reruns(outcome.leaderboard)
    if outcome.stopped_on_budget:
        console.print("Stopped on the time budget (search.time_budget).")
    if outcome.best_model is not None:
        best = outcome.leaderboard.best
        assert best is not None  # a bundle was promoted: the top trial scored
        console.print(f"Best val_acc {best.require_best()['val_acc']:.4f} (trial {best.trial_id}); "
                      f"best bundle: {outcome.best_model}")
        console.print(f"Predict with: autoft predict {outcome.best_model} IMAGE...")
        if outcome.test_metrics is not None:
            t = outcome.test_metrics
            console.print(f"Test split (scored once, not used for selection): test_acc {t['test_acc']:.4f}, "
                          f"test_loss {t['test_loss']:.4f} on {t['n']} images")
    if outcome.interrupted:
        console.print(f"Stopped. Resume with: autoft search --resume {run}")
        raise typer.Exit(130)
    if outcome.all_failed:
        _err(f"every trial failed; most common error: {outcome.most_common_error()}")
        raise typer.Exit(1)
    if (run / "report" / "report.html").is_file():
        console.print(f"Report: {run / 'report' / 'report.html'}")


@app.command(short_help="One fine-tune with fixed values, no search.")
def train(
    config: Annotated[Path, typer.Argument(
        help="A YAML config; searched keys take the first trial's values (init_value, search.enqueue[0], else "
             "the first choice or the middle of the range)")],
    set_: SetOpt = None,
    param_file: ParamFile = None,
) -> None:
    """One fine-tune with fixed values, no search; the best epoch is kept in train.checkpoint_dir/best_model."""
    from autoft import train as run_train
    from autoft._fs import autoft_home, check_writable
    from autoft.config import load_config

    cfg = load_config(config, list(set_ or []), param_file=param_file)
    check_writable(Path(cfg.train.checkpoint_dir), "train.checkpoint_dir")
    check_writable(autoft_home(), "AUTOFT_HOME")
    from autoft.errors import TrialError

    try:
        run_train(cfg)  # its last line names the best epoch and the bundle
    except TrialError as exc:  # a diverging loss is the run's outcome, not a crash: one line, exit 1
        hint = " (try a lower train.learning_rate)" if "loss became" in str(exc) else ""
        _err(f"training failed: {_first_line(exc)}{hint}")
        raise typer.Exit(1) from None


@app.command(short_help="Top-k labels for images, from a bundle.")
def predict(
    bundle: Annotated[Path | None, typer.Argument(help="A bundle folder or a run folder")] = None,
    images: Annotated[list[Path] | None, typer.Argument(help="Image files or folders")] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Labels per image")] = 3,
    format_: Annotated[str, typer.Option(
        "--format", help="text, json (one array), jsonl (one object per line) or csv (one row per image and label)")
    ] = "text",
    as_json: Annotated[bool, typer.Option("--json", help="The same as --format jsonl")] = False,
    imagenet: Annotated[str | None, typer.Option(help="Use BACKBONE's own ImageNet head instead of a bundle")] = None,
) -> None:
    """Top-k labels with probabilities for images, using only what the bundle holds."""
    from autoft.data.source import IMAGE_EXTENSIONS
    from autoft.serving.predict import Predictor, find_inputs

    if top_k < 1:
        raise AutoftError(f"predict --top-k: must be >= 1, got {top_k}")
    if format_ not in PREDICT_FORMATS:
        raise AutoftError(f"predict --format: unknown value {format_!r}; valid: {', '.join(PREDICT_FORMATS)}")
    if as_json:
        if format_ not in ("text", "jsonl"):
            raise AutoftError(f"predict: --json is --format jsonl; drop it or --format {format_}")
        format_ = "jsonl"

    inputs = list(images or [])
    if imagenet is not None:
        inputs = ([bundle] if bundle is not None else []) + inputs
    elif bundle is None:
        raise AutoftError("predict: give a bundle folder (or --imagenet BACKBONE) and images")
    if not inputs:
        raise AutoftError("predict: give at least one image file or folder")
    found = find_inputs(inputs)  # what training would take from a folder; FIFOs and sockets stay in, refused unopened
    if found.hidden:
        sys.stderr.write(f"autoft: skipped {found.hidden} hidden file(s) in the folders (names starting with '.', "
                         "such as macOS ._* files), as training does\n")
    paths = found.paths
    if not paths:
        raise AutoftError(f"predict: no image files in {', '.join(map(str, inputs))} "
                          f"(suffixes {', '.join(sorted(IMAGE_EXTENSIONS))})")
    if imagenet is not None:
        predictor = Predictor.imagenet(imagenet)
    else:
        assert bundle is not None  # refused above
        predictor = Predictor(bundle)
    preds = predictor.predict(paths, top_k=top_k)
    for p in preds:
        if p.error:
            _err(p.error)
    sys.stdout.write(format_predictions(preds, format_))
    if any(p.error for p in preds):
        raise typer.Exit(2)  # the readable images were still predicted


@app.command()
def leaderboard(
    run: RunDir,
    wide: Annotated[bool, typer.Option(
        "--wide", help="Every column, however wide the terminal (piped output always has all)")] = False,
) -> None:
    """Print a run's ranked trials again."""
    from autoft.run.leaderboard import load_leaderboard

    board = load_leaderboard(run)
    print_board(make_console(), board, wide=wide, run=run)
    print_reruns(board)


@app.command(short_help="Export a bundle (Paddle inference model or ONNX).")
def export(
    bundle: Annotated[Path, typer.Argument(help="A bundle folder (or a run folder: its best_model/)")],
    format_: Annotated[str, typer.Option("--format", help="paddle (paddle.jit inference model) or onnx")] = "paddle",
    out: Annotated[Path | None, typer.Option(
        help="Output folder (default: BUNDLE/inference, or BUNDLE for onnx)")] = None,
) -> None:
    """Export a bundle for deployment and check the export's outputs match the bundle's."""
    from autoft.serving.export import export_bundle

    result = export_bundle(bundle, format_, out)
    print(f"exported {format_} model to {result.path} (max |logit diff| vs the bundle {result.max_abs_diff:.1e})")
    for path in result.files:
        print(f"  {path}")


@app.command(short_help="Serve a run's Optuna, VisualDL or Ray dashboard.")
def dashboard(
    kind: Annotated[str, typer.Argument(help="optuna, ray or visualdl")],
    run: Annotated[Path | None, typer.Argument(help="A run folder")] = None,
    host: Annotated[str, typer.Option(help="Bind address")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="Port (default: optuna 8080, visualdl 8040)")] = None,
    storage: Annotated[str | None, typer.Option(help="Optuna storage URL instead of RUN/optuna.db")] = None,
) -> None:
    """Serve a dashboard for a run (bound to 127.0.0.1 unless --host)."""
    from autoft.observe.dashboards import serve

    serve(kind, run, host=host, port=port, storage=storage)


@app.command(short_help="Draw a run's plots and report.html.")
def report(
    run: RunDir,
    storage: Annotated[str | None, typer.Option(help="Optuna storage URL instead of RUN/optuna.db")] = None,
) -> None:
    """Draw a run's plots (PNG) and a self-contained report.html into RUN/report/."""
    from autoft.observe.report import write_report

    written = write_report(run, storage_url=storage)
    for plot in written.plots:
        print(f"{plot.title}: {plot.path} ({plot.note})" if plot.path is not None else f"{plot.title}: {plot.note}")
    print(f"Report: {written.html}")


@app.command()
def backbones(pattern: Annotated[str, typer.Argument(help="fnmatch filter, e.g. 'resnet*'")] = "*") -> None:
    """List the backbones."""
    from autoft.backbones import get_spec, list_backbones

    for name in list_backbones(pattern):
        spec = get_spec(name)
        print(f"{name:22} {spec.default_image_size:4d}px  features {spec.feature_dim:5d}  {spec.weights}")


class _OneLineFormatter(logging.Formatter):
    """autoft's log lines with what they quote (file names, trial errors) escaped, so each stays one line."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


def _quiet_libraries(debug: bool) -> None:
    """autoft's own log lines as `autoft: message`; Paddle's import-time notices hidden unless AUTOFT_DEBUG=1."""
    import warnings

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter("autoft: %(message)s"))
    logger = logging.getLogger("autoft")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False
    if not debug:
        warnings.filterwarnings("ignore", message="No ccache found")
        warnings.filterwarnings("ignore", message="When training, we now always track global mean and variance")


# An OSError with one of these on a named file is the machine's state (a read-only or full disk, a file where a
# folder belongs), not a defect: one line, exit 2.
_ENVIRONMENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.EEXIST}


def _usage_error_classes() -> tuple[type[BaseException], ...]:
    """The usage-error base classes of whichever click the installed typer parses with: typer >= 0.26 carries its
    own copy (``typer._click``), older ones use the ``click`` package; both are caught, so a release of either
    cannot turn a usage error into a traceback."""
    import importlib

    found: list[type[BaseException]] = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            exceptions = importlib.import_module(module)
        except ImportError:
            continue
        found += [getattr(exceptions, name) for name in ("ClickException", "Abort") if hasattr(exceptions, name)]
    return tuple(found)


def _usage_exit(exc: BaseException) -> None:
    """A usage error: one line and exit 2; ``autoft`` alone (click's NoArgsIsHelpError) prints the help, exit 0;
    an aborted prompt is exit 130."""
    if type(exc).__name__ == "Abort":
        _err("aborted")
        sys.exit(130)
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    if type(exc).__name__ == "NoArgsIsHelpError":
        sys.stdout.write(message.rstrip("\n") + "\n")
        sys.exit(0)
    first = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
    ctx: Any = getattr(exc, "ctx", None)  # click's Context, when the error has one
    hint = f" (see {ctx.command_path} --help)" if getattr(ctx, "command_path", None) else ""
    _err(first + hint)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    debug = os.environ.get("AUTOFT_DEBUG") == "1"
    if not debug:
        # Paddle's C++ notices; set before paddle loads (and Ray's workers inherit it)
        os.environ.setdefault("GLOG_minloglevel", "2")
    _quiet_libraries(debug)
    try:
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except AutoftError as exc:
        if debug:
            raise
        _err(str(exc) or type(exc).__name__)  # autoft's own messages are one line; a newline in one is a file name's
        sys.exit(2)
    except ModuleNotFoundError as exc:
        if debug or exc.name not in ("paddle", "paddlepaddle"):
            raise
        _err(PADDLE_MISSING)
        sys.exit(2)
    except OSError as exc:
        if debug or exc.errno not in _ENVIRONMENT_ERRNOS or exc.filename is None:
            raise
        _err(f"{exc.filename}: cannot write there ({exc.strerror}); check AUTOFT_HOME, --results-dir and "
             "train.checkpoint_dir")
        sys.exit(2)
    except KeyboardInterrupt:
        _err("interrupted")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        if not isinstance(exc, _usage_error_classes()):
            raise
        if debug:
            raise
        _usage_exit(exc)

if __name__ == "__main__":
    main()
