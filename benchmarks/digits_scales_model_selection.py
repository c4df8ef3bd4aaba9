"""Pick the embedded next-scale digits model's size and training length by held-out loss.

Trains each candidate (width, depth, steps) from the same seed on the same split and prints the train
and held-out loss (nats per token over the 85 tokens of the four scales; x 85/64 is an upper bound on
nats per pixel, comparable with the next-token model's loss), the step of the best held-out loss and the
training time (wall and CPU seconds: on a shared machine the CPU time is the one to compare). Candidates
cost about the same CPU time, sized so that the demo's training stays within 1-2 minutes on 2 cores. The
defaults of ``DigitsScalesConfig`` and ``training.digits_scales.SCALES_TRAINING`` are the winner.

    python benchmarks/digits_scales_model_selection.py --threads 1

Seed 0, one thread, on a shared 2-core machine (Dec 2026):

    dim depth params steps best  train heldout nats/px cpu s
     32     2  29777   700  700 1.3599  1.3663  1.8146  69.0
     48     2  63089   600  600 1.3176  1.3307  1.7674  67.2   <- chosen
     64     2 108689   500  500 1.3570  1.3704  1.8201  80.5
     48     3  91361   420  420 1.3943  1.4033  1.8638  69.5

Every candidate was still improving at its last step: longer training would lower the loss further; the
candidates are held to about a minute of CPU, this model's share of the demo.
"""

from __future__ import annotations

import argparse
import time

import torch

from softcfg.data.digits import IMAGE_SIDE, split_digits
from softcfg.models.digits_scales import PATCH_NUMS, DigitsScalesConfig
from softcfg.training.digits import ARTraining
from softcfg.training.digits_scales import train_digits_scales

CANDIDATES = [  # about 65 CPU seconds each on one thread
    (DigitsScalesConfig(dim=32, depth=2), 700),
    (DigitsScalesConfig(dim=48, depth=2), 600),
    (DigitsScalesConfig(dim=64, depth=2), 500),
    (DigitsScalesConfig(dim=48, depth=3), 420),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    split = split_digits(args.seed)
    per_pixel = sum(p * p for p in PATCH_NUMS) / IMAGE_SIDE**2
    header = ("dim", "depth", "params", "steps", "best", "train", "heldout", "nats/px", "sec", "cpu s")
    print(" ".join(f"{h:>7}" for h in header))
    for config, steps in CANDIDATES:
        cpu = time.process_time()
        _, r = train_digits_scales(split, config, ARTraining(steps=steps), args.seed)
        cpu = time.process_time() - cpu
        print(
            f"{config.dim:>7} {config.depth:>7} {r['parameters']:>7} {steps:>7} {r['best_step']:>7} "
            f"{r['train_loss']:>7.4f} {r['heldout_loss']:>7.4f} {r['heldout_loss'] * per_pixel:>7.4f} "
            f"{r['seconds']:>7.1f} {cpu:>7.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
