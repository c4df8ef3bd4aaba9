"""The decode step with static shapes: run eagerly, compiled, or captured once per batch shape in a CUDA
graph and replayed, so that a step costs its arithmetic rather than Python and kernel launches.

The eager step cannot be captured: the visible slots grow every step and positions are Python ints.
The static step (a family's ``static_decode``, see ``attention.StaticStep``) attends over the first
``S`` slots of the preallocated cache, S the visible slots rounded up to a multiple of ``bucket``, with
the unfilled ones masked; it takes its position as a device tensor, writes the cache by index and takes
SoftCFG's weights padded to S. One shape serves every step of a bucket. Buckets, not the whole cache:
at sampling batch sizes a decode step's cost is mostly reading the cache, and attending over all slots
would double the average read (32-slot buckets add about 16 slots to a step's read).
It is reached through the model object: ``enable_static_decode`` replaces the instance's ``decode``
(and, when capturing, ``new_cache``), so the sampling loop is unchanged.

Modes (a model entry's ``compile``): ``static`` runs the static step eagerly (the reference of the
others); ``captured`` records it in a CUDA graph per (batch, weighted rows, target, cache, bucket) and
replays it; ``compiled`` torch.compiles it first (fused kernels; the slot count becomes a dynamic size
at the second bucket, so two compilations serve all), then captures it the same way. Without CUDA
there is nothing to capture: ``captured`` runs as ``static`` and ``compiled`` as the compiled step.
Captured steps read fixed addresses, so the model then keeps one cache per batch size and hands it out
again at every ``new_cache`` (one generation at a time per model and batch size, as the loop runs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from softcfg.models.attention import KVCache, SlotWeights, StaticStep
from softcfg.models.base import ARModel
from softcfg.options import ConfigError

StaticMode = Literal["static", "captured", "compiled"]
STATIC_MODES: tuple[str, ...] = ("static", "captured", "compiled")
WARMUP_STEPS = 2  # runs on a side stream before capture (lazy initialisation, compilation)
BUCKET = 32  # slots: the static step's attention length is a multiple of it (or the cache length)

StepFunction = Callable[[Tensor, Tensor, Tensor, Tensor, "Tensor | None", str, dict[str, Tensor]], Tensor]


def supports_static_decode(model: ARModel) -> bool:
    return callable(getattr(type(model), "static_decode", None))


@dataclass
class _Inputs:
    """The fixed buffers a captured step reads; each replay first copies the step's inputs into them."""

    tokens: Tensor
    position: Tensor
    weights: Tensor | None
    context: dict[str, Tensor]

    def load(self, tokens: Tensor, at: Tensor, cache: KVCache, slot_weights: SlotWeights | None) -> None:
        self.tokens.copy_(tokens)
        self.position.copy_(at)
        if self.weights is not None and slot_weights is not None:  # slots past them are masked
            self.weights[:, : slot_weights.weights.shape[1]].copy_(slot_weights.weights)
        for name, buffer in self.context.items():
            buffer.copy_(cache.context[name])


@dataclass
class _Graph:
    inputs: _Inputs
    graph: torch.cuda.CUDAGraph
    logits: Tensor  # written by every replay


