"""The SoftCFG paper's figures, from the Parquet tables (and, for sample grids, from shards).

- ``fid_vs_gamma``: FID against gamma per method, one line style per k (the paper's Fig. 9a);
- ``entropy``: normalized entropy of the cond, uncond and guided distributions over decoding steps for
  CFG and SoftCFG with and without step norm at the focus setting (Figs. 3 and 7);
- ``samples``: one row of samples per method at the focus setting.
Each is written as PNG and PDF.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from softcfg.io.atomic import atomic_path


def save(fig: plt.Figure, stem: Path) -> list[Path]:
    """``stem``.png and ``stem``.pdf, each written atomically; metadata dates off so reruns match."""
    paths = []
    for ext, metadata in (("png", {"Software": None}), ("pdf", {"CreationDate": None, "Producer": None})):
        path = stem.with_suffix(f".{ext}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight", metadata=metadata)
        paths.append(path)
    plt.close(fig)
    return paths


def fid_vs_gamma(metrics: pd.DataFrame) -> plt.Figure:
    fid = metrics[metrics["metric"] == "fid"]
    guided = fid[fid["guided"].astype(bool)].assign(k=lambda f: f["k"].map("k={:g}".format))
    guided = guided[guided["target"].isna() | guided["target"].eq("v")]
    models = sorted(fid["model"].unique())
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        data = guided[guided["model"] == model]
        sns.lineplot(
            data=data, x="gamma", y="value", hue="method", style="k", markers=True, ax=ax, errorbar=None
        )
        for _, row in fid[(fid["model"] == model) & ~fid["guided"].astype(bool)].iterrows():
            ax.axhline(row["value"], color="gray", linestyle=":", label=row["method"])
        ax.set(title=model, xlabel="guidance scale γ", ylabel="FID (digits classifier features)")
    return fig


def entropy_curves(steps: pd.DataFrame, gamma: float, k: float) -> plt.Figure:
    at = steps["gamma"].sub(gamma).abs().lt(1e-9) & steps["k"].sub(k).abs().lt(1e-9)
    data = steps[at & (steps["target"].isna() | steps["target"].eq("v"))]
    columns = {"entropy_cond": "conditional", "entropy_uncond": "unconditional", "entropy_guided": "guided"}
    long = data.melt(id_vars=["model", "method", "step"], value_vars=list(columns), var_name="branch")
    long["branch"] = long["branch"].map(columns)
    grid = sns.relplot(
        data=long, x="step", y="value", hue="method", col="branch", row="model", kind="line",
        errorbar=None, height=3.2, aspect=1.2,
    )  # fmt: skip
    grid.set_axis_labels("decoding step", "normalized entropy H/log V")
    grid.figure.suptitle(f"γ={gamma:g}, k={k:g}", y=1.02)
    return grid.figure


def sample_grid(rows: dict[str, np.ndarray], per_row: int = 20) -> plt.Figure:
    """``rows``: method label -> uint8 images [N, H, W, 3]; the first ``per_row`` of each are shown."""
    fig, axes = plt.subplots(len(rows), 1, figsize=(per_row * 0.45, 0.6 * len(rows) + 0.3), squeeze=False)
    for ax, (label, images) in zip(axes[:, 0], rows.items(), strict=True):
        strip = np.concatenate(list(images[:per_row]), axis=1)
        ax.imshow(strip, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    return fig
