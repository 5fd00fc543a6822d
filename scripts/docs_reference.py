"""The generated parts of the docs, and the MkDocs hook that puts them in (``hooks:`` in mkdocs.yml).

A page asks for a part with a line ``<!-- generated: NAME -->``; ``on_page_markdown`` replaces it when the site is
built, so the parts are never committed and never stale. Their one source each:

- ``config-reference``: the config dataclasses and Enums of ``autoft.config.schema`` (``dataclasses.fields``,
  ``typing.get_type_hints``) and the rules in their metadata;
- ``cli-reference``: the Typer app ``autoft.cli.app.app``;
- ``performance-table``, ``replay-tables``, ``replay-settings``, ``portfolio-configs``, ``portfolio-held-out``,
  ``zero-config``: ``benchmarks/results/*.json``.
"""
from __future__ import annotations

import dataclasses
import enum
import json
import math
import re
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = ROOT / "benchmarks" / "results"
MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)
REFERENCE_PAGES = ("reference/config.md", "reference/cli.md")  # generated, so never what "explains" a key


# --- the config reference --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ConfigKey:
    key: str  # dotted, as --set takes it: train.epochs, search.resources_per_trial.cpu
    kind: str
    default: str
    rule: str
    help: str


def config_keys() -> list[ConfigKey]:
    """Every YAML key of a run config: RunConfig's fields that are top-level keys, nested dataclasses as dotted
    keys, and the top-level keys that are no field (PaddleHub's ``param_list``)."""
    from autoft.config.schema import TOP_KEYS, RunConfig

    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    keys: list[ConfigKey] = []
    for name in TOP_KEYS:
        if name in fields:
            keys.extend(_field_keys(RunConfig, fields[name], ""))
        else:
            keys.append(ConfigKey(name, "", "", _rule_text(name), ""))
    return keys


def _field_keys(owner: type, f: dataclasses.Field[Any], prefix: str) -> Iterator[ConfigKey]:
    kind = typing.get_type_hints(owner)[f.name]
    key = f"{prefix}{f.name}"
    if dataclasses.is_dataclass(kind) and kind.__module__ == owner.__module__:  # a section, not the space
        for inner in dataclasses.fields(kind):
            yield from _field_keys(kind, inner, f"{key}.")
        return
    yield ConfigKey(key, _kind_text(kind), _default_text(f), _rule_text(key), f.metadata.get("help", ""))


_WORDS = {int: "integer", float: "number", str: "string", bool: "true / false", type(None): "null"}


def _kind_text(kind: Any) -> str:
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return " or ".join(_kind_text(k) for k in typing.get_args(kind))
    if typing.get_origin(kind) in (tuple, list):
        return "list of " + _kind_text(typing.get_args(kind)[0]) + "s"
    if typing.get_origin(kind) is dict or kind is dict:
        return "mapping"
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return "string"
    if hasattr(kind, "from_dict"):  # read from a mapping (the space)
        return "mapping"
    return _WORDS.get(kind, getattr(kind, "__name__", str(kind)))


def _default_text(f: dataclasses.Field[Any]) -> str:
    value = f.default_factory() if f.default is dataclasses.MISSING else f.default
    if isinstance(value, enum.Enum):
        value = value.value
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, tuple):
        value = list(value)
    return "`" + json.dumps(value).replace("|", "\\|") + "`"


# Values no rule accepts: the first fails a number's rules, the second a name's. What the loader says when a key
# holds them is the message a user gets, so the reference states each rule in the validation's own words.
_PROBES = (-1, "\x00")


def _rule_text(key: str) -> str:
    """KEY's rules as the loader states them when refusing the probes ("" when it takes them all)."""
    return "; ".join(dict.fromkeys(m for m in (_refusal(key, probe) for probe in _PROBES) if m is not None))


def _refusal(key: str, value: Any) -> str | None:
    from autoft.config.schema import config_from_dict
    from autoft.errors import ConfigError

    raw: Any = value
    for part in reversed(key.split(".")):
        raw = {part: raw}
    try:
        config_from_dict(raw)
    except ConfigError as exc:
        if str(exc).startswith(f"{key}: "):  # else another check spoke first (none does today)
            return _rule_words(key, str(exc))
    return None


def _rule_words(key: str, message: str) -> str:
    """``train.epochs: must be > 0, got -1`` → ``must be > 0``; ``unknown value -1 valid: a, b`` → ``valid: a, b``."""
    words = message.removeprefix(f"{key}: ")
    if " valid: " in words:
        return "valid: " + words.split(" valid: ", 1)[1]
    return re.sub(r"[,;] [^,;]*$", "", words)  # the last clause quotes the probe


