"""The SoftCFG paper's tables, from ``metrics.parquet`` only, as Markdown and LaTeX.

- ablation (Table 2 layout): none / CFG / SoftCFG / SoftCFG + step norm at the focus (gamma, k), then each
  guided method at its best-FID (gamma, k) over the grid ("opt" rows);
- target (Table 3 layout): SoftCFG + step norm perturbing values, keys or both at the focus setting;
- paper_systems, paper_ablation, paper_target: the paper's Tables 1-3 beside ours (``paper``);
- ssg (the SSG paper's layout): each next-scale base setting without and with SSG (DSE, best beta);
- ssg_prior: no SSG and SSG with each prior (nearest, bilinear, DSE) at each beta;
- paper_ssg: the SSG paper's VAR table beside ours.
- t2i, paper_t2i: GenEval and DPG-Bench scores of text models, and the paper's Table 4 beside them
  (``softcfg.report.t2i``).
Values are means over seeds, shown ``value ± h`` where the runs have intervals (h: the interval's
half-width, averaged over seeds).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

from softcfg.metrics import BUILTIN, get_metric, metric_names
from softcfg.report.settings import by_setting, method_rank, method_sort, number, refuse_mixed, swept_options


def metric_labels(frame: pd.DataFrame) -> dict[str, str]:
    """The metric columns a table shows and their headers, from the metric records: the built-in ones,
    then any installed metric the runs were scored with, then the digits accuracy."""
    labels = {m.name: m.label for m in BUILTIN}
    installed = set(metric_names()) - set(labels)  # entry points scanned once
    for name in frame.columns:
        if name in installed:
            labels[name] = get_metric(name).label
    return {**labels, "accuracy": "Acc ↑"}


def _wide(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per setting (model, method, gamma, k, SSG, any option swept as an axis), metrics averaged
    over seeds, and ``<metric>_pm``: the half-width of the metric's interval (averaged over seeds) where
    the table holds one."""
    keys = ["model", "family", "method", "method_name", "guided", "gamma", "k", "target", "step_norm"]
    keys += ["ssg_prior", "ssg_beta", "ssg_betas"]
    keys += [c for c in swept_options(metrics) if c not in keys]
    refuse_mixed(metrics, keys)
    frame = by_setting(metrics, keys)
    if {"ci_low", "ci_high"} <= set(metrics.columns):
        half = metrics.assign(pm=(metrics["ci_high"] - metrics["ci_low"]) / 2)
        half = by_setting(half, keys, "pm")
        frame = frame.join(half.add_suffix("_pm"))
    seeds = metrics.groupby(keys, dropna=False)["seed"].nunique().rename("seeds")
    frame = frame.join(seeds).reset_index()
    return frame.dropna(subset=[c for c in metric_labels(frame) if c in frame], how="all")


def _at(frame: pd.DataFrame, gamma: float, k: float) -> pd.DataFrame:
    unguided = ~frame["guided"].astype(bool)
    at_focus = frame["gamma"].sub(gamma).abs().lt(1e-9) & frame["k"].sub(k).abs().lt(1e-9)
    return frame[unguided | at_focus]


def _without_ssg(wide: pd.DataFrame) -> pd.DataFrame:
    """Runs without SSG: the SoftCFG tables' rows (SSG runs have their own tables)."""
    return wide[wide["ssg_prior"].isna()]


def ablation_table(metrics: pd.DataFrame, gamma: float, k: float) -> pd.DataFrame:
    wide = _without_ssg(_wide(metrics))
    wide = wide[wide["target"].isna() | wide["target"].eq("v")]
    focus = method_sort(_at(wide, gamma, k))
    guided = wide[wide["guided"].astype(bool)]
    best = (
        guided.loc[guided.groupby(["model", "method"])["fid"].idxmin()]
        if "fid" in guided
        else guided.iloc[:0]
    )
    best = method_sort(best).assign(method=lambda f: f["method"] + " +opt")
    return pd.concat([focus, best], ignore_index=True)


def target_table(metrics: pd.DataFrame, gamma: float, k: float) -> pd.DataFrame:
    wide = _without_ssg(_wide(metrics))
    soft = wide[(wide["method_name"] == "softcfg") & wide["step_norm"].eq(True)]
    return _at(soft, gamma, k).sort_values(["model", "target", "method"], ignore_index=True)


PRIOR_ORDER = {"nearest": 1, "bilinear": 2, "dse": 3}  # no SSG (0) first, as in the SSG ablation


def _next_scale(wide: pd.DataFrame) -> pd.DataFrame:
    """Rows of next-scale models (the only ones SSG applies to), labelled by SSG prior and beta."""
    from softcfg.models.registry import get_family

    scales = wide[wide["family"].map(lambda f: get_family(f).next_scale)]
    return scales.assign(prior=scales["ssg_prior"].fillna("none"), beta=scales.apply(_beta_label, axis=1))


def _beta_label(row: pd.Series) -> str:
    """beta as a run names it: the number, the per-scale list, or a dash without SSG."""
    if pd.isna(row["ssg_prior"]):
        return "–"
    return str(row["ssg_betas"]) if isinstance(row["ssg_betas"], str) else f"{row['ssg_beta']:g}"


