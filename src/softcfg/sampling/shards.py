"""One shard of one run: conditions by the documented scheme, seeds derived per batch, images decoded.

Class-conditional models: sample number n of a run (counting across shards) has class
``n % num_classes``, i.e. classes round-robin as in the ImageNet sampling scripts (50 per class for 50k
samples when the run size is a multiple of the class count). Batch b of shard i draws from a generator
seeded by ``SeedSequence([seed, i, b])``, so a shard is deterministic from (seed, shard index, shard
size, batch size) and independent of other shards.

Shard 0's manifest also holds the per-token confidences of its first ``sampling.confidence_maps``
samples (``confidence_maps``: definition -> [sample][token], from the first batch) and, in every shard,
where the image's token map lies in the sequence (``token_grid``): what the confidence heatmaps draw.

With a checkpoint folder, every completed batch is kept there (atomically) until the shard is written, so
a job that is killed, preempted or timed out resumes from its last completed batch and still produces
the same bytes. Partial batches are never kept; batches written under another key (another run config,
checkpoint file or folder, tokenizer or prompt set) are ignored.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from softcfg import layout
from softcfg.conditioning import ClassLabels, Conditions, Unconditional
from softcfg.config import RunConfig
from softcfg.data.prompts import PromptSet
from softcfg.io.digest import content_sha256
from softcfg.io.shards import manifest_path, shard_verified, write_group_record, write_npz, write_shard
from softcfg.models.base import ARModel, TokenGrid
from softcfg.options import UserError
from softcfg.sampling.diagnostics import ConfidenceMaps, StepDiagnostics
from softcfg.sampling.loop import generate


def shard_labels(shard_index: int, shard_size: int, num_classes: int) -> np.ndarray:
    """Class ids of the samples of one shard, int64 [shard_size]."""
    first = shard_index * shard_size
    return np.arange(first, first + shard_size, dtype=np.int64) % num_classes


def shard_prompt_index(shard_index: int, shard_size: int, num_prompts: int, per_prompt: int) -> np.ndarray:
    """Prompt-set rows of one shard's samples, int64: sample n of a run has prompt ``n // per_prompt``
    (a prompt's images are consecutive); the last shard holds what is left of the run's samples."""
    first = shard_index * shard_size
    samples = np.arange(first, min(first + shard_size, num_prompts * per_prompt), dtype=np.int64)
    if samples.size == 0:
        raise UserError(f"shard {shard_index} is past the run's {num_prompts * per_prompt} samples")
    return samples // per_prompt


def shard_conditions(
    model: ARModel, shard_index: int, shard_size: int, prompts: PromptSet | None = None, per_prompt: int = 1
) -> Conditions:
    """The conditions of one shard's samples, by the model family's conditioning; text-conditioned
    models take theirs from ``prompts``, ``per_prompt`` images each."""
    kind = model.conditioning
    if kind == "class":
        return ClassLabels(torch.from_numpy(shard_labels(shard_index, shard_size, model.num_classes)))
    if kind == "none":
        return Unconditional(shard_size)
    if prompts is None:
        raise UserError(
            f"sampling shards of a {kind!r}-conditioned model needs a prompt set; this run has none"
        )
    index = shard_prompt_index(shard_index, shard_size, len(prompts), per_prompt)
    texts = [prompts.entries[i].text for i in index]
    return model.prompts(texts).with_index(torch.from_numpy(index))


def prompt_set_record(prompts: PromptSet, per_prompt: int, index: np.ndarray) -> dict:
    """What a shard's manifest says of its prompt set: the file, and name and metadata of each prompt the
    shard samples (what exports need, without the prompt file)."""
    return {
        "path": str(prompts.path),
        "format": prompts.format,
        "sha256": prompts.sha256,
        "num_prompts": len(prompts),
        "images_per_prompt": per_prompt,
        "entries": {
            str(i): {"name": prompts.entries[i].name, "metadata": prompts.entries[i].metadata}
            for i in np.unique(index).tolist()
        },
    }


def batch_seed(seed: int, shard_index: int, batch_index: int) -> int:
    return int(np.random.SeedSequence([seed, shard_index, batch_index]).generate_state(1, np.uint64)[0])


@dataclass
class Shard:
    images: np.ndarray  # uint8 [N, H, W, 3]
    conditions: Conditions
    batch_seeds: list[int]
    diagnostics: StepDiagnostics | None
    resumed: int = 0  # batches taken from the checkpoint folder instead of sampled
    confidence: dict[str, np.ndarray] = field(default_factory=dict)  # definition -> float32 [n, T]


# a batch's images, diagnostics and confidence maps (definition -> float32 [n, T]; empty but in batch 0)
_Batch = tuple[np.ndarray, StepDiagnostics | None, dict[str, np.ndarray]]
_MAPS = "confidence_"  # kept-batch arrays confidence_<definition>


def _load_batch(path: Path, key: str, seed: int) -> _Batch | None:
    """A kept batch if it belongs to this key and seed, else None (it is then sampled again)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta != {"key": key, "seed": seed}:
                return None
            images = data["images"]
            maps = {n.removeprefix(_MAPS): data[n] for n in data.files if n.startswith(_MAPS)}
            if "sums" not in data.files:
                return images, None, maps
            diagnostics = StepDiagnostics(data["sums"].shape[0])
            diagnostics.sums = torch.from_numpy(data["sums"])
            diagnostics.present = data["present"].tolist()
            diagnostics.count = int(data["count"])
            return images, diagnostics, maps
    except (OSError, ValueError, KeyError):
        return None


def _keep_batch(
    path: Path,
    key: str,
    seed: int,
    images: np.ndarray,
    diag: StepDiagnostics | None,
    maps: dict[str, np.ndarray],
) -> None:
    arrays = {"images": images, "meta": np.array(json.dumps({"key": key, "seed": seed}))}
    if diag is not None:
        arrays.update(
            sums=diag.sums.cpu().numpy(), present=np.array(diag.present), count=np.array(diag.count)
        )
    arrays.update({_MAPS + name: values for name, values in maps.items()})
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
    prompts: PromptSet | None = None,
) -> Shard:
    """Sample every batch of shard ``shard_index`` and decode it to uint8 images, keeping completed
    batches in ``checkpoint_dir`` (under ``key``) when given. A text-conditioned run's ``prompts`` (read
    once per job by the caller) are read here if not given.

    Batch b is decoded, copied to the host and kept by a background thread (on a GPU in a side stream)
    while batch b + 1 samples, so the device never waits on the image decoder, the copy or the disk; one
    batch at a time is in flight. The images and the kept files are those of the sequential loop."""
    s = run.sampling
    batch_size = s.batch_for(run.model)
    device = next(model.parameters()).device
    if prompts is None and run.model.prompts is not None:
        prompts = run.model.prompt_set()
    conditions = shard_conditions(model, shard_index, s.shard_size, prompts, run.model.per_prompt)
    side = torch.cuda.Stream(device) if device.type == "cuda" else None
    seeds: list[int] = []
    resumed = 0

    def finish(
        b: int, tokens: torch.Tensor, part: StepDiagnostics | None, maps: ConfidenceMaps | None
    ) -> _Batch:
        with torch.cuda.stream(side) if side is not None else nullcontext():
            loaded = (model.decode_images(tokens).cpu().numpy(), part, maps.as_arrays() if maps else {})
        if checkpoint_dir is not None:
            _keep_batch(checkpoint_dir / f"batch_{b:04d}.npz", key, seeds[b], *loaded)
        return loaded

    batches: list[_Batch | Future[_Batch]] = []
    starts = range(0, len(conditions), batch_size)
    with ThreadPoolExecutor(max_workers=1) as background:
        pending: Future[_Batch] | None = None
        for b, start in enumerate(
            tqdm(starts, desc=f"shard {shard_index}", unit="batch", disable=not progress)
        ):
            seeds.append(batch_seed(s.seed, shard_index, b))
            kept = checkpoint_dir / f"batch_{b:04d}.npz" if checkpoint_dir is not None else None
            loaded = _load_batch(kept, key, seeds[-1]) if kept is not None and kept.is_file() else None
            if loaded is not None:
                resumed += 1
                batches.append(loaded)
                continue
            generator = torch.Generator(device=device).manual_seed(seeds[-1])
            batch = conditions[start : start + batch_size].to(device)
            part = StepDiagnostics(model.num_steps, device) if s.diagnostics else None
            recorded = min(s.maps_for(batch_size), len(batch)) if shard_index == 0 and b == 0 else 0
            maps = ConfidenceMaps(model, run.method, recorded, device) if recorded else None
            observers = [o for o in (part, maps) if o is not None]
            tokens = generate(model, batch, run.method, generator, observers)
            if side is not None:  # the decoder's stream starts after the sampling's work
                side.wait_stream(torch.cuda.current_stream(device))
            if pending is not None:
                pending.result()
            pending = background.submit(finish, b, tokens, part, maps)
            batches.append(pending)
        done = [item.result() if isinstance(item, Future) else item for item in batches]
    diagnostics = None
    for _, part, _ in done:  # in batch order: the same floats as one pass
        diagnostics = _add(diagnostics, part)
    images = np.concatenate([images for images, _, _ in done])
    return Shard(images, conditions, seeds, diagnostics, resumed, done[0][2] if done else {})


