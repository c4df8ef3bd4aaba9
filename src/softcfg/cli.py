"""The ``softcfg`` command line: the only entry point the workflow rules call.

Each command parses its arguments and calls the package; torch is imported only by the commands that
run a model or an extractor. Bad input (a UserError: config, checkpoint, shard, argument) prints one
line naming it and exits with status 2, before any model is loaded; any other error is a defect and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

from softcfg.config import BootstrapEntry, load_run_config, parse_run_config
from softcfg.metrics import INTERVAL_METRICS, PR_MODES, metric_names
from softcfg.options import ConfigError, UserError
from softcfg.report import FIGURES, TABLES

if TYPE_CHECKING:
    from softcfg.conditioning import Conditions
    from softcfg.config import RunConfig
    from softcfg.metrics.bootstrap import Resampling
    from softcfg.metrics.inception import InceptionWeights
    from softcfg.models.base import ARModel


def _fail(message: str) -> None:
    raise ConfigError(message)


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        if threads < 1:
            _fail(f"--threads must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)


def _check_inputs(paths: list[str], flag: str) -> None:
    for p in paths:
        if not Path(p).is_file():
            _fail(f"{flag}: file not found: {p}")


def cmd_train(args: argparse.Namespace) -> None:
    from softcfg.data.digits import split_digits
    from softcfg.io.atomic import atomic_path, atomic_write_text
    from softcfg.models.digits_classifier import save_digits_classifier
    from softcfg.models.registry import family_names, get_family
    from softcfg.training.digits import train_digits_classifier

    if args.steps is not None and args.steps < 1:
        _fail(f"--steps must be >= 1, got {args.steps}")
    if not (args.generator or args.classifier):
        _fail("give --generator and/or --classifier")
    try:
        family = get_family(args.family) if args.generator else None
    except ConfigError as exc:  # "model.family: unknown ..."
        _fail(f"--family: {str(exc).partition(': ')[2]}")
    if family is not None and not family.trainable:
        trainable = [name for name in family_names() if get_family(name).trainable]
        _fail(f"--family: {args.family!r} has no trainer (trainable: {', '.join(trainable)})")
    _set_threads(args.threads)
    if family is not None:
        trained = family.train(args.steps, args.seed)
        report = trained.report
        # into an open file: torch.save names its archive after a path's (random) temporary name; timings
        # stay out of the checkpoint: same seed, same bytes
        with atomic_path(args.generator) as tmp, open(tmp, "wb") as f:
            trained.save(trained.model, f, {"seed": args.seed})
        atomic_write_text(Path(args.generator).with_suffix(".json"), json.dumps(report, indent=2) + "\n")
        print(
            f"generator ({args.family}): train loss {report['train_loss']:.4f}, held-out loss "
            f"{report['heldout_loss']:.4f} (best step {report['best_step']} of {trained.steps}, "
            f"{report['seconds']:.0f} s)"
        )
    if args.classifier:
        classifier, report = train_digits_classifier(split_digits(args.seed), args.seed)
        with atomic_path(args.classifier) as tmp, open(tmp, "wb") as f:
            save_digits_classifier(classifier, f, {"seed": args.seed})
        atomic_write_text(Path(args.classifier).with_suffix(".json"), json.dumps(report, indent=2) + "\n")
        print(f"classifier: held-out accuracy {report['heldout_accuracy']:.4f}")


def cmd_sample(args: argparse.Namespace) -> None:
    from softcfg.sampling.shards import write_shard_group

    run = load_run_config(args.config)
    first, _, last = args.shards.partition("-")
    if not (first.isdigit() and (last or first).isdigit()) or int(first) > int(last or first):
        _fail(f"--shards must be FIRST-LAST (shard indices, FIRST <= LAST), got {args.shards!r}")
    out = Path(args.out)
    if out.suffix != ".json":
        _fail(f"--out must end in .json (the group's record; shards are written beside it), got {out}")
    _set_threads(args.threads)
    for index, shard in write_shard_group(run, int(first), int(last or first), out, not args.no_progress):
        if shard is None:
            print(f"shard {index}: kept (written by an earlier attempt, verified against its manifest)")
        elif shard.resumed:
            kept, total = shard.resumed, len(shard.batch_seeds)
            print(f"shard {index}: resumed: {kept} of {total} batches were kept from an earlier attempt")
        else:
            print(f"shard {index}: sampled")


def _load_int_array(path: str, ndim: int, flag: str) -> np.ndarray:
    import numpy as np

    _check_inputs([path], flag)
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise ConfigError(f"{flag}: {path} is not a .npy array: {exc}") from exc
    if array.dtype != np.int64 or array.ndim != ndim:
        _fail(f"{flag}: {path} must be int64 with {ndim} dimensions, got {array.dtype} {array.shape}")
    return array


def _replay_conditions(args: argparse.Namespace, run: RunConfig, model: ARModel, rows: int) -> Conditions:
    """Class labels (``--labels``) for class-conditional families; for text families the rows
    (``--prompt-index``) of the run's prompt set, or of ``--prompts``, tokenized as sampling does."""
    import torch

    from softcfg.conditioning import ClassLabels
    from softcfg.data.prompts import read_prompts

    if model.conditioning == "text":
        if args.labels is not None or args.prompt_index is None:
            _fail(f"--prompt-index: {run.model.family} is text-conditioned; give the rows of its prompt set")
        index = _load_int_array(args.prompt_index, 1, "--prompt-index")
        if args.prompts is not None:
            _check_inputs([args.prompts], "--prompts")
        prompts = read_prompts(args.prompts) if args.prompts is not None else run.model.prompt_set()
        if index.shape[0] != rows:
            _fail(f"--tokens has {rows} rows but --prompt-index has {index.shape[0]}")
        if index.min() < 0 or index.max() >= len(prompts):
            span = f"[{index.min()}, {index.max()}]"
            _fail(f"--prompt-index must lie in [0, {len(prompts)}) (rows of {prompts.path}), got {span}")
        texts = [prompts.entries[i].text for i in index.tolist()]
        return model.prompts(texts).with_index(torch.from_numpy(index))
    if args.prompt_index is not None or args.prompts is not None or args.labels is None:
        _fail(f"--labels: {run.model.family} is {model.conditioning}-conditioned; give its class labels")
    labels = _load_int_array(args.labels, 1, "--labels")
    if labels.shape[0] != rows:
        _fail(f"--tokens has {rows} rows but --labels has {labels.shape[0]}")
    if labels.min() < 0 or labels.max() >= model.num_classes:
        _fail(f"--labels must lie in [0, {model.num_classes}), got [{labels.min()}, {labels.max()}]")
    return ClassLabels(torch.from_numpy(labels))


