"""Lumina-mGPT 2.0 text-to-image: its Chameleon decoder (``softcfg.models.chameleon``) and MoVQGAN image
decoder (``softcfg.models.movqgan``) driven by the project's loop.

Facts from Alpha-VLLM/Lumina-mGPT-2.0 (files under ``lumina_mgpt/``):

- Prompt (``generate_examples/generate.py``, ``data/convertsation.py``, ``xllmx/data/item_processor.py``,
  ``xllmx/model/tokenizer.py``): the text ``Generate an image of {W}x{H} according to the following
  prompt:\\n{prompt}`` plus the turn separator ``<reserved08706>``, tokenized without special tokens,
  after the tokenizer's BOS (its EOS where it has none).
- Image sequence (``data/item_processor.py``): ``<racm3:break>`` (begin of image), the height and the
  width in 32 px grids as ``<reserved{8800 + n:05d}>``, then H/8 rows of W/8 codes, each row followed by
  the end-of-line token ``<reserved08799>``, then ``<eoss>``; code c is vocabulary id 155000 + c.
- Sampling (``inference_solver.py``): CFG ``l_u + g (l_c - l_u)`` on the raw logits from the first code
  on; the unconditional branch is a separate sequence starting at the begin-of-image token (no text);
  after CFG every non-image id is suppressed, and where a row ends the end-of-line token is forced;
  then image top-k. The official sampler lets the model write the begin-of-image and size tokens after
  the prompt; here they end the prompt, so every image has the size the text asks for.

Token vocabulary here: the 16384 codes, and id 16384 for end-of-line, which is a generated token of the
sequence (H/8 x (W/8 + 1) tokens). The model's logits already obey the official rule, in both branches:
every id but end-of-line at a row's end, and end-of-line elsewhere, sits at the float32 minimum (finite,
so CFG of two suppressed logits stays suppressed rather than NaN). End-of-line tokens thus have
probability 1, confidence 1 and are SoftCFG-weighted like any other generated slot. Rows are
left-padded; each row's RoPE positions count its own tokens from 0, as in the official separate
conditional and unconditional passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from softcfg.conditioning import Conditions, Prompts
from softcfg.data.prompts import PromptReader
from softcfg.models.attention import KVCache, SlotWeights
from softcfg.models.base import ARModel, TokenGrid, load_state_dict_strict
from softcfg.models.chameleon import (
    IGNORED_PREFIXES,
    ChameleonConfig,
    ChameleonDecoder,
    Step,
    read_safetensors_folder,
)
from softcfg.models.hf_folder import folder_error
from softcfg.models.movqgan import MoVQDecoder, load_movq_decoder, movq_images_to_uint8
from softcfg.options import ConfigError, UserError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from softcfg.config import ModelEntry

IMAGE_OFFSET = 155000  # FlexARItemProcessor.get_image_token
CODES = 16384  # MoVQGAN n_embed; vocabulary ids 155000 .. 171383
EOL = CODES  # the end-of-line token in the sampled vocabulary
PX_PER_CODE, PX_PER_SIZE_TOKEN = 8, 32
DEFAULT_IMAGE_SIZE = 768  # scripts/sample.sh --width 768 --height 768
TEMPLATE = "Generate an image of {width}x{height} according to the following prompt:\n{prompt}"
SEPARATOR, BEGIN_OF_IMAGE, END_OF_LINE = "<reserved08706>", "<racm3:break>", "<reserved08799>"
SIZES = {  # the released 7B's config.json
    "7B": {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "vocab_size": 171385},
}


def size_token(pixels: int) -> str:
    return f"<reserved{8800 + pixels // PX_PER_SIZE_TOKEN:05d}>"


@dataclass
class LuminaCache:
    """The rows' cache, allocated by ``prefill`` once the padded prompt length P is known: ``mask``
    [rows, P + T - 1] (the prompts' mask, then ones), ``lengths`` [rows] (each row's real prompt tokens)."""

    rows: int
    kv: KVCache | None = None
    mask: Tensor | None = None
    lengths: Tensor | None = None


def prompt_ids(tokenizer: PreTrainedTokenizerBase, image_size: int, text: str) -> list[int]:
    """BOS, the official template and separator: a row before its image prefix."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    line = TEMPLATE.format(width=image_size, height=image_size, prompt=text) + SEPARATOR
    return [bos, *tokenizer.encode(line, add_special_tokens=False)]


