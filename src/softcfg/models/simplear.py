"""SimpleAR text-to-image: transformers' ``Qwen2ForCausalLM`` driven by the project's loop, images through
Cosmos' DV8x16x16 decoder (``softcfg.models.cosmos``).

Facts from wdrink/SimpleAR (``generate.py``, ``simpar/model/builder.py``,
``simpar/model/language_model/simpar_qwen2.py``, ``simpar/train/train.py``, ``simpar/train/t2token_data.py``,
``scripts/eval/``): the decoder is a plain Qwen2 (``SimpARForCausalLM`` adds generation methods only;
``model_type: qwen2``); training appended seven special tokens (``<|t2i|>``, ``<|soi|>``, ...) and 64000
image-token rows, so code c is id ``len(tokenizer) + c``. The prompt is ``<|t2i|>A highly realistic image
of {prompt}<|soi|>``, tokenized as is (Qwen2 adds no BOS); the unconditional (negative) prompt is
``<|t2i|>An image of aerial view, overexposed, low quality, deformation, a poor composition, bad hands,
bad teeth, bad eyes, bad limbs, distortion<|soi|>``, run as its own sequence. ``CFGLogits`` guides
log-probabilities, ``l_u' + g (l_c' - l_u')`` with ``l' = log_softmax(l)``: a row constant away from CFG
of the raw logits, so the sampled distribution is the same. (image_size / 16)^2 tokens, row-major, no
end-of-line tokens; 1024 px (4096 tokens) in every evaluation script.

Differences, on purpose: the official sampler draws from the whole vocabulary (a text id, clamped to code
0 after decoding, is possible); here only the 64000 image tokens have logits. Its evaluation scripts
pick the prompt's prefix at random among twenty phrases per prompt; here it is ``generate.py``'s fixed
one. Rows are left-padded; positions are the cache positions, as in transformers' loop (a uniform
shift per row, which RoPE does not see). The language model's attention runs through
``softcfg.models.hf_attention`` on a static cache of P + T - 1 positions, allocated in ``prefill``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from transformers import AutoTokenizer, PreTrainedConfig, PreTrainedTokenizerBase, Qwen2ForCausalLM

from softcfg.conditioning import Conditions, Prompts
from softcfg.data.prompts import PromptReader
from softcfg.models.attention import SlotWeights
from softcfg.models.base import ARModel
from softcfg.models.cosmos import CosmosDecoder, cosmos_images_to_uint8, load_cosmos_decoder
from softcfg.models.hf_attention import StaticRows, teacher_forced_mask, use_softcfg_attention
from softcfg.models.hf_folder import folder_error, read_folder_config
from softcfg.options import ConfigError, UserError

if TYPE_CHECKING:
    from softcfg.config import ModelEntry

CODES = 64000  # FSQ (8, 8, 8, 5, 5, 5)
PX_PER_TOKEN = 16
DEFAULT_IMAGE_SIZE = 1024  # scripts/eval/bench_geneval*.sh, bench_dpg*.sh: --image-size 1024
T2I, START_OF_IMAGE = "<|t2i|>", "<|soi|>"
PREFIX = "A highly realistic image of "
NEGATIVE = (
    "An image of aerial view, overexposed, low quality, deformation, a poor composition, bad hands, "
    "bad teeth, bad eyes, bad limbs, distortion"
)
SIZES = {  # Qwen2.5-0.5B / -1.5B, the bases of SimpleAR-0.5B / -1.5B
    "0.5B": {"hidden_size": 896, "num_hidden_layers": 24},
    "1.5B": {"hidden_size": 1536, "num_hidden_layers": 28},
}


def prompt_line(text: str) -> str:
    """``<|t2i|>`` + generate.py's prefix + the text + ``<|soi|>``."""
    return T2I + PREFIX + text + START_OF_IMAGE


def prompt_ids(tokenizer: PreTrainedTokenizerBase, line: str) -> list[int]:
    return tokenizer(line, add_special_tokens=True)["input_ids"]


