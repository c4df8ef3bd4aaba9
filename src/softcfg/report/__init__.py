"""Parquet tables from per-run outputs, and the papers' tables and figures from those Parquet files.

The names a config may ask for live here, so validating a config loads neither pandas nor matplotlib.
"""

TABLES = (
    "ablation", "target", "paper_systems", "paper_ablation", "paper_target", "ssg", "ssg_prior", "paper_ssg",
    "t2i", "paper_t2i",
)  # fmt: skip
FIGURES = (
    "fid_vs_gamma", "fid_vs_k", "fid_by_confidence", "entropy", "entropy_stepnorm", "timing", "samples",
    "fid_vs_beta", "confidence_maps", "prompt_samples",
)  # fmt: skip
