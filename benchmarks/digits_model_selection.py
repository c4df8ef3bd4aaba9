"""Pick the embedded digits generator's size and training length by held-out loss.

Trains each candidate (width, depth, steps) from the same seed on the same split and prints the train
and held-out per-token loss (nats) and the step of the best held-out loss. The default in
``softcfg.training.digits`` is the winner that fits the 3-minute CPU training budget.

    python benchmarks/digits_model_selection.py
"""

from __future__ import annotations

import argparse

from softcfg.data.digits import split_digits
from softcfg.models.digits import DigitsARConfig
from softcfg.training.digits import ARTraining, train_digits_ar

CANDIDATES = [
    (DigitsARConfig(dim=64, depth=2), 2400),
    (DigitsARConfig(dim=64, depth=4), 1600),
    (DigitsARConfig(dim=96, depth=3), 1200),
    (DigitsARConfig(dim=128, depth=2), 1200),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    split = split_digits(args.seed)
    header = ("dim", "depth", "params", "steps", "best", "train", "heldout", "sec")
    print(" ".join(f"{h:>7}" for h in header))
    for config, steps in CANDIDATES:
        _, r = train_digits_ar(split, config, ARTraining(steps=steps), args.seed)
        print(
            f"{config.dim:>7} {config.depth:>7} {r['parameters']:>7} {steps:>7} {r['best_step']:>7} "
            f"{r['train_loss']:>7.4f} {r['heldout_loss']:>7.4f} {r['seconds']:>7.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