def cmd_replay(args: argparse.Namespace) -> None:
    import torch

    from softcfg.io.shards import write_npz
    from softcfg.models.loading import load_model
    from softcfg.sampling.replay import replay

    run = load_run_config(args.config)
    tokens = _load_int_array(args.tokens, 2, "--tokens")
    model = load_model(run.model)
    conditions = _replay_conditions(args, run, model, tokens.shape[0])
    device = next(model.parameters()).device
    write_npz(args.out, replay(model, run.method, conditions.to(device), torch.from_numpy(tokens).to(device)))


def cmd_run_config(args: argparse.Namespace) -> None:
    """Validate one run's config given as JSON (from the sweep) and write it as RUN.yaml."""
    from softcfg.io.atomic import atomic_write_text

    try:
        data = json.loads(args.json)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--json is not valid JSON: {exc}") from exc
    run = parse_run_config(data, check_files=False)  # the checkpoint may be another job's output
    atomic_write_text(args.out, yaml.safe_dump(run.to_dict(), sort_keys=False))


def cmd_schema(args: argparse.Namespace) -> None:
    """config.yaml's JSON schema, generated from the config models and the method registry."""
    from softcfg.config import workflow_schema
    from softcfg.io.atomic import atomic_write_text

    text = json.dumps(workflow_schema(), indent=2) + "\n"
    if args.check:
        if not Path(args.out).is_file() or Path(args.out).read_text() != text:
            _fail(f"{args.out} is not current: run softcfg schema --out {args.out}")
        return
    atomic_write_text(args.out, text)


def cmd_reference(args: argparse.Namespace) -> None:
    """The real digits (all 1797) as an ADM-layout npz: the reference set of digits-FID."""
    from softcfg.data.digits import load_digits_tokens, tokens_to_uint8_images
    from softcfg.io.shards import write_shard

    tokens, labels = load_digits_tokens()
    images = tokens_to_uint8_images(tokens).numpy()
    facts = {"dataset": "sklearn digits", "mapping": "round(v * 255 / 16)"}
    write_shard(args.out, images, {"arr_1": labels.numpy()}, facts)


def _shards(paths: list[str], flag: str) -> list[Path]:
    """Shard files named directly (.npz) or through the group records sample jobs write (.json)."""
    from softcfg.io.shards import group_shards, is_group_record

    _check_inputs(paths, flag)
    shards = [s for p in map(Path, paths) for s in (group_shards(p) if is_group_record(p) else [p])]
    _check_inputs([str(s) for s in shards], flag)
    return shards


