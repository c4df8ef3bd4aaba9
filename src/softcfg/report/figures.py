"""The SoftCFG paper's figures, from the Parquet tables (and, for sample images, from shards).

- ``fid_vs_gamma``: FID against gamma per method, one line style per k (Fig. 9a);
- ``fid_vs_k``: FID against the cosine power k per method, one line style per gamma (Fig. 9b);
- ``fid_by_confidence``: FID of SoftCFG per confidence definition at the focus setting (Fig. 9c);
- ``entropy``: normalized entropy of the cond, uncond and guided distributions and of the guidance signal
  over decoding steps, per guided method at the focus setting (Fig. 3);
- ``entropy_stepnorm``: the guidance signal's entropy over decoding steps for CFG and SoftCFG with and
  without step normalization at the focus setting (Fig. 7);
- ``timing``: sampling seconds per image per method (Fig. 8);
- ``samples``: one row of samples per method at the focus setting;
- ``fid_vs_beta``: FID against SSG's beta per prior on next-scale models, the base methods as lines;
- ``confidence_maps``: per-token confidence heatmaps of a few samples per method at the focus setting,
  beside the samples (Fig. 5), from ``confidence.parquet``;
- ``prompt_samples``: per text model, one row per selected prompt and one column per method at the focus
  setting, the prompt's first image (Figs. 1, 2), from the runs' shards.
FID curves carry shaded bands where the metrics table holds an interval (``ci_low``, ``ci_high``). Each
figure is written as PNG and PDF.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from softcfg.io.atomic import atomic_path

if TYPE_CHECKING:
    from softcfg.io.export import PromptImages

DEFAULT_PROMPT_ROWS = 6  # prompts shown of a prompt set without GenEval tags


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


def _at_focus(frame: pd.DataFrame, gamma: float, k: float) -> pd.DataFrame:
    at = frame["gamma"].sub(gamma).abs().lt(1e-9) & frame["k"].sub(k).abs().lt(1e-9)
    return frame[at & (frame["target"].isna() | frame["target"].eq("v"))]


def _guided_fid(metrics: pd.DataFrame) -> pd.DataFrame:
    """FID of guided runs on values, without SSG (whose runs have their own figure)."""
    fid = metrics[(metrics["metric"] == "fid") & metrics["guided"].astype(bool) & metrics["ssg_prior"].isna()]
    return fid[fid["target"].isna() | fid["target"].eq("v")]


def _fid_lines(metrics: pd.DataFrame, x: str, style: str, xlabel: str, cosine: bool = False) -> plt.Figure:
    """FID against ``x`` per method (hue) and ``style`` value, one panel per model, unguided runs as
    dotted lines, and the interval as a band where the table has one."""
    fid = metrics[metrics["metric"] == "fid"]
    guided = _guided_fid(metrics)
    if cosine:  # k shapes the cosine schedule only
        guided = guided[guided["schedule"].eq("cosine")]
    guided = guided.assign(**{style: lambda f: f[style].map(f"{style}={{:g}}".format)})
    models = sorted(fid["model"].unique())
    methods = sorted(guided["method"].unique())
    palette = dict(zip(methods, sns.color_palette(n_colors=len(methods)), strict=True))
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        data = guided[guided["model"] == model]
        sns.lineplot(
            data=data, x=x, y="value", hue="method", style=style, markers=True, ax=ax, errorbar=None,
            palette=palette,
        )  # fmt: skip
        if {"ci_low", "ci_high"} <= set(data.columns):  # a band per line, in the line's colour
            for (method, _), line in data.dropna(subset=["ci_low", "ci_high"]).groupby(["method", style]):
                line = line.groupby(x)[["ci_low", "ci_high"]].mean().reset_index()
                ax.fill_between(
                    line[x], line["ci_low"], line["ci_high"], color=palette[method], alpha=0.12, linewidth=0
                )
        for _, row in fid[(fid["model"] == model) & ~fid["guided"].astype(bool)].iterrows():
            ax.axhline(row["value"], color="gray", linestyle=":", label=row["method"])
        ax.set(title=model, xlabel=xlabel, ylabel=f"FID ({fid['extractor'].iloc[0].split('@')[0]} features)")
    return fig


def fid_vs_gamma(metrics: pd.DataFrame) -> plt.Figure:
    return _fid_lines(metrics, "gamma", "k", "guidance scale γ")


def fid_vs_k(metrics: pd.DataFrame) -> plt.Figure:
    return _fid_lines(metrics, "k", "gamma", "cosine power k (0: constant scale)", cosine=True)


def fid_by_confidence(metrics: pd.DataFrame, gamma: float, k: float) -> plt.Figure:
    soft = _at_focus(_guided_fid(metrics), gamma, k).dropna(subset=["confidence"])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if soft.empty:
        ax.text(0.5, 0.5, "no SoftCFG run at the focus setting", ha="center", va="center")
        return fig
    sns.barplot(data=soft, x="confidence", y="value", hue="method", errorbar=None, ax=ax)
    if {"ci_low", "ci_high"} <= set(soft.columns) and soft["ci_low"].notna().any():
        bars = soft.groupby(["confidence", "method"], sort=False)[["value", "ci_low", "ci_high"]].mean()
        for patch, (_, row) in zip(ax.patches, bars.iterrows(), strict=False):
            centre = patch.get_x() + patch.get_width() / 2
            ax.plot([centre, centre], [row["ci_low"], row["ci_high"]], color="black", linewidth=1)
    ax.set(xlabel="confidence definition", ylabel="FID", title=f"γ={gamma:g}, k={k:g}")
    return fig


def fid_vs_beta(metrics: pd.DataFrame) -> plt.Figure:
    """FID against SSG's beta per prior (hue) and base method (style), one panel per next-scale model;
    the base methods without SSG as horizontal lines (the SSG paper's beta and prior ablations)."""
    fid = metrics[(metrics["metric"] == "fid")]
    ssg = fid[fid["ssg_prior"].notna() & fid["ssg_betas"].isna()]  # beta lists have no x position
    panels = max(ssg["model"].nunique(), 1)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False)
    if ssg.empty:
        axes[0, 0].text(0.5, 0.5, "no SSG run", ha="center", va="center")
        return fig
    priors = [p for p in ("nearest", "bilinear", "dse") if p in set(ssg["ssg_prior"])]
    palette = dict(zip(priors, sns.color_palette(n_colors=len(priors)), strict=True))
    for ax, model in zip(axes[0], sorted(ssg["model"].unique()), strict=True):
        data = ssg[ssg["model"] == model]
        sns.lineplot(
            data=data, x="ssg_beta", y="value", hue="ssg_prior", style="method", markers=True, ax=ax,
            errorbar=None, palette=palette, hue_order=priors,
        )  # fmt: skip
        bands = data.dropna(subset=["ci_low", "ci_high"])
        for (prior, _), line in bands.groupby(["ssg_prior", "method"]):
            line = line.groupby("ssg_beta")[["ci_low", "ci_high"]].mean().reset_index()
            ax.fill_between(
                line["ssg_beta"],
                line["ci_low"],
                line["ci_high"],
                color=palette[prior],
                alpha=0.12,
                linewidth=0,
            )
        base = fid[(fid["model"] == model) & fid["ssg_prior"].isna()]
        for (method, gamma), rows in base.groupby(["method", "gamma"], dropna=False):
            label = method if pd.isna(gamma) else f"{method} γ={gamma:g}"
            ax.axhline(rows["value"].mean(), color="gray", linestyle=":", linewidth=1)
            ax.annotate(label, (1.0, rows["value"].mean()), xycoords=("axes fraction", "data"), fontsize=7)
        ax.set(title=model, xlabel="SSG β", ylabel=f"FID ({fid['extractor'].iloc[0].split('@')[0]} features)")
    return fig


