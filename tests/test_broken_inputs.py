"""Every subcommand, given a broken input, says so in one line naming the file or key and exits 2, with
no traceback and no output left behind. The inputs are real files of a small digits pipeline (shards,
manifests, features, records) broken the ways a kill, a typo or a swapped argument breaks them."""

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import random_digits_model, write_run_config
from softcfg.cli import main
from softcfg.models.digits import save_digits_ar
from softcfg.models.digits_classifier import DigitsClassifier, save_digits_classifier

SAMPLING = {"seed": 1, "shard_size": 12, "batch_size": 12}


@dataclass(frozen=True)
class Pipeline:
    """A finished small run: its RUN.yaml, one shard, the reference set and both features files."""

    root: Path
    checkpoint: Path
    config: Path
    shard: Path
    reference: Path
    classifier: Path
    samples_features: Path
    reference_features: Path
    metrics: Path


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Pipeline:
    root = tmp_path_factory.mktemp("pipeline")
    checkpoint = root / "tiny.pt"
    save_digits_ar(random_digits_model(), checkpoint)
    torch.manual_seed(0)
    classifier = root / "classifier.pt"
    save_digits_classifier(DigitsClassifier().eval(), classifier)
    config = write_run_config(root / "RUN.yaml", checkpoint, {"name": "cfg", "gamma": 2.0}, SAMPLING)
    p = Pipeline(
        root,
        checkpoint,
        config,
        root / "run" / "shard_0000.npz",
        root / "reference.npz",
        classifier,
        root / "samples_features.npz",
        root / "reference_features.npz",
        root / "metrics.json",
    )
    steps = [
        ["sample", "--config", str(config), "--shards", "0", "--no-progress", "--out"],
        ["reference", "--out", str(p.reference)],
        ["features", "--classifier", str(classifier), str(p.shard), "--out", str(p.samples_features)],
        ["features", "--classifier", str(classifier), str(p.reference), "--out", str(p.reference_features)],
        [
            "metrics",
            "--config",
            str(config),
            "--samples",
            str(p.samples_features),
            "--reference",
            str(p.reference_features),
            "--names",
            "fid",
            "--out",
            str(p.metrics),
        ],
    ]
    steps[0].append(str(root / "run" / "shards_0000-0000.json"))
    for args in steps:
        assert main(args) == 0, args
    return p


def _copy(pipeline: Pipeline, tmp: Path, path: Path) -> Path:
    """A copy of a shard (with its manifest) or any other file, to break without touching the original."""
    target = tmp / path.name
    shutil.copyfile(path, target)
    if path.suffix == ".npz" and path.with_suffix(".json").is_file():
        shutil.copyfile(path.with_suffix(".json"), target.with_suffix(".json"))
    return target


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def truncated_manifest(p: Pipeline, tmp: Path) -> tuple[list[str], str]:
    shard = _copy(p, tmp, p.shard)
    _truncate(shard.with_suffix(".json"))
    return ["summarize", str(shard)], f"{shard.with_suffix('.json')}: shard manifest is not JSON (truncated?)"


def list_manifest(p: Pipeline, tmp: Path) -> tuple[list[str], str]:
    shard = _copy(p, tmp, p.shard)
    shard.with_suffix(".json").write_text("[1, 2]\n")
    return ["summarize", str(shard)], "shard manifest must be a JSON object, got list"


def manifest_without_checksum(p: Pipeline, tmp: Path) -> tuple[list[str], str]:
    shard = _copy(p, tmp, p.shard)
    shard.with_suffix(".json").write_text('{"run": {}}\n')
    return ["features", "--classifier", str(p.classifier), str(shard)], "has no 'npz_sha256' entry"


def truncated_shard(p: Pipeline, tmp: Path) -> tuple[list[str], str]:
    shard = _truncate(_copy(p, tmp, p.shard))
    return ["features", "--classifier", str(p.classifier), str(shard)], "checksum differs from its manifest"


def samples_with_reference(p: Pipeline, tmp: Path) -> tuple[list[str], str]:
    args = ["features", "--classifier", str(p.classifier), str(p.shard), str(p.reference)]
    return args, "features: sample shards and the reference set given together"


