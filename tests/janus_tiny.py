"""A tiny random Janus-Pro built here, offline: transformers' model, processor and a word-level tokenizer,
saved with ``save_pretrained`` as the official folders are (``tests/test_janus.py``, the family contract
tests and the Janus workflow tests)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

os.environ["HF_HUB_OFFLINE"] = "1"
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers, processors

SPECIAL = ["<pad>", "<bos>", "<eos>", "<image_placeholder>", "<begin_of_image>", "<end_of_image>"]
WORDS = ["<|User|>:", "<|Assistant|>:", "a", "red", "cat", "dog", "on", "the", "mat", "blue", "sky"]
PAD, BOS, BOI = 0, 1, 4
TEMPLATE = (
    "{% for m in messages %}<|User|>: {{ m['content'][0]['text'] }} {% endfor %}"
    "{% if add_generation_prompt %}<|Assistant|>:{% endif %}"
)
GRID, CODEBOOK = 4, 64  # 4 x 4 image tokens of 8 px: 32 px images
TEXTS = ("a red cat on the mat", "dog")


def tiny_processor() -> transformers.JanusProcessor:
    vocab = {token: i for i, token in enumerate(SPECIAL + WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", BOS)]
    )
    hf_tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        extra_special_tokens={
            "image_token": "<image_placeholder>",
            "boi_token": "<begin_of_image>",
            "eoi_token": "<end_of_image>",
        },
    )
    images = transformers.JanusImageProcessor(size={"height": 32, "width": 32})
    return transformers.JanusProcessor(images, hf_tokenizer, chat_template=TEMPLATE, num_image_tokens=GRID**2)


def tiny_janus() -> transformers.JanusForConditionalGeneration:
    config = transformers.JanusConfig(
        text_config={
            "model_type": "llama",
            "vocab_size": len(SPECIAL) + len(WORDS),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "pad_token_id": PAD,
            "bos_token_id": BOS,
        },
        vision_config={
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 32 // GRID,
            "projection_dim": 32,
            "num_image_tokens": GRID**2,
        },
        vq_config={
            "embed_dim": 4,
            "num_embeddings": CODEBOOK,
            "latent_channels": 32,
            "base_channels": 32,
            "channel_multiplier": [1, 1, 1, 1],  # three halvings: 32 px to a 4 x 4 grid
            "num_res_blocks": 1,
            "projection_dim": 32,
            "image_token_embed_dim": 32,
        },
        image_token_id=3,
    )
    torch.manual_seed(0)
    model = transformers.JanusForConditionalGeneration(config).eval()
    with torch.no_grad():  # peaked distributions: confidences, hence SoftCFG weights, far from uniform
        model.model.generation_head.vision_head.weight.mul_(8.0)
        for layer in model.model.language_model.layers:  # attention far from uniform: key weights matter
            layer.self_attn.q_proj.weight.mul_(6.0)
            layer.self_attn.k_proj.weight.mul_(6.0)
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=BOS, pad_token_id=PAD, eos_token_id=2, generation_kwargs={"boi_token_id": BOI}
    )
    return model


def save_tiny_janus(path: Path) -> Path:
    """The tiny model and its processor in one folder, as ``save_pretrained`` writes Janus-Pro-1B."""
    tiny_janus().save_pretrained(path)
    tiny_processor().save_pretrained(path)
    return path
