"""GPU sampling throughput: eager vs captured decode steps, CFG vs SoftCFG + step norm, per batch size,
the fraction of the device's bf16 peak, and the Inception stage's images per second.

Random bf16 models shaped like AliTok-XL (hidden 1280, depth 32, 16 heads, SwiGLU 3584, 273 tokens,
vocabulary 4096) and LlamaGen-XL (1280, 36, 20 heads, SwiGLU 3584, 256 tokens at 256 px, vocabulary
16384) sample a batch with CFG and with SoftCFG + step norm, through the eager decode step and through
the captured one (``softcfg.models.static_decode``, ``--captured-mode``), all four interleaved round
after round (the order reversed every round), so drifts in machine speed hit each alike. Without CUDA
(or with ``--small``) the shapes shrink to a few layers of width 64, so CI can run the whole script.

FLOPs per image, counted from the model shape (a multiply-add is 2 FLOPs; norms, RoPE, softmax, biases,
SoftCFG's O(slots) weighting and sampling left out). A generation runs T forward positions per row
(prefill and T - 1 decode steps); position p (0-based) attends over p + 1 slots. Per row:

    depth * (T * 2 * (4 D^2 + 3 D F) + 4 D * T (T + 1) / 2) + T * 2 D V

(qkv 3 D^2 and output D^2 projections, the SwiGLU's three D x F matrices, q.k and p.v over the visible
slots, the vocabulary head), times 2 rows per image (conditional and unconditional). The captured step
also multiplies the masked slots; they are not counted: the fraction is of useful work.
AliTok-XL: 7.28e11 FLOPs per image; LlamaGen-XL: 7.83e11.

Peak: dense bf16 tensor-core FLOP/s of the device, from ``PEAK_TFLOPS`` by name (``--peak-tflops``
overrides; without either no fraction is printed). The last line is ``gpu images/s <x> ratio
softcfg/cfg <y>`` for the first shape (AliTok-XL by default) at its best batch size: x is the captured
SoftCFG + step norm throughput, y the time ratio of SoftCFG + step norm to CFG there (captured).

    python benchmarks/gpu_throughput.py [--small] [--shapes alitok-xl llamagen-xl] [--batches 32 128 256]
        [--rounds 3] [--captured-mode captured|compiled] [--peak-tflops 989] [--inception-images 2000]
"""

from __future__ import annotations

import argparse
import copy
import gc
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from softcfg.conditioning import ClassLabels
from softcfg.methods import parse_method
from softcfg.models import alitok, llamagen
from softcfg.models.base import ARModel
from softcfg.models.layers import find_multiple
from softcfg.models.static_decode import enable_static_decode
from softcfg.sampling.loop import generate

# Dense bf16 tensor-core TFLOP/s from the vendors' datasheets, matched in order against the device name.
PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0), ("L40S", 362.0))
METHODS = {
    "cfg": {"name": "cfg", "gamma": 4.0, "k": 1.0},
    "softcfg+stepnorm": {"name": "softcfg", "gamma": 4.0, "k": 1.0, "step_norm": True},
}
GPU_BATCHES = (32, 128, 256, 512)
SMALL_BATCHES = (2, 4)


@dataclass(frozen=True)
class Shape:
    name: str
    family: str
    dim: int
    depth: int
    heads: int
    image_size: int = 256  # LlamaGen only

    def build(self) -> ARModel:
        if self.family == "alitok":
            return alitok.AliTok(alitok.AliTokConfig(self.dim, self.depth, self.heads))
        return llamagen.LlamaGen(llamagen.LlamaGenConfig(self.dim, self.depth, self.heads, self.image_size))


SHAPES = {
    "alitok-xl": Shape("AliTok-XL", "alitok", 1280, 32, 16),
    "llamagen-xl": Shape("LlamaGen-XL", "llamagen", 1280, 36, 20),
}
SMALL_SHAPES = {  # the same families, a few layers; LlamaGen at 128 px (64 tokens)
    "alitok-xl": Shape("AliTok-small", "alitok", 64, 2, 4),
    "llamagen-xl": Shape("LlamaGen-small", "llamagen", 64, 2, 4, 128),
}


def flops_per_image(model: ARModel, dim: int, depth: int) -> float:
    """The module docstring's count for ``model`` (its tokens and vocabulary) at width ``dim``."""
    tokens, vocab, ffn = model.num_tokens, model.vocab_size, find_multiple(int(2 * 4 * dim / 3), 256)
    per_row = depth * (tokens * 2 * (4 * dim**2 + 3 * dim * ffn) + 4 * dim * tokens * (tokens + 1) / 2)
    return 2 * (per_row + tokens * 2 * dim * vocab)


def cache_bytes_per_image(model: ARModel, dim: int, depth: int) -> int:
    """bf16 k and v of every layer and slot for the two rows of a CFG image."""
    return 2 * depth * 2 * model.num_slots * dim * 2


def peak_tflops(device: torch.device, override: float | None) -> tuple[float | None, str]:
    if override is not None:
        return override, "--peak-tflops"
    if device.type != "cuda":
        return None, "unknown for the CPU; give --peak-tflops"
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_TFLOPS:
        if key in name:
            return value, f"{key} (table)"
    return None, f"unknown for {name}; give --peak-tflops"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_generation(model: ARModel, labels: ClassLabels, method, device: torch.device) -> float:
    generator = torch.Generator(device=device).manual_seed(0)
    synchronize(device)
    start = time.perf_counter()
    generate(model, labels, method, generator)
    synchronize(device)
    return time.perf_counter() - start