def explained_in(key: str, pages: dict[str, str]) -> list[str]:
    """The hand-written pages that name ``key``: dotted (``train.epochs``) anywhere, a top-level key in code
    (`` `name:` ``)."""
    if "." in key:
        pattern = re.compile(rf"(?<![\w.]){re.escape(key)}(?![\w])")
    else:
        pattern = re.compile(rf"`{re.escape(key)}[:`]")
    return [page for page, text in pages.items() if pattern.search(text)]


def hand_written_pages() -> dict[str, str]:
    """docs/ page (relative, posix) → its Markdown, the generated reference pages left out."""
    pages = {p.relative_to(DOCS).as_posix(): p.read_text(encoding="utf-8") for p in sorted(DOCS.rglob("*.md"))}
    return {page: text for page, text in pages.items() if page not in REFERENCE_PAGES}


def config_reference() -> str:
    """A table per section: key, type, default, rule, and the hand-written pages that explain it."""
    pages = hand_written_pages()
    titles = {page: _title(text, page) for page, text in pages.items()}
    lines: list[str] = []
    section = None
    for k in config_keys():
        top = k.key.split(".")[0] if "." in k.key else "top level"
        if top != section:
            section = top
            lines += ["", f"## `{top}:`" if top != "top level" else "## Top-level keys", "",
                      "| key | type | default | rule | explained in |", "|---|---|---|---|---|"]
        links = ", ".join(f"[{titles[p]}](../{p})" for p in explained_in(k.key, pages)) or "**nowhere**"
        rule = " — ".join(part for part in (k.rule, k.help) if part).replace("|", "\\|")
        lines.append(f"| `{k.key}` | {k.kind} | {k.default} | {rule} | {links} |")
    return "\n".join(lines).strip() + "\n"


def _title(text: str, page: str) -> str:
    heading = re.search(r"^# (.+)$", text, re.MULTILINE)
    return heading.group(1).replace("`", "") if heading else page


# --- the CLI reference -----------------------------------------------------------------------------------------

def cli_commands() -> list[tuple[str, Any]]:
    """(``autoft datasets check``, its click command) for every command of the Typer app, groups included."""
    from typer.main import get_command

    from autoft.cli.app import app

    found: list[tuple[str, Any]] = []

    def walk(path: str, command: Any) -> None:
        found.append((path, command))
        for name, sub in getattr(command, "commands", {}).items():
            walk(f"{path} {name}", sub)

    walk("autoft", get_command(app))
    return found[1:]


def cli_reference() -> str:
    """A section per command: its help, its usage line and a row per argument and option."""
    lines: list[str] = []
    for path, command in cli_commands():
        ctx = command.context_class(command, info_name=path)
        lines += ["", f"## `{path}`", "", command.help or command.short_help or "", "", "```",
                  f"{path} {' '.join(command.collect_usage_pieces(ctx))}", "```", ""]
        if command.params:
            lines += ["| argument or option | what |", "|---|---|"]
            lines += [_param_row(p, ctx) for p in command.params]
    return "\n".join(lines).strip() + "\n"


def _param_row(p: Any, ctx: Any) -> str:
    """One row from the parameter's own help record: what ``--help`` prints for it."""
    names, what = p.get_help_record(ctx) or (p.name, "")
    what = what.replace("<", "&lt;").replace("|", "\\|")  # a metavar like <path> is no HTML tag; | no cell end
    return f"| `{names}` | {what} |"


# --- the benchmarks' figures -----------------------------------------------------------------------------------

def _result(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))


def _number(value: float, digits: int = 3) -> str:
    return "inf" if math.isinf(value) else f"{value:.{digits}g}"


