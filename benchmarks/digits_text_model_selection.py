"""Pick the embedded text-to-scene model's size and training length by held-out loss.

Trains each candidate (width, depth, steps, learning rate) from the same seed on the same scenes and
prints the train and held-out per-token loss (nats; 68 tokens a scene) and the step of the best held-out
loss. The defaults in ``softcfg.models.digits_text`` and ``softcfg.training.digits_text`` are the best
held-out loss within the demo's training budget (about two minutes of one CPU thread).

    python benchmarks/digits_text_model_selection.py --threads 1

Measured (seed 0, one thread on a shared 2-core machine, so seconds are inflated by other load):

        dim  depth  params  steps      lr   best   train  heldout     sec
         64      3  166406   1000   0.002   1000  0.7721   0.8568   422.4
         64      3  166406   1500   0.002   1500  0.6369   0.8063   283.2
         64      3  166406   1500   0.004    700  0.6104   0.8058   203.5
         96      3  360166   1200   0.002    900  0.5339   0.8098   162.8
         64      3  166406    800   0.004    800  0.6649   0.8049    85.1
         64      3  166406   1000   0.004   1000  0.5849   0.7980   147.4   <- the default
         64      3  166406    600   0.006    600  0.7913   0.8728    78.3

Longer training overfits the 1437 training digits (the 1500-step run at 0.004 was best at step 700).
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from softcfg.models.digits_text import DigitsTextConfig
from softcfg.training.digits_text import TextTraining, train_digits_text

CANDIDATES = [
    (DigitsTextConfig(dim=64, depth=3), TextTraining(steps=1000, lr=2e-3)),
    (DigitsTextConfig(dim=64, depth=3), TextTraining(steps=1500, lr=2e-3)),
    (DigitsTextConfig(dim=64, depth=3), TextTraining(steps=1500, lr=4e-3)),
    (DigitsTextConfig(dim=96, depth=3), TextTraining(steps=1200, lr=2e-3)),
    (DigitsTextConfig(dim=64, depth=3), TextTraining(steps=800, lr=4e-3)),
    (DigitsTextConfig(dim=64, depth=3), TextTraining(steps=1000, lr=4e-3)),
    (DigitsTextConfig(dim=64, depth=3), TextTraining(steps=600, lr=6e-3)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    header = ("dim", "depth", "params", "steps", "lr", "best", "train", "heldout", "sec")
    print(" ".join(f"{h:>7}" for h in header))
    for config, training in CANDIDATES:
        training = dataclasses.replace(training, eval_every=100)
        _, r = train_digits_text(config, training, args.seed)
        print(
            f"{config.dim:>7} {config.depth:>7} {r['parameters']:>7} {training.steps:>7} {training.lr:>7g} "
            f"{r['best_step']:>7} {r['train_loss']:>7.4f} {r['heldout_loss']:>7.4f} {r['seconds']:>7.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
