"""The segment call replayed as a CUDA graph: one launch for what the host issued as ~4,400 ops.

On an H200 the default model took 140-180 ms per call of 64 tiles while its arithmetic needs a
small part of that: the host issued one op after another, ~10-40 us each, and held the GIL while
doing so, which the engine's writer and vectoriser threads then waited on
(``benchmarks/results/gpu.md``). A CUDA graph records the call's kernels once and replays them
with one launch. What that asks of the call: fixed shapes and addresses (inputs are copied into a
fixed buffer, outputs read from fixed tensors before the next replay) and no host
synchronisation inside it (:meth:`~.geopix.GeoPixModel.segment_planned` is written for that).

A call of ``b`` tiles runs in the smallest recorded call of at least ``b`` tiles, the rest of
its buffer zeroed: each tile's outputs depend on that tile alone (eval-mode BatchNorm folded,
one LLM sequence per tile and prompt), so padding changes nothing but the work. New sizes are
rounded up to a multiple of 8, so an engine whose rows hold 63 tiles records one graph of 64.
"""
from __future__ import annotations

from typing import Callable

import torch

Outputs = tuple[torch.Tensor, list[torch.Tensor]]
#: a batch size is recorded rounded up to this (fewer graphs, each reused for the sizes below it)
ROUND_TO = 8


class StaticCall:
    """``fn`` over one fixed input buffer; :meth:`replay` refreshes the fixed outputs.

    ``graph=True`` records ``fn`` as a CUDA graph (after two warm-up runs on a side stream, as
    PyTorch asks); ``False`` runs it eagerly on the same buffer (the CPU stand-in the tests use
    for the padding and slicing around it).
    """

    def __init__(self, fn: Callable[[torch.Tensor], Outputs], example: torch.Tensor, graph: bool) -> None:
        self.fn = fn
        self.input = torch.zeros_like(example)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.output: Outputs | None = None
        if graph:
            side = torch.cuda.Stream(device=example.device)
            side.wait_stream(torch.cuda.current_stream(example.device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    fn(self.input)
            torch.cuda.current_stream(example.device).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.output = fn(self.input)

    @property
    def batch(self) -> int:
        return int(self.input.shape[0])

    def replay(self) -> Outputs:
        if self.graph is None:  # like a graph: the same output tensors every time, overwritten
            probs, feats = self.fn(self.input)
            if self.output is None:
                self.output = probs, feats
            else:
                self.output[0].copy_(probs)
                for mine, new in zip(self.output[1], feats):
                    mine.copy_(new)
        else:
            self.graph.replay()
        assert self.output is not None
        return self.output


class GraphedSegment:
    """Recorded segment calls per (tile shape, prompts), reused for every batch that fits one.

    ``make_fn(prompts, batch)`` returns the call to record: pixels ``[batch, 3, H, W]`` ->
    (probabilities ``[batch, P, H, W]``, the tower's feature maps). The outputs returned by
    :meth:`__call__` are views of the recorded tensors: read them before the next call.
    """

    def __init__(self, make_fn: Callable[[tuple[str, ...], int], Callable[[torch.Tensor], Outputs]],
                 graph: bool = True) -> None:
        self.make_fn = make_fn
        self.graph = graph
        self.calls: dict[tuple, list[StaticCall]] = {}

    def _call_for(self, x: torch.Tensor, prompts: tuple[str, ...]) -> StaticCall:
        key = (tuple(x.shape[1:]), x.dtype, prompts)
        recorded = self.calls.setdefault(key, [])
        fits = [c for c in recorded if c.batch >= x.shape[0]]
        if fits:
            return min(fits, key=lambda c: c.batch)
        size = -(-int(x.shape[0]) // ROUND_TO) * ROUND_TO
        example = x.new_zeros((size, *x.shape[1:]))
        call = StaticCall(self.make_fn(prompts, size), example, self.graph)
        recorded.append(call)
        return call

    def __call__(self, x: torch.Tensor, prompts: tuple[str, ...]) -> Outputs:
        b = int(x.shape[0])
        call = self._call_for(x, prompts)
        call.input[:b].copy_(x)
        if b < call.batch:
            call.input[b:].zero_()
        probs, feats = call.replay()
        if b == call.batch:
            return probs, feats
        return probs[:b], [f[:b] for f in feats]
