"""The segment call as a CUDA graph can record it (model/cuda_graph.py), checked where CI runs: the CPU.

A CUDA graph cannot hold a host synchronisation (``.item()``, ``bool(tensor)``, ``nonzero``,
boolean indexing, ``torch.equal``) nor a tensor built from Python data inside the call. Those
are ATen ops that a dispatch mode sees on any device, so the planned path is checked op by op
here; the recording itself runs on a GPU (``benchmarks/bench_gpu.py``).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PROMPTS = ["water", "vegetation", "buildings", "roads"]
#: ops that wait for the device or copy host data in: a CUDA graph cannot record them
_HOST_OPS = {"aten::_local_scalar_dense", "aten::nonzero", "aten::is_nonzero", "aten::equal", "aten::masked_select",
             "aten::lift_fresh", "aten::lift_fresh_copy", "aten::item", "aten::nonzero_static"}


class HostOps(TorchDispatchMode):
    """Records every op of the list above, and boolean indexing (a hidden ``nonzero``)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        if name in _HOST_OPS:
            self.seen.append(name)
        elif name in ("aten::index", "aten::index_put", "aten::index_put_"):
            indices = args[1] if len(args) > 1 else []
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices if i is not None):
                self.seen.append(name + "(bool)")
        elif name == "aten::repeat_interleave" and func.overloadpacket.__name__ == "repeat_interleave" \
                and isinstance(args[0], torch.Tensor) and len(args) > 1 and isinstance(args[1], torch.Tensor) \
                and (kwargs or {}).get("output_size") is None:
            self.seen.append(name + "(tensor repeats, no output size)")
        return func(*args, **(kwargs or {}))


def _tiles(n: int) -> np.ndarray:
    import rasterio

    with rasterio.open(REPO / "geopix_tiles" / "data" / "naip_sample.tif") as src:
        a = src.read([1, 2, 3]).astype(np.float32)
    lo, hi = np.percentile(a, 2, axis=(1, 2)), np.percentile(a, 98, axis=(1, 2))
    a = np.clip((a - lo[:, None, None]) / (hi - lo)[:, None, None], 0, 1)
    starts = [(y, x) for y in range(0, a.shape[1] - 255, 96) for x in range(0, a.shape[2] - 255, 96)]
    return np.stack([a[:, y:y + 256, x:x + 256] for y, x in starts[:n]])


@pytest.fixture(scope="module")
def segmenter():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from geopix_tiles.segmenters.registry import load_segmenter

    return load_segmenter("default", device="cpu")


def test_planned_segment_call_holds_no_host_synchronisation(segmenter):
    model = segmenter.model
    x = torch.from_numpy(_tiles(3))
    with torch.inference_mode():
        plan = model.segment_plan(PROMPTS, 3, place_prior=False)
        with HostOps() as ops:
            enc = model.encode_images(x)
            planned = model.segment_planned(enc, plan)[0]
        assert ops.seen == []
        with HostOps() as old:  # the detector sees what the generic placeholder path does (a test that can fail)
            model.embed_inputs(enc, torch.tensor([model.processor.prefix_ids()]).expand(3, -1))
        assert {"aten::lift_fresh", "aten::is_nonzero", "aten::index_put_(bool)"} <= set(old.seen)
        reference = model.segment_encoded(enc, PROMPTS, place_prior=False)[0]
    assert torch.equal(planned, reference)


def test_padded_static_calls_answer_each_tile_as_its_own_call(segmenter):
    """The graph path's bookkeeping, run eagerly on the CPU: sizes rounded up to 8 and reused,
    padding zeroed, outputs sliced; every tile's probabilities match the plain call's."""
    tiles = _tiles(9)
    segmenter.cuda_graphs, segmenter._graphs = False, None
    plain = [segmenter.predict(tiles[:7], PROMPTS), segmenter.predict(tiles[:3], PROMPTS),
             segmenter.predict(tiles, PROMPTS)]
    try:
        segmenter.cuda_graphs = True
        static = [segmenter.predict(tiles[:7], PROMPTS), segmenter.predict(tiles[:3], PROMPTS)]
        recorded = next(iter(segmenter._graphs.calls.values()))
        assert [c.batch for c in recorded] == [8]  # 7 -> 8; 3 reuses it
        assert not recorded[0].input[3:].any()  # the padding is zero, not the previous call's tiles
        static.append(segmenter.predict(tiles, PROMPTS))
        assert sorted(c.batch for c in recorded) == [8, 16]
    finally:
        segmenter.cuda_graphs, segmenter._graphs = False, None
    for a, b in zip(plain, static):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=2e-5)
        assert ((a > 0.5) == (b > 0.5)).mean() > 0.9999
    assert plain[2][:, :, 100:150].std() > 0.05  # real masks, not an empty answer compared with itself


def test_static_calls_serve_one_caller_at_a_time(segmenter):
    """dask may call predict from several threads; a recorded call has one input buffer, so the
    calls queue for it and every caller gets its own tiles' answer."""
    from concurrent.futures import ThreadPoolExecutor

    tiles = _tiles(8)
    groups = [tiles[:4], tiles[4:], tiles[2:6], tiles[1:5]]
    segmenter.cuda_graphs, segmenter._graphs = False, None
    plain = [segmenter.predict(g, PROMPTS[:2]) for g in groups]
    try:
        segmenter.cuda_graphs = True
        with ThreadPoolExecutor(4) as pool:
            for _ in range(2):
                static = list(pool.map(lambda g: segmenter.predict(g, PROMPTS[:2]), groups))
                for a, b in zip(plain, static):
                    np.testing.assert_allclose(a, b, atol=2e-5)
    finally:
        segmenter.cuda_graphs, segmenter._graphs = False, None