def _ssg_sort(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:  # no next-scale model in the sweep
        return frame
    order = frame["method_name"].map(method_rank) * 2 + frame["step_norm"].eq(True).astype(int)
    return (
        frame.assign(_order=order, _prior=frame["prior"].map(PRIOR_ORDER).fillna(0))
        .sort_values(["model", "_order", "gamma", "k", "_prior", "ssg_beta", "method"])
        .drop(columns=["_order", "_prior"])
    )


def ssg_prior_table(metrics: pd.DataFrame, gamma: float, k: float) -> pd.DataFrame:
    """Every next-scale run: no SSG, then SSG with the nearest, bilinear and DSE priors at each beta."""
    return _ssg_sort(_next_scale(_wide(metrics)))


def ssg_table(metrics: pd.DataFrame, gamma: float, k: float) -> pd.DataFrame:
    """The SSG paper's layout: each next-scale base setting without SSG, then with SSG (DSE prior) at its
    best-FID beta ("+opt": beta chosen on the same samples, an optimistic number, as the paper's tuning)."""
    wide = _next_scale(_wide(metrics))
    base = wide[wide["ssg_prior"].isna()]
    dse = wide[wide["ssg_prior"].eq("dse")]
    if "fid" in dse and not dse.empty:
        keys = ["model", "method_name", "step_norm", "gamma", "k"]
        dse = dse.loc[dse.groupby(keys, dropna=False)["fid"].idxmin()]
        dse = dse.assign(method=dse["method"] + " +opt")
    return _ssg_sort(pd.concat([base, dse], ignore_index=True))


def _cells(frame: pd.DataFrame, lead: list[str]) -> tuple[list[str], list[list[str]]]:
    labels = metric_labels(frame)
    metrics = [c for c in labels if c in frame]

    def value(r: pd.Series, metric: str) -> str:
        half = r.get(f"{metric}_pm")
        pm = "" if half is None or math.isnan(half) else f" ± {number(half)}"
        return number(r[metric]) + pm

    header = [*lead, "γ", "k", *(labels[c] for c in metrics), "seeds"]
    header = [{"beta": "β"}.get(h, h) for h in header]
    rows = [
        [*(str(r[c]) for c in lead), number(r["gamma"], 2), number(r["k"], 2),
         *(value(r, c) for c in metrics), str(int(r["seeds"]))]
        for _, r in frame.iterrows()
    ]  # fmt: skip
    return header, rows


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


TEX = {
    "_": r"\_",
    "↓": r"$\downarrow$",
    "↑": r"$\uparrow$",
    "γ": r"$\gamma$",
    "±": r"$\pm$",
    "β": r"$\beta$",
    "Δ": r"$\Delta$",
    "–": "--",
}


def latex(header: list[str], rows: list[list[str]], lead: int) -> str:
    def tex(cell: str) -> str:
        for plain, command in TEX.items():
            cell = cell.replace(plain, command)
        return cell

    body = [" & ".join(map(tex, row)) + r" \\" for row in rows]
    spec = "l" * lead + "r" * (len(header) - lead)
    return "\n".join(
        [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(map(tex, header)) + r" \\", r"\midrule",
         *body, r"\bottomrule", r"\end{tabular}"]
    ) + "\n"  # fmt: skip


def _ours(build: Callable[[pd.DataFrame, float, float], pd.DataFrame], lead: list[str]) -> Renderer:
    def render(metrics: pd.DataFrame, gamma: float, k: float) -> tuple[list[str], list[list[str]], int]:
        columns = [*lead, *(c for c in swept_options(metrics) if c not in lead)]  # a swept option: a column
        return (*_cells(build(metrics, gamma, k), columns), len(columns))

    return render


def _paper(name: str) -> Renderer:
    def render(metrics: pd.DataFrame, gamma: float, k: float) -> tuple[list[str], list[list[str]], int]:
        from softcfg.report.paper import beside_paper, paper_cells

        header, rows, lead = paper_cells(beside_paper(name, metrics), name)
        return header, rows, lead

    return render


def _text(cells: str) -> Renderer:
    """A text-to-image table (``softcfg.report.t2i``), imported when rendered."""

    def render(metrics: pd.DataFrame, gamma: float, k: float) -> tuple[list[str], list[list[str]], int]:
        from softcfg.report import t2i

        return getattr(t2i, cells)(metrics, gamma, k)

    return render


Renderer = Callable[[pd.DataFrame, float, float], tuple[list[str], list[list[str]], int]]
# name -> (metrics table, focus gamma, focus k) -> (header, rows, number of leading text columns)
RENDERERS: dict[str, Renderer] = {
    "ablation": _ours(ablation_table, ["model", "method"]),
    "target": _ours(target_table, ["model", "method", "target"]),
    "paper_systems": _paper("paper_systems"),
    "paper_ablation": _paper("paper_ablation"),
    "paper_target": _paper("paper_target"),
    "ssg": _ours(ssg_table, ["model", "method", "prior", "beta"]),
    "ssg_prior": _ours(ssg_prior_table, ["model", "method", "prior", "beta"]),
    "paper_ssg": _paper("paper_ssg"),
    "t2i": _text("t2i_cells"),
    "paper_t2i": _text("paper_t2i_cells"),
}