def discard_checkpoints(checkpoint_dir: Path) -> None:
    """Once the shard is written its kept batches are of no use."""
    shutil.rmtree(checkpoint_dir, ignore_errors=True)


def resume_key(run: RunConfig, prompts: PromptSet | None = None) -> str:
    """What kept batches must have been sampled under: the run config and the content digests of the
    files it loads (``io.digest``: a checkpoint file or folder, the tokenizer), and the prompt set's."""
    model = run.model
    files = {"model.checkpoint": model.checkpoint, "model.tokenizer": model.tokenizer}
    key = [run.config_hash()]
    key += [content_sha256(path, role) if path is not None else None for role, path in files.items()]
    if model.prompts is not None:  # a file or a folder: the prompt set's own checksum
        key.append((prompts or model.prompt_set()).sha256)
    return json.dumps(key)


def write_run_shard(
    run: RunConfig,
    model: ARModel,
    shard_index: int,
    out: Path,
    key: str,
    progress: bool,
    prompts: PromptSet | None = None,
) -> Shard:
    """Sample shard ``shard_index`` of ``run`` into ``out`` (+ its manifest), resuming from the batches
    an interrupted attempt kept beside it; returns the shard."""
    from softcfg.io.provenance import git_commit, package_versions

    if prompts is None and run.model.prompts is not None:
        prompts = run.model.prompt_set()
    checkpoints = out.parent / f".{out.stem}.batches"
    shard = sample_shard(model, run, shard_index, progress, checkpoints, key, prompts)
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
        "token_grid": grid_record(model.token_grid()),
        "confidence_maps": {name: values.tolist() for name, values in shard.confidence.items()} or None,
    }
    if shard.conditions.kind == "class":
        manifest["label_scheme"] = "class = (shard_index * shard_size + i) % num_classes"
    if "prompt_index" in arrays:
        manifest["prompt_scheme"] = "prompt = (shard_index * shard_size + i) // images_per_prompt"
        manifest["prompt_set"] = prompt_set_record(prompts, run.model.per_prompt, arrays["prompt_index"])
    write_shard(out, shard.images, arrays, manifest)
    discard_checkpoints(checkpoints)
    return shard


def grid_record(grid: TokenGrid | None) -> dict[str, int] | None:
    """The token grid as the manifest records it; a row stride only where rows have one."""
    return None if grid is None else {k: v for k, v in grid._asdict().items() if v is not None}


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

    prompts = run.model.prompt_set() if run.model.prompts is not None else None  # read once per job
    key = resume_key(run, prompts)
    paths = [record.parent / layout.shard_name(i) for i in range(first, last + 1)]
    model = None
    for index, path in zip(range(first, last + 1), paths, strict=True):
        if kept_shard(path, key):
            yield index, None
            continue
        model = model if model is not None else load_model(run.model)
        yield index, write_run_shard(run, model, index, path, key, progress, prompts)
    write_group_record(record, paths)
