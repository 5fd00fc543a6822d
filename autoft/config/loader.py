"""YAML in: the strict loader (no code-running tags, duplicate keys, alias bombs or runaway nesting), config files,
``--set key=value`` overrides, and the demo config."""
from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from autoft.config.rules import unknown_key
from autoft.config.schema import TOP_KEYS, RunConfig, config_from_dict
from autoft.config.space import quote
from autoft.errors import ConfigError

__all__ = ["YamlRefusal", "StrictLoader", "yaml_load", "read_yaml_file", "parse_set", "set_dotted", "load_config",
           "read_space_file", "demo_config_path"]

_MAX_ALIASED = 10_000  # YAML nodes that aliases (*name) may add in all: a config reuses a list, not a billion
_MAX_DEPTH = 32  # YAML nesting: a config is a few levels deep, and deeper ones overflow Python's recursion


class YamlRefusal(Exception):
    """Well-formed YAML that a config must not be: a duplicate key, an alias bomb, runaway nesting."""

    def __init__(self, problem: str, mark: yaml.Mark) -> None:
        super().__init__(problem)
        self.problem, self.line = problem, mark.line + 1


class StrictLoader(yaml.SafeLoader):
    """SafeLoader (no python/* tags) that refuses what it would otherwise accept silently or choke on."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._sizes: dict[int, int] = {}  # id(node) → nodes it expands to, aliases counted in full
        self._aliased = 0
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            self._count_alias(self.peek_event())
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > _MAX_DEPTH:
            raise YamlRefusal(f"nesting deeper than {_MAX_DEPTH} levels", self.peek_event().start_mark)
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._sizes[id(node)] = 1 + sum(self._sizes[id(child)] for child in _children(node))
        return node

    def _count_alias(self, event: yaml.AliasEvent) -> None:
        """Refuse an alias before the walk: sizes are known while composing, so the bomb is never built."""
        node = self.anchors.get(event.anchor)
        if node is None:
            return  # the composer says "found undefined alias"
        size = self._sizes.get(id(node))
        if size is None:  # its anchor is still open: the node would contain itself
            raise YamlRefusal(f"alias *{event.anchor[:40]} is inside its own anchor (a recursive structure)",
                           event.start_mark)
        self._aliased += size
        if self._aliased > _MAX_ALIASED:
            raise YamlRefusal(f"aliases may add at most {_MAX_ALIASED} YAML nodes in all, but *{event.anchor[:40]} "
                           f"takes them to {self._aliased} (an alias bomb?)", event.start_mark)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` then a key is YAML's override, not a duplicate
            key = self.construct_object(key_node)
            if key in first:
                raise YamlRefusal(f"duplicate key {quote(key)} (first at line {first[key]}); a key may appear once "
                               "in a mapping", key_node.start_mark)
            first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except ValueError as exc:  # a 5000-digit int, a date like 2024-13-45
            what = node.value if isinstance(node, yaml.ScalarNode) else node.tag
            raise YamlRefusal(f"cannot read {quote(what)}: {str(exc).splitlines()[0][:120]}", node.start_mark) from None


# YAML 1.1 (PyYAML) reads 1e-4 and 1E5 as strings: a float there needs a dot and a signed exponent (1.0e-4). YAML
# 1.2 and every hparam file PaddleHub users write read them as numbers, so the strict loader does too.
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=StrictLoader)  # a SafeLoader: no python/* tags, so no code runs


def set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_set(items: Sequence[str]) -> list[tuple[str, Any]]:
    """`key=value` strings → (dotted key, YAML-parsed value)."""
    out = []
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: must look like key=value, e.g. train.epochs=1")
        try:
            value = yaml_load(text) if text.strip() else None
        except YamlRefusal as exc:
            raise ConfigError(f"--set {quote(item, 200)}: {exc.problem}") from None
        except yaml.YAMLError:
            value = text
        out.append((key.strip(), value))
    return out


def read_yaml_file(path: Path) -> Any:
    """A YAML file read strictly (no duplicate keys, no alias bombs); every failure is one line naming the file."""
    try:
        return yaml_load(path.read_text(encoding="utf-8"))
    except YamlRefusal as exc:
        raise ConfigError(f"{path}: line {exc.line}: {exc.problem}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: YAML syntax error{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (),
                param_file: str | Path | None = None) -> RunConfig:
    """Read a YAML file (the demo when None), apply `--set` overrides and ``param_file`` (``--param-file``: a
    PaddleHub ``hparam.yaml`` or a file with ``space:``, which replaces the config's space), validate."""
    path = Path(path) if path is not None else demo_config_path()
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    raw = read_yaml_file(path)
    raw = copy.deepcopy(raw) if isinstance(raw, dict) else raw
    if overrides:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        for key, value in parse_set(overrides):
            if key.split(".")[0] not in TOP_KEYS:
                raise unknown_key(key.split(".")[0], TOP_KEYS, "--set")
            set_dotted(raw, key, value)
    if param_file is not None or (isinstance(raw, dict) and isinstance(raw.get("space"), str)):
        raw = dict(raw or {})
        where = "--param-file" if param_file is not None else f"{path}: space"
        key, value = read_space_file(Path(param_file if param_file is not None else raw["space"]), where)
        for old in ("space", "param_list") if param_file is not None else ("space",):
            raw.pop(old, None)  # --param-file replaces the config's own space, whichever way it was written
        raw[key] = value
    try:
        return config_from_dict(raw, source=str(path))
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(str(path)) else f"{path}: {message}") from None


def read_space_file(path: Path, what: str) -> tuple[str, Any]:
    """A search space kept in its own file, as PaddleHub keeps ``hparam.yaml``: ``param_list:`` (PaddleHub's list)
    or ``space:`` (autoft's mapping). A relative path means the current folder, as ``data.path`` does."""
    if not path.is_file():
        raise ConfigError(f"{what} {path}: file not found (a relative path means the current folder, "
                          f"{Path.cwd()})")
    raw = read_yaml_file(path)
    keys = sorted(raw) if isinstance(raw, dict) else []
    if keys not in (["param_list"], ["space"]):
        got = f"keys {keys}" if isinstance(raw, dict) else type(raw).__name__
        raise ConfigError(f"{path}: a space file holds `param_list:` (PaddleHub's hparam.yaml) or `space:`, "
                          f"exactly one of them; got {got}")
    return keys[0], raw[keys[0]]


def demo_config_path() -> Path:
    """search_spaces/demo.yaml, installed as the package `autoft.search_spaces`."""
    from importlib.resources import files

    return Path(str(files("autoft.search_spaces") / "demo.yaml"))
