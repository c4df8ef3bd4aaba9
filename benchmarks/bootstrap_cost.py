"""Cost of the confidence intervals (softcfg.metrics.bootstrap) on synthetic features, and of one 50k-sample
Inception run's intervals extrapolated.

Times, at the given size: FID's block moments and A T_b A products (once per run and metric), one FID
draw (merge of the blocks + one symmetric eigenvalue decomposition), one IS draw (1008 classes), and the
extra cost of precision/recall membership kept per block over ADM's plain precision/recall. The 50k
extrapolation scales moments with N D^2, the products with D^3 and the merge with D^2, takes the
eigenvalue decomposition measured at D = 2048, IS draws with N, and counts FID and sFID (D = 2023 taken as
2048). ``--full`` runs at 50,000 x 2048 itself (about 3.5 GB; precision/recall then at 10k x 10k).

    python benchmarks/bootstrap_cost.py [--samples 5000] [--dim 256] [--draws 5] [--threads 2] [--full]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy import linalg

from softcfg.config import BootstrapEntry
from softcfg.metrics import adm
from softcfg.metrics import bootstrap as bs

FULL_SAMPLES, FULL_DIM, CLASSES = 50_000, 2048, 1008


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--reference", type=int, default=2000, help="reference features (precision/recall)")
    parser.add_argument("--draws", type=int, default=5, help="draws actually timed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="50,000 x 2048 samples, 10,000 reference")
    args = parser.parse_args()
    if args.full:
        args.samples, args.dim, args.reference = FULL_SAMPLES, FULL_DIM, 10_000
    torch.set_num_threads(args.threads)
    default = BootstrapEntry()
    n, d = args.samples, args.dim
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(0.3, 0.5, size=(n, d))).astype(np.float32)
    y = np.abs(rng.normal(0.3, 0.5, size=(args.reference, d))).astype(np.float32)
    plan = bs.Resampling(resamples=args.draws, blocks=default.blocks).plan(n)
    m = len(plan.sizes)
    print(f"{n} samples x {d}, {m} blocks, {args.threads} threads, {args.draws} draws timed")

    reference = bs.FrechetReference.of(
        y.mean(0).astype(np.float64), np.cov(y.astype(np.float64), rowvar=False)
    )
    rows = [x[i : i + 5000] for i in range(0, n, 5000)]
    moments = sum(timed(lambda r=r: r.astype(np.float64).T @ r.astype(np.float64))[1] for r in rows)
    blocks, setup = timed(bs.FrechetBlocks.of, rows, plan.bounds, reference)
    _, draws = timed(blocks.values, plan.counts)
    eig = np.cov(rng.standard_normal((3 * FULL_DIM, FULL_DIM)), rowvar=False)
    eig_2048 = min(timed(lambda: linalg.eigvalsh(eig, driver="evr", check_finite=False))[1] for _ in range(3))
    fid_draw = draws / args.draws
    print(f"FID: moments and products {setup:.2f} s (moments {moments:.2f} s), {fid_draw:.3f} s per draw")

    logits = rng.standard_normal((n, CLASSES)).astype(np.float32) * 3
    score_rows, is_setup = timed(bs.ScoreRows.of, logits)
    _, is_draws = timed(score_rows.values, plan.bounds, plan.counts)
    is_draw = is_draws / args.draws
    print(f"IS: setup {is_setup:.2f} s, {is_draw:.3f} s per draw")

    _, plain = timed(adm.precision_recall, y, x)
    _, grouped = timed(
        adm.manifold_membership, y, x, adm.PR_NEIGHBOURS, adm.PR_BLOCK, False, "cpu", plan.bounds
    )
    print(f"precision/recall: {plain:.2f} s plain, {grouped:.2f} s kept per block (draws: microseconds)")

    scale_n, scale_d = FULL_SAMPLES / n, FULL_DIM / d
    products = setup - moments
    merge = max(fid_draw - eig_2048 / scale_d**3, 0.0)  # what is not the eigenvalues at this size
    full_setup = moments * scale_n * scale_d**2 + products * scale_d**3
    full_draw = merge * scale_d**2 + eig_2048
    resamples = default.resamples
    fid_total = full_setup + resamples * full_draw
    is_total = is_setup * scale_n + resamples * is_draw * scale_n
    total = 2 * fid_total + is_total
    print(f"eigenvalues at D = 2048: {eig_2048:.2f} s (best of 3)")
    print(
        f"50k x 2048, {resamples} resamples: FID {fid_total:.0f} s ({full_setup:.0f} s setup, "
        f"{full_draw:.2f} s per draw), sFID about the same, IS {is_total:.0f} s; "
        f"intervals {total:.0f} s ({total / 60:.1f} min) on {args.threads} threads, "
        f"plus per-block recall cover ({grouped / plain:.2f} x precision/recall's own time)"
    )


if __name__ == "__main__":
    main()
