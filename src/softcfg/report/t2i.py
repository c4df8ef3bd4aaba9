"""Text-to-image tables in the layout of the SoftCFG paper's Table 4 (GenEval's numbers for SimpleAR).

- t2i: our text models' runs (no guidance, and each guided method at the focus gamma and k): GenEval's
  overall score (a fraction, as published), % correct images, % correct prompts and the six tasks in %,
  then DPG-Bench's overall score (0-100) and the scorers (backend, DPG mode).
- paper_t2i: the paper's rows as published beside ours (``paper.beside_paper``'s layout): a row matches our
  runs of the paper's model name (``<family paper name>-<size>``, or the family's paper name alone, as
  the table names SimpleAR without a size; so only a family naming itself SimpleAR) and method
  (``cfg``: CFG, ``softcfg``: SoftCFG + step norm, the paper's method) at the focus setting; otherwise
  ours is empty and the row says so.
Values are means over seeds.
"""

from __future__ import annotations

import math

import pandas as pd

from softcfg.models.registry import get_family
from softcfg.report.paper import kind, paper_model, published
from softcfg.report.settings import by_setting, method_sort, number, refuse_mixed, swept_options

PAPER_SOURCE = "softcfg_table4_t2i_dpg"
# the paper's column -> (our metric, factor to the paper's scale, header), in the paper's order
FIELDS = {
    "overall": ("geneval/overall", 1.0, "Overall ↑"),
    "correct_images_pct": ("geneval/correct_images", 100.0, "Images % ↑"),
    "correct_prompts_pct": ("geneval/correct_prompts", 100.0, "Prompts % ↑"),
    "single_object_pct": ("geneval/single_object", 100.0, "Single obj. %"),
    "two_object_pct": ("geneval/two_object", 100.0, "Two obj. %"),
    "position_pct": ("geneval/position", 100.0, "Position %"),
    "colors_pct": ("geneval/colors", 100.0, "Colors %"),
    "color_attr_pct": ("geneval/color_attr", 100.0, "Color attr. %"),
    "counting_pct": ("geneval/counting", 100.0, "Counting %"),
}
DPG = ("dpg/overall", "DPG ↑")
PAPER_KINDS = {"cfg": "cfg", "softcfg": "softcfg+stepnorm"}  # the paper's method -> our kind
KEYS = ["model", "family", "size", "method", "method_name", "guided", "gamma", "k", "target", "step_norm"]
KEYS += ["schedule", "ssg_prior"]


def _scorers(rows: pd.DataFrame) -> str:
    """``scenes`` or ``hf / hf (corrected)``: the GenEval backend, then DPG's backend and mode."""
    parts = []
    for prefix in ("geneval/", "dpg/"):
        mine = rows[rows["metric"].str.startswith(prefix)]
        for backend, mode in sorted(set(zip(mine["backend"], mine["mode"], strict=True))):
            part = str(backend) if prefix == "geneval/" else f"{backend} ({mode})"
            parts.append(part)
    return " / ".join(dict.fromkeys(parts))


