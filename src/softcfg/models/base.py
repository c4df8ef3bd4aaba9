"""The interface the samplers drive; each model family is an adapter to it."""

from __future__ import annotations

import argparse
import hashlib
import math
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from softcfg.conditioning import ClassLabels, Conditions
from softcfg.models.attention import KVCache, SlotWeights
from softcfg.options import UserError, first_line


class TokenGrid(NamedTuple):
    """The image's token map in a generation, row-major: row r is tokens ``offset + r * stride`` ..
    ``+ width``; ``stride`` (None: ``width``) is larger where each row ends with a structural token."""

    offset: int
    height: int
    width: int
    stride: int | None = None


class ARModel(nn.Module):
    """A next-token generator with a KV cache, conditioned through ``softcfg.conditioning``.

    Slot layout: ``prefix_len`` prefix slots (class token, and e.g. RAR's learned cls token), then one
    slot per fed image token. The prediction of image token i comes from ``prediction_slot(i)``. The
    default conditioning is a class label with a null class for the unconditional rows.
    """

    vocab_size: int
    num_tokens: int
    num_classes: int
    null_class: int
    prefix_len: int
    conditioning: str = "class"  # the kind of ``softcfg.conditioning`` its prefill takes

    def unconditional(self, conditions: Conditions) -> Conditions:
        """The unconditional rows matching ``conditions``: the null class for each label."""
        assert isinstance(conditions, ClassLabels), f"{type(self).__name__} is class-conditional"
        return ClassLabels(torch.full_like(conditions.labels, self.null_class))

    @property
    def num_slots(self) -> int:
        """Cache slots a sequence needs: the prefix and every image token but the last (never fed)."""
        return self.prefix_len + self.num_tokens - 1

    def prediction_slot(self, token_index: int) -> int:
        """Cache slot whose output predicted image token ``token_index`` (slot(0) is the last prefix slot)."""
        return self.prefix_len - 1 + token_index

    @property
    def num_steps(self) -> int:
        """Forward passes of a generation after prefill plus one: one per token for next-token models."""
        return self.num_tokens

    def step_span(self, step: int) -> tuple[int, int]:
        """Token indices ``[start, end)`` that ``step`` predicts: one token here, a scale's map in VAR."""
        return step, step + 1

    def token_grid(self) -> TokenGrid | None:
        """Where the image's spatial token map lies in the generated sequence (confidence heatmaps, Fig. 5);
        None where the tokens form no single row-major grid. Default: the largest square tail."""
        side = math.isqrt(self.num_tokens)
        return TokenGrid(self.num_tokens - side * side, side, side)

    def feed(
        self, tokens: Tensor, step: int, cache: KVCache, slot_weights: SlotWeights | None = None
    ) -> Tensor:
        """Feed the tokens of step ``step - 1`` ([N, 1]) and return the logits of step ``step`` ([N, V]).

        The loops call this; next-token families implement ``decode`` and next-scale ones override it.
        """
        return self.decode(tokens[:, 0], step - 1, cache, slot_weights)

    def new_cache(self, batch: int) -> KVCache:
        """An empty cache large enough for the prefix and every image token."""
        raise NotImplementedError

    def prefill(self, conditions: Conditions, cache: KVCache) -> Tensor:
        """Run the prefix of ``conditions`` (N rows); returns the logits predicting token 0, [N, V]."""
        raise NotImplementedError

    def decode(
        self, tokens: Tensor, index: int, cache: KVCache, slot_weights: SlotWeights | None = None
    ) -> Tensor:
        """Feed image token number ``index`` (``tokens`` [N]); returns logits predicting token index+1.

        ``slot_weights`` reach every attention layer (see ``decode_attention``).
        """
        raise NotImplementedError

    def forward(self, conditions: Conditions, tokens: Tensor) -> Tensor:
        """Uncached teacher-forced pass: logits [N, T, V] predicting every token of ``tokens`` [N, T]."""
        raise NotImplementedError

    def decode_images(self, tokens: Tensor) -> Tensor:
        """Tokens [N, T] to uint8 images [N, H, W, 3] with the family's official post-processing."""
        raise NotImplementedError


