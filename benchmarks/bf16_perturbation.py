"""How exact SoftCFG's perturbation is in bf16 (or fp16), per step, and what the fix costs.

The quantity: the perturbation of the unconditional logits, SoftCFG uncond minus CFG uncond, both
teacher-forced on the same tokens (sampled once from the float32 model with SoftCFG). Each variant
computes it in the low precision; the table gives ||D_variant - D_fp32|| / ||D_fp32|| per step (over the
batch and the vocabulary), D_fp32 coming from a float32 copy of the very same (bf16-valued) weights:

    a  weights cast to the cache dtype before they multiply (the code before the fix)
    b  weights applied in float32 to float32 scores/probabilities (attention.decode_attention now)
    c  b + the whole decode attention in float32 (q, k, v upcast)
    d  c + final norm and logits in float32
    e  b + unconditional rows in float32 (models.precision.UncondFloat32, load_model's uncond_fp32)

The model is a random AliTok (the real 273 tokens, 4096-token vocabulary, null class; small dims by
default so it runs on a CPU) with its output head scaled up (``--head-scale``) so the confidences are far
from uniform, like a trained model's. SoftCFG: step normalization, cond_max confidences, target ``v``
unless ``--target``. Also printed: the budget sum(1 - w) of the weights as variant a applied them against
float32, and the cost of e against b (time per decode step, A/B interleaved round after round, the order
reversed every round; median of the per-round ratios and their quartiles, the machine's noise).

    python benchmarks/bf16_perturbation.py [--dim 256 --depth 4 --heads 4 | --size XL] [--batch 2]
        [--dtype bf16|fp16] [--head-scale 8] [--target v|k|kv] [--rounds 5] [--device cpu|cuda]
        [--threads 1] [--timing-batch N]

Measured (defaults, i.e. dims 256 / depth 4 / heads 4, bf16, CPU): variant a/b about 30 % (steps 2-31),
170 % (121-152), 250 % (241-272); c and d barely better; e about 1 % throughout. Cost e/b 1.3-1.9x.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import statistics
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from softcfg.conditioning import ClassLabels
from softcfg.guidance.weights import step_normalized_weights
from softcfg.models import attention
from softcfg.models.alitok import SIZES, AliTok, AliTokConfig
from softcfg.models.attention import SlotWeights
from softcfg.models.base import ARModel
from softcfg.models.precision import UncondFloat32

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
STEPS = (2, 4, 8, 16, 32, 64, 128, 192, 240, 256, 272)
BANDS = {"early 2-31": (2, 32), "mid 121-152": (121, 153), "late 241-272": (241, 273)}


def teacher_forced(
    model: ARModel,
    labels: Tensor,
    tokens: Tensor | None,
    soft: bool,
    target: str = "v",
    gamma: float = 4.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One guided pass over the doubled batch. Returns the tokens (sampled from the guided logits when
    ``tokens`` is None), the uncond logits [B, T, V] and the weights in force at each step [B, T, T]
    (weights[b, t, i] on the slot of token i while predicting token t).

    Written out here rather than through the sampler so that it needs the models layer only.
    """
    batch, steps = labels.shape[0], model.num_tokens
    rows = ClassLabels(torch.cat([labels, torch.full_like(labels, model.null_class)]))
    cache = model.new_cache(2 * batch)
    out_tokens = torch.empty(batch, steps, dtype=torch.long, device=labels.device)
    uncond_out = torch.empty(batch, steps, model.vocab_size, device=labels.device)
    weights = torch.ones(batch, steps, steps, device=labels.device)
    q = torch.zeros(batch, steps, device=labels.device)
    first = model.prediction_slot(1)
    logits = model.prefill(rows, cache)
    for step in range(steps):
        if step > 0:
            slot_weights = None
            if soft:
                slots = torch.ones(batch, model.prediction_slot(step) + 1, device=labels.device)
                if step >= 2:
                    w = step_normalized_weights(q[:, 1:step])
                    slots[:, first : first + step - 1] = weights[:, step, 1:step] = w
                slot_weights = SlotWeights(slots, target)
            logits = model.decode(out_tokens[:, step - 1].repeat(2), step - 1, cache, slot_weights)
        cond, uncond = logits.float().chunk(2)
        uncond_out[:, step] = uncond
        q[:, step] = torch.softmax(cond, dim=-1).amax(dim=-1)  # cond_max
        if tokens is None:
            guided = uncond + gamma * (cond - uncond)
            out_tokens[:, step] = torch.multinomial(torch.softmax(guided, -1), 1, generator=generator)[:, 0]
        else:
            out_tokens[:, step] = tokens[:, step]
    return out_tokens, uncond_out, weights