def bench_shape(
    shape: Shape, batches: Sequence[int], rounds: int, mode: str, device: torch.device, peak: float | None
) -> tuple[int, float, float]:
    """Print the shape's table; returns (best batch, captured SoftCFG images/s, softcfg/cfg ratio) there."""
    torch.manual_seed(0)
    model = shape.build().to(device=device, dtype=torch.bfloat16).eval()
    flops = flops_per_image(model, shape.dim, shape.depth)
    print(f"{shape.name}: {flops:.3g} FLOPs per image (CFG rows), {model.num_tokens} tokens")
    methods = {name: parse_method(m) for name, m in METHODS.items()}
    if device.type == "cuda":  # the eager caches and the captured model's kept ones coexist
        budget = 0.7 * torch.cuda.get_device_properties(device).total_memory
        fits = [b for b in batches if 2 * b * cache_bytes_per_image(model, shape.dim, shape.depth) <= budget]
        if len(fits) < len(batches):
            print(f"  batches {sorted(set(batches) - set(fits))} skipped: their KV caches exceed the memory")
        batches = fits or [min(batches)]
    results: dict[int, tuple[float, float]] = {}
    for batch in batches:
        labels = ClassLabels(torch.arange(batch, device=device) % model.num_classes)
        captured = enable_static_decode(copy.deepcopy(model), mode)  # type: ignore[arg-type]
        runs = {
            (decode, name): (m, method)
            for decode, m in (("eager", model), (mode, captured))
            for name, method in methods.items()
        }
        for m, method in runs.values():  # warm-up: capture / compile, allocator
            time_generation(m, labels, method, device)
        times: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
        order = list(runs)
        for _ in range(rounds):
            for key in order:
                m, method = runs[key]
                times[key].append(time_generation(m, labels, method, device))
            order.reverse()
        for (decode, name), ts in times.items():
            ips = batch / statistics.median(ts)
            fraction = f", {100 * ips * flops / (peak * 1e12):.1f} % of peak" if peak else ""
            print(f"  batch {batch:4d} {decode:9s} {name:17s} {ips:10.2f} images/s{fraction}")
        speedup = [
            e / c
            for e, c in zip(times["eager", "softcfg+stepnorm"], times[mode, "softcfg+stepnorm"], strict=True)
        ]
        ratio = [s / c for s, c in zip(times[mode, "softcfg+stepnorm"], times[mode, "cfg"], strict=True)]
        print(
            f"  batch {batch:4d} {mode}/eager speed-up {statistics.median(speedup):.3f}, "
            f"softcfg/cfg time ratio ({mode}) {statistics.median(ratio):.4f}"
        )
        results[batch] = (
            batch / statistics.median(times[mode, "softcfg+stepnorm"]),
            statistics.median(ratio),
        )
        del captured, runs
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    best = max(results, key=lambda b: results[b][0])
    return best, *results[best]


def bench_inception(count: int, batch_size: int, device: torch.device) -> None:
    """Images per second of the metric stage's feature extraction (uint8 256 px images in)."""
    from softcfg.metrics.inception import resolve_weights
    from softcfg.metrics.inception_features import extract_batched

    try:
        weights = resolve_weights()
    except ValueError as exc:
        print(f"inception: skipped ({exc})")
        return
    images = np.random.default_rng(0).integers(0, 256, (count, 256, 256, 3), dtype=np.uint8)
    extract_batched(images[:batch_size], weights, batch_size, str(device))  # warm-up
    synchronize(device)
    start = time.perf_counter()
    extract_batched(images, weights, batch_size, str(device))
    synchronize(device)
    print(f"inception: {count / (time.perf_counter() - start):.2f} images/s (batch {batch_size}, {device})")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny shapes (automatic without CUDA)")
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--batches", nargs="+", type=int, default=None, help="sampled images per batch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--captured-mode", choices=["captured", "compiled"], default="captured")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak")
    parser.add_argument("--inception-images", type=int, default=None, help="0 skips the Inception stage")
    parser.add_argument("--inception-batch", type=int, default=None)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    small = args.small or device.type != "cuda"
    batches = args.batches or (SMALL_BATCHES if small else GPU_BATCHES)
    if min(batches) < 1 or args.rounds < 1:
        parser.error("--batches and --rounds must be positive")
    peak, source = peak_tflops(device, args.peak_tflops)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}, bf16 peak {f'{peak:g} TFLOP/s' if peak else 'n/a'} ({source})")
    summary = []
    for key in args.shapes:
        shape = (SMALL_SHAPES if small else SHAPES)[key]
        summary.append(bench_shape(shape, batches, args.rounds, args.captured_mode, device, peak))
    count = args.inception_images if args.inception_images is not None else (4 if small else 2000)
    if count > 0:
        bench_inception(count, args.inception_batch or (2 if small else 500), device)
    best, images_per_s, ratio = summary[0]
    print(f"best batch {best} for {args.shapes[0]}")
    print(f"gpu images/s {images_per_s:.2f} ratio softcfg/cfg {ratio:.4f}")


if __name__ == "__main__":
    main()