class SimpleAR(ARModel):
    """The adapter: prompts through the folder's tokenizer, image tokens as the vocabulary's last 64000
    ids, images through the Cosmos decoder (``tokenizer``, in its own dtype, bf16 as upstream)."""

    conditioning = "text"
    vocab_size = CODES

    def __init__(
        self,
        hf: Qwen2ForCausalLM,
        text_tokenizer: PreTrainedTokenizerBase | None,
        image_offset: int,
        image_size: int = DEFAULT_IMAGE_SIZE,
        tokenizer: CosmosDecoder | None = None,
    ) -> None:
        super().__init__()
        if image_size % PX_PER_TOKEN:
            raise ConfigError(f"model.image_size: simplear generates multiples of 16 px, got {image_size}")
        self.hf = hf.eval()
        use_softcfg_attention(self.hf.model)
        self.text_tokenizer, self.image_offset, self.image_size = text_tokenizer, image_offset, image_size
        self.tokenizer = tokenizer
        self.side = image_size // PX_PER_TOKEN
        self.num_tokens = self.side**2
        self.prefix_len = 0  # the batch's padded prompt length, set by prefill

    def _encode(self, lines: Sequence[str], texts: Sequence[str]) -> Prompts:
        return Prompts.left_padded([prompt_ids(self.text_tokenizer, line) for line in lines], texts)

    def prompts(self, texts: Sequence[str]) -> Prompts:
        return self._encode([prompt_line(text) for text in texts], texts)

    def unconditional(self, conditions: Conditions) -> Prompts:
        """generate.py's negative prompt, one per row."""
        if not isinstance(conditions, Prompts):
            raise TypeError(f"SimpleAR takes text prompts, got {type(conditions).__name__}")
        return self._encode([T2I + NEGATIVE + START_OF_IMAGE] * len(conditions), ("",) * len(conditions))

    def new_cache(self, batch: int) -> StaticRows:  # type: ignore[override]
        return StaticRows(batch)

    def _logits(self, hidden: Tensor) -> Tensor:
        weight = self.hf.lm_head.weight[self.image_offset : self.image_offset + CODES]
        return (hidden @ weight.T).float()

    def prefill(self, conditions: Prompts, cache: StaticRows) -> Tensor:  # type: ignore[override]
        device = self.hf.device
        ids, mask = conditions.ids.to(device), conditions.mask.to(device)
        self.prefix_len = ids.shape[1]
        cache.allocate(self.hf.config, mask, self.num_slots)
        hidden = self.hf.model(input_ids=ids, **cache.prefill_inputs(ids.shape[1])).last_hidden_state
        return self._logits(hidden[:, -1])

    def decode(  # type: ignore[override]
        self, tokens: Tensor, index: int, cache: StaticRows, slot_weights: SlotWeights | None = None
    ) -> Tensor:
        slot = self.prefix_len + index  # decode steps come in order: the static cache writes here
        ids = (tokens + self.image_offset)[:, None]
        hidden = self.hf.model(input_ids=ids, **cache.decode_inputs(slot, slot_weights)).last_hidden_state
        return self._logits(hidden[:, -1])

    def forward(self, conditions: Prompts, tokens: Tensor) -> Tensor:  # type: ignore[override]
        device = self.hf.device
        prompt, tokens = conditions.ids.to(device), tokens.to(device)
        ids = torch.cat([prompt, tokens[:, :-1] + self.image_offset], dim=1)
        hidden = self.hf.model(
            input_ids=ids,
            attention_mask=teacher_forced_mask(conditions.mask.to(device), tokens.shape[1] - 1),
            position_ids=torch.arange(ids.shape[1], device=device)[None],
            use_cache=False,
        ).last_hidden_state
        return self._logits(hidden[:, prompt.shape[1] - 1 :])

    @torch.no_grad()  # the shard writer decodes in a background thread, outside the loop's inference mode
    def decode_images(self, tokens: Tensor) -> Tensor:
        if self.tokenizer is None:
            raise UserError("simplear: decoding tokens to images needs the model entry's tokenizer (Cosmos)")
        device = self.tokenizer.post_quant_conv.conv3d.weight.device
        codes = tokens.view(-1, self.side, self.side).to(device)
        # one image at a time, as generate.py decodes: a batched convolution rounds differently
        return cosmos_images_to_uint8(torch.cat([self.tokenizer(code[None]) for code in codes]))


