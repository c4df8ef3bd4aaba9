"""The papers' tables beside ours: every published row with our value and the difference where
a run of ours has the row's model and setting, and marked where none has.

Published numbers: ``paper_data/*.csv`` (the paper's Tables 1-3; README there). A run of ours is named
as the paper names models, ``<family paper name>-<size>`` (``AliTok-XL``), and its method by the paper's
kinds: ``baseline`` (no guidance), ``cfg`` (cosine schedule; ``cfg:<schedule>`` otherwise), ``softcfg``
(SoftCFG without step normalization) and ``softcfg+stepnorm``, each with ``+ssg`` when SSG is on; Tables
1 and 2 take SoftCFG's default target (values) only. A row matches on exactly that model, kind and
setting:

- Table 1 (system comparison): ``<model>`` is CFG and ``<model>+SoftCFG`` SoftCFG + step norm, each at
  its family's preset for that size (``preset: <family>-<size>``: gamma, k and temperature exactly); an
  asterisk (rerun by the SoftCFG authors) is dropped; a family whose Table 1 row is one resolution of it
  (LlamaGen-L: the 384 px model) names its preset (``Family.paper_rows``).
- Table 2 (ablation): kind, gamma and k as published; ``+opt`` rows without a published setting match our
  best-FID run of that kind (the ablation table's ``+opt`` rows).
- Table 3 (perturbation target): SoftCFG + step norm on values, keys or both at gamma 13, k 1.4, the
  setting of the paper's ablations unless noted (its Table 2 caption).
- The SSG paper's VAR table: ``baseline`` is CFG at VAR's preset, ``ssg`` the same plus SSG with the DSE
  prior at our best-FID beta.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from importlib.resources import files

import pandas as pd

from softcfg.models.registry import get_family
from softcfg.report.settings import by_setting, number

METRICS = {"fid": "FID", "is": "IS", "sfid": "sFID", "precision": "Prec", "recall": "Rec"}
ABLATION_SETTING = (13.0, 1.4)  # gamma, k of the paper's Tables 2 and 3
PER_RUN = {"run_id", "seed", "metric", "value", "num_samples", "batch_seeds", "config_hash", "git_commit"}
PER_RUN |= {"versions", "extractor", "reference", "backend", "mode"}  # differ between seeds or metrics


def published(name: str) -> pd.DataFrame:
    """One of the paper's tables as shipped with the package (``paper_data/<name>.csv``)."""
    with files("softcfg.report").joinpath("paper_data", f"{name}.csv").open() as f:
        return pd.read_csv(f)


def kind(row: pd.Series) -> str | None:
    """The paper's name for the method of one of our rows (None: a method the paper does not report)."""
    ssg = "" if pd.isna(row.get("ssg_prior")) else "+ssg"
    if not row["guided"]:
        return "baseline" + ssg
    if row["method_name"] == "cfg":  # the SoftCFG tables' CFG has the cosine schedule; VAR's ramps
        schedule = row.get("schedule", "cosine")
        return ("cfg" if schedule == "cosine" else f"cfg:{schedule}") + ssg
    if row["method_name"] == "softcfg":
        return ("softcfg+stepnorm" if row["step_norm"] else "softcfg") + ssg
    return None