class StaticDecoder:
    """The static decode step of one model, in one of ``STATIC_MODES``; called as the model's ``decode``."""

    def __init__(self, model: ARModel, mode: StaticMode, bucket: int = BUCKET) -> None:
        if mode not in STATIC_MODES:
            raise ValueError(f"static decode mode must be one of {STATIC_MODES}, got {mode!r}")
        if bucket < 1:
            raise ValueError(f"bucket must be positive, got {bucket}")
        self.model = model
        self.mode = mode
        self.bucket = bucket
        self.eager_new_cache = model.new_cache
        self.step: StepFunction = self._step
        if mode == "compiled":
            self.step = torch.compile(self._step, fullgraph=True)
        self.caches: dict[int, KVCache] = {}
        self.graphs: dict[tuple, _Graph] = {}
        self.pool: tuple[int, int] | None = None  # one CUDA graph memory pool for all captures
        self.slots: Tensor | None = None  # arange(max_len) on the device: positions are views of it

    def _step(
        self,
        tokens: Tensor,
        position: Tensor,
        k: Tensor,
        v: Tensor,
        weights: Tensor | None,
        target: str,
        context: dict[str, Tensor],
    ) -> Tensor:
        step = StaticStep(k, v, position, weights, target, context)
        return self.model.static_decode(tokens, step)  # type: ignore[attr-defined]

    def captures(self, device: torch.device) -> bool:
        return self.mode != "static" and device.type == "cuda"

    def new_cache(self, batch: int) -> KVCache:
        """A cache for ``batch`` rows; when capturing, the same tensors for every generation of that size."""
        device = next(self.model.parameters()).device
        if not self.captures(device):
            return self.eager_new_cache(batch)
        cache = self.caches.get(batch)
        if cache is None:
            cache = self.caches[batch] = self.eager_new_cache(batch)
        cache.length, cache.context = 0, {}  # stale slots are masked until overwritten
        return cache

    def __call__(
        self, tokens: Tensor, index: int, cache: KVCache, slot_weights: SlotWeights | None = None
    ) -> Tensor:
        """The family's ``decode`` contract: feed image token ``index``, return the next logits [N, V]."""
        position = self.model.prefix_len + index
        if position >= cache.max_len:
            raise ValueError(f"KV cache overflow: {position + 1} slots needed, {cache.max_len} allocated")
        if position != cache.length:
            raise ValueError(f"decode of slot {position} on a cache holding {cache.length} slots")
        if self.slots is None or self.slots.device != tokens.device or len(self.slots) < cache.max_len:
            self.slots = torch.arange(cache.max_len, device=tokens.device)
        at = self.slots[position : position + 1]
        target = "v" if slot_weights is None else slot_weights.target
        length = min(cache.max_len, -(-(position + 1) // self.bucket) * self.bucket)
        k, v = cache.k[:, :, :, :length], cache.v[:, :, :, :length]  # views: written through
        if self.captures(tokens.device):
            logits = self._replay(tokens, at, k, v, cache, slot_weights, target)
        else:
            weights = None
            if slot_weights is not None:  # weight 1 past the visible slots: masked anyway
                weights = F.pad(slot_weights.weights, (0, length - position - 1), value=1.0)
            logits = self.step(tokens, at, k, v, weights, target, cache.context)
        cache.advance(1)
        return logits

    def _replay(
        self,
        tokens: Tensor,
        at: Tensor,
        k: Tensor,
        v: Tensor,
        cache: KVCache,
        slot_weights: SlotWeights | None,
        target: str,
    ) -> Tensor:
        num_weighted = None if slot_weights is None else slot_weights.weights.shape[0]
        context = tuple(sorted(cache.context))
        key = (tokens.shape[0], num_weighted, target, k.data_ptr(), k.shape[3], context)
        graph = self.graphs.get(key)
        if graph is None:
            graph = self.graphs[key] = self._capture(tokens, at, k, v, cache, slot_weights, target)
        else:
            graph.inputs.load(tokens, at, cache, slot_weights)
            graph.graph.replay()
        return graph.logits.clone()  # the next replay overwrites the buffer

    def _capture(
        self,
        tokens: Tensor,
        at: Tensor,
        k: Tensor,
        v: Tensor,
        cache: KVCache,
        slot_weights: SlotWeights | None,
        target: str,
    ) -> _Graph:
        """Warm up on a side stream (each warm-up run is this very step: it rewrites the same slot with
        the same values), record the step, and replay it once for this step's logits."""
        weights = None
        if slot_weights is not None:
            weights = torch.ones(
                slot_weights.weights.shape[0], k.shape[3], dtype=torch.float32, device=tokens.device
            )
        context = {name: value.clone() for name, value in cache.context.items()}
        inputs = _Inputs(tokens.clone(), at.clone(), weights, context)
        inputs.load(tokens, at, cache, slot_weights)

        def run() -> Tensor:
            return self.step(inputs.tokens, inputs.position, k, v, inputs.weights, target, context)

        with torch.cuda.device(tokens.device):
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(WARMUP_STEPS):
                    run()
            torch.cuda.current_stream().wait_stream(side)
            if self.pool is None:
                self.pool = torch.cuda.graph_pool_handle()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                logits = run()
            graph.replay()
        return _Graph(inputs, graph, logits)


def enable_static_decode(model: ARModel, mode: StaticMode, bucket: int = BUCKET) -> ARModel:
    """Route ``model``'s decode steps (and, when capturing, its caches) through a ``StaticDecoder``."""
    if not supports_static_decode(model):
        raise ConfigError(
            f"model.compile: {type(model).__name__} has no static decode step (for {mode!r}); "
            "use false (eager) or true (torch.compile with dynamic shapes)"
        )
    decoder = StaticDecoder(model, mode, bucket)
    model.decode = decoder  # type: ignore[method-assign]
    model.new_cache = decoder.new_cache  # type: ignore[method-assign]
    return model
