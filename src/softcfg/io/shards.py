"""Sample shards in the ADM layout (``arr_0`` uint8 NHWC, ``arr_1`` int64 labels) with a JSON manifest.

Shards of models conditioned otherwise than by class hold their conditions' arrays instead of ``arr_1``
(e.g. ``prompt_ids`` and ``prompt_mask``), one row per image; the manifest says which.

The npz is written byte-deterministically (fixed zip timestamps, no compression), so the same sampling
command gives identical bytes; the manifest beside it records the run and the npz checksum.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np

from softcfg.io.atomic import atomic_write, atomic_write_text, sha256_file
from softcfg.io.records import read_record
from softcfg.options import UserError

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def manifest_path(npz_path: str | Path) -> Path:
    """``shard_000.npz`` -> ``shard_000.json``."""
    return Path(npz_path).with_suffix(".json")


def _write_npz(f: IO[bytes], arrays: dict[str, np.ndarray]) -> None:
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            with zf.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """An npz readable by ``np.load`` whose bytes depend only on the arrays, written atomically."""
    atomic_write(path, lambda f: _write_npz(f, arrays))


def npz_headers(path: str | Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array in an npz, read from the .npy headers only (no data loaded), so a
    multi-gigabyte reference batch can be checked while the workflow builds its DAG."""
    out = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if name.endswith(".npy"):
                    with zf.open(name) as member:
                        version = np.lib.format.read_magic(member)
                        read_header = (
                            np.lib.format.read_array_header_1_0
                            if version == (1, 0)
                            else np.lib.format.read_array_header_2_0
                        )
                        shape, _, dtype = read_header(member)
                    out[name.removesuffix(".npy")] = (shape, dtype)
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise UserError(f"{path}: not a readable npz: {exc}") from exc
    return out


def write_shard(
    path: str | Path, images: np.ndarray, conditions: dict[str, np.ndarray], manifest: dict[str, Any]
) -> None:
    """Write the npz (images and the conditions' arrays), then its manifest (with the npz's sha256);
    both atomically, npz first."""
    check_shard_arrays(images, conditions, str(path))
    write_npz(path, {"arr_0": images, **conditions})
    record = {**manifest, "num_samples": int(images.shape[0]), "npz_sha256": sha256_file(path)}
    text = json.dumps(finite_json(record), indent=2, sort_keys=True, allow_nan=False)
    atomic_write_text(manifest_path(path), text + "\n")


def finite_json(value: Any) -> Any:
    """``value`` with every NaN or infinite float as None: JSON has no NaN (an unguided run's
    unconditional entropy is undefined), and other tools refuse the bare ``NaN`` token."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value


def shard_verified(path: str | Path) -> bool:
    """Whether a shard is complete: its manifest exists and records this npz's checksum. A job that SLURM
    starts again after it finished keeps such a shard instead of sampling and rewriting it."""
    try:
        expected = json.loads(manifest_path(path).read_text()).get("npz_sha256")
        return expected is not None and expected == sha256_file(path)
    except (OSError, ValueError, AttributeError):
        return False


def _recorded_sha256(shard: Path) -> str | None:
    """The npz checksum a shard's manifest records, if the shard is complete and matches it."""
    if not shard_verified(shard):
        return None
    return read_manifest(shard)["npz_sha256"]


def read_manifest(shard: str | Path) -> dict[str, Any]:
    """The manifest beside a shard, a JSON object recording the npz's checksum."""
    return read_record(manifest_path(shard), "shard manifest", ("npz_sha256",))


def write_group_record(path: str | Path, shards: list[Path]) -> None:
    """Once every shard of a job's group is written: their names and checksums, the job's one output
    (a job writes several shards, but Snakemake declares a fixed set of files per rule). The job has just
    written or verified each shard, so the checksums are read from the manifests, not computed again."""
    entries = []
    for shard in shards:
        try:
            sha = read_manifest(shard)["npz_sha256"]
        except UserError as exc:
            raise UserError(f"the group is not complete: {exc}") from exc
        entries.append({"file": shard.name, "npz_sha256": sha})
    atomic_write_text(path, json.dumps({"shards": entries}, indent=2) + "\n")


def _group_entries(path: str | Path) -> list[tuple[Path, str]]:
    try:
        entries = json.loads(Path(path).read_text())["shards"]
        return [(Path(path).parent / entry["file"], entry["npz_sha256"]) for entry in entries]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a shard group record: {exc}") from exc


def group_shards(path: str | Path) -> list[Path]:
    """The shards a group record lists (they lie beside it), in order."""
    return [shard for shard, _ in _group_entries(path)]


def is_group_record(path: Path) -> bool:
    return path.suffix == ".json" and path.name.startswith("shards_")


def outputs_verified(outputs: list[Path]) -> bool:
    """Whether a job's outputs are still what it wrote: each shard (an npz whose manifest is also an
    output) matches its manifest, and each group record's shards match the record and their manifests."""
    for path in outputs:
        if path.suffix == ".npz" and manifest_path(path) in outputs and not shard_verified(path):
            return False
        if is_group_record(path):
            try:
                entries = _group_entries(path)
            except UserError:
                return False
            if any(_recorded_sha256(shard) != sha for shard, sha in entries):
                return False
    return True


def check_images(images: np.ndarray, source: str) -> None:
    """ADM's image layout: ``arr_0`` uint8 [N, H, W, 3]."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise UserError(f"{source}: arr_0 must be uint8 [N, H, W, 3], got {images.dtype} {images.shape}")


def check_shard_arrays(images: np.ndarray, conditions: dict[str, np.ndarray], source: str) -> None:
    """ADM's images, labels (``arr_1``, when present) int64 [N], every condition array one row per image."""
    check_images(images, source)
    labels = conditions.get("arr_1")
    if labels is not None and (labels.dtype != np.int64 or labels.shape != (images.shape[0],)):
        raise UserError(
            f"{source}: arr_1 must be int64 [{images.shape[0]}], got {labels.dtype} {labels.shape}"
        )
    for name, array in conditions.items():
        if array.shape[:1] != images.shape[:1]:
            raise UserError(f"{source}: {name} has {array.shape[:1]} rows, arr_0 {images.shape[0]} images")


def read_shard(path: str | Path, verify: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Images and labels (None for shards without class labels) of a shard; with ``verify``, the npz
    must match its manifest's checksum."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"shard not found: {path}")
    if verify:
        mpath = manifest_path(path)
        if not mpath.is_file():
            raise UserError(f"{path}: manifest {mpath.name} missing (incomplete shard)")
        if read_manifest(path)["npz_sha256"] != sha256_file(path):
            raise UserError(f"{path}: checksum differs from its manifest (corrupt or replaced shard)")
    try:
        with np.load(path, allow_pickle=False) as data:
            images = data["arr_0"]
            labels = data["arr_1"] if "arr_1" in data.files else None
    except Exception as exc:
        raise UserError(f"{path}: not a readable ADM-layout npz (arr_0 [, arr_1]): {exc}") from exc
    check_shard_arrays(images, {} if labels is None else {"arr_1": labels}, str(path))
    return images, labels
