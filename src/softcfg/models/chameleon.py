"""The Chameleon decoder of Lumina-mGPT 2.0, in the official checkpoint's key layout, on the project's cache.

Our own module, not transformers' ``ChameleonModel``: Lumina-mGPT 2.0 ships its own copy of the Chameleon
modeling code (``lumina_mgpt/model/chameleon/modeling_chameleon.py``), whose q/k layer norms hold one
gamma and beta per model-parallel shard, ``[model_parallel_size, head_dim]`` (``[1, 128]`` for the 7B),
applied to every head of the shard, where transformers' holds ``[heads, head_dim]``; the official
folder does not load strictly into transformers' class, and that class also builds a VQ model the
folder lacks and masks image tokens out of its logits. Facts followed (that file and
``configuration_chameleon.py``): pre-norm blocks (``swin_norm: false``) with float32 RMSNorm cast back
before the weight; per-head LayerNorm of q and k over ``head_dim`` (no affine, eps 1e-5) times the shard's
gamma plus its beta, before RoPE; rotate-half RoPE with float32 angles, cos/sin cast to the activations'
dtype; SiLU-gated MLP; a final RMSNorm and an untied ``lm_head``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from softcfg.models.attention import KVCache, SlotWeights, decode_attention
from softcfg.models.layers import RMSNorm
from softcfg.options import UserError

QK_NORM_EPS = 1e-5  # hard-coded in the official ChameleonLayerNorm
IGNORED_PREFIXES = ("model.vqmodel.",)  # Chameleon's own VQ model: built by the official class, never run


@dataclass(frozen=True)
class ChameleonConfig:
    """The ``config.json`` fields the decoder depends on, with the official ``ChameleonConfig`` defaults."""

    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 32
    vocab_size: int = 65536
    max_position_embeddings: int = 4096
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    model_parallel_size: int = 1
    attention_bias: bool = False
    mlp_bias: bool = False

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_folder(cls, folder: Path) -> ChameleonConfig:
        """Read and check ``config.json``: the variants the official code supports but Lumina-mGPT 2.0 does
        not use (post-norm ``swin_norm``, RoPE scaling, grouped-query attention) are refused by name."""
        path = folder / "config.json"
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"model.checkpoint: {path} unreadable: {exc}") from exc
        if raw.get("model_type") != "chameleon":
            raise UserError(
                f"model.checkpoint: {path} model_type is {raw.get('model_type')!r}, not 'chameleon'"
            )
        refused = {
            "swin_norm": (raw.get("swin_norm", False), False),
            "rope_scaling": (raw.get("rope_scaling"), None),
            "hidden_act": (raw.get("hidden_act", "silu"), "silu"),
        }
        for key, (found, supported) in refused.items():
            if found != supported:
                raise UserError(
                    f"model.checkpoint: {path} {key} is {found!r}; only {supported!r} is supported"
                )
        config = cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})
        if config.num_key_value_heads != config.num_attention_heads:
            raise UserError(
                f"model.checkpoint: {path} has grouped-query attention; only multi-head is supported"
            )
        if (
            config.hidden_size % config.num_attention_heads
            or config.num_attention_heads % config.model_parallel_size
        ):
            raise UserError(
                f"model.checkpoint: {path} heads do not divide hidden_size or model_parallel_size"
            )
        return config


def rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_cos_sin(positions: Tensor, config: ChameleonConfig, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """cos, sin [N, 1, L, head_dim] of ``positions`` [N, L]: float32 angles, then the activations' dtype."""
    d = config.head_dim
    inv_freq = 1.0 / (
        config.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64, device=positions.device).float() / d)
    )
    freqs = positions[:, :, None].float() * inv_freq[None, None, :]
    emb = torch.cat((freqs, freqs), dim=-1)[:, None]
    return emb.cos().to(dtype), emb.sin().to(dtype)


class ShardLayerNorm(nn.Module):
    """LayerNorm over ``head_dim`` with one gamma/beta per model-parallel shard, shared by its heads."""

    def __init__(self, shards: int, head_dim: int, heads: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(shards, head_dim))
        self.bias = nn.Parameter(torch.zeros(shards, head_dim))
        self.heads_per_shard = heads // shards

    def forward(self, x: Tensor) -> Tensor:
        """``x`` [..., heads, head_dim]: heads of a shard are contiguous, so the shard's gamma and beta
        broadcast over them (the official ``repeat_interleave``, without materialising it every step)."""
        x = F.layer_norm(x, x.shape[-1:], None, None, eps=QK_NORM_EPS)
        x = x.unflatten(-2, (self.weight.shape[0], self.heads_per_shard))
        return (x * self.weight[:, None] + self.bias[:, None]).flatten(-3, -2)


