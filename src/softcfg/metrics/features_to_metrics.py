"""Metrics from cached features, through torch-fidelity's metric functions.

Convention (ADM's and torch-fidelity's): precision is the share of samples inside the reference
manifold, recall the share of reference images inside the sample manifold.
"""

from __future__ import annotations

import numpy as np
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric

FID, ISC, KID, PRC = "fid", "isc", "kid", "prc"


def compute_metrics(
    samples: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    names: tuple[str, ...],
    kid_subset_size: int = 1000,
) -> dict[str, float]:
    """``samples`` / ``reference``: {"features": [N, D], "logits": [N, C]} float32 arrays."""
    f1, f2 = torch.from_numpy(samples["features"]), torch.from_numpy(reference["features"])
    out: dict[str, float] = {}
    if FID in names:
        stats1, stats2 = fid_features_to_statistics(f1), fid_features_to_statistics(f2)
        out["fid"] = fid_statistics_to_metric(stats1, stats2, verbose=False)["frechet_inception_distance"]
    if ISC in names:
        isc = isc_features_to_metric(torch.from_numpy(samples["logits"]))  # 10 splits, torch-fidelity's seed
        out["isc"], out["isc_std"] = isc["inception_score_mean"], isc["inception_score_std"]
    if KID in names:
        kid = kid_features_to_metric(f1, f2, kid_subset_size=kid_subset_size, verbose=False)
        out["kid"], out["kid_std"] = (
            kid["kernel_inception_distance_mean"],
            kid["kernel_inception_distance_std"],
        )
    if PRC in names:
        prc = prc_features_to_metric(f1, f2, save_cpu_ram=True, verbose=False)
        out["precision"], out["recall"] = prc["precision"], prc["recall"]
    return {k: float(v) for k, v in out.items()}


def class_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of samples the classifier assigns to the class they were generated for."""
    return float((logits.argmax(-1) == labels).mean())
