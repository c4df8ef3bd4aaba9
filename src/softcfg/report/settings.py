"""Settings of runs in the metrics tables: grouping by setting, the options a sweep varied, the method
order and number formatting that every table (ours, the papers', the text-to-image ones) shares."""

from __future__ import annotations

import math

import pandas as pd

from softcfg.methods import method_class
from softcfg.options import ConfigError, UserError
from softcfg.report.aggregate import option_columns


def by_setting(frame: pd.DataFrame, keys: list[str], values: str = "value") -> pd.DataFrame:
    """The mean of ``values`` per setting (``keys``, missing values kept as their own group) and metric,
    one column per metric. A groupby: ``pivot_table(dropna=False)`` builds the product of every key's
    levels, which a sweep with a dozen keys makes astronomically large."""
    return frame.groupby([*keys, "metric"], dropna=False)[values].mean().unstack("metric")


def swept_options(metrics: pd.DataFrame) -> list[str]:
    """The method options some run swept beyond its method's own axes (the ``axes`` column), in column
    order: each is a key of the tables' rows."""
    named = {a for axes in metrics.get("axes", pd.Series(dtype=str)).dropna() for a in axes.split(",") if a}
    return [column for column in metrics.columns if column in named]


def label_swept(frame: pd.DataFrame) -> pd.DataFrame:
    """``method`` with the values of the options its run swept appended (``cfg temperature=0.9``), so
    that figures, which draw one line or bar per method, keep each setting apart instead of averaging."""
    options = swept_options(frame)
    if not options or "axes" not in frame:
        return frame

    def label(row: pd.Series) -> str:
        names = [a for a in str(row["axes"] or "").split(",") if a]
        values = [f"{a}={row[a]:g}" if isinstance(row[a], float) else f"{a}={row[a]}" for a in names]
        return " ".join([str(row["method"]), *values])

    return frame.assign(method=frame.apply(label, axis=1))


def refuse_mixed(metrics: pd.DataFrame, keys: list[str]) -> None:
    """A table row averages seeds of one setting only: runs that share ``keys`` but differ in another
    option (an axis the keys leave out) are refused, naming two of them, rather than averaged."""
    known = []  # the methods of these runs that are installed here (a plugin's options need its class)
    for name in metrics["method_name"].dropna().unique() if "method_name" in metrics else ():
        try:
            method_class(name)
            known.append(name)
        except ConfigError:
            pass
    options = [c for c in option_columns(known) if c in metrics.columns and c not in keys]
    runs = metrics.drop_duplicates("run_id")
    for _, group in runs.groupby(keys, dropna=False):
        for column in options:
            if group[column].nunique(dropna=False) > 1:
                first, other = group.drop_duplicates(column)["run_id"].iloc[:2]
                raise UserError(
                    f"runs {first} and {other} differ in {column} but would share a table row: sweep it as "
                    "an axis (a list in the method entry) or give the settings different method names"
                )


def method_rank(name: str) -> int:
    """Unguided methods first, then CFG-like ones, then those that perturb the cache (SoftCFG)."""
    method = method_class(name)
    return 2 * method.uses_uncond + method.perturbs_cache


def method_sort(frame: pd.DataFrame) -> pd.DataFrame:
    """Methods by kind (none, cfg, softcfg, ...), step norm after its method, then by sweep name."""
    order = frame["method_name"].map(method_rank) * 2 + frame["step_norm"].eq(True).astype(int)
    return frame.assign(_order=order).sort_values(["model", "_order", "method"]).drop(columns="_order")


def number(v: float | None, digits: int = 3) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"
