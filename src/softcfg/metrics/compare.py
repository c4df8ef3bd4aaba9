"""Paired comparison of two runs of a finished workflow (``softcfg compare``).

Two runs of one model with the same seed and sampling sizes draw sample n from the same label and seed,
so their differences are paired sample by sample: the same block draws (softcfg.metrics.bootstrap) are
applied to both runs, and the interval is on the difference B - A itself, far narrower than the two
runs' intervals combined when the methods' samples are correlated. Runs that are not paired are refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from softcfg import layout
from softcfg.io.records import read_record
from softcfg.metrics import INTERVAL_METRICS
from softcfg.metrics.bootstrap import Plan, Resampling, replicates
from softcfg.metrics.scoring import FeatureSets, feature_sets
from softcfg.metrics.suite import PRSettings
from softcfg.models.registry import get_family
from softcfg.options import UserError


@dataclass(frozen=True)
class Difference:
    """One metric of runs A and B, B - A with its interval, and the probability of the observed sign."""

    metric: str
    a: float
    b: float
    difference: float
    low: float
    high: float
    sign_probability: float
    method: str


def _record(results: Path, run: str) -> dict:
    path = layout.metrics(results, run)
    if not path.is_file():
        raise UserError(f"compare: no metrics of run {run!r} under {results} ({path} not found)")
    return read_record(path, "metrics record", ("run",))


def _group_start(path: Path) -> int:
    match = re.fullmatch(r"shards_(\d+)-\d+\.npz", path.name)
    if match is None:
        raise UserError(f"{path}: not a features file of a group of shards")
    return int(match.group(1))


def _features(results: Path, run: str, record: dict) -> FeatureSets:
    """The run's feature files as the workflow wrote them (digits: one file; Inception: one per group)."""
    if get_family(record["run"]["model"]["family"]).extractor == "digits":
        samples, reference = [layout.features(results, run)], layout.reference_features(results)
    else:
        folder = layout.features(results, run).with_suffix("")
        samples = sorted(folder.glob("shards_*.npz"), key=_group_start)
        reference = layout.inception_reference(results)
        if not samples:
            raise UserError(f"compare: no Inception features of run {run!r} in {folder}")
    for path in [*samples, reference]:
        if not path.is_file():
            raise UserError(f"compare: file not found: {path}")
    return feature_sets([str(p) for p in samples], str(reference))


def check_paired(run_a: str, a: dict, run_b: str, b: dict) -> None:
    """Same model entry, seed, shard and batch sizes and sample count, else a one-line error."""

    def sampling(record: dict) -> dict:
        return {k: v for k, v in record["run"]["sampling"].items() if k != "diagnostics"}

    for what, get in (
        ("model", lambda r: r["run"]["model"]),
        ("seed and sampling sizes", sampling),
        ("number of samples", lambda r: r["num_samples"]),
        ("reference", lambda r: r["reference"]),
    ):
        if get(a) != get(b):
            raise UserError(
                f"compare: runs {run_a!r} and {run_b!r} do not share model, seed and sampling sizes "
                f"({what}: {get(a)} vs {get(b)})"
            )


def compare_runs(
    results: Path,
    run_a: str,
    run_b: str,
    names: tuple[str, ...] | None,
    resampling: Resampling,
    pr: PRSettings,
) -> tuple[Plan, Iterator[Difference]]:
    """The plan (one set of block draws for both runs) and, metric by metric, the paired differences.
    ``names`` default: the metrics with an interval that both runs' records hold."""
    a, b = _record(results, run_a), _record(results, run_b)
    check_paired(run_a, a, run_b, b)
    if names is None:
        names = tuple(n for n in INTERVAL_METRICS if n in a["metrics"] and n in b["metrics"])
    sets_a, sets_b = _features(results, run_a, a), _features(results, run_b, b)
    plan = resampling.plan(sets_a.samples.features.shape[0])

    def differences() -> Iterator[Difference]:
        for name, (ra, rb) in replicates([sets_a.samples, sets_b.samples], sets_a.reference, names, plan, pr):
            delta = rb - ra
            low, high = delta.interval(resampling.level)
            kind = plan.describe(delta.kind)
            yield Difference(name, ra.value, rb.value, delta.value, low, high, delta.sign_probability(), kind)

    return plan, differences()
