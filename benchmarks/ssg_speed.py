"""What SSG and SoftCFG cost over CFG on a next-scale model, measured interleaved in one run.

A random model shaped like VAR-d16 (width 1024, depth 16, heads 16, scales 1 .. 16: 680 tokens, codebook
4096; ``--depth`` scales it as upstream's sizes do) samples a batch with CFG, CFG + SSG and SoftCFG at
VAR's FID settings (cfg 1.5 ramped over the scales, top-k 900, top-p 0.96), round after round in an order
reversed every round, so a drift in machine speed hits every method alike. Prints seconds per generation
per method (median over rounds), the range and the median of the per-round time ratios to CFG.

    python benchmarks/ssg_speed.py [--depth 16] [--batch 2] [--rounds 3] [--threads N] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from softcfg.conditioning import ClassLabels
from softcfg.methods import parse_method
from softcfg.models.var import VAR, VARConfig
from softcfg.models.var_vqvae import VQVAE
from softcfg.sampling.loop import generate

CFG = {"name": "cfg", "gamma": 2.5, "schedule": "ramp", "top_k": 900, "top_p": 0.96}
METHODS = {
    "cfg": CFG,
    "ssg": {**CFG, "ssg": {"beta": 1.0, "prior": "dse"}},
    "softcfg": {**CFG, "name": "softcfg"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=16, help="VAR-d<depth>: width 64 x depth, heads = depth")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    config = VARConfig(64 * args.depth, args.depth, args.depth)
    model = VAR(config, VQVAE(config.vae)).to(args.device).eval()
    labels = ClassLabels(torch.arange(args.batch, device=args.device) % model.num_classes)
    methods = {name: parse_method(spec) for name, spec in METHODS.items()}

    def run(name: str) -> float:
        generator = torch.Generator(device=args.device).manual_seed(0)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        generate(model, labels, methods[name], generator)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    run("cfg")  # warm-up: first-call allocations
    times: dict[str, list[float]] = {name: [] for name in methods}
    order = list(methods)
    for _ in range(args.rounds):
        for name in order:
            times[name].append(run(name))
        order.reverse()

    print(
        f"model VAR-d{args.depth} (random weights), device {args.device}, threads {torch.get_num_threads()}, "
        f"batch {args.batch}, rounds {args.rounds}"
    )
    for name, ts in times.items():
        print(f"{name:<8} {statistics.median(ts):8.2f} s per generation")
    for name in ("ssg", "softcfg"):
        ratios = sorted(t / c for t, c in zip(times[name], times["cfg"], strict=True))
        print(f"per-round ratios {name}/cfg: {ratios[0]:.4f} .. {ratios[-1]:.4f} (machine noise)")
        print(f"ratio {name}/cfg {statistics.median(ratios):.4f}")


if __name__ == "__main__":
    main()