def perturbation(model: ARModel, labels: Tensor, tokens: Tensor, target: str) -> tuple[Tensor, Tensor]:
    """SoftCFG uncond minus CFG uncond [B, T, V], teacher-forced on ``tokens``, and CFG uncond."""
    _, soft, _ = teacher_forced(model, labels, tokens, soft=True, target=target)
    _, plain, _ = teacher_forced(model, labels, tokens, soft=False)
    return soft - plain, plain


def relative_error(delta: Tensor, reference: Tensor) -> Tensor:
    """||delta - reference|| / ||reference|| per step [T], over batch and vocabulary."""
    return (delta - reference).norm(dim=(0, 2)) / reference.norm(dim=(0, 2)).clamp_min(1e-30)


def cast_weights_attention(
    q: Tensor, k: Tensor, v: Tensor, slot_weights: SlotWeights | None = None
) -> Tensor:
    """The decode attention before the fix: weights cast to the cache dtype, then multiplied (variant a)."""
    scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    if slot_weights is None:
        return torch.softmax(scores, -1, dtype=torch.float32).to(v.dtype) @ v
    w = slot_weights.weights[:, None, None, :].to(v.dtype)
    first = scores.shape[0] - w.shape[0]
    if slot_weights.on_keys:
        scores[first:] *= w
    probs = torch.softmax(scores, -1, dtype=torch.float32).to(v.dtype)
    if slot_weights.on_values:
        probs[first:] *= w
    return probs @ v


def float32_attention(q: Tensor, k: Tensor, v: Tensor, slot_weights: SlotWeights | None = None) -> Tensor:
    """The decode attention on q, k, v upcast to float32, output cast back (variants c, d)."""
    return _DECODE_ATTENTION(q.float(), k.float(), v.float(), slot_weights).to(v.dtype)


_DECODE_ATTENTION = attention.decode_attention


@contextlib.contextmanager
def decode_attention_as(function: Callable[..., Tensor] | None) -> Iterator[None]:
    """Swap the decode attention every family calls (``attend`` looks it up at call time)."""
    if function is not None:
        attention.decode_attention = function
    try:
        yield
    finally:
        attention.decode_attention = _DECODE_ATTENTION


def float32_head(model: AliTok) -> AliTok:
    """A copy whose final norm and output head run in float32 on the bf16-valued weights (variant d)."""
    copied = copy.deepcopy(model)
    norm, head = copied.generator.norm, copied.generator.output
    norm.forward = lambda x, f=norm.forward: f(x.float()).float()  # RMSNorm keeps its input's dtype
    head.forward = lambda x: F.linear(x.float(), head.weight.float(), head.bias.float())
    return copied