ENTROPIES = {
    "entropy_cond": "conditional",
    "entropy_uncond": "unconditional",
    "entropy_guided": "guided",
    "entropy_signal": "guidance signal",
}


def entropy_curves(steps: pd.DataFrame, gamma: float, k: float) -> plt.Figure:
    data = _at_focus(steps, gamma, k)
    columns = [c for c in ENTROPIES if c in data]
    long = data.melt(id_vars=["model", "method", "step"], value_vars=columns, var_name="branch")
    long["branch"] = long["branch"].map(ENTROPIES)
    grid = sns.relplot(
        data=long, x="step", y="value", hue="method", col="branch", row="model", kind="line",
        errorbar=None, height=3.2, aspect=1.2,
    )  # fmt: skip
    grid.set_axis_labels("decoding step", "normalized entropy H/log V")
    grid.figure.suptitle(f"γ={gamma:g}, k={k:g}", y=1.02)
    return grid.figure


def entropy_stepnorm(steps: pd.DataFrame, gamma: float, k: float) -> plt.Figure:
    """The guidance signal's entropy: CFG's drifts towards uniform as its branches agree, SoftCFG's
    perturbation keeps it informative, and step normalization bounds the perturbation (Fig. 7)."""
    data = _at_focus(steps, gamma, k).dropna(subset=["entropy_signal"])
    labels = data["step_norm"].map({True: "step norm", False: "no step norm"}).fillna("no perturbation")
    data = data.assign(step_norm=labels)
    grid = sns.relplot(
        data=data, x="step", y="entropy_signal", hue="method", style="step_norm", col="model",
        kind="line", errorbar=None, height=3.4, aspect=1.3,
    )  # fmt: skip
    grid.set_axis_labels("decoding step", "guidance signal H/log V")
    grid.figure.suptitle(f"γ={gamma:g}, k={k:g}", y=1.02)
    return grid.figure