def image_prefix(ids: dict[str, int], image_size: int) -> list[int]:
    """Begin-of-image, then the height's and the width's size tokens."""
    size = ids[size_token(image_size)]
    return [ids[BEGIN_OF_IMAGE], size, size]


class LuminaMGPT2(ARModel):
    """The adapter: prompts through the folder's tokenizer, codes and end-of-line tokens through the
    decoder, images through the MoVQGAN decoder (``tokenizer``, kept float32 by ``load_model``)."""

    conditioning = "text"
    vocab_size = CODES + 1

    def __init__(
        self,
        decoder: ChameleonDecoder,
        text_tokenizer: PreTrainedTokenizerBase | None,
        ids: dict[str, int],
        image_size: int = DEFAULT_IMAGE_SIZE,
        tokenizer: MoVQDecoder | None = None,
    ) -> None:
        super().__init__()
        if image_size % PX_PER_SIZE_TOKEN:
            raise ConfigError(f"model.image_size: lumina generates multiples of 32 px, got {image_size}")
        self.decoder = decoder.eval()
        self.text_tokenizer, self.ids, self.image_size = text_tokenizer, ids, image_size
        self.tokenizer = tokenizer
        self.rows = self.cols = image_size // PX_PER_CODE
        self.num_tokens = self.rows * (self.cols + 1)
        self.prefix_len = 0  # the batch's padded prompt length, set by prefill
        vocab = torch.arange(IMAGE_OFFSET, IMAGE_OFFSET + CODES + 1)
        vocab[EOL] = ids[END_OF_LINE]
        self.register_buffer("vocabulary_ids", vocab, persistent=False)  # our token -> decoder vocabulary
        is_eol = torch.arange(CODES + 1) == EOL
        # blocked[0]: what a token inside a row may not be (end-of-line); blocked[1]: at a row's end
        self.register_buffer("blocked", torch.stack([is_eol, ~is_eol]), persistent=False)

    def token_grid(self) -> TokenGrid:
        """The codes, row-major; each row's end-of-line token is the stride's extra column."""
        return TokenGrid(0, self.rows, self.cols, self.cols + 1)

    def image_prefix(self) -> list[int]:
        return image_prefix(self.ids, self.image_size)

    def prompts(self, texts: Sequence[str]) -> Prompts:
        """BOS, the official template and separator, then the image prefix; left-padded."""
        rows = [
            prompt_ids(self.text_tokenizer, self.image_size, text) + self.image_prefix() for text in texts
        ]
        return Prompts.left_padded(rows, texts)

    def unconditional(self, conditions: Conditions) -> Prompts:
        """The official unconditional sequence: the image prefix alone."""
        if not isinstance(conditions, Prompts):
            raise TypeError(
                f"Lumina-mGPT 2.0 is conditioned on text prompts, got {type(conditions).__name__}"
            )
        ids = torch.tensor([self.image_prefix()] * len(conditions), dtype=torch.long)
        return Prompts(ids, torch.ones_like(ids, dtype=torch.bool), ("",) * len(conditions))

    def new_cache(self, batch: int) -> LuminaCache:  # type: ignore[override]
        return LuminaCache(batch)

    def _logits(self, hidden: Tensor, predicted: int | Tensor) -> Tensor:
        """Float32 logits [N, L, V] of the codes and end-of-line from ``hidden`` [N, L, D], for the
        predicted token index (a decode step's int) or indices ``predicted`` [L], with the official
        constraints applied."""
        weight = self.decoder.lm_head.weight
        end = self.ids[END_OF_LINE]  # an int, so a compiled step slices without a graph break
        logits = torch.cat(
            [hidden @ weight[IMAGE_OFFSET : IMAGE_OFFSET + CODES].T, hidden @ weight[end : end + 1].T], dim=-1
        ).float()
        row_end = (predicted + 1) % (self.cols + 1) == 0  # a bool, or [L]
        blocked = self.blocked[int(row_end)] if isinstance(row_end, bool) else self.blocked[row_end.long()]
        return logits.masked_fill(blocked, torch.finfo(torch.float32).min)

    def prefill(self, conditions: Prompts, cache: LuminaCache) -> Tensor:  # type: ignore[override]
        device = self.vocabulary_ids.device
        ids, mask = conditions.ids.to(device), conditions.mask.to(device)
        if ids.shape[0] != cache.rows:
            raise ValueError(f"cache for {cache.rows} rows, prefill of {ids.shape[0]}")
        self.prefix_len = length = ids.shape[1]
        cache.kv = self.decoder.new_cache(cache.rows, self.num_slots)
        cache.mask = torch.cat([mask, mask.new_ones(cache.rows, self.num_slots - length)], dim=1)
        cache.lengths = mask.sum(1)
        step = Step(cache.kv, self._prompt_mask(mask))
        hidden = self.decoder.hidden(ids, (mask.cumsum(1) - 1).clamp_min(0), step)
        return self._logits(hidden[:, -1:], 0)[:, 0]

    @staticmethod
    def _prompt_mask(mask: Tensor) -> Tensor:
        """[N, 1, L, L]: causal over real tokens; a padding position sees itself only (never attended
        by a real one), so no attention row is empty."""
        length = mask.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
        eye = torch.eye(length, dtype=torch.bool, device=mask.device)
        return ((causal & mask[:, None, :]) | eye)[:, None]

    def decode(  # type: ignore[override]
        self, tokens: Tensor, index: int, cache: LuminaCache, slot_weights: SlotWeights | None = None
    ) -> Tensor:
        slot = self.prefix_len + index
        step = Step(cache.kv, cache.mask[:, None, None, : slot + 1], slot_weights)
        positions = (cache.lengths + index)[:, None]
        hidden = self.decoder.hidden(self.vocabulary_ids[tokens][:, None], positions, step)
        return self._logits(hidden, index + 1)[:, 0]

    def forward(self, conditions: Prompts, tokens: Tensor) -> Tensor:  # type: ignore[override]
        device = self.vocabulary_ids.device
        prompt, tokens = conditions.ids.to(device), tokens.to(device)
        ids = torch.cat([prompt, self.vocabulary_ids[tokens[:, :-1]]], dim=1)
        mask = torch.cat(
            [conditions.mask.to(device), tokens.new_ones(tokens.shape[0], tokens.shape[1] - 1).bool()], 1
        )
        hidden = self.decoder.hidden(
            ids, (mask.cumsum(1) - 1).clamp_min(0), Step(None, self._prompt_mask(mask))
        )
        predicted = torch.arange(tokens.shape[1], device=device)
        return self._logits(hidden[:, prompt.shape[1] - 1 :], predicted)

    @torch.no_grad()  # the shard writer decodes in a background thread, outside the loop's inference mode
    def decode_images(self, tokens: Tensor) -> Tensor:
        if self.tokenizer is None:
            raise UserError("lumina: decoding tokens to images needs the model entry's tokenizer (MoVQGAN)")
        codes = tokens.view(-1, self.rows, self.cols + 1)[:, :, : self.cols]
        weight = self.tokenizer.post_quant_conv.weight
        # one image at a time, as the official inference_solver decodes: a batched convolution rounds
        # differently (pixels off by one grey level at truncation edges)
        pixels = torch.cat([self.tokenizer(code[None].to(weight.device)) for code in codes])
        return movq_images_to_uint8(pixels)


