"""A text-conditioned run's shards as the image folders that the GenEval and DPG-Bench scorers read.

- GenEval: ``<out>/<prompt index, 5 digits>/metadata.jsonl`` (the prompt's metadata line) and
  ``<out>/<index>/samples/<image, 4 digits>.png``, every image of the prompt.
- DPG-Bench: ``<out>/<prompt name>.png`` per prompt, its first four images as one 2 x 2 grid (row-major),
  which the scorer cuts back into four (``--pic-num 4``); the name is the prompt file's stem.

Shards carry what this needs (``prompt_index`` per image, the prompts' names and metadata in the
manifest; ``softcfg.sampling.shards``), so no prompt file is read. The folder is written beside ``out``
and renamed into place once complete.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from softcfg.io.shards import read_manifest, read_shard
from softcfg.options import UserError

LAYOUTS = ("geneval", "dpg")
DPG_GRID = 2  # DPG-Bench's grid of 2 x 2 images per prompt


@dataclass(frozen=True)
class PromptImages:
    """Every prompt of a run's prompt set with its images, in prompt-set order."""

    format: str  # the prompt set's format (softcfg.data.prompts)
    names: list[str]
    metadata: list[dict[str, Any]]
    images: list[list[np.ndarray]]  # per prompt, uint8 [H, W, 3] in sample order


def collect_prompt_images(shards: Sequence[Path]) -> PromptImages:
    """Images of ``shards`` (one run's, all of them, in shard order) grouped by prompt; a UserError names
    a shard without prompts, one of another run, or a prompt short of its images."""
    first: dict[str, Any] | None = None
    names: dict[int, str] = {}
    metadata: dict[int, dict[str, Any]] = {}
    per_prompt: dict[int, list[np.ndarray]] = {}
    for shard in shards:
        read_shard(shard)  # checksum and layout
        manifest = read_manifest(shard)
        prompt_set = manifest.get("prompt_set")
        if prompt_set is None:
            raise UserError(f"{shard}: no prompt set in its manifest (not a text-conditioned run's shard)")
        if first is None:
            first = manifest
        elif (manifest.get("config_hash"), prompt_set["sha256"]) != (
            first.get("config_hash"),
            first["prompt_set"]["sha256"],
        ):
            raise UserError(f"{shard}: sampled by another run or prompt set than {shards[0]}")
        with np.load(shard, allow_pickle=False) as data:
            images, index = data["arr_0"], data["prompt_index"]
        for image, i in zip(images, index.tolist(), strict=True):
            entry = prompt_set["entries"][str(i)]
            names[i], metadata[i] = entry["name"], entry["metadata"]
            per_prompt.setdefault(i, []).append(image)
    if first is None:
        raise UserError("no shards given")
    prompt_set = first["prompt_set"]
    count, wanted = prompt_set["num_prompts"], prompt_set["images_per_prompt"]
    for i in range(count):
        have = len(per_prompt.get(i, []))
        if have != wanted:
            raise UserError(
                f"prompt {i} of {prompt_set['path']} has {have} of {wanted} images in these shards "
                "(give every shard of the run, once)"
            )
    return PromptImages(
        prompt_set["format"],
        [names[i] for i in range(count)],
        [metadata[i] for i in range(count)],
        [per_prompt[i] for i in range(count)],
    )


def _png(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(image, mode="RGB").save(path, format="PNG")


def _geneval(prompts: PromptImages, folder: Path) -> None:
    if prompts.format != "geneval":
        raise UserError(
            f"the GenEval layout needs GenEval metadata (a .jsonl prompt set); these shards' prompts are "
            f"{prompts.format}"
        )
    for i, (meta, images) in enumerate(zip(prompts.metadata, prompts.images, strict=True)):
        samples = folder / f"{i:05d}" / "samples"
        samples.mkdir(parents=True)
        (samples.parent / "metadata.jsonl").write_text(json.dumps(meta) + "\n")
        for j, image in enumerate(images):
            _png(image, samples / f"{j:04d}.png")


def _dpg(prompts: PromptImages, folder: Path) -> None:
    needed = DPG_GRID * DPG_GRID
    if len(prompts.images[0]) < needed:
        raise UserError(
            f"the DPG-Bench layout is a {DPG_GRID} x {DPG_GRID} grid of images per prompt: sample at least "
            f"{needed} images per prompt (these shards have {len(prompts.images[0])})"
        )
    folder.mkdir(parents=True)
    for name, images in zip(prompts.names, prompts.images, strict=True):
        rows = [np.concatenate(images[r * DPG_GRID : (r + 1) * DPG_GRID], axis=1) for r in range(DPG_GRID)]
        _png(np.concatenate(rows, axis=0), folder / f"{name}.png")


def export_images(shards: Sequence[Path], out: str | Path, layout: str) -> PromptImages:
    """Write the run's images under ``out`` in ``layout`` (``geneval`` or ``dpg``); ``out`` must not
    exist or be empty. Returns what was exported."""
    if layout not in LAYOUTS:
        raise UserError(f"--layout: expected one of {LAYOUTS}, got {layout!r}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out}: exists and is not an empty folder")
    prompts = collect_prompt_images(shards)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (_geneval if layout == "geneval" else _dpg)(prompts, staging / "images")
        if out.exists():
            out.rmdir()
        (staging / "images").rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return prompts
