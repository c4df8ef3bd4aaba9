"""Building blocks shared by the LLaMA-style families (AliTok, LlamaGen): RMSNorm, SwiGLU, RoPE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def find_multiple(n: int, k: int) -> int:
    return n if n % k == 0 else n + k - n % k


class RMSNorm(nn.Module):
    """x / rms(x) * weight, normalised in float32 and cast back, as the upstream models do."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class SwiGLU(nn.Module):
    """w2(silu(w1 x) * w3 x) without biases; hidden width find_multiple(int(8 D / 3), 256)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        hidden = find_multiple(int(2 * 4 * dim / 3), 256)
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


def rope_1d(positions: Tensor, head_dim: int, base: float = 10000.0) -> Tensor:
    """(cos, sin) per position and frequency pair: [P, head_dim / 2, 2], f_j = base^(-2j / head_dim)."""
    freqs = base ** (-torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim)
    angles = positions.float()[:, None] * freqs[None]
    return torch.stack([angles.cos(), angles.sin()], dim=-1)


def rope_2d(rows: Tensor, cols: Tensor, head_dim: int, base: float = 10000.0) -> Tensor:
    """2D RoPE: the first head_dim/4 pairs rotate by the row, the last head_dim/4 by the column."""
    half = head_dim // 2
    freqs = base ** (-torch.arange(0, half, 2)[: half // 2].float() / half)
    angles = torch.cat([rows.float()[:, None] * freqs, cols.float()[:, None] * freqs], dim=-1)
    return torch.stack([angles.cos(), angles.sin()], dim=-1)


def rope_grid(side: int, head_dim: int, offset: int = 0) -> Tensor:
    """2D RoPE of a ``side`` x ``side`` grid flattened row-major, cell (r, c) at (offset + r, offset + c):
    [side * side, head_dim / 2, 2]. AliTok offsets its grid past its 17 1D tokens, LlamaGen does not.
    """
    r, c = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    return rope_2d(offset + r.flatten(), offset + c.flatten(), head_dim)


def apply_rope(x: Tensor, rope: Tensor) -> Tensor:
    """Rotate adjacent pairs (2i, 2i+1) of ``x`` [N, H, L, hd] by ``rope`` [L, hd/2, 2], in float32."""
    pairs = x.float().unflatten(-1, (-1, 2))  # [N, H, L, hd/2, 2]
    cos, sin = rope[..., 0], rope[..., 1]
    out = torch.stack(
        [pairs[..., 0] * cos - pairs[..., 1] * sin, pairs[..., 1] * cos + pairs[..., 0] * sin], dim=-1
    )
    return out.flatten(-2).type_as(x)