class Attention(nn.Module):
    def __init__(self, config: ChameleonConfig) -> None:
        super().__init__()
        d, h, bias = config.hidden_size, config.num_attention_heads, config.attention_bias
        self.heads = h
        self.q_proj, self.k_proj = nn.Linear(d, d, bias=bias), nn.Linear(d, d, bias=bias)
        self.v_proj, self.o_proj = nn.Linear(d, d, bias=bias), nn.Linear(d, d, bias=bias)
        self.q_norm = ShardLayerNorm(config.model_parallel_size, config.head_dim, h)
        self.k_norm = ShardLayerNorm(config.model_parallel_size, config.head_dim, h)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor], layer: int, step: Step) -> Tensor:
        n, length, d = x.shape
        q = self.q_norm(self.q_proj(x).view(n, length, self.heads, -1)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(n, length, self.heads, -1)).transpose(1, 2)
        v = self.v_proj(x).view(n, length, self.heads, -1).transpose(1, 2)  # [N, H, L, hd]
        cos, sin = rope
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        if step.cache is not None:
            k, v = step.cache.write(layer, k, v)
        if length == 1:
            out = decode_attention(q, k, v, step.slot_weights, step.mask)
        else:
            assert step.slot_weights is None, "slot weights apply to single-token decode steps only"
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=step.mask)
        return self.o_proj(out.transpose(1, 2).reshape(n, length, d))


class MLP(nn.Module):
    def __init__(self, config: ChameleonConfig) -> None:
        super().__init__()
        d, hidden, bias = config.hidden_size, config.intermediate_size, config.mlp_bias
        self.gate_proj, self.up_proj = nn.Linear(d, hidden, bias=bias), nn.Linear(d, hidden, bias=bias)
        self.down_proj = nn.Linear(hidden, d, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, config: ChameleonConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor], layer: int, step: Step) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), rope, layer, step)
        return x + self.mlp(self.post_attention_layernorm(x))


@dataclass(frozen=True)
class Step:
    """What one forward pass attends with: the cache to write (None: an uncached pass), the boolean mask
    (broadcastable to [N, H, L, S]; True where a slot may be attended) and SoftCFG's weights."""

    cache: KVCache | None
    mask: Tensor
    slot_weights: SlotWeights | None = None


class ChameleonDecoder(nn.Module):
    """``model.embed_tokens``, ``model.layers.*``, ``model.norm`` and ``lm_head``: the official keys."""

    def __init__(self, config: ChameleonConfig) -> None:
        super().__init__()
        self.config = config
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.model.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.model.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def new_cache(self, rows: int, slots: int) -> KVCache:
        c, p = self.config, self.lm_head.weight
        return KVCache(c.num_hidden_layers, rows, c.num_attention_heads, slots, c.head_dim, p.dtype, p.device)

    def hidden(self, ids: Tensor, positions: Tensor, step: Step) -> Tensor:
        """Final-norm hidden states [N, L, D] of vocabulary ``ids`` [N, L] at RoPE ``positions`` [N, L]."""
        x = self.model.embed_tokens(ids)
        rope = rope_cos_sin(positions, self.config, x.dtype)
        for layer, block in enumerate(self.model.layers):
            x = block(x, rope, layer, step)
        if step.cache is not None:
            step.cache.advance(ids.shape[1])
        return self.model.norm(x)


def read_safetensors_folder(folder: Path) -> dict[str, Tensor]:
    """Every tensor of a ``save_pretrained`` folder: the shards ``model.safetensors.index.json`` names, or
    ``model.safetensors``; a missing or unreadable file is named."""
    from safetensors.torch import load_file

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"model.checkpoint: {index} unreadable: {exc}") from exc
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise UserError(f"model.checkpoint: {folder} holds neither model.safetensors nor its index")
    state: dict[str, Tensor] = {}
    for name in files:
        try:
            state.update(load_file(folder / name))
        except Exception as exc:
            raise UserError(f"model.checkpoint: {folder / name} unreadable: {exc}") from exc
    return state
