"""The ``softcfg`` command line: the only entry point the workflow rules call.

Every argument and config is validated before any model is loaded; a problem prints one line naming
it and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from softcfg.config import ConfigError, load_run_config


def _fail(message: str) -> None:
    raise ConfigError(message)


def cmd_train(args: argparse.Namespace) -> None:
    from softcfg.data.digits import split_digits
    from softcfg.io.atomic import atomic_path, atomic_write_text
    from softcfg.models.digits import DigitsARConfig, save_digits_ar
    from softcfg.models.digits_classifier import save_digits_classifier
    from softcfg.training.digits import ARTraining, train_digits_ar, train_digits_classifier

    if args.steps is not None and args.steps < 1:
        _fail(f"--steps must be >= 1, got {args.steps}")
    out = Path(args.out)
    split = split_digits(args.seed)
    training = ARTraining() if args.steps is None else ARTraining(steps=args.steps)
    generator, ar_report = train_digits_ar(split, DigitsARConfig(), training, args.seed)
    classifier, cls_report = train_digits_classifier(split, args.seed)
    report = {"seed": args.seed, "generator": ar_report, "classifier": cls_report}
    with atomic_path(out / "digits_ar.pt") as tmp:
        save_digits_ar(generator, tmp, {"train_report": ar_report, "seed": args.seed})
    with atomic_path(out / "digits_classifier.pt") as tmp:
        save_digits_classifier(classifier, tmp, {"train_report": cls_report, "seed": args.seed})
    atomic_write_text(out / "train_report.json", json.dumps(report, indent=2) + "\n")
    ar, cls = ar_report, cls_report
    print(
        f"generator: train loss {ar['train_loss']:.4f}, held-out loss {ar['heldout_loss']:.4f} "
        f"(best step {ar['best_step']}); classifier held-out accuracy {cls['heldout_accuracy']:.4f}"
    )


def cmd_sample(args: argparse.Namespace) -> None:
    from softcfg.io.provenance import git_commit, package_versions
    from softcfg.io.shards import write_shard
    from softcfg.models import load_model
    from softcfg.sampling.shards import sample_shard

    run = load_run_config(args.config)
    if args.shard < 0:
        _fail(f"--shard must be >= 0, got {args.shard}")
    if Path(args.out).suffix != ".npz":
        _fail(f"--out must end in .npz, got {args.out}")
    model = load_model(run.model)
    shard = sample_shard(model, run, args.shard, progress=not args.no_progress)
    manifest = {
        "run": run.to_dict(),
        "shard_index": args.shard,
        "label_scheme": "class = (shard_index * shard_size + i) % num_classes",
        "batch_seeds": shard.batch_seeds,
        "guidance_convention": "guided = uncond + gamma * (cond - uncond)",
        "versions": package_versions(),
        "git_commit": git_commit(),
        "diagnostics": shard.diagnostics.as_dict() if shard.diagnostics is not None else None,
    }
    write_shard(args.out, shard.images, shard.labels, manifest)


def _load_int_array(path: str, ndim: int, flag: str) -> np.ndarray:
    if not Path(path).is_file():
        _fail(f"{flag}: file not found: {path}")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise ConfigError(f"{flag}: {path} is not a .npy array: {exc}") from exc
    if array.dtype != np.int64 or array.ndim != ndim:
        _fail(f"{flag}: {path} must be int64 with {ndim} dimensions, got {array.dtype} {array.shape}")
    return array


def cmd_replay(args: argparse.Namespace) -> None:
    from softcfg.io.shards import write_npz
    from softcfg.models import load_model
    from softcfg.sampling.replay import replay

    run = load_run_config(args.config)
    labels = _load_int_array(args.labels, 1, "--labels")
    tokens = _load_int_array(args.tokens, 2, "--tokens")
    if tokens.shape[0] != labels.shape[0]:
        _fail(f"--tokens has {tokens.shape[0]} rows but --labels has {labels.shape[0]}")
    model = load_model(run.model)
    if labels.min() < 0 or labels.max() >= model.num_classes:
        _fail(f"--labels must lie in [0, {model.num_classes}), got [{labels.min()}, {labels.max()}]")
    device = next(model.parameters()).device
    arrays = replay(
        model, run.method, torch.from_numpy(labels).to(device), torch.from_numpy(tokens).to(device)
    )
    write_npz(args.out, arrays)


def cmd_score(args: argparse.Namespace) -> None:
    from softcfg.io.shards import read_shard
    from softcfg.models.digits_classifier import load_digits_classifier

    classifier = load_digits_classifier(args.classifier)
    shards = [read_shard(p) for p in args.shards]  # validated before any scoring
    images = torch.from_numpy(np.concatenate([s[0] for s in shards]))
    labels = torch.from_numpy(np.concatenate([s[1] for s in shards]))
    _, logits = classifier.features_and_logits(images)
    accuracy = (logits.argmax(-1) == labels).float().mean().item()
    print(json.dumps({"num_samples": int(labels.shape[0]), "classifier_accuracy": accuracy}))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="softcfg", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train the embedded digits generator and classifier")
    p.add_argument(
        "--out", required=True, help="folder for digits_ar.pt, digits_classifier.pt, train_report.json"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="generator optimisation steps (default: tuned)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="sample one shard of one run")
    p.add_argument("--config", required=True, help="RUN.yaml with model, method and sampling entries")
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--out", required=True, help="shard .npz; its manifest .json is written beside it")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("replay", help="teacher-forced per-step cond/uncond/guided logits")
    p.add_argument("--config", required=True)
    p.add_argument("--labels", required=True, help="int64 [B] .npy")
    p.add_argument("--tokens", required=True, help="int64 [B, T] .npy")
    p.add_argument("--out", required=True, help="npz with cond, uncond, guided [B, T, V] (and weights)")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("score", help="digits classifier accuracy of sample shards against their labels")
    p.add_argument("--classifier", required=True)
    p.add_argument("shards", nargs="+")
    p.set_defaults(func=cmd_score)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ValueError as exc:  # ConfigError and checkpoint / shard problems: one line, status 2
        print(f"softcfg: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
