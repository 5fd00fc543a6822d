"""Bad YAML config input (issue 14): one `autoft: error:` line naming the file, key, value and rule; exit 2.

The CLI cases never create the data folder: config errors come before the data is looked at, so each line is
about the config, and nothing (no run folder) is written.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from autoft.config import config_from_dict, load_config, parse_set
from autoft.errors import ConfigError
from autoft.config.space import FloatParam, IntParam, quote

from cli_helpers import assert_one_line_exit_2, run, search_yaml, write_yaml

LR = {"learning_rate": {"type": "float", "low": 0.001, "high": 0.1, "log": True}}
SPACE = {**LR, "batch_size": {"type": "int", "low": 8, "high": 32, "step": 8},
         "optimizer": {"type": "categorical", "choices": ["adam", "momentum"]}}


def billion_laughs(tail: str = "") -> str:
    """Nine levels of nine aliases: 9**9 'x' once expanded (the classic YAML bomb)."""
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for prev, cur in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{cur}: &{cur} [{', '.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + "\n" + tail


# Each case: (setup(tmp) -> argv, text the single stderr line must contain)
def text(body: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["search", str(write_yaml(tmp / "c.yaml", body))]


def sections(**values: dict) -> Callable[[Path], list[str]]:
    return lambda tmp: ["search", str(search_yaml(tmp, **values))]


def with_file(name: str, content: str | None, pretrained: str) -> Callable[[Path], list[str]]:
    """A file (or, with content None, a folder) next to the config, named by model.pretrained."""
    def setup(tmp: Path) -> list[str]:
        if content is None:
            (tmp / name).mkdir()
        else:
            (tmp / name).write_text(content)
        return ["search", str(search_yaml(tmp, model={"pretrained": pretrained}))]
    return setup


def set_override(item: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["search", str(search_yaml(tmp)), "--set", item]


BAD_CONFIG = [
    ("duplicate-top-key", text("name: bad\ntrain: {epochs: 1}\ntrain: {epochs: 2}\n"),
     "c.yaml: line 3: duplicate key 'train' (first at line 2)"),
    ("duplicate-nested-key", text("name: bad\ntrain:\n  epochs: 1\n  batch_size: 8\n  epochs: 2\n"),
     "c.yaml: line 5: duplicate key 'epochs' (first at line 3)"),
    ("duplicate-key-in-enqueue", text("space:\n  batch_size: [8, 16]\nsearch:\n  enqueue:\n"
                                      "  - batch_size: 8\n    batch_size: 16\n"),
     "line 6: duplicate key 'batch_size' (first at line 5)"),
    ("duplicate-key-in-set", set_override("space.optimizer={type: categorical, type: int}"),
     "--set 'space.optimizer={type: categorical, type: int}': duplicate key 'type'"),
    ("recursive-alias", text("train: &t {epochs: *t}\n"), "alias *t is inside its own anchor"),
    ("deep-nesting", text("name: " + "[" * 200 + "]" * 200 + "\n"), "nesting deeper than 32 levels"),
    ("int-too-long", text("train:\n  epochs: " + "9" * 5000 + "\n"), "line 2: cannot read '9999"),
    ("inf-high", sections(space={"learning_rate": {"type": "float", "low": 0.001, "high": float("inf")}}),
     "space.learning_rate: bounds must be finite numbers, got low=0.001, high=inf"),
    ("minus-inf-low", sections(space={"momentum": {"type": "float", "low": float("-inf"), "high": 0.9}}),
     "space.momentum: bounds must be finite numbers, got low=-inf"),
    ("nan-low", sections(space={"learning_rate": {"type": "float", "low": float("nan"), "high": 0.1}}),
     "space.learning_rate: bounds must be finite numbers, got low=nan"),
    ("huge-int-bound", sections(space={"learning_rate": {"type": "float", "low": 0.001, "high": 10**400}}),
     "space.learning_rate: bounds must be finite numbers"),
    ("nan-time-budget", sections(search={"time_budget": float("nan")}),
     "search.time_budget: must be a positive, finite duration (null for no limit), got nan"),
    ("inf-trial-timeout", sections(search={"trial_timeout": float("inf")}),
     "search.trial_timeout: must be a positive, finite duration (null for no limit), got inf"),
    ("negative-trial-timeout", sections(search={"trial_timeout": -5}),
     "search.trial_timeout: must be a positive, finite duration (null for no limit), got -5"),
    ("enqueue-unknown-param", sections(space=SPACE, search={"enqueue": [{"learning_rat": 0.01}]}),
     "search.enqueue[0]: unknown key 'learning_rat'; did you mean 'learning_rate'?"),
    ("enqueue-not-a-choice", sections(space=SPACE, search={"enqueue": [{"optimizer": "adam"}, {"optimizer": "lion"}]}),
     "search.enqueue[1].optimizer: must be one of space.optimizer's choices ['adam', 'momentum'], got 'lion'"),
    ("enqueue-float-out-of-range", sections(space=SPACE, search={"enqueue": [{"learning_rate": 5}]}),
     "search.enqueue[0].learning_rate: must be within space.learning_rate's [0.001, 0.1], got 5"),
    ("enqueue-wrong-type", sections(space=SPACE, search={"enqueue": [{"learning_rate": "fast"}]}),
     "search.enqueue[0].learning_rate: must be a number, got 'fast'"),
    ("enqueue-int-off-step", sections(space=SPACE, search={"enqueue": [{"batch_size": 12}]}),
     "search.enqueue[0].batch_size: must be 8 + a multiple of space.batch_size's step 8, got 12"),
    ("enqueue-bool-for-int", sections(space=SPACE, search={"enqueue": [{"batch_size": True}]}),
     "search.enqueue[0].batch_size: must be a number, got True"),
    ("init-value-out-of-range", text("param_list:\n- {name: learning_rate, init_value: 0.5, type: float, "
                                     "greater_than: 0.0001, lower_than: 0.1}\n"),
     "param_list[0].init_value: must be within space.learning_rate's [0.0001, 0.1], got 0.5"),
    ("image-size-huge", sections(data={"image_size": 100000}),
     "data.image_size: must be in [16, 1024] pixels, got 100000"),
    ("image-size-tiny", sections(data={"image_size": 4}), "data.image_size: must be in [16, 1024] pixels, got 4"),
    ("image-size-searched", sections(space={"data.image_size": [64, 4096]}),
     "data.image_size: must be in [16, 1024] pixels, got 4096"),
    ("pretrained-wrong-suffix", with_file("notes.txt", "my notes", "notes.txt"),
     "model.pretrained: a weights file must end in .safetensors, .pth, .pt, .pdparams, got 'notes.txt'"),
    ("pretrained-missing", sections(model={"pretrained": "gone.safetensors"}),
     "model.pretrained: must be imagenet, none, or an existing weights file or bundle folder; no such path "
     "'gone.safetensors'"),
    ("pretrained-folder-not-bundle", with_file("weights", None, "weights"),
     "model.pretrained: a folder must be a bundle holding model.safetensors, got 'weights'"),
    ("section-not-a-mapping", text("train: [1, 2]\n"), "train: must be a mapping of keys, got [1, 2]"),
    ("space-not-a-mapping", text("space: [learning_rate]\n"), "space: must be a mapping of parameters"),
    ("name-not-a-string", text("name: [a, b]\n"),
     "name: must be letters, digits, '_', '-' or '.' (one folder name, not a path), got a list"),
    ("name-too-long", text("name: " + "n" * 300 + "\n"),
     "name: must be at most 100 characters (it names the run folder), got 300"),
    ("huge-int", sections(train={"epochs": 10**30}), "train.epochs: must fit in a 64-bit integer"),
    ("bool-for-int", sections(train={"batch_size": True}), "train.batch_size: must be an integer, got True"),
    ("nan-learning-rate", sections(train={"learning_rate": float("nan")}),
     "train.learning_rate: must be a finite number, got nan"),
    ("negative-seed", sections(search={"seed": -1}), "search.seed: must be in [0, 2**31), got -1"),
    ("reduction-factor-1", sections(search={"reduction_factor": 1}), "search.reduction_factor: must be >= 2, got 1"),
    ("space-type-a-list", sections(space={"batch_size": {"type": ["int"]}}),
     "space.batch_size.type: must be one of float, int, categorical, got ['int']"),
    ("space-field-twice", sections(space={**LR, "train.learning_rate": [0.01, 0.1]}),
     "space.train.learning_rate: train.learning_rate is already searched as space.learning_rate"),
    ("grid-too-big", sections(search={"sampler": "grid"}, space={"epochs": {"type": "int", "low": 1, "high": 10**9}}),
     "search.sampler: grid over a space of 1000000000 points, more than the 100000"),
    ("param-list-twice", text("param_list:\n- {name: lr, greater_than: 0.001, lower_than: 0.1}\n"
                              "- {name: learning_rate, greater_than: 0.001, lower_than: 0.1}\n"),
     "param_list[1].name: learning_rate is already given by param_list[0]"),
]


@pytest.mark.parametrize("setup, needle", [(s, n) for _, s, n in BAD_CONFIG], ids=[i for i, _, _ in BAD_CONFIG])
def test_bad_config_input_is_one_line_exit_2_and_writes_nothing(setup: Callable[[Path], list[str]], needle: str,
                                                               tmp_path: Path) -> None:
    argv = setup(tmp_path)
    results = tmp_path / "results"
    out = run(*argv, "--results-dir", str(results), cwd=tmp_path, timeout=60)
    assert_one_line_exit_2(out, needle, results)
    assert not (tmp_path / "data").exists()  # the config was refused before the (missing) data was looked at


def test_billion_laughs_is_refused_fast_in_one_short_line(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "c.yaml", billion_laughs("train: {epochs: *i}\n"))
    results = tmp_path / "results"
    started = time.monotonic()
    out = run("search", str(path), "--results-dir", str(results), cwd=tmp_path, timeout=20)
    assert time.monotonic() - started < 20
    assert_one_line_exit_2(out, "c.yaml: line 5: aliases may add at most 10000 YAML nodes in all", results)
    assert len(out.stderr.strip()) < 300, out.stderr


# --- load_config / config_from_dict directly: the messages, pinned


def write(tmp_path: Path, body: str) -> Path:
    return write_yaml(tmp_path / "c.yaml", body)


@pytest.mark.parametrize("body, match", [
    ("train: {epochs: 1}\ntrain: {epochs: 2}\n",
     r"c\.yaml: line 2: duplicate key 'train' \(first at line 1\); a key may appear once in a mapping$"),
    ("space:\n  learning_rate: {type: float, low: 0.001, high: 0.1, low: 0.01}\n",
     r"c\.yaml: line 2: duplicate key 'low' \(first at line 2\)"),
    ("train:\n  1: a\n  true: b\n", r"line 3: duplicate key True \(first at line 2\)"),  # one key to Python
    (billion_laughs(), r"c\.yaml: line 5: aliases may add at most 10000 YAML nodes in all, but \*d takes them to "
                       r"\d+ \(an alias bomb\?\)$"),
    ("train: &t [*t]\n", r"line 1: alias \*t is inside its own anchor \(a recursive structure\)"),
    ("name: 2024-13-45\n", r"c\.yaml: line 1: cannot read '2024-13-45': month must be in 1\.\.12"),
    ("space:\n  learning_rate: {type: float, low: 0.001, high: .inf}\n",
     r"c\.yaml: space\.learning_rate: bounds must be finite numbers, got low=0\.001, high=inf$"),
    ("space:\n  learning_rate: {type: float, low: .nan, high: 0.1}\n",
     r"space\.learning_rate: bounds must be finite numbers, got low=nan, high=0\.1$"),
    ("space:\n  learning_rate: {type: float, low: 0.1, high: 1, step: .nan}\n",
     r"space\.learning_rate: `step` must be a finite number > 0"),
    ("search: {time_budget: .nan}\n", r"search\.time_budget: must be a positive, finite duration \(null for no "
                                      r"limit\), got nan$"),
    ("search: {trial_timeout: -.inf}\n", r"search\.trial_timeout: must be a positive, finite duration.*got -inf$"),
    ("search: {time_budget: '0m'}\n", r"search\.time_budget: must be a positive, finite duration.*got '0m'$"),
])
def test_load_config_messages(tmp_path: Path, body: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(write(tmp_path, body))


def test_billion_laughs_loads_in_well_under_a_second(tmp_path: Path) -> None:
    path = write(tmp_path, billion_laughs("train: {epochs: *i}\n"))
    started = time.monotonic()
    with pytest.raises(ConfigError, match="alias bomb") as caught:
        load_config(path)
    assert time.monotonic() - started < 1.0
    assert len(str(caught.value)) < 300


def bomb(levels: int = 9) -> list:
    """The billion laughs as Python data: shared lists, 9**levels strings once walked."""
    value: list = ["x"] * 9
    for _ in range(levels - 1):
        value = [value] * 9
    return value


@pytest.mark.parametrize("raw, match", [
    ({"train": {"epochs": bomb()}}, r"train\.epochs: must be an integer, got \[\[\[\[.*\.\.\.$"),
    ({"name": bomb()}, r"name: must be letters"),
    ({"space": {"optimizer": {"type": "categorical", "choices": bomb()}}}, r"space\.optimizer: choices must be"),
    ({"search": {"enqueue": bomb()}}, r"search\.enqueue: must be a list of parameter mappings"),
    ({"space": bomb()}, r"space: must be a mapping of parameters"),
    ({"train": {"optimizer": "x" * 10**6}}, r"train\.optimizer: unknown value 'xxx"),
    ({"train": {"eval_interval": 10**5000}}, r"train\.eval_interval: must fit in a 64-bit integer, got <an integer "
                                             r"of about 5000 digits>"),
])
def test_messages_quote_a_short_repr_without_walking_the_value(raw: dict, match: str) -> None:
    started = time.monotonic()
    with pytest.raises(ConfigError, match=match) as caught:
        config_from_dict(raw)
    assert time.monotonic() - started < 1.0
    assert len(str(caught.value)) < 300, str(caught.value)


def test_quote_is_short() -> None:
    long = quote("a" * 5_000 + "z" * 5_000)
    assert long.startswith("'aaa") and "..." in long and long.endswith("zzz'") and len(long) <= 62
    assert quote("p" * 60) == repr("p" * 60)  # a string that fits is quoted whole
    assert quote(bomb()).startswith("[[[[") and len(quote(bomb())) <= 60
    assert quote(10**5000) == "<an integer of about 5000 digits>"
    assert quote("lion") == "'lion'" and quote(0.5) == "0.5"


ENQUEUE_SPACE = {"space": SPACE}


@pytest.mark.parametrize("trial, match", [
    ({"learning_rate": 0.0005}, r"search\.enqueue\[0\]\.learning_rate: must be within space\.learning_rate's "
                                r"\[0\.001, 0\.1\], got 0\.0005$"),
    ({"learning_rate": float("nan")}, r"search\.enqueue\[0\]\.learning_rate: must be within .*got nan$"),
    ({"learning_rate": 10**400}, r"search\.enqueue\[0\]\.learning_rate: must be within"),
    ({"learning_rate": None}, r"search\.enqueue\[0\]\.learning_rate: must be a number, got None$"),
    ({"batch_size": 16.5}, r"search\.enqueue\[0\]\.batch_size: must be an integer for space\.batch_size, got 16\.5$"),
    ({"batch_size": 64}, r"search\.enqueue\[0\]\.batch_size: must be within space\.batch_size's \[8, 32\], got 64$"),
    ({"optimizer": 1}, r"search\.enqueue\[0\]\.optimizer: must be one of space\.optimizer's choices "
                       r"\['adam', 'momentum'\], got 1$"),
    ({"momentum": 0.9}, r"search\.enqueue\[0\]: unknown key 'momentum' valid: learning_rate, batch_size, optimizer$"),
])
def test_enqueued_values_are_checked_against_the_space(trial: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config_from_dict({**ENQUEUE_SPACE, "search": {"enqueue": [trial]}})


def test_enqueue_without_a_space_says_so() -> None:
    with pytest.raises(ConfigError, match=r"search\.enqueue\[0\]: 'learning_rate' is not searched: the space is empty"):
        config_from_dict({"search": {"enqueue": [{"learning_rate": 0.01}]}})


def test_a_categorical_flag_is_not_a_count() -> None:
    space = {"space": {"augment": [True, False], "batch_size": [1, 8]}}
    with pytest.raises(ConfigError, match=r"search\.enqueue\[0\]\.batch_size: must be one of .*got True$"):
        config_from_dict({**space, "search": {"enqueue": [{"batch_size": True}]}})
    with pytest.raises(ConfigError, match=r"search\.enqueue\[0\]\.augment: must be one of .*got 1$"):
        config_from_dict({**space, "search": {"enqueue": [{"augment": 1}]}})


@pytest.mark.parametrize("pretrained, match", [
    ("notes.txt", r"model\.pretrained: a weights file must end in \.safetensors, \.pth, \.pt, \.pdparams, "
                  r"got 'notes\.txt'$"),
    ("weights.PTH", r"model\.pretrained: a weights file must end in"),
    ("gone.pdparams", r"model\.pretrained: must be imagenet, none, or an existing weights file or bundle folder; "
                      r"no such path 'gone\.pdparams'$"),
    ("folder", r"model\.pretrained: a folder must be a bundle holding model\.safetensors, got 'folder'$"),
    ("", r"model\.pretrained: a folder must be a bundle"),  # '' is the current folder
])
def test_pretrained_is_checked_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pretrained: str,
                                       match: str) -> None:
    (tmp_path / "notes.txt").write_text("not weights")
    (tmp_path / "weights.PTH").write_text("")
    (tmp_path / "folder").mkdir()
    monkeypatch.chdir(tmp_path)  # relative paths resolve against the current folder
    with pytest.raises(ConfigError, match=match):
        config_from_dict({"model": {"pretrained": pretrained}})


@pytest.mark.parametrize("item, match", [
    ("train.epochs=" + "9" * 5000, r"--set 'train\.epochs=9999.*': cannot read '9999.*': Exceeds the limit"),
    ("space.x={a: 1, a: 2}", r"--set 'space\.x=\{a: 1, a: 2\}': duplicate key 'a' \(first at line 1\)"),
])
def test_set_values_are_read_as_strictly_as_the_file(item: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_set([item])


# --- what must keep working


def test_paddlehub_param_list_with_init_values_still_loads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """
param_list:
- name : lr
  init_value : 0.001
  type : float
  lower_than : 0.05
  greater_than : 0.000005