def _metrics(p: Pipeline, samples: Path, reference: Path) -> list[str]:
    return ["metrics", "--config", str(p.config), "--samples", str(samples), "--reference", str(reference)]


def truncated_features(p: Pipeline, tmp: Path) -> tuple[list[str], str]:
    features = _truncate(_copy(p, tmp, p.samples_features))
    return _metrics(p, features, p.reference_features), f"{features}: not a readable features file"


def images_as_reference_features(p: Pipeline, tmp: Path) -> tuple[list[str], str]:
    message = f"{p.reference}: not a digits features file: no 'features' array"
    return _metrics(p, p.samples_features, p.reference), message


def images_as_sample_features(p: Pipeline, tmp: Path) -> tuple[list[str], str]:
    message = f"{p.shard}: not a features file of this package (no extractor record)"
    return _metrics(p, p.shard, p.reference_features), message


def swapped_samples_and_reference(p: Pipeline, tmp: Path) -> tuple[list[str], str]:
    message = f"{p.reference_features}: features of reference images, given as the samples"
    return _metrics(p, p.reference_features, p.samples_features), message


def _inception(weights: Path) -> list[str]:
    return ["inception-reference", "--weights", str(weights), "--reference", "reference.npz"]


def missing_weights(p: Pipeline, tmp: Path) -> tuple[list[str], str]:
    return _inception(tmp / "nope.pth"), f"--weights: file not found: {tmp / 'nope.pth'}"


def weights_of_another_network(p: Pipeline, tmp: Path) -> tuple[list[str], str]:
    message = f"{p.classifier}: not torch-fidelity Inception weights"
    return _inception(p.classifier), message


def truncated_weights(p: Pipeline, tmp: Path) -> tuple[list[str], str]:
    weights = _truncate(_copy(p, tmp, p.classifier))
    return _inception(weights), f"checkpoint {weights} could not be"


def truncated_metrics_record(p: Pipeline, tmp: Path) -> tuple[list[str], str]:
    results = tmp / "results"
    (results / "metrics").mkdir(parents=True)
    for run in ("a", "b"):
        _truncate(Path(shutil.copyfile(p.metrics, results / "metrics" / f"{run}.json")))
    path = results / "metrics" / "a.json"
    return ["compare", "--results", str(results), "a", "b"], f"{path}: metrics record is not JSON"


def truncated_metrics_for_aggregate(p: Pipeline, tmp: Path) -> tuple[list[str], str]:
    """A run whose summary is whole and whose metrics record a kill cut short."""
    _, message = truncated_metrics_record(p, tmp)
    results = tmp / "results"
    assert main(["summarize", "--out", str(results / "runs" / "a" / "shards.json"), str(p.shard)]) == 0
    outs = [(f"--{kind}-out", str(tmp / f"{kind}.parquet")) for kind in ("metrics", "steps", "confidence")]
    return ["aggregate", "--results", str(results), *[x for o in outs for x in o], "a"], message


def rows_not_a_list(p: Pipeline, tmp: Path) -> tuple[list[str], str]:
    rows = tmp / "rows.json"
    rows.write_text('{"score": 1}\n')
    args = ["t2i-record", "--config", str(p.config), "--rows", str(rows)]
    return args, f"{rows}: result rows must be a JSON list of objects"


def _tables(tmp: Path) -> tuple[Path, Path]:
    import pandas as pd

    paths = tmp / "metrics.parquet", tmp / "steps.parquet"
    for path in paths:
        pd.DataFrame({"run": ["a"]}).to_parquet(path)
    return paths


def _figures(metrics: Path, steps: Path) -> list[str]:
    return ["figures", "--metrics", str(metrics), "--steps", str(steps), "--gamma", "2", "--k", "0"]


def reference_shard_as_sample(p: Pipeline, tmp: Path) -> tuple[list[str], str]:
    args = [*_figures(*_tables(tmp)), "--sample-shards", f"x={p.reference}", "samples"]
    return args, f"{p.reference.with_suffix('.json')}: no 'run' record"


def truncated_steps_table(p: Pipeline, tmp: Path) -> tuple[list[str], str]:
    metrics, steps = _tables(tmp)
    _truncate(steps)
    return [*_figures(metrics, steps), "entropy"], f"{steps}: not a readable steps table"


