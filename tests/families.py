"""A tiny random-weight model of every built-in family, with conditions it takes: the one kit the family
contract tests (``tests/test_family_contract.py``) run every invariant on. Widths, depths, vocabularies
and token counts are as small as each architecture allows (AliTok's 273 and RAR's 256 image tokens are
fixed by their position tables); heads are sharpened so that distributions, hence SoftCFG weights, are far
from uniform. A new family adds its builder here, or the contract test that lists the registry fails."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from conftest import random_digits_model
from softcfg.conditioning import ClassLabels, Conditions
from softcfg.models.base import ARModel


@dataclass(frozen=True)
class Tiny:
    model: ARModel
    conditions: Conditions  # two rows


def _labels(*labels: int) -> ClassLabels:
    return ClassLabels(torch.tensor(labels))


def _digits(folder: Path) -> Tiny:
    return Tiny(random_digits_model(), _labels(3, 8))


def _digits_text(folder: Path) -> Tiny:
    from softcfg.models.digits_text import DigitsTextConfig, DigitsTextGPT

    torch.manual_seed(0)
    model = DigitsTextGPT(DigitsTextConfig(dim=16, depth=2, heads=2)).eval()
    with torch.no_grad():
        model.head.weight.mul_(20.0)
    return Tiny(model, model.prompts(["a photo of a seven", "a photo of a blue two and a green three"]))


def _digits_scales(folder: Path) -> Tiny:
    from softcfg.models.digits_scales import DigitsScales, DigitsScalesConfig

    torch.manual_seed(0)
    model = DigitsScales(DigitsScalesConfig(dim=16, depth=2, heads=2)).eval()
    with torch.no_grad():
        model.head.weight.mul_(20.0)
    return Tiny(model, _labels(0, 7))


def _alitok(folder: Path) -> Tiny:
    from softcfg.models.alitok import AliTok, AliTokConfig

    torch.manual_seed(0)
    model = AliTok(AliTokConfig(32, 1, 4)).eval()
    with torch.no_grad():
        model.generator.output.weight.mul_(20.0)
    return Tiny(model, _labels(7, 999))


def _rar(folder: Path) -> Tiny:
    from softcfg.models.rar import RAR, RARConfig

    torch.manual_seed(0)
    model = RAR(RARConfig(32, 1, 64, 4)).eval()
    with torch.no_grad():  # upstream zero-initialises the modulations and the cls token: randomise all
        for p in model.parameters():
            p.normal_(0, 0.05)
        for block in model.generator.blocks:  # q, k norms far from zero: attention far from uniform
            block.attn.q_norm.weight.fill_(4.0)
            block.attn.k_norm.weight.fill_(4.0)
        model.generator.lm_head.weight.mul_(20.0)
    return Tiny(model, _labels(7, 999))


def _llamagen(folder: Path) -> Tiny:
    from softcfg.models.llamagen import LlamaGen, LlamaGenConfig

    torch.manual_seed(0)
    model = LlamaGen(LlamaGenConfig(32, 2, 4, image_size=64, codebook=128)).eval()  # 4 x 4 tokens
    with torch.no_grad():  # upstream zero-initialises ``output``
        model.generator.output.weight.normal_(0, 0.5)
    return Tiny(model, _labels(7, 999))


def _var(folder: Path) -> Tiny:
    from softcfg.models.var import VAR, VARConfig
    from softcfg.models.var_vqvae import VQVAE, VQVAEConfig

    torch.manual_seed(0)
    vae = VQVAEConfig(channels=32, mult=(1, 2), z_channels=8, vocab_size=64, patch_nums=(1, 2, 3))
    model = VAR(VARConfig(dim=32, depth=2, heads=2, vae=vae), VQVAE(vae)).eval()
    with torch.no_grad():  # upstream zero-initialises biases and positions
        for param in model.parameters():
            param.normal_(0, 0.3)
    return Tiny(model, _labels(7, 999))


def _janus(folder: Path) -> Tiny:
    from janus_tiny import TEXTS, save_tiny_janus
    from softcfg.config import parse_model
    from softcfg.models.loading import load_model

    path = save_tiny_janus(folder / "tiny-janus-pro")
    model = load_model(parse_model({"family": "janus", "checkpoint": str(path)}))
    return Tiny(model, model.prompts(TEXTS))


def _text_with_decoder_file(family: str, kit: str) -> Callable[[Path], Tiny]:
    """A text family whose folder checkpoint comes with an image decoder file (lumina, simplear): the
    kit module's ``save_tiny_<family>_files``, ``IMAGE_SIZE`` and ``TEXTS``."""

    def build(folder: Path) -> Tiny:
        from importlib import import_module

        from softcfg.config import parse_model
        from softcfg.models.loading import load_model

        tiny = import_module(kit)
        checkpoint, decoder = getattr(tiny, f"save_tiny_{family}_files")(folder / family)
        entry = {"family": family, "checkpoint": str(checkpoint), "tokenizer": str(decoder),
                 "image_size": tiny.IMAGE_SIZE}  # fmt: skip
        model = load_model(parse_model(entry))
        return Tiny(model, model.prompts(tiny.TEXTS))

    return build


BUILDERS: dict[str, Callable[[Path], Tiny]] = {
    "digits": _digits,
    "digits_text": _digits_text,
    "digits_scales": _digits_scales,
    "alitok": _alitok,
    "rar": _rar,
    "llamagen": _llamagen,
    "var": _var,
    "janus": _janus,
    "lumina": _text_with_decoder_file("lumina", "lumina_tiny"),
    "simplear": _text_with_decoder_file("simplear", "simplear_tiny"),
}