def _benchmarks() -> tuple[str, ...]:
    """The benchmarks in their numbered order, from benchmarks/__init__.py (read, not imported: the docs build runs
    outside the repository's import path)."""
    import ast

    tree = ast.parse((ROOT / "benchmarks" / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "BENCHMARKS" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise ValueError("benchmarks/__init__.py: no BENCHMARKS tuple")


def performance_table() -> str:
    lines = ["| # | benchmark | figure | goal | measured | met | measured on (1-min load) |",
             "|---|---|---|---|---|---|---|"]
    machines: dict[str, None] = {}
    for number, name in enumerate(_benchmarks(), 1):
        r = _result(name)
        goal = r["goal"]
        load = f"{r['loadavg_start'][0]:.2f}–{r['loadavg_end'][0]:.2f}"
        cells = (str(number), name, goal["metric"], f"{goal['op']} {_number(goal['target'])}",
                 f"**{_number(r['value'])}** ({r['summary']})", "yes" if r["met"] else "**no**",
                 f"{r['measured'][:10]} ({load})")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        machines[", ".join(f"{k} {v}" for k, v in r["machine"].items())] = None
    return "\n".join(lines) + "\n\n" + "Machines (from each JSON's `machine`): " + "; ".join(machines) + ".\n"


_REPLAY_HEAD = ["| combination | ratio, median (p90) | seeds reaching | median best | mean regret ± s.e. | trials |",
                "|---|---|---|---|---|---|"]


def _replay_rows(methods: dict[str, Any], seeds: int) -> list[str]:
    return [f"| {label} | {_number(m['ratio_median'])} ({_number(m['ratio_p90'])}) | {m['reached']}/{seeds} | "
            f"{_number(m['best_median'])} | {m['regret_auc_mean']:.4f} ± {m['regret_auc_sem']:.4f} | "
            f"{_number(m['trials_median'], 2)} |" for label, m in methods.items()]


def _replay_section(name: str) -> str:
    r = _result(name)
    seeds = r["figures"]["seeds"]
    out = []
    for t in r["figures"]["tables"]:
        out += [f"**{t['table']}** ({t['title']}; {t['recorded']} of {t['grid_size']} configurations recorded, best "
                f"{_number(t['best_recorded'])}, target {_number(t['target'])}, epoch budget {t['epoch_budget']}; "
                f"{seeds} seeds):", "", *_REPLAY_HEAD, *_replay_rows(t["methods"], seeds), ""]
    return "\n".join(out) + f"\n(`benchmarks/results/{name}.json`, measured {r['measured'][:10]}.)\n"


def replay_tables() -> str:
    return _replay_section("replay")


def replay_settings() -> str:
    return _replay_section("replay-tpe-settings")


def portfolio_configs() -> str:
    r = _result("portfolio")
    rows = zip(*(r[mode]["portfolio"] for mode in ("full", "head")))
    lines = ["| full fine-tune | frozen trunk, head searched |", "|---|---|"]
    lines += [f"| {_params(full)} | {_params(head)} |" for full, head in rows]
    return "\n".join(lines) + "\n"


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k} {_number(v) if isinstance(v, float) else v}" for k, v in params.items())


def portfolio_held_out() -> str:
    r = _result("portfolio")
    lines = ["| held out | full: portfolio / median / best single / oracle | head: portfolio / median / best single / "
             "oracle |", "|---|---|---|"]
    for data in r["full"]["leave_one_dataset_out"]:
        cells = [" / ".join(_number(r[mode]["leave_one_dataset_out"][data][k])
                            for k in ("portfolio_best", "median_candidate", "best_single_default", "oracle"))
                 for mode in ("full", "head")]
        lines.append(f"| {data} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def zero_config() -> str:
    lines = ["| result | held-out data | zero-config: best val_acc (trials, wall s) per repeat | the demo's space | "
             "difference | measured |", "|---|---|---|---|---|---|"]
    for path in sorted(RESULTS.glob("zero_config*.json")):
        r = json.loads(path.read_text(encoding="utf-8"))
        f = r["figures"]
        sides = [", ".join(f"{_number(run['val_acc'])} ({run['trials']}, {run['wall_s']:.0f})" for run in f["runs"][s])
                 for s in ("zero_config", "demo_space")]
        diffs = ", ".join(f"{d:+.3f}" for d in f["differences"])
        lines.append(f"| `{path.name}` | {f['data']} | {sides[0]} | {sides[1]} | {diffs} | {r['measured'][:10]} |")
    return "\n".join(lines) + "\n"


GENERATED: dict[str, Callable[[], str]] = {
    "config-reference": config_reference, "cli-reference": cli_reference, "performance-table": performance_table,
    "replay-tables": replay_tables, "replay-settings": replay_settings, "portfolio-configs": portfolio_configs,
    "portfolio-held-out": portfolio_held_out, "zero-config": zero_config,
}


def render(markdown: str, where: str) -> str:
    """``markdown`` with each ``<!-- generated: NAME -->`` line replaced by that part."""
    def part(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATED:
            raise ValueError(f"{where}: unknown generated part {name!r}; known: {', '.join(GENERATED)}")
        return GENERATED[name]()
    return MARKER.sub(part, markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:  # MkDocs' hook signature
    from mkdocs.exceptions import PluginError

    try:
        return render(markdown, page.file.src_uri)
    except (ValueError, KeyError, OSError) as exc:
        raise PluginError(f"docs_reference: {exc}") from exc
