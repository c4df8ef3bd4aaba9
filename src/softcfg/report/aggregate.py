"""Per-run outputs into two tidy Parquet tables.

``summarize_shards`` merges one run's shard manifests (seeds, provenance, sample-weighted per-step
diagnostics); ``aggregate`` joins each run's config, metrics record and summary into
``metrics.parquet`` (one row per run and metric, with every sweep parameter, the value and its
confidence interval (``ci_low``, ``ci_high``, ``ci_level``, ``ci_method``, ``ci_resamples``: NaN, null
and 0 where the metric has none), the GenEval/DPG-Bench scorer's ``backend`` and ``mode`` (null for other
metrics), the number of samples, the seeds and provenance), ``steps.parquet``
(one row per run and decode step) and ``confidence.parquet`` (one row per run, recorded sample, token
and confidence definition: ``sample``, ``token``, the token's ``grid_row``/``grid_col`` in the image's
token map (null outside it), ``definition`` and ``value``; the run column ``confidence`` is a SoftCFG
run's own definition, so the value has another name).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from softcfg.config import RunConfig
from softcfg.io.atomic import atomic_path
from softcfg.methods import BUILTIN_METHODS, SSG, method_class

# A metric without an interval (KID, accuracy, intervals off, records written before intervals existed).
NO_INTERVAL = {"ci_low": np.nan, "ci_high": np.nan, "ci_level": np.nan, "ci_method": None, "ci_resamples": 0}


def option_columns(methods: Iterable[str] = ()) -> list[str]:
    """Every option of the built-in methods, then of ``methods`` (the runs' own, e.g. an installed
    plugin's): the Parquet tables' columns depend on what was run, not on what happens to be installed
    (and a plugin that fails to import concerns only the runs that use it)."""
    names = dict.fromkeys([*BUILTIN_METHODS, *methods])
    fields = [f for name in names for f in method_class(name).model_fields if f not in ("name", "ssg")]
    return list(dict.fromkeys(fields)) + [f"ssg_{f}" for f in SSG.model_fields]


def run_columns(run: RunConfig, options: list[str] | None = None) -> dict:
    """The sweep parameters of a run as flat columns (``options``: the table's option columns, default
    the built-in ones and the run's method's); options its method does not have are null."""
    m = run.method
    columns = option_columns([m.name]) if options is None else options
    dumped = m.model_dump(mode="json", exclude={"name"})
    ssg = dumped.pop("ssg", None) or {}  # SSG's options as ssg_<option> columns, null without SSG
    options = {
        key: json.dumps(value) if isinstance(value, list | dict) else value
        for key, value in {**dumped, **{f"ssg_{k}": v for k, v in ssg.items()}}.items()
    }
    return {
        "run_id": run.run.id,
        "model": run.run.model,
        "family": run.model.family,
        "size": run.model.size,
        "image_size": run.model.image_size,
        "method": run.run.method,
        "method_name": m.name,
        "guided": m.uses_uncond,
        **{key: options.get(key) for key in columns},
        "axes": ",".join(run.run.axes),  # options swept beyond the method's own axes: tables group by them
        "seed": run.sampling.seed,
    }


def summarize_shards(manifests: list[dict]) -> dict:
    """One run's shards: sample count, seeds, provenance and sample-weighted mean diagnostics per step."""
    manifests = sorted(manifests, key=lambda m: m["shard_index"])
    hashes = {m["config_hash"] for m in manifests}
    if len(hashes) != 1:
        raise ValueError(f"shards of one run were sampled with different configs: {sorted(hashes)}")
    counts = np.array([m["num_samples"] for m in manifests], dtype=np.float64)
    maps = next((m for m in manifests if m.get("confidence_maps")), None)  # shard 0's, if recorded
    diagnostics = None
    if all(m.get("diagnostics") for m in manifests):
        diagnostics = {}
        for name in sorted(manifests[0]["diagnostics"]):
            values = np.array(
                [m["diagnostics"][name] for m in manifests], dtype=np.float64
            )  # [shards, steps]
            mean = (values * counts[:, None]).sum(0) / counts.sum()
            diagnostics[name] = [None if np.isnan(v) else float(v) for v in mean]
    return {
        "config_hash": hashes.pop(),
        "num_samples": int(counts.sum()),
        "shards": [m["shard_index"] for m in manifests],
        "batch_seeds": [m["batch_seeds"] for m in manifests],
        "git_commit": manifests[0]["git_commit"],
        "versions": manifests[0]["versions"],
        "diagnostics": diagnostics,
        "confidence_maps": maps and {"grid": maps["token_grid"], "values": maps["confidence_maps"]},
    }


def grid_cells(token: np.ndarray, grid: dict | None) -> dict[str, pd.arrays.IntegerArray]:
    """``grid_row``/``grid_col`` of each token index in the row-major token map ``grid`` (``offset``,
    ``height``, ``width``, optional row ``stride``), null outside it and everywhere without one."""
    position = token - (grid["offset"] if grid else 0)
    stride = (grid.get("stride") or grid["width"]) if grid else 1
    row, col = position // stride, position % stride
    if grid:
        inside = (position >= 0) & (row < grid["height"]) & (col < grid["width"])
    else:
        inside = np.zeros(token.shape, bool)
    cells = {"grid_row": row, "grid_col": col}
    return {name: pd.arrays.IntegerArray(v.astype(np.int64), ~inside) for name, v in cells.items()}


def confidence_rows(columns: dict, maps: dict) -> pd.DataFrame:
    """A run's recorded confidences (``summarize_shards``' ``confidence_maps``) as rows, one per sample,
    token and definition."""
    parts = []
    for definition, values in sorted(maps["values"].items()):
        q = np.asarray(values, dtype=np.float64)  # [samples, tokens]
        sample, token = (a.ravel() for a in np.indices(q.shape))
        cells = grid_cells(token, maps["grid"])
        frame = pd.DataFrame({**columns, "sample": sample, "token": token, **cells, "definition": definition})
        parts.append(frame.assign(value=q.ravel()))
    return pd.concat(parts, ignore_index=True)


SUMMARY_KEYS = ("num_samples", "batch_seeds", "config_hash", "git_commit", "versions", "diagnostics")


def aggregate(
    entries: list[tuple[RunConfig, dict, dict]],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(run config, metrics record, shard summary) per run -> (metrics, steps, confidence tables), sorted."""
    rows, steps, maps = [], [], []
    options = option_columns(sorted({run.method.name for run, _, _ in entries}))
    for run, record, summary in sorted(entries, key=lambda e: e[0].run.id):
        columns = run_columns(run, options)
        provenance = {
            "num_samples": summary["num_samples"],
            "batch_seeds": json.dumps(summary["batch_seeds"]),
            "config_hash": summary["config_hash"],
            "git_commit": summary["git_commit"],
            "versions": json.dumps(summary["versions"], sort_keys=True),
            "extractor": record["extractor"],
            "reference": record["reference"],
        }
        intervals = record.get("intervals", {})
        backends, modes = record.get("backends", {}), record.get("modes", {})  # text-to-image scorers
        for metric, value in sorted(record["metrics"].items()):
            interval = intervals.get(metric, NO_INTERVAL)
            scorer = {"backend": backends.get(metric), "mode": modes.get(metric)}
            rows.append({**columns, "metric": metric, "value": value, **interval, **scorer, **provenance})
        if summary["diagnostics"]:
            diag = pd.DataFrame(summary["diagnostics"], dtype="float64")
            steps.append(pd.DataFrame({**columns, "step": np.arange(len(diag))}).join(diag))
        if summary.get("confidence_maps"):
            maps.append(confidence_rows(columns, summary["confidence_maps"]))
    tables = [pd.concat(parts, ignore_index=True) if parts else pd.DataFrame() for parts in (steps, maps)]
    return pd.DataFrame(rows), *tables


def aggregate_results(results: Path, runs: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The tables of the given runs from their outputs under ``results`` (all checked to exist first).

    Runs are read back from their metric records, without their checkpoints (another machine's files)."""
    from softcfg import layout
    from softcfg.config import parse_run_config
    from softcfg.io.records import read_record
    from softcfg.options import UserError

    paths = [(layout.metrics(results, r), layout.run_summary(results, r)) for r in runs]
    missing = [str(p) for pair in paths for p in pair if not p.is_file()]
    if missing:
        raise UserError(f"aggregate: file not found: {missing[0]}")
    entries = []
    for metrics_path, summary_path in paths:
        record = read_record(metrics_path, "metrics record", ("run", "metrics", "extractor", "reference"))
        run = parse_run_config(record["run"], check_files=False)
        entries.append((run, record, read_record(summary_path, "run summary", SUMMARY_KEYS)))
    return aggregate(entries)


def write_parquet(frame: pd.DataFrame, path: str | Path) -> None:
    """Atomically, without the pandas index, so equal frames give equal files."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
