"""Janus-Pro text-to-image: transformers' ``JanusForConditionalGeneration`` driven by the project's loop.

Facts from transformers' Janus image generation (``generate(generation_mode="image")``) and DeepSeek's
``generation_inference.py``: the prompt is the chat template's user turn plus the begin-of-image token
(the processor's ``generation_mode="image"``), left-padded; an unconditional row is its prompt with every
position but its first and its last replaced by the pad token (``tokens[i, 1:-1] = pad_id``, so a prompt
whose text holds ``<begin_of_image>`` keeps it only at the end), keeping the prompt's attention mask; image
tokens enter through ``generation_embeddings`` + ``generation_aligner`` and are predicted by
``generation_head`` from the language model's last hidden state; the VQ decoder's output x maps to pixels
as clip((x + 1) / 2 * 255), cast to uint8 by truncation.

Slots: the padded prompt fills cache positions 0..P-1 (``prefix_len`` = P, set in ``prefill``), image
token i sits at P + i, so the sampler's per-slot weights are the cache positions' weights as they are.
The language model's attention runs through ``softcfg.models.hf_attention``; its cache is a static one
of P + T - 1 positions (``hf_attention.StaticRows``), allocated in ``prefill`` once P is known.
Positions are the cache positions, as in transformers' loop (left padding shifts a row's positions
uniformly, which RoPE does not see).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from transformers import (
    AutoProcessor,
    GenerationConfig,
    JanusForConditionalGeneration,
    PreTrainedConfig,
    ProcessorMixin,
)

from softcfg.conditioning import Conditions, Prompts
from softcfg.data.prompts import PromptReader, preview
from softcfg.models.attention import SlotWeights
from softcfg.models.base import ARModel, images_to_uint8
from softcfg.models.hf_attention import StaticRows, teacher_forced_mask, use_softcfg_attention
from softcfg.models.hf_folder import folder_error, read_folder_config
from softcfg.options import ConfigError, UserError

if TYPE_CHECKING:
    from softcfg.config import ModelEntry

# Janus-Pro-1B / -7B (deepseek-community conversions): language model width and depth, 384 px, 576 tokens
SIZES = {
    "1B": {"hidden_size": 2048, "num_hidden_layers": 24},
    "7B": {"hidden_size": 4096, "num_hidden_layers": 30},
}
IMAGE_SIZE, IMAGE_TOKENS = 384, 576


def chat(processor: ProcessorMixin, text: str) -> str:
    """The prompt as the chat template's user turn, ready for the assistant's image."""
    turn = [{"role": "user", "content": [{"type": "text", "text": text}]}]
    return processor.apply_chat_template(turn, add_generation_prompt=True)


class JanusPro(ARModel):
    """The adapter: prompts through the processor's chat template, image tokens through the generation
    embedding and head, images through the VQ decoder."""

    conditioning = "text"

    def __init__(
        self,
        hf: JanusForConditionalGeneration,
        processor: ProcessorMixin | None,
        bos_id: int,
        pad_id: int,
        boi_id: int,
    ) -> None:
        super().__init__()
        self.hf = hf.eval()
        use_softcfg_attention(self.language_model)
        self.processor = processor
        self.bos_id, self.pad_id, self.boi_id = bos_id, pad_id, boi_id
        self.num_tokens = hf.config.vision_config.num_image_tokens
        self.vocab_size = hf.config.vq_config.num_embeddings
        self.prefix_len = 0  # the batch's padded prompt length, set by prefill

    @property
    def language_model(self) -> torch.nn.Module:
        return self.hf.model.language_model

    def prompts(self, texts: Sequence[str]) -> Prompts:
        """Each text as the user turn of the chat template, then begin-of-image; left-padded."""
        chats = [chat(self.processor, text) for text in texts]
        encoded = self.processor(text=chats, generation_mode="image", padding=True, return_tensors="pt")
        ids = encoded["input_ids"].long()
        if not (ids[:, -1] == self.boi_id).all():
            row = int((ids[:, -1] != self.boi_id).nonzero()[0])
            raise UserError(
                f"Janus-Pro prompt {texts[row]!r} does not end in <begin_of_image> after padding: the "
                "folder's tokenizer pads on the right (tokenizer_config.json padding_side); image generation "
                "needs left padding, so that every row predicts its first image token from its last slot"
            )
        return Prompts(ids, encoded["attention_mask"].bool(), tuple(texts))

    def unconditional(self, conditions: Conditions) -> Prompts:
        """Every position of a (left-padded) prompt but its first real token and its last replaced by the
        pad token, same mask: DeepSeek's rule by position, whatever the tokens are."""
        if not isinstance(conditions, Prompts):
            raise TypeError(f"Janus-Pro is conditioned on text prompts, got {type(conditions).__name__}")
        first = conditions.mask.int().argmax(dim=1, keepdim=True)  # the first unmasked position of each row
        position = torch.arange(conditions.ids.shape[1], device=conditions.ids.device)[None]
        keep = (position == first) | (position == conditions.ids.shape[1] - 1)
        return Prompts(
            conditions.ids.masked_fill(~keep, self.pad_id), conditions.mask, ("",) * len(conditions)
        )

    def new_cache(self, batch: int) -> StaticRows:  # type: ignore[override]
        return StaticRows(batch)

    def _logits(self, hidden: Tensor) -> Tensor:
        return self.hf.model.generation_head(hidden)

    def prefill(self, conditions: Prompts, cache: StaticRows) -> Tensor:  # type: ignore[override]
        device = self.hf.device
        ids, mask = conditions.ids.to(device), conditions.mask.to(device)
        self.prefix_len = ids.shape[1]
        cache.allocate(self.language_model.config, mask, self.num_slots)
        embeds = self.hf.get_input_embeddings()(ids)
        hidden = self.language_model(
            inputs_embeds=embeds, **cache.prefill_inputs(ids.shape[1])
        ).last_hidden_state
        return self._logits(hidden[:, -1])

    def decode(  # type: ignore[override]
        self, tokens: Tensor, index: int, cache: StaticRows, slot_weights: SlotWeights | None = None
    ) -> Tensor:
        slot = self.prefix_len + index  # decode steps come in order: the static cache writes here
        embeds = self.hf.prepare_embeddings_for_image_generation(tokens[:, None])
        hidden = self.language_model(inputs_embeds=embeds, **cache.decode_inputs(slot, slot_weights))
        return self._logits(hidden.last_hidden_state[:, -1])

    def forward(self, conditions: Prompts, tokens: Tensor) -> Tensor:  # type: ignore[override]
        device = self.hf.device
        ids, mask, tokens = conditions.ids.to(device), conditions.mask.to(device), tokens.to(device)
        embeds = torch.cat(
            [
                self.hf.get_input_embeddings()(ids),
                self.hf.prepare_embeddings_for_image_generation(tokens[:, :-1]),
            ],
            dim=1,
        )
        hidden = self.language_model(
            inputs_embeds=embeds,
            attention_mask=teacher_forced_mask(mask, tokens.shape[1] - 1),
            position_ids=torch.arange(embeds.shape[1], device=device)[None],
            use_cache=False,
        ).last_hidden_state
        return self._logits(hidden[:, ids.shape[1] - 1 :])

    @torch.no_grad()  # the shard writer decodes in a background thread, outside the loop's inference mode
    def decode_images(self, tokens: Tensor) -> Tensor:
        pixels = self.hf.model.vqmodel.decode(tokens.to(self.hf.device))  # [N, 3, H, W], about [-1, 1]
        return images_to_uint8((pixels.float() + 1) / 2)


