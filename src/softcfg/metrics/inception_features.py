"""Inception features of image sets: one file per sample shard (a workflow job each), merged by the
metrics step, and the features of an ADM reference batch, cached under its checksum and the weights'.

A features file holds, per image, float32 pool_3 features (FID, precision/recall, KID), float32 sFID
features (``mixed_6/conv``, 2023 values) and, when the weights have the head, float32 IS logits: about
8 MB per 500 images, where float64 sums and outer-product sums took 70 MB. Mean and covariance are computed
once, when the metrics step reads the shards, in float64 and shard by shard (never all sFID features in
memory at once). torch-fidelity's own feature cache keys on names only, so it is not used.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import torch

from softcfg.io.atomic import sha256_file
from softcfg.io.shards import check_images, npz_headers, write_npz
from softcfg.metrics.adm import PR_NEIGHBOURS
from softcfg.metrics.images_dataset import ImagesDataset
from softcfg.metrics.inception import (
    EXTRACTOR,
    LOGITS,
    NUM_LOGITS,
    POOL,
    SPATIAL,
    SPATIAL_DIM,
    InceptionWeights,
)
from softcfg.metrics.suite import FeatureSet, Gaussian
from softcfg.options import UserError

POOL_DIM = 2048
# The features files' layout, recorded in their meta and in the reference cache's file names. Layout 1
# (no ``layout`` in the meta) held float64 moment sums instead of the sFID features; it is refused.
FEATURES_LAYOUT = 2
NO_HEAD = "the Inception weights in use have no softmax head (give metrics.inception_weights / --weights)"
# Statistics an ADM reference batch may carry, with their shapes.
REFERENCE_STATS = {
    "mu": (POOL_DIM,),
    "sigma": (POOL_DIM, POOL_DIM),
    "mu_s": (SPATIAL_DIM,),
    "sigma_s": (SPATIAL_DIM, SPATIAL_DIM),
}
# Rows centred and multiplied at a time: bounds the float64 copy when one array holds a whole set.
MOMENT_CHUNK = 5000


def extract(
    images: np.ndarray, weights: InceptionWeights, batch_size: int = 64, device: str = "cpu"
) -> dict[str, np.ndarray]:
    """pool_3 features, IS logits (when available) and the sFID tensor of uint8 NHWC images: on a GPU
    by ``extract_batched``, on the CPU through torch-fidelity's loop."""
    from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

    cuda = device.startswith("cuda")
    if cuda:
        return extract_batched(images, weights, batch_size, device)
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


def extract_batched(
    images: np.ndarray, weights: InceptionWeights, batch_size: int = 500, device: str = "cpu"
) -> dict[str, np.ndarray]:
    """``extract`` without torch-fidelity's per-image data loader: whole uint8 batches go to the device
    as they are (4x fewer bytes than float), pinned and asynchronous on a GPU, and the extractor's
    own TF1 bilinear resize and scaling run there. The same network and arithmetic as ``extract``: equal
    features up to the convolutions' summation order at another batch size."""
    from torch_fidelity.utils import create_feature_extractor

    target = torch.device(device)
    names = [POOL, SPATIAL] + ([LOGITS] if weights.has_logits else [])
    extractor = create_feature_extractor(
        EXTRACTOR, names, cuda=False, feature_extractor_weights_path=str(weights.path), verbose=False
    ).to(target)
    dims = {POOL: POOL_DIM, SPATIAL: SPATIAL_DIM, LOGITS: NUM_LOGITS}
    out = {name: np.empty((images.shape[0], dims[name]), np.float32) for name in names}
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # as in ``extract``
    try:
        with torch.inference_mode():
            for start in range(0, images.shape[0], batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
                if target.type == "cuda":
                    batch = batch.pin_memory()
                batch = batch.to(target, non_blocking=True).permute(0, 3, 1, 2).contiguous()  # NCHW
                for name, value in zip(names, extractor(batch), strict=True):
                    out[name][start : start + batch.shape[0]] = value.cpu().numpy()
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    return out


class CentredMoments:
    """Running float64 mean and centred scatter sum (x - mean)^T (x - mean), fed chunk by chunk.

    Each chunk is centred on its own mean before the product and chunks are combined with Chan, Golub
    and LeVeque's pairwise update, so there is no ``sum x x^T - n mu mu^T`` cancellation and memory stays
    at one chunk plus one D x D matrix whatever the number of rows. Chunks are ``MOMENT_CHUNK``
    consecutive rows of the whole sequence, whatever the parts it is added in: the statistics, to the
    last bit, do not depend on how the images were split into shards or shards into jobs.
    """

    def __init__(self) -> None:
        self.n = 0
        self.mean: np.ndarray | None = None
        self.scatter: np.ndarray | None = None
        self.pending: list[np.ndarray] = []  # rows not yet making a whole chunk

    def add(self, rows: np.ndarray) -> None:
        self.pending.append(rows)
        buffered = sum(len(r) for r in self.pending)
        if buffered < MOMENT_CHUNK:
            return
        rows = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending)
        whole = buffered - buffered % MOMENT_CHUNK
        self.pending = [rows[whole:]] if whole < buffered else []
        for start in range(0, whole, MOMENT_CHUNK):
            self._merge(rows[start : start + MOMENT_CHUNK])

    def _merge(self, rows: np.ndarray) -> None:
        x = rows.astype(np.float64)  # a copy: centred in place below
        m = x.shape[0]
        mean = x.mean(axis=0)
        x -= mean
        scatter = x.T @ x
        if self.mean is None or self.scatter is None:
            self.n, self.mean, self.scatter = m, mean, scatter
            return
        if mean.shape != self.mean.shape:
            raise ValueError(f"cannot merge features of dimension {mean.shape} and {self.mean.shape}")
        n = self.n + m
        delta = mean - self.mean
        self.scatter += scatter
        self.scatter += np.outer(delta, delta) * (self.n * m / n)
        self.mean = self.mean + delta * (m / n)
        self.n = n

    def gaussian(self) -> Gaussian:
        """Mean and unbiased covariance, as ``np.cov(x, rowvar=False)``."""
        if self.pending:
            self._merge(np.concatenate(self.pending))
            self.pending = []
        if self.mean is None or self.scatter is None or self.n < 2:
            raise ValueError(f"a covariance needs at least 2 samples, got {self.n}")
        return Gaussian(self.mean, self.scatter / (self.n - 1))


