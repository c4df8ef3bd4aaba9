"""Where the workflow's products live under the results folder; rules and commands share these names."""

from __future__ import annotations

from pathlib import Path


def generator_checkpoint(results: Path, model: str) -> Path:
    return results / "models" / model / "generator.pt"


def classifier_checkpoint(results: Path) -> Path:
    return results / "reference" / "digits_classifier.pt"


def reference_images(results: Path) -> Path:
    return results / "reference" / "digits.npz"


def reference_features(results: Path) -> Path:
    return results / "reference" / "features.npz"


def run_config(results: Path, run: str) -> Path:
    return results / "runs" / run / "run.yaml"


def run_summary(results: Path, run: str) -> Path:
    return results / "runs" / run / "shards.json"


def _index(index: int | str) -> str:
    return f"{index:04d}" if isinstance(index, int) else index


def shard_name(index: int | str) -> str:
    return f"shard_{_index(index)}.npz"


def shard(results: Path, run: str, index: int | str) -> Path:
    return results / "samples" / run / shard_name(index)


def group_name(first: int | str, last: int | str) -> str:
    """``shards_0000-0009``: the shards one job samples (or extracts features of), both ends included."""
    return f"shards_{_index(first)}-{_index(last)}"


def shard_group(results: Path, run: str, first: int | str, last: int | str) -> Path:
    """The record a sample job writes once every shard of its group is on disk (its one output)."""
    return results / "samples" / run / f"{group_name(first, last)}.json"


def features(results: Path, run: str) -> Path:
    return results / "features" / f"{run}.npz"


def inception_weights(results: Path) -> Path:
    return results / "inception" / "weights.pth"


def inception_reference(results: Path) -> Path:
    return results / "inception" / "reference.npz"


def inception_features(results: Path, run: str, first: int | str, last: int | str) -> Path:
    """Per group of shards: Inception features are extracted by one job per sample job."""
    return results / "features" / run / f"{group_name(first, last)}.npz"


def metrics(results: Path, run: str) -> Path:
    return results / "metrics" / f"{run}.json"


def t2i_rows(results: Path, benchmark: str, run: str) -> Path:
    """A text-to-image run's result rows from one benchmark's scorer (``geneval`` or ``dpg``)."""
    return results / "t2i" / benchmark / f"{run}.json"


def dpg_questions(results: Path, model: str) -> Path:
    """The DPG-style question table generated for a scene model's prompt set."""
    return results / "t2i" / "questions" / f"{model}.csv"


def metrics_table(results: Path) -> Path:
    return results / "metrics.parquet"


def steps_table(results: Path) -> Path:
    return results / "steps.parquet"


def confidence_table(results: Path) -> Path:
    return results / "confidence.parquet"


def timing_table(results: Path) -> Path:
    return results / "timing.parquet"


def table(results: Path, name: str, ext: str) -> Path:
    return results / "tables" / f"{name}.{ext}"


def figure(results: Path, name: str, ext: str) -> Path:
    return results / "figures" / f"{name}.{ext}"


def log(results: Path, *parts: str) -> Path:
    """``results/logs/<rule>/<...>.log``."""
    return results.joinpath("logs", *parts[:-1], f"{parts[-1]}.log")


def benchmark(results: Path, *parts: str) -> Path:
    """``results/benchmarks/<rule>/<...>.tsv``: Snakemake's per-job time and memory records."""
    return results.joinpath("benchmarks", *parts[:-1], f"{parts[-1]}.tsv")