def timed(function: Callable[[], object], device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    function()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--size", choices=sorted(SIZES), default=None, help="an official size instead")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--head-scale", type=float, default=8.0, help="output head x this: sharp logits")
    parser.add_argument("--target", choices=["v", "k", "kv"], default="v")
    parser.add_argument("--rounds", type=int, default=5, help="A/B timing rounds (0: no timing)")
    parser.add_argument(
        "--timing-batch", type=int, default=None, help="batch of the timing (default --batch)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (small dims: 1 is fastest)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    torch.manual_seed(args.seed)
    config = SIZES[args.size] if args.size else AliTokConfig(args.dim, args.depth, args.heads)
    with torch.no_grad():
        model = AliTok(config)
        model.generator.output.weight.mul_(args.head_scale)
    low = model.to(device=args.device, dtype=DTYPES[args.dtype]).eval()
    reference = copy.deepcopy(low).float()  # the same bf16-valued weights, float32 arithmetic
    labels = torch.arange(args.batch, device=args.device) * 37 % model.num_classes
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    print(
        f"AliTok dim {config.dim} depth {config.depth} heads {config.heads} ({model.num_tokens} tokens, "
        f"vocabulary {model.vocab_size}), {args.dtype}, head x{args.head_scale}, batch {args.batch}, "
        f"target {args.target}, device {args.device}, threads {torch.get_num_threads()}"
    )
    with torch.inference_mode():
        tokens, _, weights = teacher_forced(reference, labels, None, True, args.target, generator=generator)
        ref, plain = perturbation(reference, labels, tokens, args.target)
        variants = {
            "a weights cast (before)": (low, cast_weights_attention),
            "b fp32 weighting (now)": (low, None),
            "c b + fp32 attention": (low, float32_attention),
            "d c + fp32 norm/logits": (float32_head(low), float32_attention),
            "e b + uncond rows fp32": (UncondFloat32(low), None),
        }
        errors = {}
        for name, (variant, function) in variants.items():
            with decode_attention_as(function):
                errors[name] = relative_error(perturbation(variant, labels, tokens, args.target)[0], ref)

    scale = ref.norm(dim=(0, 2)) / plain.norm(dim=(0, 2))
    print("\n|D_fp32| / |uncond logits| per step: " + " ".join(f"{s}:{scale[s]:.2e}" for s in STEPS))
    print(f"\nrelative error of the perturbation, {args.dtype} vs fp32, in % (step; band means)")
    print(f"{'variant':<26}" + "".join(f"{s:>7}" for s in STEPS) + "".join(f"{b:>14}" for b in BANDS))
    for name, e in errors.items():
        bands = [e[lo:hi].mean() for lo, hi in BANDS.values()]
        print(
            f"{name:<26}"
            + "".join(f"{100 * e[s]:7.1f}" for s in STEPS)
            + "".join(f"{100 * b:14.1f}" for b in bands)
        )

    # the budget sum(1 - w) the cast weights carried, against float32 (weights of the reference pass)
    budget = (1 - weights).sum(-1)
    cast_budget = (1 - weights.to(DTYPES[args.dtype]).float()).sum(-1)
    drift = ((cast_budget - budget).abs() / budget.clamp_min(1e-12)).mean(0)
    print(
        f"\nbudget sum(1 - w) with weights cast to {args.dtype}, relative drift in % (mean over the batch): "
        + " ".join(f"{s}:{100 * drift[s]:.2f}" for s in STEPS)
    )

    if args.rounds > 0:
        timing_labels = torch.arange(args.timing_batch or args.batch, device=args.device) % model.num_classes
        tokens = tokens[torch.arange(timing_labels.shape[0]) % tokens.shape[0]]
        runs = {"b": low, "e": variants["e b + uncond rows fp32"][0], "fp32": reference}

        def run(name: str) -> float:
            with torch.inference_mode():
                return timed(
                    lambda: teacher_forced(runs[name], timing_labels, tokens, True, args.target), args.device
                )

        for name in runs:  # warm-up
            run(name)
        times: dict[str, list[float]] = {name: [] for name in runs}
        order = list(runs)
        for _ in range(args.rounds):
            for name in order:
                times[name].append(run(name))
            order.reverse()
        steps = model.num_tokens
        print(
            f"\ncost: SoftCFG pass of {timing_labels.shape[0]} images (doubled batch), {args.rounds} rounds"
        )
        for name, ts in times.items():
            print(f"  {name:<5} {1000 * statistics.median(ts) / steps:8.3f} ms per decode step")
        for name in ("e", "fp32"):
            ratios = sorted(a / b for a, b in zip(times[name], times["b"], strict=True))
            q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
            print(f"  ratio {name}/b {statistics.median(ratios):.3f} (quartiles {q1:.3f} .. {q3:.3f})")


if __name__ == "__main__":
    main()
