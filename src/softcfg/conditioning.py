"""What a generation is conditioned on: one interface for class labels, text prompts and nothing.

The samplers build the transformer's rows as ``conditions.cat(model.unconditional(conditions))`` when
a method needs the unconditional branch, hand the rows to ``model.prefill`` and never look inside. A shard
records its conditions through ``record()``: class labels as ADM's ``arr_1``, prompts as token ids and
texts, so class-conditional, text-conditioned and unconditional models share sampler, shards and replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


class Conditions(Protocol):
    """A batch of conditions, one per sample row."""

    kind: str

    def __len__(self) -> int: ...

    def __getitem__(self, rows: slice) -> Conditions: ...

    def cat(self, other: Conditions) -> Conditions:
        """These rows followed by ``other``'s (the doubled [cond; uncond] batch)."""
        ...

    def to(self, device: torch.device | str) -> Conditions: ...

    def record(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays for the shard npz, JSON-able facts for its manifest)."""
        ...


@dataclass(frozen=True)
class ClassLabels:
    """Class ids ``labels`` int64 [B]; the unconditional rows use the model's null class."""

    labels: Tensor
    kind = "class"

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, rows: slice) -> ClassLabels:
        return ClassLabels(self.labels[rows])

    def cat(self, other: Conditions) -> ClassLabels:
        assert isinstance(other, ClassLabels), "class labels concatenate with class labels only"
        return ClassLabels(torch.cat([self.labels, other.labels]))

    def to(self, device: torch.device | str) -> ClassLabels:
        return ClassLabels(self.labels.to(device))

    def record(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {"arr_1": self.labels.cpu().numpy()}, {"conditions": "class labels (arr_1)"}


@dataclass(frozen=True)
class Prompts:
    """Tokenized prompts: ``ids`` int64 [B, L], left-padded, ``mask`` bool [B, L] (True on real tokens).

    Left padding keeps every prompt's last token at the same position, so the first image token is
    predicted from the same slot in every row. ``index`` int64 [B]: each row's prompt in its prompt set
    (``softcfg.data.prompts``), recorded in shards so exports find the prompt's metadata; None for rows
    not drawn from a set (the unconditional rows).
    """

    ids: Tensor
    mask: Tensor
    texts: tuple[str, ...]
    index: Tensor | None = None
    kind = "text"

    @classmethod
    def left_padded(cls, rows: Sequence[Sequence[int]], texts: Sequence[str]) -> Prompts:
        """Token id lists of different lengths, left-padded with id 0 (masked) to the longest."""
        width = max(map(len, rows))
        ids = torch.tensor([[0] * (width - len(r)) + list(r) for r in rows], dtype=torch.long)
        mask = torch.tensor([[False] * (width - len(r)) + [True] * len(r) for r in rows])
        return cls(ids, mask, tuple(texts))

    def __len__(self) -> int:
        return self.ids.shape[0]

    def __getitem__(self, rows: slice) -> Prompts:
        index = self.index[rows] if self.index is not None else None
        return Prompts(self.ids[rows], self.mask[rows], self.texts[rows], index)

    def with_index(self, index: Tensor) -> Prompts:
        """These prompts as rows ``index`` of a prompt set."""
        return Prompts(self.ids, self.mask, self.texts, index)

    def cat(self, other: Conditions) -> Prompts:
        assert isinstance(other, Prompts), "prompts concatenate with prompts only"
        width = max(self.ids.shape[1], other.ids.shape[1])

        def left_pad(t: Tensor, value: int | bool) -> Tensor:
            return F.pad(t, (width - t.shape[1], 0), value=value)

        both = self.index is not None and other.index is not None
        return Prompts(
            torch.cat([left_pad(self.ids, 0), left_pad(other.ids, 0)]),
            torch.cat([left_pad(self.mask, False), left_pad(other.mask, False)]),
            self.texts + other.texts,
            torch.cat([self.index, other.index]) if both else None,
        )

    def to(self, device: torch.device | str) -> Prompts:
        index = self.index.to(device) if self.index is not None else None
        return Prompts(self.ids.to(device), self.mask.to(device), self.texts, index)

    def record(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {"prompt_ids": self.ids.cpu().numpy(), "prompt_mask": self.mask.cpu().numpy()}
        names = "prompt_ids, prompt_mask"
        if self.index is not None:
            arrays["prompt_index"] = self.index.cpu().numpy()
            names += "; prompt_index: the row of the prompt set"
        return arrays, {"conditions": f"text prompts ({names})", "prompts": list(self.texts)}


@dataclass(frozen=True)
class Unconditional:
    """No condition: ``batch`` rows of an unconditional model (no guidance can apply)."""

    batch: int
    kind = "none"

    def __len__(self) -> int:
        return self.batch

    def __getitem__(self, rows: slice) -> Unconditional:
        return Unconditional(len(range(self.batch)[rows]))

    def cat(self, other: Conditions) -> Unconditional:
        return Unconditional(self.batch + len(other))

    def to(self, device: torch.device | str) -> Unconditional:
        return self

    def record(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {}, {"conditions": "none"}