def metrics_table_that_is_json(p: Pipeline, tmp: Path) -> tuple[list[str], str]:
    args = ["tables", "--metrics", str(p.metrics), "--gamma", "2", "--k", "0", "ablation"]
    return args, f"{p.metrics}: not a readable metrics table (truncated or not Parquet)"


def _run_yaml(p: Pipeline, tmp: Path, method: dict, model: dict | None = None) -> Path:
    config = write_run_config(tmp / "RUN.yaml", p.checkpoint, method, SAMPLING)
    if model:
        import yaml

        data = yaml.safe_load(config.read_text())
        data["model"].update(model)
        config.write_text(yaml.safe_dump(data))
    return config


def huge_gamma(p: Pipeline, tmp: Path) -> tuple[list[str], str]:
    config = _run_yaml(p, tmp, {"name": "cfg", "gamma": 1e300})
    return ["sample", "--config", str(config), "--shards", "0"], "method.gamma: Input should be less than"


def tiny_temperature(p: Pipeline, tmp: Path) -> tuple[list[str], str]:
    config = _run_yaml(p, tmp, {"name": "cfg", "temperature": 1e-300})
    message = "method.temperature: Input should be greater than or equal to 0.0001"
    return ["sample", "--config", str(config), "--shards", "0"], message


def unknown_device(p: Pipeline, tmp: Path) -> tuple[list[str], str]:
    config = _run_yaml(p, tmp, {"name": "cfg"}, {"device": "cuda:banana"})
    return ["sample", "--config", str(config), "--shards", "0"], "model.device: String should match"


def nan_checkpoint(p: Pipeline, tmp: Path) -> tuple[list[str], str]:
    checkpoint = torch.load(p.checkpoint, weights_only=True)
    name = next(iter(checkpoint["state_dict"]))
    checkpoint["state_dict"][name] = torch.full_like(checkpoint["state_dict"][name], float("nan"))
    path = tmp / "nan.pt"
    torch.save(checkpoint, path)
    config = write_run_config(tmp / "RUN.yaml", path, {"name": "cfg"}, SAMPLING)
    return ["sample", "--config", str(config), "--shards", "0"], f"{path}: {name} holds NaN"


CASES: list[Callable[[Pipeline, Path], tuple[list[str], str]]] = [
    truncated_manifest,
    list_manifest,
    manifest_without_checksum,
    truncated_shard,
    samples_with_reference,
    truncated_features,
    images_as_reference_features,
    images_as_sample_features,
    swapped_samples_and_reference,
    missing_weights,
    weights_of_another_network,
    truncated_weights,
    truncated_metrics_record,
    truncated_metrics_for_aggregate,
    rows_not_a_list,
    reference_shard_as_sample,
    truncated_steps_table,
    metrics_table_that_is_json,
    huge_gamma,
    tiny_temperature,
    unknown_device,
    nan_checkpoint,
]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_a_broken_input_is_one_line_and_leaves_no_output(pipeline, tmp_path, capsys, case):
    work = tmp_path / "in"
    work.mkdir()
    args, message = case(pipeline, work)
    out = tmp_path / "out" / "result.json"
    if args[0] in {"figures", "tables"}:
        args[-1:-1] = ["--out-dir", str(tmp_path / "out")]
    elif "--out" not in args and args[0] not in {"compare", "aggregate"}:
        args += ["--out", str(out)]
    before = sorted(p for p in tmp_path.rglob("*"))
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("softcfg: error: "), err
    assert message in lines[0] and "Traceback" not in err
    assert sorted(p for p in tmp_path.rglob("*")) == before  # no output, no temporary left


def test_the_pipeline_files_are_what_the_cases_break(pipeline):
    """The unbroken files pass: the cases fail for what was broken, not for the pipeline itself."""
    record = json.loads(pipeline.metrics.read_text())
    assert np.isfinite(record["metrics"]["fid"])
    with np.load(pipeline.samples_features) as s, np.load(pipeline.reference_features) as r:
        assert json.loads(str(s["meta"]))["images"] == "samples"
        assert json.loads(str(r["meta"]))["images"] == "reference"
        assert len(s["labels"]) == 12 and len(r["labels"]) == 1797