def _folder_error(folder: Path, what: str, exc: Exception | None = None) -> UserError:
    return folder_error(folder, "SimpleAR", what, exc)


def read_simplear_text(
    folder: str | Path, size: str | None = None
) -> tuple[Path, PreTrainedConfig, PreTrainedTokenizerBase]:
    """The folder's config and tokenizer: everything but the weights, checked; ``size`` (0.5B, 1.5B)
    must match the folder's architecture."""
    folder, config = read_folder_config(folder, "SimpleAR", "qwen2")
    if size is not None:
        found = {key: getattr(config, key) for key in SIZES[size]}
        if found != SIZES[size]:
            raise ConfigError(f"model.size: SimpleAR-{size} has {SIZES[size]}, {folder} has {found}")
    try:
        text_tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as exc:
        raise _folder_error(folder, "no usable tokenizer files", exc) from exc
    vocab = text_tokenizer.get_vocab()
    missing = [name for name in (T2I, START_OF_IMAGE) if name not in vocab]
    if missing:
        raise _folder_error(folder, f"its tokenizer lacks {missing}")
    if config.vocab_size < len(text_tokenizer) + CODES:
        raise _folder_error(
            folder, f"vocab_size {config.vocab_size} < {len(text_tokenizer)} text ids + {CODES} image codes"
        )
    return folder, config, text_tokenizer


def load_simplear_folder(
    folder: str | Path,
    tokenizer: str | Path | None,
    image_size: int | None = None,
    size: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> SimpleAR:
    """SimpleAR from its ``save_pretrained`` folder and Cosmos ``decoder.jit``, checked before the weights
    are read; ``size`` (0.5B, 1.5B) must match the folder's architecture."""
    folder, _, text_tokenizer = read_simplear_text(folder, size)
    decoder = load_cosmos_decoder(tokenizer) if tokenizer is not None else None
    try:
        hf = Qwen2ForCausalLM.from_pretrained(folder, dtype=dtype, local_files_only=True)
    except Exception as exc:
        raise _folder_error(folder, "weights unreadable", exc) from exc
    return SimpleAR(hf, text_tokenizer, len(text_tokenizer), image_size or DEFAULT_IMAGE_SIZE, decoder)


def prompt_reader(entry: ModelEntry) -> PromptReader:
    """Prompts as ``SimpleAR.prompts`` encodes them, from the folder's tokenizer; the model reads the
    prompt and all image tokens but the last within its ``max_position_embeddings``."""
    _, config, tokenizer = read_simplear_text(entry.checkpoint, entry.size)
    side = (entry.image_size or DEFAULT_IMAGE_SIZE) // PX_PER_TOKEN

    def encode(text: str) -> list[int]:
        return prompt_ids(tokenizer, prompt_line(text))

    return PromptReader(encode, config.max_position_embeddings - side * side + 1)


def load_simplear(entry: ModelEntry, dtype: torch.dtype) -> SimpleAR:
    """The model entry's SimpleAR: the decoder from the ``checkpoint`` folder, the Cosmos image decoder from
    ``tokenizer`` (``Cosmos-1.0-Tokenizer-DV8x16x16/decoder.jit``)."""
    for key in ("dim", "depth", "heads"):
        if getattr(entry, key) is not None:
            raise ConfigError(f"model.{key}: simplear takes its architecture from the checkpoint folder")
    if entry.tokenizer is None:
        raise ConfigError("model.tokenizer: simplear needs Cosmos' DV8x16x16 decoder.jit")
    if entry.uncond_fp32:
        raise ConfigError("model.uncond_fp32: not available for simplear (it needs class-label rows)")
    return load_simplear_folder(entry.checkpoint, entry.tokenizer, entry.image_size, entry.size, dtype)