- name : batch_size
  init_value : 12.0
  type : int
  lower_than : 20
  greater_than : 10
search:
  enqueue:
  - {learning_rate: 0.01}
"""))
    assert cfg.space.params == (FloatParam("learning_rate", 5e-6, 0.05), IntParam("batch_size", 10, 20))
    assert cfg.search.enqueue == ({"learning_rate": 0.001, "batch_size": 12}, {"learning_rate": 0.01})
    assert isinstance(cfg.search.enqueue[0]["batch_size"], int)


def test_enqueue_inside_the_space_loads_normalised() -> None:
    cfg = config_from_dict({"space": SPACE, "search": {"enqueue": [
        {"learning_rate": 0.001, "batch_size": 16.0, "optimizer": "momentum"}, {"learning_rate": 1e-1}, {}]}})
    first = cfg.search.enqueue[0]
    assert first == {"learning_rate": 0.001, "batch_size": 16, "optimizer": "momentum"}
    assert isinstance(first["batch_size"], int) and cfg.search.enqueue[2] == {}


@pytest.mark.parametrize("size", [16, 224, 1024])
def test_sane_image_sizes_load(size: int) -> None:
    assert config_from_dict({"data": {"image_size": size}}).data.image_size == size
    space = config_from_dict({"space": {"data.image_size": [size, 64]}}).space
    assert space.params[0].choices == (size, 64)


def test_existing_weights_and_bundles_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for suffix in (".safetensors", ".pth", ".pt", ".pdparams"):
        (tmp_path / f"w{suffix}").write_bytes(b"")  # never opened at config load
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "model.safetensors").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    for pretrained in ("imagenet", "none", "w.safetensors", "w.pth", "w.pt", "w.pdparams", "bundle",
                       str(tmp_path / "bundle")):
        assert config_from_dict({"model": {"pretrained": pretrained}}).model.pretrained == pretrained


def test_aliases_and_merge_keys_still_load(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """
train: &train
  epochs: 2
  batch_size: 8
space:
  optimizer: &opts [adam, momentum]
  data.image_size: [32, 64]
search:
  enqueue:
  - <<: {optimizer: adam, data.image_size: 32}
    data.image_size: 64
"""))
    assert cfg.train.epochs == 2 and cfg.space.params[0].choices == ("adam", "momentum")
    assert cfg.search.enqueue == ({"optimizer": "adam", "data.image_size": 64},)