def features_arrays(
    images: np.ndarray, weights: InceptionWeights, meta: dict, batch_size: int, device: str
) -> dict[str, np.ndarray]:
    """One image set's features file: float32 features per image and a JSON record."""
    feats = extract(images, weights, batch_size, device)
    arrays = {"pool": feats[POOL], "spatial": feats[SPATIAL]}
    if LOGITS in feats:
        arrays["logits"] = feats[LOGITS]
    record = {
        **meta,
        "extractor": EXTRACTOR,
        "layout": FEATURES_LAYOUT,
        "weights": weights.as_dict(),
        "num_images": int(images.shape[0]),
        "image_size": list(images.shape[1:3]),
    }
    return {**arrays, "meta": np.array(json.dumps(record, sort_keys=True))}


def read_meta(path: str | Path) -> dict:
    """A features file's record, checked with the shapes and dtypes of its arrays from the npz headers
    alone (no features loaded), so a bad shard among many is named before any statistics are computed."""
    headers = npz_headers(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
    except Exception as exc:
        raise UserError(f"{path}: not a features file of this package: {exc}") from exc
    if meta.get("extractor") != EXTRACTOR:
        raise UserError(f"{path}: features of {meta.get('extractor')!r}, expected {EXTRACTOR!r}")
    if meta.get("layout") != FEATURES_LAYOUT or "pool_outer" in headers:
        command = "inception-reference" if "reference_sha256" in meta else "inception-features"
        layout = meta.get("layout", 1)
        raise UserError(
            f"{path}: Inception features in layout {layout}{' (float64 moment sums)' if layout == 1 else ''}"
            f", this version reads layout {FEATURES_LAYOUT} (float32 features per image); delete the file "
            f"and extract again (`softcfg {command}`)"
        )
    n = meta["num_images"]
    expected = {"pool": POOL_DIM, "spatial": SPATIAL_DIM}
    if meta["weights"]["has_logits"]:
        expected["logits"] = NUM_LOGITS
    for name, dim in expected.items():
        if name not in headers:
            raise UserError(f"{path}: no {name!r} array")
        shape, dtype = headers[name]
        if shape != (n, dim) or dtype != np.float32:
            raise UserError(f"{path}: {name} must be float32 [{n}, {dim}], got {dtype} {list(shape)}")
    return meta


def read_features(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    meta = read_meta(path)
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k != "meta"}
    return arrays, meta


def merged_feature_set(
    parts: Iterable[Mapping[str, np.ndarray]], provided: Mapping[str, np.ndarray] | None = None
) -> FeatureSet:
    """Consecutive parts of one image set (shards, in order) as the metrics read them: pool_3 features
    and logits concatenated, FID and sFID statistics accumulated part by part. Statistics ``provided`` by
    a reference batch (``provided_mu`` ...) win, as in ADM, and are then not computed."""
    provided = provided or {}
    moments = {
        name: CentredMoments()
        for name, mean in (("pool", "mu"), ("spatial", "mu_s"))
        if f"provided_{mean}" not in provided
    }
    pools: list[np.ndarray] = []
    logits: list[np.ndarray] = []
    for part in parts:
        pools.append(np.asarray(part["pool"], np.float32))
        if "logits" in part:
            logits.append(part["logits"])
        for name, moment in moments.items():
            moment.add(part[name])
    if not pools:
        raise ValueError("no features to merge")
    have_logits = len(logits) == len(pools)

    def gaussian(name: str, mean: str, cov: str) -> Gaussian:
        if name in moments:
            return moments[name].gaussian()
        return Gaussian(provided[f"provided_{mean}"].astype(np.float64), provided[f"provided_{cov}"])

    return FeatureSet(
        features=np.concatenate(pools),
        logits=np.concatenate(logits) if have_logits else None,
        fid=gaussian("pool", "mu", "sigma"),
        sfid=gaussian("spatial", "mu_s", "sigma_s"),
        unavailable=None if have_logits else NO_HEAD,
    )


def feature_set(arrays: Mapping[str, np.ndarray]) -> FeatureSet:
    """One features file (or ``features_arrays``' result) as the metrics read it."""
    return dataclasses.replace(merged_feature_set([arrays], arrays), spatial=lambda: [arrays["spatial"]])


def sample_feature_set(paths: list[str | Path]) -> tuple[FeatureSet, dict]:
    """Shard feature files merged in the given order, after checking (from headers and records alone)
    that every one is readable and that they belong together."""
    metas = [read_meta(p) for p in paths]
    first = metas[0]
    for path, meta in zip(paths, metas, strict=True):
        if "reference_sha256" in meta:
            raise UserError(f"{path}: reference features, not sample features")
        if meta["weights"]["sha256"] != first["weights"]["sha256"]:
            raise UserError(f"{path}: extracted with other Inception weights than {paths[0]}")
        if meta["image_size"] != first["image_size"]:
            raise UserError(
                f"{path}: images of size {meta['image_size']}, {paths[0]} has {first['image_size']}"
            )

    def parts() -> Iterator[dict[str, np.ndarray]]:
        for path in paths:  # one shard's sFID features in memory at a time
            with np.load(path, allow_pickle=False) as data:
                yield {k: data[k] for k in ("pool", "spatial", "logits") if k in data.files}

    def spatial() -> Iterator[np.ndarray]:
        for path in paths:
            with np.load(path, allow_pickle=False) as data:
                yield data["spatial"]

    features = dataclasses.replace(merged_feature_set(parts()), spatial=spatial)
    return features, {**first, "num_images": int(features.features.shape[0])}


def reference_feature_set(path: str | Path) -> tuple[FeatureSet, dict]:
    arrays, meta = read_features(path)
    if "reference_sha256" not in meta:
        raise UserError(f"{path}: sample features, not reference features")
    return feature_set(arrays), meta


def reference_layout(path: str | Path) -> tuple[int, int, int]:
    """(count, height, width) of an ADM reference batch, checked from the npz headers alone (cheap
    enough to run while the workflow builds its DAG): arr_0 uint8 NHWC with enough images for
    precision/recall, and any statistics it carries with the right shapes, in pairs."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"reference: file not found: {path}")
    headers = npz_headers(path)
    if "arr_0" not in headers:
        raise UserError(f"{path}: no arr_0 (the reference images)")
    shape, dtype = headers["arr_0"]
    if dtype != np.uint8 or len(shape) != 4 or shape[-1] != 3:
        raise UserError(f"{path}: arr_0 must be uint8 [N, H, W, 3], got {dtype} {shape}")
    if shape[0] < PR_NEIGHBOURS + 1:
        raise UserError(f"{path}: {shape[0]} images, at least {PR_NEIGHBOURS + 1} needed")
    for key, expected in REFERENCE_STATS.items():
        if key in headers and headers[key][0] != expected:
            raise UserError(f"{path}: {key} has shape {headers[key][0]}, expected {expected}")
    for mean, cov in (("mu", "sigma"), ("mu_s", "sigma_s")):
        if (mean in headers) != (cov in headers):
            raise UserError(f"{path}: {mean} and {cov} must be given together")
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
    name = f"v{FEATURES_LAYOUT}-{digest[:20]}-{weights.sha256[:20]}.npz"  # a new layout, a new key
    cached = cache_dir() / "inception-reference" / name
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
        raise UserError(f"{path}: no .npz files")
    parts = []
    for f in files:
        if not f.is_file():
            raise UserError(f"samples: file not found: {f}")
        try:
            with np.load(f, allow_pickle=False) as data:
                images = data["arr_0"]
        except Exception as exc:
            raise UserError(f"{f}: not an ADM-layout npz with arr_0: {exc}") from exc
        check_images(images, str(f))
        if parts and images.shape[1:] != parts[0].shape[1:]:
            raise UserError(f"{f}: images {images.shape[1:]} differ from {files[0]}'s {parts[0].shape[1:]}")
        parts.append(images)
    return np.concatenate(parts)