class NextScaleModel(ARModel):
    """A next-scale generator (VAR): step k predicts the whole ``p_k x p_k`` token map of scale k at once.

    Tokens of a generation are the scales' maps concatenated, row-major, ``sum(p_k^2)`` in all. Slot layout:
    slot 0 is the start slot (from the condition), which predicts scale 0's single token; the slots of
    block k (``cum_k .. cum_k + p_k^2``) hold the input built from every earlier scale's tokens and predict
    scale k's tokens, so ``prediction_slot(i) = i`` and the last scale's tokens are never fed, as in the
    next-token layout with ``prefix_len = 1``. A step's queries attend to every slot of earlier scales and
    of their own scale (block-causal); SoftCFG's weight of token i sits on the slot that predicted it.
    """

    patch_nums: tuple[int, ...]
    prefix_len = 1

    @property
    def num_tokens(self) -> int:  # type: ignore[override]
        return sum(p * p for p in self.patch_nums)

    @property
    def num_steps(self) -> int:
        return len(self.patch_nums)

    def step_span(self, step: int) -> tuple[int, int]:
        start = sum(p * p for p in self.patch_nums[:step])
        return start, start + self.patch_nums[step] ** 2

    def token_grid(self) -> TokenGrid:
        """The last scale's map: the one the image is decoded from."""
        side = self.patch_nums[-1]
        return TokenGrid(self.num_tokens - side * side, side, side)

    def prefill(self, conditions: Conditions, cache: KVCache) -> Tensor:
        """Run the start slot of ``conditions`` (N rows); returns scale 0's logits, [N, 1, V]."""
        raise NotImplementedError

    def feed(
        self, tokens: Tensor, step: int, cache: KVCache, slot_weights: SlotWeights | None = None
    ) -> Tensor:
        """Feed scale ``step - 1``'s token map (``tokens`` [N, p_{k-1}^2], row-major) and return scale
        ``step``'s logits [N, p_k^2, V]; ``slot_weights`` reach every attention layer."""
        raise NotImplementedError

    def forward(self, conditions: Conditions, tokens: Tensor) -> Tensor:
        """Uncached teacher-forced pass with the block-causal mask: logits [N, L, V] for ``tokens`` [N, L]."""
        raise NotImplementedError


def images_to_uint8(images: Tensor) -> Tensor:
    """[N, 3, H, W] in [0, 1] -> uint8 [N, H, W, 3]: clamp, x255, truncating cast (the upstream scripts)."""
    return (images.float().clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def signed_images_to_uint8(images: Tensor) -> Tensor:
    """[N, 3, H, W] in about [-1, 1] -> uint8 [N, H, W, 3] as LlamaGen's sampling script writes them:
    clamp(127.5 x + 128, 0, 255), then a truncating cast (so 0 maps to 128, not 127)."""
    return (127.5 * images.float() + 128.0).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def resize_images(images: Tensor, size: int) -> Tensor:
    """Float images [N, C, H, W] to [N, C, size, size], bicubic without antialiasing and before the uint8
    conversion: the resize LlamaGen's evaluation applies to its 384 px samples (``--image-size-eval``)."""
    return F.interpolate(images.float(), size=(size, size), mode="bicubic")


def load_state_dict_strict(
    model: nn.Module, state: dict[str, Tensor], source: str | Path, assign: bool = False
) -> None:
    """Load ``state`` strictly, naming the first missing, unexpected or mis-shaped keys on failure, and
    the first value that is not a tensor, holds NaN, or is a weight holding infinity (a run on it would
    sample garbage and still be scored; buffers such as attention masks hold -inf by design);
    ``assign``: the model takes the tensors themselves (a model built on the meta device)."""
    weights = {name for name, _ in model.named_parameters()}
    for key in sorted(state):
        value = state[key]
        if not isinstance(value, Tensor):
            raise UserError(f"checkpoint {source}: {key} is a {type(value).__name__}, not a tensor")
        if not value.is_floating_point() or value.device.type == "meta":
            continue
        if value.isnan().any() or (key in weights and value.isinf().any()):
            raise UserError(f"checkpoint {source}: {key} holds NaN or infinite values")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{key}: checkpoint {tuple(state[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in sorted(set(state) & set(expected))
        if tuple(state[key].shape) != tuple(expected[key].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:5]}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:5]}")
    if shapes:
        problems.append(f"shape mismatch {shapes[:5]}")
    if problems:
        raise UserError(f"checkpoint {source} does not match the model: " + "; ".join(problems))
    model.load_state_dict(state, strict=True, assign=assign)


def weights_sha256(state: dict[str, Tensor]) -> str:
    """Checksum of the weights themselves (names, dtypes, shapes, values), not of a file's bytes:
    ``torch.save`` writes a fresh serialization id into every file."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def read_checkpoint(path: str | Path) -> dict:
    """torch.load with tensors only (no pickled code), with a clear error for a missing or bad file.

    ``argparse.Namespace`` is allowed too: training scripts (LlamaGen's) save their arguments beside the
    weights, and a Namespace only holds attribute values.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"checkpoint {path} holds pickled Python objects beyond tensors (code that loading would run); "
            "it was not loaded"
        ) from None
    except Exception as exc:
        raise UserError(f"checkpoint {path} could not be read: {first_line(exc)}") from None


def unwrap_state_dict(
    checkpoint: dict,
    source: str | Path,
    marker: str,
    wrappers: Sequence[str] = ("model", "module", "state_dict"),
) -> dict[str, Tensor]:
    """The state dict of a training checkpoint: under the first of ``wrappers`` it has (DDP, DeepSpeed and
    Lightning files nest it; optimizer state and arguments sit beside it), else the file itself (a raw
    state dict, e.g. a consolidated FSDP one). ``marker`` is a key every such state dict has."""
    for key in wrappers:
        if isinstance(checkpoint.get(key), dict):
            state = checkpoint[key]
            break
    else:
        state = checkpoint
    if marker not in state:
        raise UserError(
            f"checkpoint {source} holds no state dict with {marker!r}, neither at the top level nor under "
            f"{list(wrappers)} (top-level keys: {sorted(checkpoint)[:8]})"
        )
    return state
