"""SoftCFG's cost over CFG on the real text-to-image families' shapes: Janus-Pro and SimpleAR through the
transformers attention hook, Lumina-mGPT 2.0 (the SoftCFG paper's Fig. 8 model) on the project's
Chameleon decoder.

``--family janus``: a random model shaped like Janus-Pro-1B's generation path (``--size 7B`` for the 7B;
language model, generation embedding and head, 16384 codes; a one-layer vision encoder and a small VQ
decoder, which sampling does not run). ``--family lumina``: a random Chameleon decoder of the 7B's width
(4096, 32 heads, MLP 11008, the 171385-id vocabulary) at ``--depth`` layers (default 2 of 32), sampling
the 768 px sequence (96 rows of 96 codes and end-of-line, 9312 tokens). ``--family simplear``: a random
Qwen2 of SimpleAR-1.5B's width (1536, 12 heads, 2 key/value heads, MLP 8960, 215672 ids) at ``--depth``
layers (of 28), sampling the 1024 px sequence (4096 tokens). Each samples ``--batch``
prompts of ``--prompt-len`` tokens with the family's preset CFG and with SoftCFG (step-normalized,
values), in turn, round after round (the order reversed every round, so drifts in machine speed hit both
alike). Only the first ``--tokens`` image tokens are generated (``--tokens 0``: all of them), to keep a
CPU run to a couple of minutes, and only the decode steps are timed (prefill is the same for both).
Prints the median and minimum time per method, seconds per image at the full token count (measured,
or extrapolated from the steps timed, which see a shallower cache), the quartiles of the per-round
SoftCFG/CFG ratios (the machine's noise) and, last, their median.

    python benchmarks/t2i_speed.py [--family janus|lumina|simplear] [--size 1B|7B] [--depth 2] [--tokens 8]
        [--batch 1] [--rounds 5] [--prompt-len 32] [--device cpu|cuda] [--dtype fp32|bf16] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import JanusConfig, JanusForConditionalGeneration, Qwen2Config, Qwen2ForCausalLM

from softcfg.conditioning import Prompts
from softcfg.methods import parse_method
from softcfg.models import lumina, simplear
from softcfg.models.base import ARModel
from softcfg.models.chameleon import ChameleonConfig, ChameleonDecoder
from softcfg.models.janus import SIZES, JanusPro
from softcfg.models.loading import DTYPES
from softcfg.sampling.loop import generate

# the Janus-Pro language models (deepseek-community configs): heads, MLP width; vocabulary 102400
SHAPES = {"1B": (16, 5632), "7B": (32, 11008)}
BOS, PAD, BOI = 100000, 100002, 100016
# Lumina-mGPT 2.0's special ids (inference_solver.py hard-codes begin-of-image and end-of-line; the size
# token's id only needs to be a text id here)
LUMINA_IDS = {lumina.SEPARATOR: 151667, lumina.BEGIN_OF_IMAGE: 151665, lumina.END_OF_LINE: 151670,
              lumina.size_token(768): 151695}  # fmt: skip


def random_janus(size: str) -> JanusForConditionalGeneration:
    heads, mlp = SHAPES[size]
    config = JanusConfig(
        text_config={
            "model_type": "llama",
            "vocab_size": 102400,
            "num_attention_heads": heads,
            "num_key_value_heads": heads,
            "intermediate_size": mlp,
            "rms_norm_eps": 1e-6,
            **SIZES[size],
        },
        vision_config={"num_hidden_layers": 1, "projection_dim": SIZES[size]["hidden_size"]},
        vq_config={
            "base_channels": 32,
            "channel_multiplier": [1, 1, 1, 1, 1],
            "num_res_blocks": 1,
            "latent_channels": 32,
            "projection_dim": SIZES[size]["hidden_size"],
            "image_token_embed_dim": SIZES[size]["hidden_size"],
        },
    )
    return JanusForConditionalGeneration(config)


def janus_model(size: str, batch: int, prompt_len: int) -> tuple[ARModel, Prompts, str]:
    model = JanusPro(random_janus(size), None, BOS, PAD, BOI)
    ids = torch.randint(0, 100000, (batch, prompt_len))
    ids[:, 0], ids[:, -1] = BOS, BOI
    return model, Prompts(ids, torch.ones_like(ids, dtype=torch.bool), ("",) * batch), f"Janus-Pro-{size}"


def lumina_model(depth: int, batch: int, prompt_len: int) -> tuple[ARModel, Prompts, str]:
    config = ChameleonConfig(num_hidden_layers=depth, vocab_size=171385, max_position_embeddings=10240)
    model = lumina.LuminaMGPT2(ChameleonDecoder(config), None, LUMINA_IDS)
    ids = torch.randint(0, 151643, (batch, prompt_len))
    ids[:, -3:] = torch.tensor(model.image_prefix())
    prompts = Prompts(ids, torch.ones_like(ids, dtype=torch.bool), ("",) * batch)
    return model, prompts, f"Lumina-mGPT-2.0-7B-shaped at depth {depth}"


def simplear_model(depth: int, batch: int, prompt_len: int) -> tuple[ARModel, Prompts, str]:
    # Qwen2.5-1.5B's shape (SimpleAR-1.5B's base), its 151672 text ids and the 64000 image rows
    config = Qwen2Config(
        vocab_size=151672 + simplear.CODES, hidden_size=1536, intermediate_size=8960, num_hidden_layers=depth,
        num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=8192, tie_word_embeddings=True,
    )  # fmt: skip
    model = simplear.SimpleAR(Qwen2ForCausalLM(config), None, 151672)
    ids = torch.randint(0, 151643, (2, batch, prompt_len))
    prompts, negative = (Prompts(i, torch.ones_like(i, dtype=torch.bool), ("",) * batch) for i in ids)
    model.unconditional = lambda conditions: (
        negative
    )  # no tokenizer: random ids stand for the negative prompt
    return model, prompts, f"SimpleAR-1.5B-shaped at depth {depth}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=("janus", "lumina", "simplear"), default="janus")
    parser.add_argument("--size", choices=sorted(SIZES), default=None, help="janus: 1B (default) or 7B")
    parser.add_argument("--depth", type=int, default=2, help="lumina, simplear: layers (32, 28 released)")
    parser.add_argument("--tokens", type=int, default=8, help="image tokens generated (0: all)")
    parser.add_argument("--batch", type=int, default=1, help="prompts (the model runs twice as many rows)")
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: no OpenMP stalls on a busy machine)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    if args.family == "janus":
        size = args.size or "1B"
        model, prompts, shape = janus_model(size, args.batch, args.prompt_len)
        preset = {"preset": f"janus-{size}"}
    elif args.family == "lumina":
        model, prompts, shape = lumina_model(args.depth, args.batch, args.prompt_len)
        preset = {"preset": "lumina-7B-768"}
    else:
        model, prompts, shape = simplear_model(args.depth, args.batch, args.prompt_len)
        preset = {"preset": "simplear-1.5B-1024"}
    model = model.to(device=args.device, dtype=DTYPES[args.dtype])
    full = model.num_tokens
    model.num_tokens = min(args.tokens or full, full)
    methods = {
        "cfg": parse_method({"name": "cfg", **preset}),
        "softcfg": parse_method({"name": "softcfg", **preset}),
    }

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def run(name: str) -> float:
        """Seconds of the decode steps: from token 0 (chosen after prefill) to the last token."""
        generator = torch.Generator(device=args.device).manual_seed(0)
        first: list[float] = []

        def after_first_token(step: int, seen: object, weights: object) -> None:
            if step == 0:
                sync()
                first.append(time.perf_counter())

        generate(model, prompts, methods[name], generator, observers=[after_first_token])
        sync()
        return time.perf_counter() - first[0]

    for name in methods:  # warm-up
        run(name)
    times: dict[str, list[float]] = {name: [] for name in methods}
    order = list(methods)
    for _ in range(args.rounds):
        for name in order:
            times[name].append(run(name))
        order.reverse()

    rows = 2 * args.batch
    print(f"{shape}, {rows} rows, prompt {args.prompt_len}, {model.num_tokens} of {full} tokens")
    steps = model.num_tokens - 1
    how = "measured" if model.num_tokens == full else f"extrapolated from {steps} steps"
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"{name:8s} {steps} decode steps: median {median:.3f} s", end="")
        print(f" ({1000 * median / steps:.1f} ms/step), min {min(seconds):.3f} s;", end="")
        print(f" {median / steps * (full - 1) / args.batch:.1f} s per image at {full} tokens ({how})")
    ratios = [s / c for s, c in zip(times["softcfg"], times["cfg"], strict=True)]
    if len(ratios) >= 2:
        q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
        print(f"per-round ratio quartiles {q1:.3f} .. {q3:.3f}")
    print(f"ratio softcfg/cfg {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