def _on_values(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs perturbing the cached values (SoftCFG's default target) or nothing: Tables 1 and 2."""
    return runs[runs["target"].isna() | runs["target"].eq("v")]


def paper_model(row: pd.Series) -> str | None:
    """``AliTok-XL`` for an AliTok XL run; None for families the paper does not report."""
    family = get_family(row["family"])
    size = row.get("size")
    if not family.paper_name or size is None or pd.isna(size):
        return None
    return f"{family.paper_name}-{size}"


def runs_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per setting (every sweep column but the seed), metrics averaged over seeds, with the
    paper's model name and method kind; settings the paper cannot have are dropped."""
    keys = [c for c in metrics.columns if c not in PER_RUN and not c.startswith("ci_")]
    wide = by_setting(metrics, keys)
    wide = wide.reset_index().dropna(subset=[m for m in METRICS if m in wide], how="all")
    if wide.empty:
        return wide.assign(kind=None, paper_model=None)
    wide = wide.assign(kind=wide.apply(kind, axis=1), paper_model=wide.apply(paper_model, axis=1))
    return wide.dropna(subset=["kind", "paper_model"])


def _close(a: pd.Series, b: float) -> pd.Series:
    return a.sub(b).abs().lt(1e-9)


def _preset_key(run: pd.Series) -> str | None:
    """The key of the family's presets this run's model is (``XL``, or ``L-384`` per image size)."""
    presets = get_family(run["family"]).presets
    size, image = run.get("size"), run.get("image_size")
    keys = [f"{size}-{int(image)}"] if image is not None and not pd.isna(image) else []
    return next((key for key in [*keys, size] if key in presets), None)


def _at_preset(run: pd.Series, model: str) -> bool:
    """Whether ``run`` is ``model`` (a Table 1 name) sampled exactly at its family's preset."""
    family, preset = get_family(run["family"]), _preset_key(run)
    if preset is None:
        return False
    name = family.paper_rows.get(preset) if family.paper_rows else run["paper_model"]
    return name == model and all(
        key in run and _same(run[key], value) for key, value in family.presets[preset].items()
    )


def _same(ours: object, preset: object) -> bool:
    """A run's option equals a preset's: numbers within float noise, names (a schedule) exactly."""
    if isinstance(preset, str):
        return ours == preset
    return isinstance(ours, int | float) and not pd.isna(ours) and math.isclose(ours, preset)


def _table1(row: pd.Series, ours: pd.DataFrame) -> pd.DataFrame:
    name = row["generator"].replace("*", "")
    model = name.removesuffix("+SoftCFG")
    runs = _on_values(ours[ours["kind"].eq("softcfg+stepnorm" if model != name else "cfg")])
    return runs[pd.Series([_at_preset(run, model) for _, run in runs.iterrows()], runs.index, dtype=bool)]


def _table2(row: pd.Series, ours: pd.DataFrame) -> pd.DataFrame:
    method = row["method"]
    wanted = method.removesuffix("+opt")
    runs = _on_values(ours[ours["paper_model"].eq(row["model"]) & ours["kind"].eq(wanted)])
    if wanted == "baseline":
        return runs
    if pd.isna(row["gamma"]):  # tuned, setting not published: our best over the grid
        return (
            runs.loc[[runs["fid"].idxmin()]] if method.endswith("+opt") and not runs.empty else runs.iloc[:0]
        )
    return runs[_close(runs["gamma"], row["gamma"]) & _close(runs["k"], row["k"])]


def _table3(row: pd.Series, ours: pd.DataFrame) -> pd.DataFrame:
    gamma, k = ABLATION_SETTING
    runs = ours[ours["paper_model"].eq(row["model"])]
    soft = runs[runs["kind"].eq("softcfg+stepnorm")]
    return soft[soft["target"].eq(row["target"]) & _close(soft["gamma"], gamma) & _close(soft["k"], k)]


def _ssg(row: pd.Series, ours: pd.DataFrame) -> pd.DataFrame:
    """The SSG paper's VAR rows: ``baseline`` is CFG at the family's preset (VAR's own FID settings, the
    SSG authors' reruns), ``ssg`` the same with SSG's DSE prior at our best-FID beta (the paper's beta is
    not published)."""
    runs = ours[ours["kind"].eq("cfg:ramp" if row["method"] == "baseline" else "cfg:ramp+ssg")]
    runs = runs[
        pd.Series([_at_preset(run, row["model"]) for _, run in runs.iterrows()], runs.index, dtype=bool)
    ]
    if row["method"] == "ssg":
        runs = runs[runs["ssg_prior"].eq("dse")]
        return (
            runs.loc[[runs["fid"].idxmin()]]
            if not runs.empty and runs["fid"].notna().any()
            else runs.iloc[:0]
        )
    return runs


# name -> (published table, its identifying columns, the rows of ours matching a published row)
PAPER_TABLES: dict[str, tuple[str, list[str], Callable[[pd.Series, pd.DataFrame], pd.DataFrame]]] = {
    "paper_systems": ("softcfg_table1_imagenet256", ["generator"], _table1),
    "paper_ablation": ("softcfg_table2_ablation", ["model", "method", "gamma", "k"], _table2),
    "paper_target": ("softcfg_table3_perturb_target", ["model", "target"], _table3),
    "paper_ssg": ("ssg_imagenet256", ["model", "method"], _ssg),
}


def beside_paper(name: str, metrics: pd.DataFrame) -> pd.DataFrame:
    """Every published row of table ``name``, each metric as published, ours and ours minus published,
    and ``ours`` naming the matched runs of ours (our method entries; several when several match, their
    values then averaged) or empty where none matches."""
    source, lead, match = PAPER_TABLES[name]
    paper = published(source)
    ours = runs_table(metrics)
    rows = []
    for _, row in paper.iterrows():
        runs = match(row, ours) if not ours.empty else ours
        if missing := [m for m in METRICS if m in paper and m not in runs]:
            runs = runs.assign(**dict.fromkeys(missing, math.nan))
        out = {key: row[key] for key in lead}
        for metric in METRICS:
            if metric not in paper:
                continue
            mine = runs[metric].mean() if not runs.empty else math.nan
            out[f"{metric}_paper"], out[f"{metric}_ours"] = row[metric], mine
            out[f"{metric}_diff"] = mine - row[metric]
        out["ours"] = ", ".join(f"{m}/{r}" for m, r in zip(runs["model"], runs["method"], strict=True))
        rows.append(out)
    return pd.DataFrame(rows)


def paper_cells(frame: pd.DataFrame, name: str) -> tuple[list[str], list[list[str]], int]:
    """Header, rows and number of leading columns of a ``beside_paper`` table for Markdown/LaTeX."""

    _, lead, _ = PAPER_TABLES[name]
    metrics = [m for m in METRICS if f"{m}_paper" in frame]
    header = [*lead, *(f"{METRICS[m]} {part}" for m in metrics for part in ("paper", "ours", "Δ")), "runs"]
    rows = []
    for _, r in frame.iterrows():
        cells = [number(r[c], 2) if isinstance(r[c], float) else str(r[c]) for c in lead]
        for m in metrics:
            cells += [number(r[f"{m}_paper"], 2), number(r[f"{m}_ours"], 2), number(r[f"{m}_diff"], 2)]
        rows.append([*cells, r["ours"] or "no run of ours"])
    return header, rows, len(lead)
