"""Cost of the ADM metric suite on this machine, and the metric step for 50k samples extrapolated.

Measures: Inception features per second (256 px images, real weights); wall time and peak memory of
precision/recall at 20k samples x 10k reference features (2048-d), float32 and float16 blocks
interleaved; the Frechet distance at d = 2048 (FID) and d = 2023 (sFID). Peak memory is the growth of
the process's maximum resident set during the precision/recall call, measured in a fresh child process.
``--pr-only`` times precision/recall alone (no Inception weights needed).

    python benchmarks/metrics_speed.py [--images 32] [--threads 2] [--rounds 2] [--pr-only]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

import numpy as np
import torch

from softcfg.metrics import adm

SAMPLES, REFERENCE, DIM = 20_000, 10_000, 2048


def _features(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.abs(rng.normal(0.3, 0.5, size=(n, DIM))).astype(np.float32)


def _pr_child(float16: bool, threads: int, out: mp.Queue) -> None:
    torch.set_num_threads(threads)
    ref, smp = _features(REFERENCE, 0), _features(SAMPLES, 1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    adm.precision_recall(ref, smp, mode="float16" if float16 else "float32")
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    out.put((seconds, peak / 1024))  # ru_maxrss is in KiB on Linux


def precision_recall_cost(float16: bool, threads: int) -> tuple[float, float]:
    queue: mp.Queue = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=_pr_child, args=(float16, threads, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def features_per_second(images: int, threads: int) -> float:
    from softcfg.metrics.inception import resolve_weights
    from softcfg.metrics.inception_features import extract

    torch.set_num_threads(threads)
    weights = resolve_weights()
    batch = np.random.default_rng(0).integers(0, 256, size=(images, 256, 256, 3), dtype=np.uint8)
    extract(batch[:2], weights, batch_size=2)  # warm-up
    start = time.perf_counter()
    extract(batch, weights, batch_size=16)
    return images / (time.perf_counter() - start)


def frechet_seconds(dim: int) -> float:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(dim + 100, dim)), rng.normal(size=(dim + 100, dim))
    stats = [(x.mean(0), np.cov(x, rowvar=False)) for x in (a, b)]
    start = time.perf_counter()
    adm.frechet_distance(*stats[0], *stats[1])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pr-only", action="store_true", help="time precision/recall only")
    args = parser.parse_args()

    if not args.pr_only:
        rate = features_per_second(args.images, args.threads)
        print(f"inception features per second (256 px, {args.threads} threads) {rate:.2f}")
    times: dict[bool, list[float]] = {False: [], True: []}
    peaks: dict[bool, list[float]] = {False: [], True: []}
    for r in range(args.rounds):  # ABBA: float32, float16, float16, float32, ...
        for float16 in (False, True) if r % 2 == 0 else (True, False):
            seconds, peak = precision_recall_cost(float16, args.threads)
            times[float16].append(seconds)
            peaks[float16].append(peak)
    for float16, label in ((False, "float32"), (True, "float16")):
        print(
            f"precision/recall {SAMPLES}x{REFERENCE} {label}: {np.median(times[float16]):.1f} s, "
            f"peak memory +{max(peaks[float16]):.0f} MiB"
        )
    ratio = np.median(times[True]) / np.median(times[False])
    print(f"ratio pr float16/float32 {ratio:.3f}")
    if args.pr_only:
        return
    fid, sfid = frechet_seconds(2048), frechet_seconds(2023)
    print(f"frechet distance d=2048 {fid:.1f} s, d=2023 {sfid:.1f} s")

    # 50k samples against a 10k reference: distance work scales with Ns^2 + Nr^2 + Ns Nr (each
    # reference x sample block once, read for both precision and recall)
    work = lambda ns, nr: ns * ns + nr * nr + ns * nr  # noqa: E731
    pr_50k = np.median(times[False]) * work(50_000, REFERENCE) / work(SAMPLES, REFERENCE)
    metric_step = pr_50k + fid + sfid
    print(f"extrapolated metric step for 50k samples (precision/recall + FID + sFID) {metric_step:.0f} s")
    print(f"extrapolated Inception features for 50k samples on this CPU {50_000 / rate / 3600:.1f} h")


if __name__ == "__main__":
    main()