def _folder_error(folder: Path, what: str, exc: Exception | None = None) -> UserError:
    return folder_error(folder, "Janus-Pro", what, exc)


def read_janus_text(
    folder: str | Path, size: str | None = None
) -> tuple[Path, PreTrainedConfig, ProcessorMixin, dict[str, int]]:
    """The folder's config, processor and special ids (bos, pad, boi): everything but the weights,
    checked; ``size`` (1B, 7B) must match the folder's architecture."""
    folder, config = read_folder_config(folder, "Janus-Pro", "janus")
    if size is not None:
        text, vision = config.text_config, config.vision_config
        found = {key: getattr(text, key) for key in SIZES[size]}
        found |= {"image_size": vision.image_size, "num_image_tokens": vision.num_image_tokens}
        expected = SIZES[size] | {"image_size": IMAGE_SIZE, "num_image_tokens": IMAGE_TOKENS}
        if found != expected:
            raise ConfigError(f"model.size: Janus-Pro-{size} has {expected}, the folder {folder} has {found}")
    try:
        processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    except Exception as exc:
        raise _folder_error(folder, "no usable processor/tokenizer files", exc) from exc
    try:
        generation = GenerationConfig.from_pretrained(folder, local_files_only=True)
    except Exception as exc:
        raise _folder_error(folder, "no usable generation_config.json", exc) from exc
    boi = (getattr(generation, "generation_kwargs", None) or {}).get("boi_token_id")
    ids = {"bos": generation.bos_token_id, "pad": generation.pad_token_id, "boi": boi}
    missing = [f"{key}_token_id" for key, value in ids.items() if value is None]
    if missing:
        raise _folder_error(folder, f"generation_config.json lacks {missing}")
    return folder, config, processor, ids


def load_janus_folder(
    folder: str | Path, dtype: torch.dtype = torch.float32, size: str | None = None
) -> JanusPro:
    """Janus-Pro from a ``save_pretrained`` folder (model, processor, generation config), checked before the
    weights are read; ``size`` (1B, 7B) must match the folder's architecture."""
    folder, _, processor, ids = read_janus_text(folder, size)
    try:
        hf = JanusForConditionalGeneration.from_pretrained(folder, dtype=dtype, local_files_only=True)
    except Exception as exc:
        raise _folder_error(folder, "weights unreadable", exc) from exc
    return JanusPro(hf, processor, ids["bos"], ids["pad"], ids["boi"])


def prompt_reader(entry: ModelEntry) -> PromptReader:
    """Prompts as ``JanusPro.prompts`` encodes them, from the folder's processor; the language model reads
    the prompt and all image tokens but the last within its ``max_position_embeddings``."""
    _, config, processor, ids = read_janus_text(entry.checkpoint, entry.size)

    def encode(text: str) -> list[int]:
        row = processor(text=[chat(processor, text)], generation_mode="image")["input_ids"][0]
        if row[-1] != ids["boi"]:
            raise UserError(f"prompt {preview(text)} does not end in <begin_of_image> once encoded")
        return row

    limit = config.text_config.max_position_embeddings - config.vision_config.num_image_tokens + 1
    return PromptReader(encode, limit)


def load_janus(entry: ModelEntry, dtype: torch.dtype) -> JanusPro:
    """The model entry's Janus-Pro: everything comes from the ``checkpoint`` folder."""
    for key in ("dim", "depth", "heads", "tokenizer"):
        if getattr(entry, key) is not None:
            raise ConfigError(
                f"model.{key}: janus takes its architecture and VQ decoder from the checkpoint folder"
            )
    if entry.uncond_fp32 and dtype != torch.float32:
        raise ConfigError(
            "model.uncond_fp32: not available for janus (float32 unconditional rows need class labels)"
        )
    return load_janus_folder(entry.checkpoint, dtype, entry.size)
