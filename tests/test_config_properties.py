"""Property-based: one mutation of a valid config.yaml or RUN.yaml (a value of another type or range, a
key removed, an unknown key added, a model or method renamed) is either accepted, and the sweep plans, or
refused with one line that names a key; never a traceback. Derandomized, so every CI run tries the same
cases."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softcfg.cli import main
from softcfg.options import ConfigError
from softcfg.sweep import load_sweep
from workflow_kit import REPO

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# a message starts with the key it refuses: models.x.checkpoint, config.grid.gamma[0], methods.cfg: ...
NAMES_A_KEY = re.compile(r"^(config\.)?[A-Za-z_][\w.\-]*(\[\d+\])*[.:\[ ]")


def _config() -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for entry in config["models"].values():  # found from any working folder
        if entry.get("prompts"):
            entry["prompts"] = str(REPO / entry["prompts"])
    return config


CONFIG = _config()
RUN = next(iter(load_sweep(copy.deepcopy(CONFIG)).runs.values())).config.to_dict()


def _paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a nested mapping (list items by index)."""
    found = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _paths(value, (*prefix, index))
    return found


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1e300, 1e-300, 2**63, "", "../x", "a b", "a;b", "cuda:x", "1e3", ".inf"]),
    st.text(max_size=12),
    st.lists(st.integers(min_value=-3, max_value=3), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
NAMES = st.one_of(st.text(max_size=12), st.sampled_from(["../../x", "a;touch X;b", "my model", "-n", "ok_2"]))


@st.composite
def mutations(draw: st.DrawFn, base: dict) -> tuple[dict, str]:
    data = copy.deepcopy(base)
    path = draw(st.sampled_from(_paths(data)))
    *parents, last = path
    parent = data
    for key in parents:
        parent = parent[key]
    kind = draw(st.sampled_from(["replace", "delete", "unknown key", "rename"]))
    if kind == "replace":
        parent[last] = draw(VALUES)
    elif kind == "delete":
        del parent[last]
    elif kind == "unknown key" and isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=8))] = draw(VALUES)
    elif kind == "rename" and isinstance(parent, dict) and parents and parents[-1] in ("models", "methods"):
        parent[draw(NAMES)] = parent.pop(last)
    else:
        parent[last] = draw(VALUES)
    return yaml.safe_load(yaml.safe_dump(data)), f"{kind} {path}"  # as a file would give it


@SETTINGS
@given(case=mutations(CONFIG))
def test_a_mutated_config_plans_or_is_refused_in_one_line_naming_a_key(case):
    data, what = case
    try:
        sweep = load_sweep(data)
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and NAMES_A_KEY.match(message), f"{what}: {message!r}"
        return
    assert sweep.runs, what


@SETTINGS
@given(case=mutations(RUN))
def test_a_mutated_run_yaml_is_written_or_refused_in_one_line_naming_a_key(tmp_path: Path, capsys, case):
    data, what = case
    out = tmp_path / "RUN.yaml"
    out.unlink(missing_ok=True)
    capsys.readouterr()
    status = main(["run-config", "--json", json.dumps(data), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    if status == 0:
        assert out.is_file() and not err, what
        return
    assert status == 2 and not out.exists(), what
    message = err.removeprefix("softcfg: error: ")
    assert "\n" not in err and NAMES_A_KEY.match(message), f"{what}: {err!r}"