def cmd_features(args: argparse.Namespace) -> None:
    from softcfg.io.shards import read_manifest, read_shard, write_npz
    from softcfg.metrics.digits_extractor import EXTRACTOR, extract_features
    from softcfg.models.base import weights_sha256
    from softcfg.models.digits_classifier import load_digits_classifier

    _check_inputs([args.classifier], "--classifier")
    paths = _shards(args.inputs, "features")
    _set_threads(args.threads)
    shards = [read_shard(p) for p in paths]  # every input checked before extraction starts
    for path, (_, labels) in zip(paths, shards, strict=True):
        if labels is None:
            _fail(f"{path}: no class labels (arr_1); digits features score class-conditional shards")
    sides = {"samples" if "run" in read_manifest(p) else "reference" for p in paths}  # `reference`: no run
    if len(sides) > 1:
        _fail("features: sample shards and the reference set given together")
    images = np.concatenate([s[0] for s in shards])
    labels = np.concatenate([s[1] for s in shards])
    feats = extract_features(images, args.classifier)
    weights = weights_sha256(load_digits_classifier(args.classifier).state_dict())
    meta = {"extractor": EXTRACTOR, "extractor_sha256": weights, "images": sides.pop()}
    write_npz(args.out, {**feats, "labels": labels, "meta": np.array(json.dumps(meta))})


def cmd_metrics(args: argparse.Namespace) -> None:
    """One run's metrics from its features (either extractor, told apart by the files' own records)."""
    from softcfg.io.atomic import atomic_write_text
    from softcfg.metrics.scoring import run_metrics
    from softcfg.metrics.suite import PRSettings

    _check_inputs([*args.samples, args.reference], "metrics")
    run = load_run_config(args.config, check_files=False)  # scored from features: no checkpoint needed
    pr = PRSettings(mode=args.pr_mode, device=args.device)
    resampling = _resampling(args) if args.bootstrap_resamples else None
    record = run_metrics(
        run, args.samples, args.reference, tuple(args.names), args.kid_subset_size, pr, resampling
    )
    atomic_write_text(args.out, json.dumps(record, indent=2, sort_keys=True) + "\n")


def _resampling(args: argparse.Namespace) -> Resampling:
    """The bootstrap options, checked as config.yaml's ``metrics.bootstrap`` is."""
    from softcfg.metrics.bootstrap import Resampling
    from softcfg.options import validate

    entry = {k: getattr(args, f"bootstrap_{k}") for k in BootstrapEntry.model_fields}
    return Resampling(**validate(BootstrapEntry, entry, "--bootstrap").model_dump())


def cmd_compare(args: argparse.Namespace) -> None:
    """Two runs of a finished workflow, paired by seed and label: B - A with its interval per metric."""
    from softcfg.metrics.compare import compare_runs
    from softcfg.metrics.suite import PRSettings

    if args.bootstrap_resamples < 1:
        _fail(f"--bootstrap-resamples must be >= 1 for a comparison, got {args.bootstrap_resamples}")
    pr = PRSettings(mode=args.pr_mode, device=args.device)
    names = tuple(args.names) if args.names else None
    plan, differences = compare_runs(Path(args.results), args.run_a, args.run_b, names, _resampling(args), pr)
    level = f"{plan.settings.level:.0%} interval"
    print(f"A = {args.run_a}, B = {args.run_b}: {plan.bounds[-1]} samples each, paired by seed and label")
    print(f"{'metric':<10} {'A':>11} {'B':>11} {'B - A':>11}  {level:<25} {'P(sign)':>7}  method")
    for d in differences:
        interval = f"[{d.low:.5g}, {d.high:.5g}]"
        print(
            f"{d.metric:<10} {d.a:>11.5g} {d.b:>11.5g} {d.difference:>+11.5g}  {interval:<25} "
            f"{d.sign_probability:>7.3f}  {d.method}"
        )


def cmd_inception_weights(args: argparse.Namespace) -> None:
    """Resolve (and if needed convert) the Inception weights once; write them where every job reads them."""
    import shutil

    from softcfg.io.atomic import atomic_path, atomic_write_text
    from softcfg.metrics.inception import resolve_weights

    weights = resolve_weights(args.source)
    if args.require_head and not weights.has_logits:
        _fail(f"{weights.source}: no softmax head, so the Inception Score is unavailable (drop 'is')")
    with atomic_path(args.out) as tmp:
        shutil.copyfile(weights.path, tmp)
    atomic_write_text(Path(args.out).with_suffix(".json"), json.dumps(weights.as_dict(), indent=2) + "\n")
    print(f"inception weights: {weights.source}, sha256 {weights.sha256[:12]}, IS head: {weights.has_logits}")