def _folder_error(folder: Path, what: str, exc: Exception | None = None) -> UserError:
    return folder_error(folder, "Lumina-mGPT 2.0", what, exc)


def special_ids(tokenizer: PreTrainedTokenizerBase, folder: Path, image_size: int) -> dict[str, int]:
    """The ids of the official special tokens in the folder's vocabulary, by name."""
    vocab = tokenizer.get_vocab()
    names = (SEPARATOR, BEGIN_OF_IMAGE, END_OF_LINE, size_token(image_size))
    missing = [name for name in names if name not in vocab]
    if missing:
        raise _folder_error(folder, f"its tokenizer lacks {missing}")
    return {name: vocab[name] for name in names}


def read_decoder(folder: Path, config: ChameleonConfig) -> ChameleonDecoder:
    """The decoder with the folder's weights, in their dtype, loaded strictly (Chameleon's own VQ
    weights, which the official class builds and Lumina never runs, are left out)."""
    state = {k: v for k, v in read_safetensors_folder(folder).items() if not k.startswith(IGNORED_PREFIXES)}
    with torch.device("meta"):  # no random initialisation of billions of weights
        decoder = ChameleonDecoder(config)
    load_state_dict_strict(decoder, state, folder, assign=True)
    return decoder


def read_lumina_text(
    folder: str | Path, image_size: int | None = None, size: str | None = None
) -> tuple[Path, ChameleonConfig, PreTrainedTokenizerBase, dict[str, int]]:
    """The folder's config, tokenizer and special ids: everything but the weights, checked; ``size``
    (7B) must match the folder's architecture."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"model.checkpoint: Lumina-mGPT 2.0 folder not found: {folder}")
    if not (folder / "config.json").is_file():
        raise _folder_error(folder, "no config.json")
    config = ChameleonConfig.from_folder(folder)
    if config.vocab_size < IMAGE_OFFSET + CODES:
        raise _folder_error(folder, f"vocab_size {config.vocab_size} leaves out image codes (ids to 171383)")
    if size is not None:
        found = {key: getattr(config, key) for key in SIZES[size]}
        if found != SIZES[size]:
            raise ConfigError(
                f"model.size: Lumina-mGPT 2.0 {size} has {SIZES[size]}, the folder {folder} has {found}"
            )
    try:
        text_tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as exc:
        raise _folder_error(folder, "no usable tokenizer files", exc) from exc
    return (
        folder,
        config,
        text_tokenizer,
        special_ids(text_tokenizer, folder, image_size or DEFAULT_IMAGE_SIZE),
    )


def load_lumina_folder(
    folder: str | Path, tokenizer: str | Path | None, image_size: int | None = None, size: str | None = None
) -> LuminaMGPT2:
    """Lumina-mGPT 2.0 from its folder (config.json, safetensors, tokenizer files) and MoVQGAN file,
    checked before the weights are read; ``size`` (7B) must match the folder's architecture."""
    folder, config, text_tokenizer, ids = read_lumina_text(folder, image_size, size)
    movq = load_movq_decoder(tokenizer) if tokenizer is not None else None
    if movq is not None and (movq.config.n_embed, movq.config.downsample) != (CODES, PX_PER_CODE):
        raise UserError(
            f"model.tokenizer: {tokenizer} has {movq.config.n_embed} codes of {movq.config.downsample} px,"
            f" Lumina-mGPT 2.0 {CODES} of {PX_PER_CODE} px"
        )
    return LuminaMGPT2(
        read_decoder(folder, config), text_tokenizer, ids, image_size or DEFAULT_IMAGE_SIZE, movq
    )


