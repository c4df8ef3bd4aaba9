"""The SoftCFG paper's tables, from ``metrics.parquet`` only, as Markdown and LaTeX.

- ablation (Table 2 layout): none / CFG / SoftCFG / SoftCFG + step norm at the focus (gamma, k), then each
  guided method at its best-FID (gamma, k) over the grid ("opt" rows);
- target (Table 3 layout): SoftCFG + step norm perturbing values, keys or both at the focus setting.
Values are means over seeds.
"""

from __future__ import annotations

import math

import pandas as pd

from softcfg.methods import method_class

COLUMNS = {
    "fid": "FID ↓",
    "sfid": "sFID ↓",
    "is": "IS ↑",
    "precision": "Prec ↑",
    "recall": "Rec ↑",
    "accuracy": "Acc ↑",
}


def _wide(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, method, gamma, k), metric columns averaged over seeds."""
    keys = ["model", "method", "method_name", "guided", "gamma", "k", "target", "step_norm"]
    frame = metrics.pivot_table(index=keys, columns="metric", values="value", aggfunc="mean", dropna=False)
    seeds = metrics.groupby(keys, dropna=False)["seed"].nunique().rename("seeds")
    frame = frame.join(seeds).reset_index()
    return frame.dropna(subset=[c for c in COLUMNS if c in frame], how="all")


def _rank(name: str) -> int:
    """Unguided methods first, then CFG-like ones, then those that perturb the cache (SoftCFG)."""
    method = method_class(name)
    return 2 * method.uses_uncond + method.perturbs_cache


def _method_sort(frame: pd.DataFrame) -> pd.DataFrame:
    """Methods by kind (none, cfg, softcfg, ...), step norm after its method, then by sweep name."""
    order = frame["method_name"].map(_rank) * 2 + frame["step_norm"].fillna(False).astype(int)
    return frame.assign(_order=order).sort_values(["model", "_order", "method"]).drop(columns="_order")


def _at(frame: pd.DataFrame, gamma: float, k: float) -> pd.DataFrame:
    unguided = ~frame["guided"].astype(bool)
    at_focus = frame["gamma"].sub(gamma).abs().lt(1e-9) & frame["k"].sub(k).abs().lt(1e-9)
    return frame[unguided | at_focus]


def ablation_table(metrics: pd.DataFrame, gamma: float, k: float) -> pd.DataFrame:
    wide = _wide(metrics)
    wide = wide[wide["target"].isna() | wide["target"].eq("v")]
    focus = _method_sort(_at(wide, gamma, k))
    guided = wide[wide["guided"].astype(bool)]
    best = (
        guided.loc[guided.groupby(["model", "method"])["fid"].idxmin()]
        if "fid" in guided
        else guided.iloc[:0]
    )
    best = _method_sort(best).assign(method=lambda f: f["method"] + " +opt")
    return pd.concat([focus, best], ignore_index=True)


def target_table(metrics: pd.DataFrame, gamma: float, k: float) -> pd.DataFrame:
    wide = _wide(metrics)
    soft = wide[(wide["method_name"] == "softcfg") & wide["step_norm"].eq(True)]
    return _at(soft, gamma, k).sort_values(["model", "target", "method"], ignore_index=True)


def _cells(frame: pd.DataFrame, lead: list[str]) -> tuple[list[str], list[list[str]]]:
    metrics = [c for c in COLUMNS if c in frame]
    header = [*lead, "γ", "k", *(COLUMNS[c] for c in metrics), "seeds"]

    def num(v: float, digits: int = 3) -> str:
        return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"

    rows = []
    for _, r in frame.iterrows():
        rows.append(
            [
                *(str(r[c]) for c in lead),
                num(r["gamma"], 2),
                num(r["k"], 2),
                *(num(r[c]) for c in metrics),
                str(int(r["seeds"])),
            ]
        )
    return header, rows


def to_markdown(frame: pd.DataFrame, lead: list[str]) -> str:
    header, rows = _cells(frame, lead)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def to_latex(frame: pd.DataFrame, lead: list[str]) -> str:
    header, rows = _cells(frame, lead)
    plain = [
        h.replace("↓", r"$\downarrow$").replace("↑", r"$\uparrow$").replace("γ", r"$\gamma$") for h in header
    ]
    body = [" & ".join(c.replace("_", r"\_").replace("–", "--") for c in row) + r" \\" for row in rows]
    spec = "l" * len(lead) + "r" * (len(header) - len(lead))
    return "\n".join(
        [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(plain) + r" \\", r"\midrule", *body,
         r"\bottomrule", r"\end{tabular}"]
    ) + "\n"  # fmt: skip


TABLE_BUILDERS = {
    "ablation": (ablation_table, ["model", "method"]),
    "target": (target_table, ["model", "method", "target"]),
}
