"""The docs against their sources: every config key (autoft.config.schema) and every command (the Typer app) is
explained on a hand-written page of docs/, every error class is in troubleshooting, the generated parts render from
what they claim to read, and README.md stays short with its two set-up commands."""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import autoft.errors
from autoft.cli.app import app
from autoft.config.schema import config_from_dict, config_to_dict
from autoft.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SETUP_COMMANDS = (  # README's "Set up": the demo, and the tests as .ci/run runs them
    'python3 -m venv .venv && . .venv/bin/activate && pip install -c requirements/lock.txt -e ".[cpu]" && autoft search',
    'python3 -m venv .venv && . .venv/bin/activate && pip install -c requirements/lock.txt -e ".[cpu,test]" && '
    'python -m pytest -q',
)


def _load_generator() -> ModuleType:
    """scripts/docs_reference.py, the MkDocs hook (a script, so loaded by path)."""
    spec = importlib.util.spec_from_file_location("docs_reference", ROOT / "scripts" / "docs_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


docs = _load_generator()


def _dotted(data: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in data.items():
        if isinstance(value, dict) and value and key != "space":
            keys |= _dotted(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


def test_the_reference_walks_every_key_a_config_holds() -> None:
    # config_to_dict writes a run's config.yaml: an independent list of the keys the walker must find
    written = _dotted(config_to_dict(config_from_dict({})))
    walked = {k.key for k in docs.config_keys()}
    assert written <= walked
    assert walked - written == {"param_list"}  # read as the space, never written back


def test_every_config_key_is_explained_on_a_hand_written_page() -> None:
    pages = docs.hand_written_pages()
    assert not set(docs.REFERENCE_PAGES) & set(pages)
    missing = [k.key for k in docs.config_keys() if not docs.explained_in(k.key, pages)]
    assert missing == []


def test_the_config_reference_has_a_row_per_key_and_no_unexplained_one() -> None:
    text = docs.config_reference()
    for k in docs.config_keys():
        assert f"| `{k.key}` |" in text
    assert "**nowhere**" not in text


def _rule_cell(text: str, key: str) -> str:
    row = next(line for line in text.splitlines() if line.startswith(f"| `{key}` |"))
    return row.split(" | ")[3]


@pytest.mark.parametrize(("key", "bad"), [
    ("train.epochs", 0), ("search.reduction_factor", 1), ("data.val_split", 1.5), ("train.optimizer", "adamx"),
    ("search.time_budget", "soon"), ("search.max_concurrent", "many"), ("model.head_hidden", 10 ** 6),
])
def test_a_documented_rule_is_what_the_loader_says_when_it_is_broken(key: str, bad: Any) -> None:
    section, name = key.split(".")
    rule = _rule_cell(docs.config_reference(), key)
    with pytest.raises(ConfigError, match=re.escape(key)) as caught:
        config_from_dict({section: {name: bad}})
    assert any(part.replace("\\|", "|") in str(caught.value) for part in rule.split("; ")), (rule, caught.value)


def test_every_command_is_explained_on_a_hand_written_page() -> None:
    paths = [path for path, _ in docs.cli_commands()]
    assert {"autoft search", "autoft predict", "autoft datasets check"} <= set(paths)
    text = "\n".join(docs.hand_written_pages().values())
    assert [path for path in paths if path not in text] == []


def test_the_command_reference_lists_every_option_that_help_prints() -> None:
    reference = docs.cli_reference()
    runner = CliRunner()
    for path, _ in docs.cli_commands():
        shown = runner.invoke(app, [*path.split()[1:], "--help"], terminal_width=200)
        assert shown.exit_code == 0, shown.output
        section = reference.split(f"## `{path}`", 1)[1].split("\n## ", 1)[0]
        options = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", shown.output)) - {"--help"}
        assert [o for o in sorted(options) if o not in section] == [], path


def test_every_error_class_is_in_troubleshooting() -> None:
    page = (docs.DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    classes = [name for name in autoft.errors.__all__
               if isinstance(getattr(autoft.errors, name), type)
               and issubclass(getattr(autoft.errors, name), Exception)]
    assert "TrialError" in classes
    assert [name for name in classes if f"| `{name}` |" not in page] == []


def test_every_page_renders_and_every_generated_part_is_used() -> None:
    used: set[str] = set()
    for page in sorted(docs.DOCS.rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        used |= set(docs.MARKER.findall(text))
        assert docs.MARKER.search(docs.render(text, page.name)) is None
    assert used == set(docs.GENERATED)


def test_an_unknown_generated_part_is_refused() -> None:
    with pytest.raises(ValueError, match=r"x\.md: unknown generated part 'nonsense'"):
        docs.render("<!-- generated: nonsense -->\n", "x.md")


def test_the_performance_table_is_read_from_the_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "results"
    shutil.copytree(docs.RESULTS, results)
    measured = json.loads((results / "cli_help.json").read_text(encoding="utf-8"))
    measured.update(value=0.4321, met=False, summary="a new measurement")
    (results / "cli_help.json").write_text(json.dumps(measured), encoding="utf-8")
    monkeypatch.setattr(docs, "RESULTS", results)
    rows = [line for line in docs.performance_table().splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(rows) == len(docs._benchmarks())
    row = next(line for line in rows if "| cli_help |" in line)
    assert "**0.432** (a new measurement)" in row and "| **no** |" in row


def test_every_page_is_in_the_nav() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def pages(nav: Any) -> set[str]:
        if isinstance(nav, str):
            return {nav}
        items = nav.values() if isinstance(nav, dict) else nav
        return set().union(*(pages(item) for item in items))

    on_disk = {p.relative_to(docs.DOCS).as_posix() for p in docs.DOCS.rglob("*.md")}
    assert pages(config["nav"]) == on_disk


def test_readme_is_short_keeps_its_setup_commands_and_links_into_docs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    for command in SETUP_COMMANDS:
        assert f"\n{command}\n" in readme
    links = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", readme)
    assert links
    assert [link for link in links if not (ROOT / link).is_file()] == []
