"""The default sweep's plan, job by job, equals a stored copy: planning may get faster, never different.

Each job of ``snakemake --dry-run --printshellcmds`` on config.yaml is reduced to its rule, wildcards,
inputs, outputs, log, benchmark and shell command (resources, job ids and reasons left out), and the
sorted list is compared with ``tests/plans/default.jsonl``. After a change that means to change the plan,
regenerate the copy on purpose: ``SOFTCFG_WRITE_PLAN=1 pytest tests/test_plan.py``, and review its diff.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from workflow_kit import REPO, snakemake

pytestmark = pytest.mark.workflow

STORED = Path(__file__).parent / "plans" / "default.jsonl"
FIELDS = ("input", "output", "log", "benchmark", "wildcards")


def planned_jobs(dry_run: str) -> list[str]:
    """One JSON line per job of a dry run's output, sorted."""
    jobs = []
    for block in re.split(r"^(?=rule \w+:$)", dry_run, flags=re.MULTILINE)[1:]:
        lines = block.splitlines()
        job = {"rule": lines[0].removeprefix("rule ").removesuffix(":")}
        for line in lines[1:]:
            key, _, value = line.strip().partition(": ")
            if key in FIELDS:
                job[key] = value
            elif key == "Shell command":
                job["shell"] = value
                break
        jobs.append(json.dumps(job, sort_keys=True))
    return sorted(jobs)


def test_the_default_sweep_plans_the_stored_jobs(tmp_path):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for entry in config["models"].values():
        if "prompts" in entry:  # the working folder is elsewhere; the repository's path is normalised below
            entry["prompts"] = str(REPO / entry["prompts"])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "--dry-run", "--printshellcmds")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = planned_jobs((proc.stdout + proc.stderr).replace(str(REPO), "<repo>"))
    assert len(jobs) > 100 and not any(str(tmp_path) in job for job in jobs)
    if os.environ.get("SOFTCFG_WRITE_PLAN"):
        STORED.parent.mkdir(exist_ok=True)
        STORED.write_text("\n".join(jobs) + "\n")
    stored = STORED.read_text().splitlines()
    missing, extra = sorted(set(stored) - set(jobs)), sorted(set(jobs) - set(stored))
    assert jobs == stored, f"{len(missing)} stored jobs not planned, e.g. {missing[:1]}; new: {extra[:1]}"
