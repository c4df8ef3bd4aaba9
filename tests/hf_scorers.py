"""Tiny random-weight scorer models of the ``hf`` GenEval / DPG backends (Mask2Former, CLIP, BLIP VQA),
built from configs and saved with ``save_pretrained``, offline: what ``test_t2i_backends`` and the text
workflow tests score with."""

from __future__ import annotations

import json
from pathlib import Path


def _byte_chars() -> list[str]:
    """GPT-2's byte-to-unicode table, which CLIP's BPE vocabulary is written in."""
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def build_hf_scorers(root: Path) -> dict[str, Path]:
    import torch
    import transformers as T

    torch.manual_seed(0)
    swin = T.SwinConfig(
        image_size=64, patch_size=4, embed_dim=32, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=2,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )  # fmt: skip
    sizes = {"hidden_dim": 32, "mask_feature_size": 32, "feature_size": 32, "dim_feedforward": 32}
    layers = {
        "encoder_layers": 1,
        "decoder_layers": 2,
        "encoder_feedforward_dim": 32,
        "num_attention_heads": 2,
    }
    m2f = T.Mask2FormerConfig(backbone_config=swin, num_labels=80, num_queries=6, **sizes, **layers)
    T.Mask2FormerForUniversalSegmentation(m2f).save_pretrained(root / "m2f")
    T.Mask2FormerImageProcessor(
        size={"shortest_edge": 64, "longest_edge": 96}, size_divisor=32
    ).save_pretrained(root / "m2f")
    chars = _byte_chars()
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": 256 + i for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": 512, "<|endoftext|>": 513}
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = T.CLIPTokenizer(str(root / "vocab.json"), str(root / "merges.txt"))
    T.CLIPProcessor(
        image_processor=T.CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ),
        tokenizer=tokenizer,
    ).save_pretrained(root / "clip")
    small = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    text = {
        "vocab_size": 514,
        "max_position_embeddings": 77,
        "bos_token_id": 512,
        "eos_token_id": 513,
        "pad_token_id": 513,
    }
    vision = {"image_size": 32, "patch_size": 8, **small}
    clip = T.CLIPConfig(text_config={**text, **small}, vision_config=vision, projection_dim=8)
    T.CLIPModel(clip).save_pretrained(root / "clip")
    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "[DEC]",
        "yes",
        "no",
        "is",
        "there",
        "a",
        "two",
        "?",
    ]
    (root / "bert.txt").write_text("\n".join(words) + "\n")
    bert = T.BertTokenizer(str(root / "bert.txt"), bos_token="[DEC]")
    T.BlipProcessor(
        image_processor=T.BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=bert
    ).save_pretrained(root / "blip")
    blip_text = {"vocab_size": len(words), "encoder_hidden_size": 16, "max_position_embeddings": 32, **small}
    blip_text |= {"bos_token_id": 5, "pad_token_id": 0, "sep_token_id": 3}
    T.BlipForQuestionAnswering(
        T.BlipConfig(text_config=blip_text, vision_config=vision, projection_dim=8)
    ).save_pretrained(root / "blip")
    return {"m2f": root / "m2f", "clip": root / "clip", "blip": root / "blip"}