def _weights(path: str) -> InceptionWeights:
    from softcfg.io.records import read_record
    from softcfg.metrics.inception import describe_weights

    _check_inputs([path], "--weights")
    source = Path(path).with_suffix(".json")
    name = read_record(source, "weights record", ("source",))["source"] if source.is_file() else None
    return describe_weights(path, name or f"file {Path(path).name}")


def cmd_inception_features(args: argparse.Namespace) -> None:
    """Inception features of a group of sample shards (each verified against its manifest), one shard's
    images in memory at a time; rows in shard order, so any grouping gives the same features."""
    from softcfg.io.atomic import sha256_file
    from softcfg.io.shards import npz_headers, read_shard, write_npz
    from softcfg.metrics.inception_features import features_arrays

    weights = _weights(args.weights)
    paths = _shards(args.shards, "--shards")
    for path in paths:  # every shard's image size checked before any extraction
        images = npz_headers(path).get("arr_0")
        if images is None:
            _fail(f"{path}: no images (arr_0)")
        size = list(images[0][1:3])
        if args.image_size is not None and size != args.image_size:
            _fail(f"{path}: images are {size}, the reference's {args.image_size}")
    _set_threads(args.threads)
    parts = []
    for path in paths:
        images, labels = read_shard(path)
        meta = {"shards": [path.name], "shard_sha256": [sha256_file(path)]}
        arrays = features_arrays(images, weights, meta, args.batch_size, args.device)
        parts.append({**arrays, **({} if labels is None else {"labels": labels})})
    write_npz(args.out, _concatenated(parts))