def prompt_reader(entry: ModelEntry) -> PromptReader:
    """Prompts as ``LuminaMGPT2.prompts`` encodes them (with the 3-token image prefix), from the folder's
    tokenizer; the decoder reads the prompt and all image tokens but the last within its
    ``max_position_embeddings``."""
    _, config, tokenizer, ids = read_lumina_text(entry.checkpoint, entry.image_size, entry.size)
    image_size = entry.image_size or DEFAULT_IMAGE_SIZE
    side = image_size // PX_PER_CODE

    def encode(text: str) -> list[int]:
        return prompt_ids(tokenizer, image_size, text) + image_prefix(ids, image_size)

    return PromptReader(encode, config.max_position_embeddings - side * (side + 1) + 1)


def load_lumina(entry: ModelEntry) -> LuminaMGPT2:
    """The model entry's Lumina-mGPT 2.0: the decoder from the ``checkpoint`` folder, the MoVQGAN image
    decoder from ``tokenizer`` (``movqgan_270M.ckpt``)."""
    for key in ("dim", "depth", "heads"):
        if getattr(entry, key) is not None:
            raise ConfigError(f"model.{key}: lumina takes its architecture from the checkpoint folder")
    if entry.tokenizer is None:
        raise ConfigError("model.tokenizer: lumina needs its MoVQGAN image decoder (movqgan_270M.ckpt)")
    if entry.uncond_fp32:
        raise ConfigError(
            "model.uncond_fp32: not available for lumina (float32 unconditional rows need class labels)"
        )
    return load_lumina_folder(entry.checkpoint, entry.tokenizer, entry.image_size, entry.size)