def timing(times: pd.DataFrame) -> plt.Figure:
    """Seconds per image per method and model (means over runs of a method), each bar labelled."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    data = times.dropna(subset=["seconds_per_image"])
    sns.barplot(data=data, x="method", y="seconds_per_image", hue="model", errorbar=None, ax=ax)
    for container in ax.containers:
        ax.bar_label(container, fmt="%.3g", fontsize=7)
    ax.set(xlabel="", ylabel="sampling seconds per image")
    ax.tick_params(axis="x", rotation=30)
    return fig


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


def _focus_maps(confidence: pd.DataFrame, gamma: float, k: float) -> pd.DataFrame:
    """``cond_max`` confidences of the image's token map, for unguided runs and guided ones at the focus."""
    data = confidence[confidence["definition"].eq("cond_max") & confidence["grid_row"].notna()]
    guided = data["guided"].astype(bool)
    return pd.concat([data[~guided], _at_focus(data[guided], gamma, k)])


def confidence_maps(
    confidence: pd.DataFrame,
    gamma: float,
    k: float,
    images: dict[str, np.ndarray] | None = None,
    per_row: int = 4,
) -> plt.Figure:
    """Per (model, method) a row of per-token ``cond_max`` heatmaps of the recorded samples on one colour
    scale (Fig. 5), each beside its image where ``images`` (run id -> shard 0's images) has the run.

    A method's run is one whose images are given, else its first run id; tokens outside the image's
    token map (AliTok's 1D tokens, VAR's coarser scales) are not drawn."""
    images = images or {}
    data = _focus_maps(confidence, gamma, k)
    if data.empty:
        fig, ax = plt.subplots(figsize=(5, 1))
        ax.text(0.5, 0.5, "no confidence maps recorded for a token grid at the focus", ha="center")
        ax.set_axis_off()
        return fig
    rows = []
    for (model, method), runs in data.groupby(["model", "method"], sort=True):
        ids = sorted(runs["run_id"].unique(), key=lambda r: (r not in images, r))
        run = runs[runs["run_id"] == ids[0]]
        rows.append((f"{model}\n{method}", ids[0], run))
    panels = 2 if any(run_id in images for _, run_id, _ in rows) else 1
    vmin, vmax = data["value"].min(), data["value"].max()
    fig, axes = plt.subplots(
        len(rows), per_row * panels, figsize=(1.3 * per_row * panels + 1, 1.4 * len(rows)), squeeze=False
    )
    for ax in axes.flat:
        ax.set_axis_off()
    drawn = None
    for r, (label, run_id, run) in enumerate(rows):
        for s, (sample, cells) in enumerate(list(run.groupby("sample", sort=True))[:per_row]):
            heat = np.full((int(cells["grid_row"].max()) + 1, int(cells["grid_col"].max()) + 1), np.nan)
            heat[cells["grid_row"].astype(int), cells["grid_col"].astype(int)] = cells["value"]
            ax = axes[r, s * panels + panels - 1]
            drawn = ax.imshow(heat, cmap="viridis", vmin=vmin, vmax=vmax, interpolation="nearest")
            if run_id in images and panels == 2:
                axes[r, s * panels].imshow(images[run_id][sample], interpolation="nearest")
        axes[r, 0].set_axis_on()
        axes[r, 0].set_xticks([])
        axes[r, 0].set_yticks([])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.colorbar(drawn, ax=axes.ravel().tolist(), shrink=0.8, label="max softmax(l_c / T)")
    fig.suptitle(f"token confidence, γ={gamma:g}, k={k:g}")
    return fig


