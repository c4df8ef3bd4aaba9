"""Inception features of image sets: one file per sample shard (a workflow job each), merged exactly, and
the features of an ADM reference batch, cached under its checksum and the weights' checksum.

A shard's file holds pool_3 features (precision/recall, KID), IS logits when the weights have the head,
and float64 sums / outer-product sums of pool_3 and of the sFID tensor, so that statistics of any set of
shards are their exact sum. torch-fidelity's own feature cache keys on names only, so it is not used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from softcfg.io.atomic import sha256_file
from softcfg.io.shards import check_images, npz_headers, write_npz
from softcfg.metrics.adm import PR_NEIGHBOURS, MomentSums, merge
from softcfg.metrics.images_dataset import ImagesDataset
from softcfg.metrics.inception import (
    EXTRACTOR,
    LOGITS,
    POOL,
    SPATIAL,
    SPATIAL_DIM,
    InceptionWeights,
)
from softcfg.metrics.suite import FeatureSet, Gaussian

POOL_DIM = 2048
NO_HEAD = "the Inception weights in use have no softmax head (give metrics.inception_weights / --weights)"
# Statistics an ADM reference batch may carry, with their shapes.
REFERENCE_STATS = {
    "mu": (POOL_DIM,),
    "sigma": (POOL_DIM, POOL_DIM),
    "mu_s": (SPATIAL_DIM,),
    "sigma_s": (SPATIAL_DIM, SPATIAL_DIM),
}


def extract(
    images: np.ndarray, weights: InceptionWeights, batch_size: int = 64, device: str = "cpu"
) -> dict[str, np.ndarray]:
    """pool_3 features, IS logits (when available) and the sFID tensor of uint8 NHWC images."""
    from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

    cuda = device.startswith("cuda")
    names = [POOL, SPATIAL] + ([LOGITS] if weights.has_logits else [])
    extractor = create_feature_extractor(
        EXTRACTOR, names, cuda=cuda, feature_extractor_weights_path=str(weights.path), verbose=False
    )
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # TF32 convolutions move features by ~1e-3: not for FID
    try:
        feats = get_featuresdict_from_dataset(
            ImagesDataset(images), extractor, batch_size, cuda=cuda, save_cpu_ram=True, verbose=False
        )
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    return {name: value.numpy().astype(np.float32) for name, value in feats.items()}


def _sums(prefix: str, sums: MomentSums) -> dict[str, np.ndarray]:
    return {f"{prefix}_n": np.array(sums.n), f"{prefix}_sum": sums.sum, f"{prefix}_outer": sums.outer}


def _read_sums(arrays: dict[str, np.ndarray], prefix: str) -> MomentSums:
    return MomentSums(int(arrays[f"{prefix}_n"]), arrays[f"{prefix}_sum"], arrays[f"{prefix}_outer"])


def features_arrays(
    images: np.ndarray, weights: InceptionWeights, meta: dict, batch_size: int, device: str
) -> dict[str, np.ndarray]:
    feats = extract(images, weights, batch_size, device)
    arrays = {"pool": feats[POOL], **_sums("pool", MomentSums.of(feats[POOL]))}
    arrays.update(_sums("spatial", MomentSums.of(feats[SPATIAL])))
    if LOGITS in feats:
        arrays["logits"] = feats[LOGITS]
    record = {
        **meta,
        "extractor": EXTRACTOR,
        "weights": weights.as_dict(),
        "num_images": int(images.shape[0]),
        "image_size": list(images.shape[1:3]),
    }
    return {**arrays, "meta": np.array(json.dumps(record, sort_keys=True))}


def read_features(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("meta")))
    except Exception as exc:
        raise ValueError(f"{path}: not a features file of this package: {exc}") from exc
    if meta.get("extractor") != EXTRACTOR:
        raise ValueError(f"{path}: features of {meta.get('extractor')!r}, expected {EXTRACTOR!r}")
    return arrays, meta


def feature_set(arrays: dict[str, np.ndarray]) -> FeatureSet:
    """Features arrays as the metrics read them; statistics a reference batch provides win, as in ADM."""

    def gaussian(mean: str, cov: str, prefix: str) -> Gaussian:
        if f"provided_{mean}" in arrays:
            return Gaussian(arrays[f"provided_{mean}"].astype(np.float64), arrays[f"provided_{cov}"])
        return Gaussian.of(_read_sums(arrays, prefix))

    return FeatureSet(
        features=arrays["pool"],
        logits=arrays.get("logits"),
        fid=gaussian("mu", "sigma", "pool"),
        sfid=gaussian("mu_s", "sigma_s", "spatial"),
        unavailable=None if "logits" in arrays else NO_HEAD,
    )


def merge_arrays(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Shards' features concatenated in order and their sums added (exact statistics of the union)."""
    merged = {"pool": np.concatenate([p["pool"] for p in parts])}
    if all("logits" in p for p in parts):
        merged["logits"] = np.concatenate([p["logits"] for p in parts])
    for prefix in ("pool", "spatial"):
        merged.update(_sums(prefix, merge([_read_sums(p, prefix) for p in parts])))
    return merged


