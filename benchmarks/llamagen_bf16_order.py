"""How far LlamaGen's SoftCFG steps are from upstream's attention order in bf16, next to bf16's own error.

Unweighted steps (CFG, none, SoftCFG before its first weight or at strength 0) attend as upstream does
(``masked_cache_attention``: SDPA over the static cache; ``tests/test_llamagen.py`` checks it bit for bit
against gpt.py's order), so a bf16 CFG run has upstream's bf16 logits. A weighted SoftCFG step cannot go
through SDPA: it multiplies float32 scores or probabilities by the weights (``decode_attention``). This
script teacher-forces one random batch through a random LlamaGen three ways, all on the same
(bf16-valued) weights, and prints per-step differences of the logits relative to their standard
deviation (max over steps, and the median):

    sdpa  bf16, unweighted steps (upstream's order)
    soft  bf16, every step through the weighted path with all weights 1 (a SoftCFG step's arithmetic)
    fp32  the same weights in float32, unweighted

    python benchmarks/llamagen_bf16_order.py [--dim 256 --depth 4 --heads 4 | --size B] [--batch 4]

Measured (defaults, CPU): soft - sdpa max 3.1 %, median 2.7 % of the logits' std; sdpa - fp32 max 3.3 %,
median 2.4 %; ``--size B --batch 2`` (LlamaGen-B's dims, random weights): 4.4 % / 3.0 % and 5.2 % / 3.8 %.
The weighted path moves the logits by about as much as bf16 itself does.
"""

from __future__ import annotations

import argparse
import copy
import statistics

import torch

from softcfg.conditioning import ClassLabels
from softcfg.models.attention import SlotWeights
from softcfg.models.llamagen import SIZES, LlamaGen, LlamaGenConfig


@torch.no_grad()
def logits(model: LlamaGen, labels: torch.Tensor, tokens: torch.Tensor, weighted: bool) -> torch.Tensor:
    """[T, N, V] float32 logits of a teacher-forced cached decode."""
    cache = model.new_cache(labels.shape[0])
    out = [model.prefill(ClassLabels(labels), cache)]
    half = labels.shape[0] // 2
    for j in range(tokens.shape[1] - 1):
        weights = SlotWeights(torch.ones(half, 2 + j), "v") if weighted else None
        out.append(model.decode(tokens[:, j], j, cache, weights))
    return torch.stack(out).float()


def relative(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """Per step: max |a - b| over the batch and vocabulary, over b's standard deviation."""
    return [float((x - y).abs().max() / y.std()) for x, y in zip(a, b, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=list(SIZES))
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4, help="rows: half conditional, half null class")
    args = parser.parse_args()
    config = SIZES[args.size] if args.size else LlamaGenConfig(args.dim, args.depth, args.heads)
    torch.manual_seed(0)
    fp32 = LlamaGen(config).eval()
    bf16 = copy.deepcopy(fp32).to(torch.bfloat16)
    fp32.generator.load_state_dict({k: v.float() for k, v in bf16.generator.state_dict().items()})
    half = args.batch // 2
    labels = torch.cat([torch.randint(0, 1000, (half,)), torch.full((half,), 1000)])
    tokens = torch.randint(0, config.codebook, (args.batch, fp32.num_tokens))
    sdpa, soft = logits(bf16, labels, tokens, False), logits(bf16, labels, tokens, True)
    exact = logits(fp32, labels, tokens, False)
    for name, values in (("soft - sdpa", relative(soft, sdpa)), ("sdpa - fp32", relative(sdpa, exact))):
        print(f"{name}: max {max(values):.2%}, median {statistics.median(values):.2%} of the logits' std")


if __name__ == "__main__":
    main()
