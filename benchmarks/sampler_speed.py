"""Sampler throughput per guidance method, measured interleaved in one run.

A random model shaped like a small AliTok (hidden 256, depth 4, heads 4, 273 tokens, vocabulary 4096),
either the AliTok adapter itself (``--family alitok``, the default) or the plain GPT (``--family gpt``),
or an official size of AliTok or LlamaGen (``--family llamagen --size L``: 256 px, 256 tokens, vocabulary
16384), samples batches of 8 with none / CFG / SoftCFG / SoftCFG + step norm (or the ``--methods`` given)
in turn, round after round (the order reversed every round), so drifts in machine speed hit every method
alike. Prints tokens/s per method (median over rounds), the quartiles of the per-round ratios (the
machine's noise) and, last, the median per-round time ratio of SoftCFG + step norm to CFG. With
``--compile`` a copy of the model with its decode step compiled runs CFG and SoftCFG + step norm in the
same rounds, and the compiled/eager ratio is printed too.

    python benchmarks/sampler_speed.py [--family alitok|gpt|llamagen] [--size XL] [--dtype bf16]
        [--rounds 20] [--batch 8] [--methods cfg softcfg+stepnorm] [--threads N] [--device cpu|cuda]
        [--diagnostics] [--compile]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from softcfg.conditioning import ClassLabels
from softcfg.methods import parse_method
from softcfg.models import alitok, llamagen
from softcfg.models.base import ARModel
from softcfg.models.gpt import ClassConditionalGPT, GPTConfig
from softcfg.models.loading import DTYPES, compile_decode
from softcfg.sampling.diagnostics import StepDiagnostics
from softcfg.sampling.loop import generate

METHODS = {
    "none": {"name": "none"},
    "cfg": {"name": "cfg", "gamma": 4.0, "k": 1.0},
    "softcfg": {"name": "softcfg", "gamma": 4.0, "k": 1.0, "step_norm": False},
    "softcfg+stepnorm": {"name": "softcfg", "gamma": 4.0, "k": 1.0, "step_norm": True},
}

FAMILY_SIZES = {"alitok": alitok.SIZES, "llamagen": llamagen.SIZES}


def build_model(family: str, size: str | None) -> ARModel:
    """The benchmarked model, random weights: an official size, or the small default shape."""
    if family == "gpt":
        config = GPTConfig(
            vocab_size=4096, num_tokens=273, num_classes=1000, dim=256, depth=4, heads=4, dropout=0
        )
        return ClassConditionalGPT(config)
    if family == "llamagen":
        return llamagen.LlamaGen(llamagen.SIZES[size] if size else llamagen.LlamaGenConfig(256, 4, 4))
    return alitok.AliTok(alitok.SIZES[size] if size else alitok.AliTokConfig(dim=256, depth=4, heads=4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--diagnostics", action="store_true", help="also time SoftCFG + step norm with diagnostics"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--family", choices=["alitok", "gpt", "llamagen"], default="alitok")
    parser.add_argument("--size", default=None, help="an official size of the family instead")
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=list(METHODS),
        default=list(METHODS),
        help="cfg and softcfg+stepnorm always run (their ratio is the result)",
    )
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--compile", action="store_true", help="also time a torch.compile'd decode step")
    args = parser.parse_args()
    if args.size is not None and args.size not in FAMILY_SIZES.get(args.family, {}):
        parser.error(f"--size: {args.family} sizes are {sorted(FAMILY_SIZES.get(args.family, {}))}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = build_model(args.family, args.size).to(device=args.device, dtype=DTYPES[args.dtype]).eval()
    labels = ClassLabels(torch.arange(args.batch, device=args.device) % model.num_classes)
    timed = {"cfg", "softcfg+stepnorm", *args.methods}
    methods = {name: parse_method(m) for name, m in METHODS.items() if name in timed}
    observers = {name: () for name in methods}
    models = {name: model for name in methods}
    if args.diagnostics:
        methods["softcfg+stepnorm+diag"] = methods["softcfg+stepnorm"]
        observers["softcfg+stepnorm+diag"] = (StepDiagnostics(model.num_tokens, args.device),)
        models["softcfg+stepnorm+diag"] = model
    if args.compile:
        compiled = compile_decode(copy.deepcopy(model))
        for name in ("cfg", "softcfg+stepnorm"):
            methods[f"{name}+compile"], observers[f"{name}+compile"] = methods[name], ()
            models[f"{name}+compile"] = compiled

    def run(name: str) -> float:
        generator = torch.Generator(device=args.device).manual_seed(0)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        generate(models[name], labels, methods[name], generator, observers[name])
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for name in methods:  # warm-up
        run(name)
    times: dict[str, list[float]] = {name: [] for name in methods}
    order = list(methods)
    for _ in range(args.rounds):  # A B C D, then D C B A: a linear drift hits every method alike
        for name in order:
            times[name].append(run(name))
        order.reverse()

    tokens = args.batch * model.num_tokens
    print(
        f"model {args.family} {args.size or 'small'} {args.dtype}, device {args.device}, "
        f"threads {torch.get_num_threads()}, batch {args.batch}, rounds {args.rounds}"
    )
    for name, ts in times.items():
        print(f"{name:<24} {tokens / statistics.median(ts):10.1f} tokens/s")
    ratios = sorted(s / c for s, c in zip(times["softcfg+stepnorm"], times["cfg"], strict=True))
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    print(f"per-round ratios softcfg+stepnorm/cfg: quartiles {q1:.4f} .. {q3:.4f} (machine noise)")
    if args.compile:
        compiled_ratios = [
            c / e for c, e in zip(times["softcfg+stepnorm+compile"], times["softcfg+stepnorm"], strict=True)
        ]
        print(f"ratio compiled/eager (softcfg+stepnorm) {statistics.median(compiled_ratios):.4f}")
    print(f"ratio softcfg/cfg {statistics.median(ratios):.4f}")


if __name__ == "__main__":
    main()