def t2i_runs(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per setting of the runs with GenEval or DPG-Bench scores: each score averaged over seeds
    and scaled as the paper prints it, ``scorers`` and ``seeds``."""
    scored = (
        metrics[metrics["metric"].str.startswith(("geneval/", "dpg/"))] if "metric" in metrics else metrics
    )
    if scored.empty:
        return pd.DataFrame(columns=[*KEYS, *FIELDS, "dpg", "scorers", "seeds"])
    keys = [k for k in KEYS if k in scored]
    keys += [c for c in swept_options(scored) if c not in keys]
    if "run_id" in scored:
        refuse_mixed(scored, keys)
    wide = by_setting(scored, keys)
    groups = scored.groupby(keys, dropna=False)
    wide = wide.join(groups["seed"].nunique().rename("seeds")).join(groups.apply(_scorers).rename("scorers"))
    wide = wide.reset_index()
    out = wide[[*keys, "scorers", "seeds"]].copy()
    for column, (metric, factor, _) in FIELDS.items():
        out[column] = wide[metric] * factor if metric in wide else math.nan
    out["dpg"] = wide.get(DPG[0], math.nan)
    return out.dropna(subset=[*FIELDS, "dpg"], how="all")


def _at_focus(runs: pd.DataFrame, gamma: float, k: float) -> pd.DataFrame:
    unguided = ~runs["guided"].astype(bool)
    focus = runs["gamma"].sub(gamma).abs().lt(1e-9) & runs["k"].sub(k).abs().lt(1e-9)
    on_values = runs["target"].isna() | runs["target"].eq("v")
    return runs[(unguided | focus) & on_values]


def t2i_table(metrics: pd.DataFrame, gamma: float, k: float) -> pd.DataFrame:
    """Our text models' runs at the focus setting (unguided ones at none), methods in the ablation's order."""

    runs = _at_focus(t2i_runs(metrics), gamma, k)
    return method_sort(runs).reset_index(drop=True) if not runs.empty else runs


def paper_t2i_table(metrics: pd.DataFrame, gamma: float, k: float) -> pd.DataFrame:
    """Every published row with each column as published, ours and ours minus published, and ``ours``
    naming the matched runs (empty where none matches)."""
    ours = _at_focus(t2i_runs(metrics), gamma, k)
    if not ours.empty:
        family = ours["family"].map(lambda f: get_family(f).paper_name)
        ours = ours.assign(kind=ours.apply(kind, axis=1), paper_model=ours.apply(paper_model, axis=1))
        ours = ours.assign(paper_family=family)
    rows = []
    for _, row in published(PAPER_SOURCE).iterrows():
        runs = ours
        if not ours.empty:
            named = ours["paper_model"].eq(row["model"]) | ours["paper_family"].eq(row["model"])
            runs = ours[named & ours["kind"].eq(PAPER_KINDS.get(row["method"]))]
        out = {"model": row["model"], "method": row["method"]}
        for column in FIELDS:
            mine = float(runs[column].mean()) if not runs.empty else math.nan
            out[f"{column}_paper"], out[f"{column}_ours"] = float(row[column]), mine
            out[f"{column}_diff"] = mine - float(row[column])
        out["ours"] = ", ".join(f"{m}/{r}" for m, r in zip(runs["model"], runs["method"], strict=True))
        rows.append(out)
    return pd.DataFrame(rows)


def _digits(column: str) -> int:
    return 3 if column == "overall" else 2


def t2i_cells(metrics: pd.DataFrame, gamma: float, k: float) -> tuple[list[str], list[list[str]], int]:

    frame = t2i_table(metrics, gamma, k)
    header = ["model", "method", "γ", "k", *(f[2] for f in FIELDS.values()), DPG[1], "scorers", "seeds"]
    rows = [
        [str(r["model"]), str(r["method"]), number(r["gamma"], 2), number(r["k"], 2),
         *(number(r[c], _digits(c)) for c in FIELDS), number(r["dpg"], 2), str(r["scorers"]),
         str(int(r["seeds"]))]
        for _, r in frame.iterrows()
    ]  # fmt: skip
    return header, rows, 2


def paper_t2i_cells(metrics: pd.DataFrame, gamma: float, k: float) -> tuple[list[str], list[list[str]], int]:

    frame = paper_t2i_table(metrics, gamma, k)
    header = ["model", "method"]
    header += [f"{label} {part}" for _, _, label in FIELDS.values() for part in ("paper", "ours", "Δ")]
    rows = []
    for _, r in frame.iterrows():
        cells = [str(r["model"]), str(r["method"])]
        for c in FIELDS:
            d = _digits(c)
            cells += [number(r[f"{c}_paper"], d), number(r[f"{c}_ours"], d), number(r[f"{c}_diff"], d)]
        rows.append([*cells, r["ours"] or "no run of ours"])
    return [*header, "runs"], rows, 2