def sample_feature_set(paths: list[str | Path]) -> tuple[FeatureSet, dict]:
    """Shard feature files merged in the given order, after checking they belong together."""
    parts = [read_features(p) for p in paths]
    first = parts[0][1]
    for path, (_, meta) in zip(paths, parts, strict=True):
        if "reference_sha256" in meta:
            raise ValueError(f"{path}: reference features, not sample features")
        if meta["weights"]["sha256"] != first["weights"]["sha256"]:
            raise ValueError(f"{path}: extracted with other Inception weights than {paths[0]}")
        if meta["image_size"] != first["image_size"]:
            raise ValueError(
                f"{path}: images of size {meta['image_size']}, {paths[0]} has {first['image_size']}"
            )
    merged = merge_arrays([arrays for arrays, _ in parts])
    meta = {**first, "num_images": int(merged["pool"].shape[0])}
    return feature_set(merged), meta


def reference_feature_set(path: str | Path) -> tuple[FeatureSet, dict]:
    arrays, meta = read_features(path)
    if "reference_sha256" not in meta:
        raise ValueError(f"{path}: sample features, not reference features")
    return feature_set(arrays), meta


def reference_layout(path: str | Path) -> tuple[int, int, int]:
    """(count, height, width) of an ADM reference batch, checked from the npz headers alone (cheap
    enough to run while the workflow builds its DAG): arr_0 uint8 NHWC with enough images for
    precision/recall, and any statistics it carries with the right shapes, in pairs."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"reference: file not found: {path}")
    headers = npz_headers(path)
    if "arr_0" not in headers:
        raise ValueError(f"{path}: no arr_0 (the reference images)")
    shape, dtype = headers["arr_0"]
    if dtype != np.uint8 or len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"{path}: arr_0 must be uint8 [N, H, W, 3], got {dtype} {shape}")
    if shape[0] < PR_NEIGHBOURS + 1:
        raise ValueError(f"{path}: {shape[0]} images, at least {PR_NEIGHBOURS + 1} needed")
    for key, expected in REFERENCE_STATS.items():
        if key in headers and headers[key][0] != expected:
            raise ValueError(f"{path}: {key} has shape {headers[key][0]}, expected {expected}")
    for mean, cov in (("mu", "sigma"), ("mu_s", "sigma_s")):
        if (mean in headers) != (cov in headers):
            raise ValueError(f"{path}: {mean} and {cov} must be given together")
    return shape[0], shape[1], shape[2]


def read_reference(path: str | Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """An ADM reference batch, checked first: images (``arr_0``) and the statistics it carries."""
    reference_layout(path)
    with np.load(path, allow_pickle=False) as data:
        return data["arr_0"], {k: data[k] for k in REFERENCE_STATS if k in data.files}


def cache_dir() -> Path:
    """``$SOFTCFG_CACHE``, else ``$XDG_CACHE_HOME/softcfg``, else ``~/.cache/softcfg``."""
    if os.environ.get("SOFTCFG_CACHE"):
        return Path(os.environ["SOFTCFG_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "softcfg"


def reference_arrays(
    path: str | Path, weights: InceptionWeights, batch_size: int = 64, device: str = "cpu"
) -> dict[str, np.ndarray]:
    """Features of a reference batch, from the cache when this file and these weights were seen before."""
    images, stats = read_reference(path)
    digest = sha256_file(path)
    cached = cache_dir() / "inception-reference" / f"{digest[:20]}-{weights.sha256[:20]}.npz"
    if cached.is_file():
        arrays, meta = read_features(cached)
        if meta.get("reference_sha256") == digest and meta["weights"]["sha256"] == weights.sha256:
            return {**arrays, "meta": np.array(json.dumps(meta, sort_keys=True))}
    meta = {"reference": Path(path).name, "reference_sha256": digest, "provided_statistics": sorted(stats)}
    arrays = features_arrays(images, weights, meta, batch_size, device)
    arrays = {**arrays, **{f"provided_{k}": v for k, v in stats.items()}}
    write_npz(cached, arrays)
    return arrays


def load_images(path: str | Path) -> np.ndarray:
    """``arr_0`` of an ADM-layout npz, or of every ``*.npz`` in a folder (sorted by name), checked."""
    path = Path(path)
    files = sorted(path.glob("*.npz")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"{path}: no .npz files")
    parts = []
    for f in files:
        if not f.is_file():
            raise ValueError(f"samples: file not found: {f}")
        try:
            with np.load(f, allow_pickle=False) as data:
                images = data["arr_0"]
        except Exception as exc:
            raise ValueError(f"{f}: not an ADM-layout npz with arr_0: {exc}") from exc
        check_images(images, str(f))
        if parts and images.shape[1:] != parts[0].shape[1:]:
            raise ValueError(f"{f}: images {images.shape[1:]} differ from {files[0]}'s {parts[0].shape[1:]}")
        parts.append(images)
    return np.concatenate(parts)
