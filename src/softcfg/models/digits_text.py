"""The embedded text-conditioned model: a GPT over digit scenes (``softcfg.data.scenes``) prompted by
captions of the template grammar (``softcfg.data.captions``).

The sequence is [prompt (left-padded to a fixed length), x_0 .. x_{T-2}]: the prefix always has
``prefix_len`` slots, so the cache can be sized before prefill and every row predicts token 0 from the
same slot. Padding is an ordinary token the model was trained with (no attention mask, so the shared
attention helpers, where SoftCFG's weights enter, serve it unchanged); the unconditional prompt is BOS
alone, which training shows in place of the caption with probability ``prompt_dropout``. Size and
training length were chosen by held-out loss (``benchmarks/digits_text_model_selection.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from softcfg.conditioning import Conditions, Prompts
from softcfg.data.captions import WordTokenizer, read_digits_text_checkpoint
from softcfg.data.scenes import CODEBOOK_SIZE, NUM_TOKENS, PATCH, VOCAB_SIZE, tokens_to_images
from softcfg.models.base import load_state_dict_strict
from softcfg.models.gpt import PrefixGPT
from softcfg.options import UserError


@dataclass(frozen=True)
class DigitsTextConfig:
    dim: int = 64
    depth: int = 3
    heads: int = 4
    dropout: float = 0.0


class DigitsTextGPT(PrefixGPT):
    """Prompt-prefixed GPT; ``prompts`` tokenizes, ``unconditional`` gives BOS-only rows. The word
    tokenizer is ``words`` (``tokenizer`` names an image decoder in the other families)."""

    conditioning = "text"
    num_classes = 0
    null_class = -1

    def __init__(self, config: DigitsTextConfig, tokenizer: WordTokenizer | None = None) -> None:
        super().__init__()
        self.config = config
        self.words = tokenizer or WordTokenizer()
        self.vocab_size, self.num_tokens = VOCAB_SIZE, NUM_TOKENS
        self.prefix_len = self.words.max_len
        self.word_embedding = nn.Embedding(self.words.vocab_size, config.dim)
        self._build_decoder(config.dim, config.depth, config.heads, config.dropout)
        # the patch codebook (``softcfg.data.scenes.fit_codebook``), set by training, saved with the weights
        self.register_buffer("codebook", torch.zeros(CODEBOOK_SIZE, PATCH * PATCH, dtype=torch.long))

    def token_grid(self) -> None:
        """None: each cell's header token interrupts its patches, so no token range is the image's map."""
        return None

    def prompts(self, texts: Sequence[str]) -> Prompts:
        """Tokenized prompts; a word outside the grammar's vocabulary is a UserError naming it."""
        return self.words.encode(texts)

    def unconditional(self, conditions: Conditions) -> Prompts:
        """The empty prompt (BOS alone) for each row."""
        return self.words.encode([""] * len(conditions))

    def prefix_ids(self, prompts: Prompts) -> Tensor:
        """Ids [N, prefix_len]: left-padded (or stripped of all-padding columns) to the fixed length."""
        if not isinstance(prompts, Prompts):
            raise UserError(f"{type(self).__name__} is text-conditioned; got {type(prompts).__name__}")
        ids = prompts.ids.masked_fill(~prompts.mask, 0)
        surplus = ids.shape[1] - self.prefix_len
        if surplus > 0:
            if ids[:, :surplus].any():
                raise UserError(f"a prompt is longer than the model's {self.prefix_len} tokens")
            return ids[:, surplus:]
        return F.pad(ids, (-surplus, 0), value=0)

    def prefix(self, conditions: Prompts) -> Tensor:
        return self.word_embedding(self.prefix_ids(conditions))

    def decode_images(self, tokens: Tensor) -> Tensor:
        return tokens_to_images(tokens, self.codebook)


def save_digits_text(model: DigitsTextGPT, path: str | Path | BinaryIO, extra: dict | None = None) -> None:
    """Weights, dimensions and the vocabulary (ids are positions in it)."""
    torch.save(
        {
            "config": asdict(model.config),
            "vocab": list(model.words.vocab[2:]),
            "max_words": model.words.max_words,
            "state_dict": model.state_dict(),
            **(extra or {}),
        },
        path,
    )


def load_digits_text(path: str | Path) -> DigitsTextGPT:
    """Rebuild the model and its tokenizer from the checkpoint and load the weights strictly."""
    ckpt = read_digits_text_checkpoint(path)
    try:
        config = DigitsTextConfig(**ckpt["config"])
    except TypeError as exc:
        raise UserError(f"checkpoint {path}: bad 'config' entry: {exc}") from exc
    model = DigitsTextGPT(config, WordTokenizer.of_checkpoint(ckpt))
    load_state_dict_strict(model, ckpt["state_dict"], path)
    return model.eval()