def _concatenated(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Features files of consecutive shards as one: arrays concatenated, records merged."""
    metas = [json.loads(str(part["meta"])) for part in parts]
    meta = {**metas[0], "num_images": sum(m["num_images"] for m in metas)}
    for key in ("shards", "shard_sha256"):
        meta[key] = [value for m in metas for value in m[key]]
    arrays = {k: np.concatenate([part[k] for part in parts]) for k in parts[0] if k != "meta"}
    return {**arrays, "meta": np.array(json.dumps(meta, sort_keys=True))}


def cmd_inception_reference(args: argparse.Namespace) -> None:
    """Inception features and statistics of an ADM reference batch (cached by checksums)."""
    from softcfg.io.shards import write_npz
    from softcfg.metrics.inception_features import reference_arrays

    weights = _weights(args.weights)
    _set_threads(args.threads)
    write_npz(args.out, reference_arrays(args.reference, weights, args.batch_size, args.device))


def cmd_evaluate(args: argparse.Namespace) -> None:
    """ADM's evaluator on this package: a sample npz (or folder of them) against a reference batch."""
    from softcfg.metrics.scoring import ADM_LINES, evaluate_samples

    _set_threads(args.threads)
    result = evaluate_samples(
        args.reference, args.samples, args.weights, args.batch_size, args.device, args.pr_mode
    )
    if args.json:
        print(json.dumps(result.record(), indent=2, sort_keys=True))
        return
    for key, label in ADM_LINES.items():
        value = result.values.get(key)
        print(
            f"{label}: {value}"
            if key in result.values
            else f"{label}: unavailable ({result.unavailable[key]})"
        )


def cmd_summarize(args: argparse.Namespace) -> None:
    from softcfg.io.atomic import atomic_write_text
    from softcfg.io.shards import read_manifest
    from softcfg.report.aggregate import summarize_shards

    summary = summarize_shards([read_manifest(p) for p in _shards(args.inputs, "summarize")])
    atomic_write_text(args.out, json.dumps(summary, indent=1, sort_keys=True) + "\n")


def cmd_export(args: argparse.Namespace) -> None:
    from softcfg.io.export import export_images

    exported = export_images(_shards(args.inputs, "export"), args.out, args.layout)
    images = sum(len(i) for i in exported.images)
    print(f"{len(exported.names)} prompts, {images} images: {args.layout} layout in {args.out}")


def cmd_aggregate(args: argparse.Namespace) -> None:
    from softcfg.report.aggregate import aggregate_results, write_parquet
    from softcfg.report.timing import sampling_times

    metrics, steps, confidence = aggregate_results(Path(args.results), args.runs)
    write_parquet(metrics, args.metrics_out)
    write_parquet(steps, args.steps_out)
    write_parquet(confidence, args.confidence_out)
    if args.timing_out:
        write_parquet(sampling_times(Path(args.results), metrics), args.timing_out)


def cmd_tables(args: argparse.Namespace) -> None:
    from softcfg.io.atomic import atomic_write_text
    from softcfg.io.records import read_table
    from softcfg.report.tables import RENDERERS, latex, markdown

    _check_inputs([args.metrics], "tables")
    metrics = read_table(args.metrics, "metrics table")
    guided = metrics[metrics["guided"].astype(bool)]
    at_focus = guided["gamma"].sub(args.gamma).abs().lt(1e-9) & guided["k"].sub(args.k).abs().lt(1e-9)
    if len(guided) and not at_focus.any():
        settings = sorted({(g, k) for g, k in zip(guided["gamma"], guided["k"], strict=True)})
        _fail(
            f"tables: no guided run at gamma {args.gamma:g}, k {args.k:g} in {args.metrics} "
            f"(its settings: {', '.join(f'{g:g}/{k:g}' for g, k in settings[:8])})"
        )
    for name in args.names:
        header, rows, lead = RENDERERS[name](metrics, args.gamma, args.k)
        atomic_write_text(Path(args.out_dir) / f"{name}.md", markdown(header, rows))
        atomic_write_text(Path(args.out_dir) / f"{name}.tex", latex(header, rows, lead))


def _manifest_run(shard: str) -> dict:
    """The run config a sample shard's manifest records."""
    from softcfg.io.shards import manifest_path, read_manifest

    run = read_manifest(shard).get("run")
    if not isinstance(run, dict):
        _fail(f"{manifest_path(shard)}: no 'run' record (not a sample shard of this package)")
    return run


def cmd_figures(args: argparse.Namespace) -> None:
    from softcfg.io.export import collect_prompt_images
    from softcfg.io.records import read_table
    from softcfg.io.shards import read_shard
    from softcfg.report import figures
    from softcfg.report.settings import label_swept

    tables = {"timing": ("--timing", args.timing), "confidence_maps": ("--confidence", args.confidence)}
    for name, (flag, path) in tables.items():
        if name in args.names and path is None:
            _fail(f"figures: {name} needs {flag}")
    _check_inputs([args.metrics, args.steps] + [tables[n][1] for n in tables if n in args.names], "figures")
    out = Path(args.out_dir)
    metrics, steps = read_table(args.metrics, "metrics table"), read_table(args.steps, "steps table")
    metrics, steps = label_swept(metrics), label_swept(steps)  # a line per setting of a swept option
    focus = (args.gamma, args.k)
    rows, by_run = {}, {}  # shard 0's images by label and by run id (a sweep's runs have one)
    for spec in args.sample_shards if {"samples", "confidence_maps"} & set(args.names) else ():
        label, _, path = spec.partition("=")
        rows[label] = read_shard(path)[0]
        info = _manifest_run(path).get("run")
        if info is not None:
            by_run[info["id"]] = rows[label]
    prompt_runs, seeds = {}, {}  # text runs: (model, method) -> images by prompt; model -> seed
    if {"prompt_samples", "confidence_maps"} & set(args.names):
        shards: dict[str, list[str]] = {}
        for spec in args.prompt_shards:
            label, _, path = spec.partition("=")
            shards.setdefault(label, []).append(path)
        for label, paths in shards.items():
            model, _, method = label.partition("/")
            prompt_runs[(model, method)] = collect_prompt_images([Path(p) for p in paths])
            run = _manifest_run(paths[0])
            seeds[model] = run["sampling"]["seed"]
            by_run[run["run"]["id"]] = read_shard(paths[0])[0]
    drawn = {
        "fid_vs_gamma": lambda: figures.fid_vs_gamma(metrics),
        "fid_vs_k": lambda: figures.fid_vs_k(metrics),
        "fid_vs_beta": lambda: figures.fid_vs_beta(metrics),
        "fid_by_confidence": lambda: figures.fid_by_confidence(metrics, *focus),
        "entropy": lambda: figures.entropy_curves(steps, *focus),
        "entropy_stepnorm": lambda: figures.entropy_stepnorm(steps, *focus),
        "timing": lambda: figures.timing(read_table(args.timing, "timing table")),
        "samples": lambda: figures.sample_grid(rows),
        "confidence_maps": lambda: figures.confidence_maps(
            read_table(args.confidence, "confidence table"), *focus, by_run
        ),
        "prompt_samples": lambda: figures.prompt_samples(prompt_runs, args.prompts, seeds),
    }
    for name in args.names:
        if name in drawn:
            figures.save(drawn[name](), out / name)


def _write_rows(rows: list[dict], out: str) -> None:
    """Result rows, atomically, as a JSON list or a Parquet table (chosen by the suffix)."""
    from softcfg.io.atomic import atomic_path, atomic_write_text

    if out.endswith(".json"):
        atomic_write_text(out, json.dumps(rows, indent=1) + "\n")
    else:
        import pandas as pd

        with atomic_path(out) as tmp:
            pd.DataFrame(rows).to_parquet(tmp, index=False)


def _check_rows_out(out: str | None) -> None:
    if out is not None and not out.endswith((".json", ".parquet")):
        _fail(f"--out must end in .json or .parquet, got {out}")


def cmd_geneval(args: argparse.Namespace) -> None:
    """GenEval on a folder in the official layout: the official summary lines, rows to --out."""
    from softcfg.metrics import geneval
    from softcfg.metrics.t2i_backends import load_detector, parse_options

    _check_rows_out(args.out)
    if args.batch_size < 1 or (args.images_per_prompt is not None and args.images_per_prompt < 1):
        _fail("--batch-size and --images-per-prompt must be >= 1")
    options = parse_options(args.option)
    prompts = geneval.load_prompts(args.prompts)
    pairs = geneval.folder_images(args.folder, prompts, args.images_per_prompt)
    _set_threads(args.threads)
    detector = load_detector(args.backend, options)
    summary = geneval.summarize(geneval.evaluate_images(pairs, prompts, detector, batch_size=args.batch_size))
    print("\n".join(geneval.summary_lines(summary)))
    if args.out:
        _write_rows(geneval.result_rows(summary, detector.name), args.out)


def cmd_dpg(args: argparse.Namespace) -> None:
    """DPG-Bench on a folder of 2 x 2 grids named by item id: the official lines, rows to --out."""
    from softcfg.metrics import dpg
    from softcfg.metrics.t2i_backends import load_vqa, parse_options

    _check_rows_out(args.out)
    options = parse_options(args.option)
    rows = dpg.read_questions(args.questions, official=not args.custom_questions)
    items = dpg.item_questions(rows, args.mode)
    grids = dpg.folder_grids(args.folder, sorted({q.item for q in rows}))
    _set_threads(args.threads)
    vqa = load_vqa(args.backend, options)
    summary = dpg.summarize(dpg.evaluate_grids(grids, items, vqa, args.mode, args.tiles), args.mode)
    print(f"mode: {args.mode}; {summary.images} grids scored, {len(summary.failed)} skipped")
    print("\n".join(dpg.summary_lines(summary, Path(args.folder).name, args.folder, args.out)))
    if args.out:
        _write_rows(dpg.result_rows(summary, vqa.name), args.out)


def cmd_dpg_questions(args: argparse.Namespace) -> None:
    """A DPG-style question table for a GenEval-format prompt set, in the scene VQA's grammar."""
    from softcfg.io.atomic import atomic_write_text
    from softcfg.metrics.dpg_questions import questions_csv

    atomic_write_text(args.out, questions_csv(args.prompts))


def _result_rows(path: str) -> list[dict]:
    """GenEval or DPG result rows as ``softcfg geneval`` / ``softcfg dpg`` write them (a JSON list)."""
    from softcfg.io.records import read_json

    rows = read_json(path, "result rows")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        _fail(f"{path}: result rows must be a JSON list of objects")
    return rows


def cmd_t2i_record(args: argparse.Namespace) -> None:
    """A text-to-image run's metrics record from its GenEval/DPG result rows (for ``aggregate``)."""
    from softcfg.io.atomic import atomic_write_text
    from softcfg.metrics.t2i_scoring import t2i_record

    _check_inputs([args.config, *args.rows], "t2i-record")
    run = load_run_config(args.config, check_files=False)
    rows = [row for path in args.rows for row in _result_rows(path)]
    record = t2i_record(run.to_dict(), rows)
    atomic_write_text(args.out, json.dumps(record, indent=2, sort_keys=True) + "\n")


def _extraction_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")


def _bootstrap_args(p: argparse.ArgumentParser, zero: str) -> None:
    """config.yaml's ``metrics.bootstrap``, with its defaults."""
    default = BootstrapEntry()
    p.add_argument("--bootstrap-resamples", type=int, default=default.resamples, help=f"draws ({zero})")
    p.add_argument("--bootstrap-level", type=float, default=default.level, help="confidence level")
    p.add_argument("--bootstrap-seed", type=int, default=default.seed, help="seed of the draws")
    p.add_argument("--bootstrap-blocks", type=int, default=default.blocks, help="blocks of samples resampled")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="softcfg", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train an embedded digits generator and/or the digits classifier")
    p.add_argument("--generator", help="write the generator checkpoint here (+ .json report)")
    p.add_argument(
        "--family",
        default="digits",
        help="a family with a trainer: next-token (digits), next-scale (digits_scales), text-to-scene "
        "(digits_text), or an installed one",
    )
    p.add_argument("--classifier", help="write the classifier checkpoint here (+ .json report)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="generator optimisation steps (default: tuned)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="sample a group of shards of one run")
    p.add_argument("--config", required=True, help="RUN.yaml with model, method and sampling entries")
    p.add_argument("--shards", required=True, help="FIRST-LAST shard indices (both included), or one index")
    p.add_argument(
        "--out",
        required=True,
        help="the group's record (.json); each shard_NNNN.npz + .json is written beside it",
    )
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("replay", help="teacher-forced per-step cond/uncond/guided logits")
    p.add_argument("--config", required=True)
    p.add_argument("--labels", help="class-conditional families: int64 [B] .npy of class ids")
    p.add_argument("--prompt-index", help="text families: int64 [B] .npy of rows of the prompt set")
    p.add_argument("--prompts", help="text families: this prompt file or folder instead of the run's")
    p.add_argument("--tokens", required=True, help="int64 [B, T] .npy")
    p.add_argument("--out", required=True, help="npz with cond, uncond, guided [B, T, V] (and weights)")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("run-config", help="validate one run's config (JSON) and write it as RUN.yaml")
    p.add_argument("--json", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_run_config)

    p = sub.add_parser("schema", help="write config.yaml's JSON schema (generated from the config models)")
    p.add_argument("--out", default="workflow/schemas/config.schema.json")
    p.add_argument("--check", action="store_true", help="fail if the file differs from the generated schema")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("reference", help="write the real digits as an ADM-layout npz")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_reference)

    p = sub.add_parser("features", help="digits-classifier features of shards (torch-fidelity extractor)")
    p.add_argument("--classifier", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    p.add_argument("inputs", nargs="+", help="ADM-layout npz files with manifests, or sample group records")
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("metrics", help="FID, IS, KID, precision, recall, density, coverage, ... of one run")
    p.add_argument("--config", required=True, help="the run's RUN.yaml (recorded with the numbers)")
    p.add_argument(
        "--samples", required=True, nargs="+", help="features: one digits file or Inception shards"
    )
    p.add_argument("--reference", required=True)
    p.add_argument(
        "--names", nargs="+", choices=metric_names(), default=["fid", "is", "kid", "precision", "recall"]
    )
    p.add_argument("--kid-subset-size", type=int, default=1000)
    p.add_argument("--pr-mode", choices=PR_MODES, default="float32", help="precision/recall distance blocks")
    p.add_argument("--device", default="cpu", help="where precision/recall distances are computed")
    _bootstrap_args(p, "0: no intervals")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser("compare", help="paired comparison of two runs (same model, seed, sampling sizes)")
    p.add_argument("--results", default="results", help="the finished workflow's results folder")
    p.add_argument("--names", nargs="+", choices=INTERVAL_METRICS, help="default: every one both runs have")
    p.add_argument("--pr-mode", choices=PR_MODES, default="float32", help="precision/recall distance blocks")
    p.add_argument("--device", default="cpu", help="where precision/recall distances are computed")
    _bootstrap_args(p, "at least 1")
    p.add_argument("run_a", help="run id of A")
    p.add_argument("run_b", help="run id of B (the difference is B - A)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("inception-weights", help="resolve or convert the Inception weights into one file")
    p.add_argument("--source", help="full torch-fidelity Inception weights (with the IS head)")
    p.add_argument("--out", required=True, help="weights .pth (+ .json: checksum, source, IS head)")
    p.add_argument("--require-head", action="store_true", help="fail unless the weights can give IS")
    p.set_defaults(func=cmd_inception_weights)

    for name, func, what in (
        ("inception-features", cmd_inception_features, "Inception features of a group of sample shards"),
        ("inception-reference", cmd_inception_reference, "Inception features of an ADM reference batch"),
    ):
        p = sub.add_parser(name, help=what)
        p.add_argument("--weights", required=True, help="from `softcfg inception-weights`")
        if name == "inception-features":
            p.add_argument(
                "--shards", required=True, nargs="+", help="ADM-layout npz files, or sample group records"
            )
            p.add_argument("--image-size", type=int, nargs=2, help="H W the reference has (checked first)")
        else:
            p.add_argument("--reference", required=True, help="ADM reference npz (arr_0, optional mu/sigma)")
        p.add_argument("--out", required=True)
        _extraction_args(p)
        p.set_defaults(func=func)

    p = sub.add_parser("evaluate", help="ADM's evaluator: FID, sFID, IS, precision, recall of samples")
    p.add_argument("reference", help="ADM reference npz, e.g. VIRTUAL_imagenet256_labeled.npz")
    p.add_argument("samples", help="sample npz (arr_0 uint8 NHWC) or a folder of them")
    p.add_argument("--weights", help="full torch-fidelity Inception weights (needed for IS)")
    p.add_argument("--json", action="store_true", help="one JSON record instead of ADM's lines")
    p.add_argument("--pr-mode", choices=PR_MODES, default="float32", help="precision/recall distance blocks")
    _extraction_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("geneval", help="GenEval scores of a folder in the official layout")
    p.add_argument("folder", help="<00000>/metadata.jsonl and <00000>/samples/<0000>.png per prompt")
    p.add_argument("--backend", default="hf", help="hf | mmdet | scenes | module:factory")
    p.add_argument("--option", action="append", default=[], help="backend option KEY=VALUE (repeatable)")
    p.add_argument("--prompts", help="a declared prompt set (JSON lines; default: the official 553)")
    p.add_argument("--images-per-prompt", type=int, help="images each prompt must have")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    p.add_argument("--out", help="result rows (.json or .parquet)")
    p.set_defaults(func=cmd_geneval)

    p = sub.add_parser("dpg", help="DPG-Bench scores of a folder of 2 x 2 grids named by item id")
    p.add_argument("folder")
    p.add_argument("--questions", required=True, help="dpg_bench.csv (checked against the official blob)")
    p.add_argument("--custom-questions", action="store_true", help="an own table: no blob/item check")
    p.add_argument("--mode", choices=["compatible", "corrected"], default="compatible")
    p.add_argument("--tiles", type=int, default=4, help="tiles scored per grid (upstream's --pic-num)")
    p.add_argument("--backend", default="hf", help="hf | mplug | scenes | module:factory")
    p.add_argument("--option", action="append", default=[], help="backend option KEY=VALUE (repeatable)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    p.add_argument("--out", help="result rows (.json or .parquet)")
    p.set_defaults(func=cmd_dpg)

    p = sub.add_parser("dpg-questions", help="a DPG-style question table for a GenEval-format prompt set")
    p.add_argument("prompts", help="GenEval metadata (.jsonl) of the scene model's prompts")
    p.add_argument("--out", required=True, help="CSV with dpg_bench.csv's columns")
    p.set_defaults(func=cmd_dpg_questions)

    p = sub.add_parser("t2i-record", help="a text-to-image run's metrics record from its result rows")
    p.add_argument("--config", required=True, help="the run's RUN.yaml")
    p.add_argument("--rows", required=True, nargs="+", help="JSON rows of `softcfg geneval/dpg --out`")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_t2i_record)

    p = sub.add_parser(
        "aggregate", help="per-run metrics and manifests into metrics/steps/confidence Parquet tables"
    )
    p.add_argument("--results", required=True, help="the results folder holding the runs' outputs")
    p.add_argument("--metrics-out", required=True)
    p.add_argument("--steps-out", required=True)
    p.add_argument("--confidence-out", required=True, help="per-token confidences of the recorded samples")
    p.add_argument("--timing-out", help="sampling seconds per run and image, from the benchmark files")
    p.add_argument("runs", nargs="+", help="run ids")
    p.set_defaults(func=cmd_aggregate)

    p = sub.add_parser("summarize", help="merge one run's shard manifests (seeds, provenance, diagnostics)")
    p.add_argument("--out", required=True)
    p.add_argument("inputs", nargs="+", help="shard .npz files or sample group records")
    p.set_defaults(func=cmd_summarize)

    p = sub.add_parser(
        "export", help="a text-conditioned run's images in GenEval's or DPG-Bench's folder layout"
    )
    p.add_argument("--layout", required=True, choices=("geneval", "dpg"), help="the scorer that reads them")
    p.add_argument("--out", required=True, help="the folder to create (absent or empty)")
    p.add_argument("inputs", nargs="+", help="every shard of the run: .npz files or sample group records")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("tables", help="Markdown and LaTeX tables from metrics.parquet")
    p.add_argument("--metrics", required=True)
    p.add_argument("--gamma", type=float, required=True)
    p.add_argument("--k", type=float, required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("names", nargs="+", choices=TABLES)
    p.set_defaults(func=cmd_tables)

    p = sub.add_parser("figures", help="PNG and PDF figures from the Parquet tables")
    p.add_argument("--metrics", required=True)
    p.add_argument("--steps", required=True)
    p.add_argument("--gamma", type=float, required=True)
    p.add_argument("--k", type=float, required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--timing", help="timing.parquet (for the timing figure)")
    p.add_argument("--confidence", help="confidence.parquet (for the confidence_maps figure)")
    p.add_argument("--sample-shards", nargs="*", default=[], help="LABEL=shard.npz, one row each")
    p.add_argument(
        "--prompt-shards", nargs="*", default=[], help="MODEL/METHOD=shard.npz: every shard of a text run"
    )
    p.add_argument(
        "--prompts", type=int, nargs="+", help="prompt_samples: prompt indices (default: one per tag)"
    )
    p.add_argument("names", nargs="+", choices=FIGURES)
    p.set_defaults(func=cmd_figures)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as exc:  # bad input: one line, status 2; anything else keeps its traceback
        print(f"softcfg: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
