"""One shard of one run: conditions by the documented scheme, seeds derived per batch, images decoded.

Class-conditional models: sample number n of a run (counting across shards) has class
``n % num_classes``, i.e. classes round-robin as in the ImageNet sampling scripts (50 per class for 50k
samples when the run size is a multiple of the class count). Batch b of shard i draws from a generator
seeded by ``SeedSequence([seed, i, b])``, so a shard is deterministic from (seed, shard index, shard
size, batch size) and independent of other shards.

With a checkpoint folder, every completed batch is kept there (atomically) until the shard is written, so
a job that is killed, preempted or timed out resumes from its last completed batch and still produces
the same bytes. Partial batches are never kept; batches written under another key (another run config or
checkpoint file) are ignored.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from softcfg import layout
from softcfg.conditioning import ClassLabels, Conditions, Unconditional
from softcfg.config import RunConfig
from softcfg.io.atomic import sha256_file
from softcfg.io.shards import manifest_path, shard_verified, write_group_record, write_npz, write_shard
from softcfg.models.base import ARModel
from softcfg.options import UserError
from softcfg.sampling.diagnostics import StepDiagnostics
from softcfg.sampling.next_token import generate


def shard_labels(shard_index: int, shard_size: int, num_classes: int) -> np.ndarray:
    """Class ids of the samples of one shard, int64 [shard_size]."""
    first = shard_index * shard_size
    return np.arange(first, first + shard_size, dtype=np.int64) % num_classes


def shard_conditions(model: ARModel, shard_index: int, shard_size: int) -> Conditions:
    """The conditions of one shard's samples, by the model family's conditioning."""
    kind = model.conditioning
    if kind == "class":
        return ClassLabels(torch.from_numpy(shard_labels(shard_index, shard_size, model.num_classes)))
    if kind == "none":
        return Unconditional(shard_size)
    raise UserError(f"sampling shards of a {kind!r}-conditioned model needs a prompt set; this run has none")


def batch_seed(seed: int, shard_index: int, batch_index: int) -> int:
    return int(np.random.SeedSequence([seed, shard_index, batch_index]).generate_state(1, np.uint64)[0])


@dataclass
class Shard:
    images: np.ndarray  # uint8 [N, H, W, 3]
    conditions: Conditions
    batch_seeds: list[int]
    diagnostics: StepDiagnostics | None
    resumed: int = 0  # batches taken from the checkpoint folder instead of sampled


def _load_batch(path: Path, key: str, seed: int) -> tuple[np.ndarray, StepDiagnostics | None] | None:
    """A kept batch if it belongs to this key and seed, else None (it is then sampled again)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta != {"key": key, "seed": seed}:
                return None
            images = data["images"]
            if "sums" not in data.files:
                return images, None
            diagnostics = StepDiagnostics(data["sums"].shape[0])
            diagnostics.sums = torch.from_numpy(data["sums"])
            diagnostics.present = data["present"].tolist()
            diagnostics.count = int(data["count"])
            return images, diagnostics
    except (OSError, ValueError, KeyError):
        return None


def _keep_batch(path: Path, key: str, seed: int, images: np.ndarray, diag: StepDiagnostics | None) -> None:
    arrays = {"images": images, "meta": np.array(json.dumps({"key": key, "seed": seed}))}
    if diag is not None:
        arrays.update(
            sums=diag.sums.cpu().numpy(), present=np.array(diag.present), count=np.array(diag.count)
        )
    write_npz(path, arrays)


def _add(total: StepDiagnostics | None, part: StepDiagnostics | None) -> StepDiagnostics | None:
    """Diagnostics of consecutive batches: sums added in batch order (the same floats as one pass)."""
    if total is None or part is None:
        return part if total is None else total
    total.sums += part.sums.to(total.sums.device)
    total.present = [
        [a or b for a, b in zip(x, y, strict=True)] for x, y in zip(total.present, part.present, strict=True)
    ]
    total.count += part.count
    return total