def default_prompts(prompts: PromptImages) -> list[int]:
    """The first prompt of each GenEval task kind (``tag``) in prompt-set order; without tags, the first
    few prompts."""
    first: dict[str, int] = {}
    for i, meta in enumerate(prompts.metadata):
        if isinstance(meta, dict) and "tag" in meta:
            first.setdefault(str(meta["tag"]), i)
    return list(first.values()) or list(range(min(DEFAULT_PROMPT_ROWS, len(prompts.names))))


def _prompt_label(prompts: PromptImages, index: int, width: int = 30) -> str:
    meta = prompts.metadata[index]
    text = meta.get("prompt", prompts.names[index]) if isinstance(meta, dict) else prompts.names[index]
    tag = f"[{meta['tag']}] " if isinstance(meta, dict) and "tag" in meta else ""
    return textwrap.fill(f"{tag}{text}", width)


def prompt_samples(
    runs: dict[tuple[str, str], PromptImages], chosen: list[int] | None = None, seeds: dict | None = None
) -> plt.Figure:
    """Per text model, a row per prompt (``chosen`` indices, else ``default_prompts``) and a column per
    method (``runs``: (model, method) -> the run's images by prompt), each cell the prompt's first image.

    The runs of a model share their seed (``seeds``: model -> seed, for the title), and a run draws image
    j of prompt i from the same random stream whatever its method, so a row differs by guidance only."""
    models = list(dict.fromkeys(model for model, _ in runs))
    if not models:
        fig, ax = plt.subplots(figsize=(5, 1))
        ax.text(0.5, 0.5, "no text-conditioned run at the focus", ha="center", va="center")
        ax.set_axis_off()
        return fig
    blocks = []  # (model, its methods, its prompt indices)
    for model in models:
        methods = [method for m, method in runs if m == model]
        first = runs[(model, methods[0])]
        blocks.append((model, methods, chosen if chosen is not None else default_prompts(first)))
    rows = sum(len(indices) for _, _, indices in blocks)
    cols = max(len(methods) for _, methods, _ in blocks)
    fig, axes = plt.subplots(
        rows, cols, figsize=(1.7 * cols + 2.2, 1.7 * rows + 0.4 * len(blocks)), squeeze=False
    )
    for ax in axes.flat:
        ax.set_axis_off()
    r = 0
    for model, methods, indices in blocks:
        seed = "" if seeds is None or model not in seeds else f", seed {seeds[model]}"
        for n, index in enumerate(indices):
            for c, method in enumerate(methods):
                ax = axes[r, c]
                ax.imshow(runs[(model, method)].images[index][0], interpolation="nearest")
                ax.set_axis_on()
                ax.set_xticks([])
                ax.set_yticks([])
                if n == 0:
                    ax.set_title(f"{model}{seed}\n{method}" if c == 0 else method, fontsize=8)
            label = _prompt_label(runs[(model, methods[0])], index)
            axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
            r += 1
    return fig
