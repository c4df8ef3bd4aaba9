"""The conda environment files parse, pin exactly what CI pins, and satisfy pyproject's bounds."""

import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def _ci_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements" / "ci.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(req.name)] = spec.version
    return pins


def _project_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return [Requirement(r) for r in reqs]


@pytest.mark.parametrize("env", sorted(p.name for p in (REPO / "envs").glob("*.yaml")))
def test_env_pins_equal_ci_pins(env):
    data = yaml.safe_load((REPO / "envs" / env).read_text())
    assert data["name"] == f"softcfg-{Path(env).stem}"
    (pip,) = [d["pip"] for d in data["dependencies"] if isinstance(d, dict)]
    assert "python=3.11" in data["dependencies"]
    ci = _ci_pins()
    pinned = [Requirement(r) for r in pip if not r.startswith("-e")]
    assert any(r.startswith("-e ..") for r in pip), "the package itself must be installed"
    for req in pinned:
        (spec,) = req.specifier
        assert spec.operator == "==" and ci[canonicalize_name(req.name)] == spec.version, str(req)
    names = {canonicalize_name(r.name) for r in pinned}
    assert {"torch", "numpy", "pyyaml", "tqdm"} <= names  # what every softcfg command imports


def test_every_project_dependency_is_pinned_within_its_bounds():
    ci = _ci_pins()
    for req in _project_requirements():
        name = canonicalize_name(req.name)
        assert name in ci, f"{name} is not pinned in requirements/ci.txt"
        assert req.specifier.contains(ci[name]), f"{name}=={ci[name]} violates {req}"


def test_each_extra_is_pinned_in_its_rule_group():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    groups = {"metrics": "evaluate", "report": "report"}
    for extra, group in groups.items():
        data = yaml.safe_load((REPO / "envs" / f"{group}.yaml").read_text())
        (pip,) = [d["pip"] for d in data["dependencies"] if isinstance(d, dict)]
        names = {canonicalize_name(Requirement(r).name) for r in pip if not r.startswith("-e")}
        for req in project["optional-dependencies"][extra]:
            assert canonicalize_name(Requirement(req).name) in names, (group, req)
        assert f"-e ..[{extra}]" in pip
