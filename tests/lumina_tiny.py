"""A tiny random Lumina-mGPT 2.0 built here, offline, in the official layouts: a folder with config.json
(``model_type: chameleon``), the decoder's weights in two safetensors shards with their index, and a
word-level tokenizer holding the official special-token names; and a MoVQGAN file (a raw state dict, the
encoder side included, as ``movqgan_270M.ckpt``). The vocabulary keeps the official 171385 ids, so image
code c is id 155000 + c as upstream hard-codes it; widths are tiny and the MoVQGAN keeps 8 px per code."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

os.environ["HF_HUB_OFFLINE"] = "1"
import transformers
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

from softcfg.models.chameleon import ChameleonConfig, ChameleonDecoder
from softcfg.models.movqgan import MoVQConfig, MoVQDecoder

IMAGE_SIZE = 32  # 4 x 4 codes, each row closed by end-of-line: 20 tokens
GRID = IMAGE_SIZE // 8
EOS = 151643  # the tokenizer has no BOS: upstream then starts prompts with EOS
SPECIAL = {  # names as upstream's item processor and conversation template spell them
    "<|endoftext|>": EOS,
    "<racm3:break>": 151665,
    "<eoss>": 151666,
    "<reserved08706>": 151667,
    "<reserved08799>": 151670,
    **{f"<reserved{8800 + n:05d}>": 151671 + n for n in range(1, 33)},
}
WORDS = (  # the tiny vocabulary's words: the template's and the test prompts'
    f"<unk> Generate an image of {IMAGE_SIZE}x{IMAGE_SIZE} 768x768 according to the following prompt: "
    "a red cat on mat dog blue sky"
).split()
CONFIG = {
    "model_type": "chameleon",
    "architectures": ["ChameleonXLLMXForConditionalGeneration"],
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "vocab_size": 171385,
    "max_position_embeddings": 10240,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "model_parallel_size": 1,
    "swin_norm": False,
    "mask_image_logits": False,
    "hidden_act": "silu",
}
CONFIG_FIELDS = set(ChameleonConfig.__dataclass_fields__)
MOVQ = MoVQConfig(channels=(32, 32, 32, 32), num_res_blocks=0, attention=(3,))
TEXTS = ("a red cat on the mat", "dog")


def tiny_tokenizer() -> transformers.PreTrainedTokenizerFast:
    vocab = {word: i for i, word in enumerate(WORDS)} | SPECIAL
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens([AddedToken(name, special=True) for name in SPECIAL])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|endoftext|>", unk_token="<unk>"
    )


def tiny_decoder_state(config: dict = CONFIG) -> dict[str, torch.Tensor]:
    """Random weights with peaked outputs (sharp image logits, attention far from uniform) and q/k norm
    gammas and betas away from 1 and 0, so every official parameter changes the logits."""
    torch.manual_seed(0)
    decoder = ChameleonDecoder(ChameleonConfig(**{k: v for k, v in config.items() if k in CONFIG_FIELDS}))
    with torch.no_grad():
        decoder.lm_head.weight.mul_(30.0)
        for layer in decoder.model.layers:
            for norm in (layer.self_attn.q_norm, layer.self_attn.k_norm):
                norm.weight.normal_(2.0, 0.5)
                norm.bias.normal_(0.0, 0.3)
            layer.input_layernorm.weight.normal_(1.0, 0.2)
    return {k: v.contiguous() for k, v in decoder.state_dict().items()}


def save_tiny_lumina(folder: Path) -> Path:
    """The folder as ``save_pretrained`` writes the 7B: config, two weight shards and their index, the
    tokenizer files."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(CONFIG, indent=2))
    state = tiny_decoder_state()
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, keys in shards.items():
        save_file({k: state[k] for k in keys}, folder / file, metadata={"format": "pt"})
    weight_map = {k: file for file, keys in shards.items() for k in keys}
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": dict(sorted(weight_map.items()))}, indent=2)
    )
    tiny_tokenizer().save_pretrained(folder)
    return folder


def save_tiny_movq(path: Path) -> Path:
    """A MoVQGAN file: the decoder side plus encoder-side keys the decoder does not read."""
    torch.manual_seed(1)
    decoder = MoVQDecoder(MOVQ)
    state = dict(decoder.state_dict())
    state["encoder.conv_in.weight"] = torch.randn(32, 3, 3, 3)
    state["quant_conv.weight"] = torch.randn(4, 4, 1, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def save_tiny_lumina_files(root: Path) -> tuple[Path, Path]:
    """(checkpoint folder, MoVQGAN file) under ``root``."""
    return save_tiny_lumina(root / "Lumina-mGPT-2.0-tiny"), save_tiny_movq(root / "movqgan_tiny.ckpt")