def sample_shard(
    model: ARModel,
    run: RunConfig,
    shard_index: int,
    progress: bool = True,
    checkpoint_dir: Path | None = None,
    key: str = "",
) -> Shard:
    """Sample every batch of shard ``shard_index`` and decode it to uint8 images, keeping completed
    batches in ``checkpoint_dir`` (under ``key``) when given."""
    s = run.sampling
    device = next(model.parameters()).device
    conditions = shard_conditions(model, shard_index, s.shard_size)
    diagnostics = None
    images, seeds, resumed = [], [], 0
    starts = range(0, s.shard_size, s.batch_size)
    for b, start in enumerate(tqdm(starts, desc=f"shard {shard_index}", unit="batch", disable=not progress)):
        seeds.append(batch_seed(s.seed, shard_index, b))
        kept = checkpoint_dir / f"batch_{b:04d}.npz" if checkpoint_dir is not None else None
        loaded = _load_batch(kept, key, seeds[-1]) if kept is not None and kept.is_file() else None
        if loaded is None:
            generator = torch.Generator(device=device).manual_seed(seeds[-1])
            batch = conditions[start : start + s.batch_size].to(device)
            part = StepDiagnostics(model.num_tokens, device) if s.diagnostics else None
            tokens = generate(model, batch, run.method, generator, [part] if part is not None else [])
            loaded = (model.decode_images(tokens).cpu().numpy(), part)
            if kept is not None:
                _keep_batch(kept, key, seeds[-1], *loaded)
        else:
            resumed += 1
        images.append(loaded[0])
        diagnostics = _add(diagnostics, loaded[1])
    return Shard(np.concatenate(images), conditions, seeds, diagnostics, resumed)


def discard_checkpoints(checkpoint_dir: Path) -> None:
    """Once the shard is written its kept batches are of no use."""
    shutil.rmtree(checkpoint_dir, ignore_errors=True)


def resume_key(run: RunConfig) -> str:
    """What kept batches must have been sampled under: the run config and the checksums of the files it
    loads (contents, not modification times: a copied or touched checkpoint resumes, a changed one not)."""
    files = [run.model.checkpoint, run.model.tokenizer]
    return json.dumps([run.config_hash(), *(sha256_file(f) if f is not None else None for f in files)])


def write_run_shard(
    run: RunConfig, model: ARModel, shard_index: int, out: Path, key: str, progress: bool
) -> Shard:
    """Sample shard ``shard_index`` of ``run`` into ``out`` (+ its manifest), resuming from the batches
    an interrupted attempt kept beside it; returns the shard."""
    from softcfg.io.provenance import git_commit, package_versions

    checkpoints = out.parent / f".{out.stem}.batches"
    shard = sample_shard(model, run, shard_index, progress, checkpoints, key)
    arrays, facts = shard.conditions.record()
    manifest = {
        "run": run.to_dict(),
        "config_hash": run.config_hash(),
        "sampling_key": key,
        "shard_index": shard_index,
        **facts,
        "batch_seeds": shard.batch_seeds,
        "guidance_convention": "guided = uncond + gamma * (cond - uncond)",
        "versions": package_versions(),
        "git_commit": git_commit(),
        "diagnostics": shard.diagnostics.as_dict() if shard.diagnostics is not None else None,
    }
    if shard.conditions.kind == "class":
        manifest["label_scheme"] = "class = (shard_index * shard_size + i) % num_classes"
    write_shard(out, shard.images, arrays, manifest)
    discard_checkpoints(checkpoints)
    return shard


def kept_shard(path: Path, key: str) -> bool:
    """A shard an earlier attempt of this job wrote under the same key (run config and file checksums)
    and that still matches its manifest: it is kept, not sampled again."""
    if not shard_verified(path):
        return False
    return json.loads(manifest_path(path).read_text()).get("sampling_key") == key


def write_shard_group(
    run: RunConfig, first: int, last: int, record: Path, progress: bool = True
) -> Iterator[tuple[int, Shard | None]]:
    """Shards ``first``..``last`` of ``run`` beside ``record``, then the record listing them. Yields each
    shard index with its new ``Shard``, or None for a shard kept from an earlier attempt; the model is
    loaded only if a shard is left to sample."""
    from softcfg.models.loading import load_model

    key = resume_key(run)
    paths = [record.parent / layout.shard_name(i) for i in range(first, last + 1)]
    model = None
    for index, path in zip(range(first, last + 1), paths, strict=True):
        if kept_shard(path, key):
            yield index, None
            continue
        model = model if model is not None else load_model(run.model)
        yield index, write_run_shard(run, model, index, path, key, progress)
    write_group_record(record, paths)
