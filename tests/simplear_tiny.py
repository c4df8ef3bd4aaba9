"""A tiny random SimpleAR built here, offline, in the official layouts: a Qwen2 ``save_pretrained`` folder
whose word-level tokenizer holds SimpleAR's special tokens and whose vocabulary appends 64000 image
rows, as SimpleAR's training resizes it; and a Cosmos DV decoder saved as a TorchScript ``decoder.jit``
(the official container), its state dict in the official key layout (``softcfg.models.cosmos``), at tiny
widths with every structural element of DV8x16x16 (three levels, spatial and temporal upsamplers,
attention in the middle and at one level)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

os.environ["HF_HUB_OFFLINE"] = "1"
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from softcfg.models.cosmos import CosmosConfig, CosmosDecoder

IMAGE_SIZE = 64  # 4 x 4 tokens of 16 px
SIDE = IMAGE_SIZE // 16
SPECIAL = ["<|endoftext|>", "<|t2i|>", "<|i2t|>", "<|soi|>", "<|vtokens|>", "<|t2v|>", "<|v2t|>", "<|sov|>"]
CORPUS = [  # what the tiny byte-level BPE is trained on: the prompts' and the negative prompt's words
    "A highly realistic image of a red cat on the mat, a dog, a blue sky",
    "An image of aerial view, overexposed, low quality, deformation, a poor composition, bad hands, "
    "bad teeth, bad eyes, bad limbs, distortion",
]
COSMOS = CosmosConfig(channels=(8, 16, 16), num_res_blocks=0, attention=(1,), z_channels=4)
TEXTS = ("a red cat on the mat", "dog")


def tiny_tokenizer() -> transformers.PreTrainedTokenizerFast:
    """A byte-level BPE as Qwen2's, trained here on a few sentences, SimpleAR's special tokens added."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )


def tiny_qwen2(text_ids: int) -> transformers.Qwen2ForCausalLM:
    config = transformers.Qwen2Config(
        vocab_size=text_ids + 64000,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,  # SimpleAR-0.5B ties them; an untied head keeps the tiny model's
        # sharp logits from making every token predict itself
    )
    torch.manual_seed(0)
    model = transformers.Qwen2ForCausalLM(config).eval()
    with torch.no_grad():  # peaked image logits, attention far from uniform
        model.lm_head.weight.mul_(40.0)
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(4.0)
            layer.self_attn.k_proj.weight.mul_(4.0)
    return model


def save_tiny_simplear(folder: Path) -> Path:
    tokenizer = tiny_tokenizer()
    tiny_qwen2(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_cosmos() -> CosmosDecoder:
    torch.manual_seed(1)
    decoder = CosmosDecoder(COSMOS).eval()
    with torch.no_grad():  # upstream's norms start at weight 1, bias 0: randomise them too
        for module in decoder.modules():
            if isinstance(module, torch.nn.GroupNorm):
                module.weight.normal_(1.0, 0.2)
                module.bias.normal_(0.0, 0.2)
    return decoder


def save_tiny_cosmos(path: Path) -> Path:
    """The decoder as a TorchScript file (traced on one frame), as ``decoder.jit`` is distributed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, SIDE, SIDE, dtype=torch.long)
    torch.jit.save(torch.jit.trace(tiny_cosmos(), example, check_trace=False), path)
    return path


def save_tiny_simplear_files(root: Path) -> tuple[Path, Path]:
    """(checkpoint folder, Cosmos decoder.jit) under ``root``."""
    return save_tiny_simplear(root / "SimpleAR-tiny"), save_tiny_cosmos(root / "cosmos" / "decoder.jit")
