"""The run's heap policy: free pages between live chunks go back at a checkpoint's trim.

In a fresh interpreter (RSS is per process): 1 MB arrays (served from the heap under the run's
32 MB mmap threshold) interleaved with small live buffers, then the arrays freed. The small
buffers pin the heap's top, so the trim threshold returns nothing; ``trim_heap`` returns the
free pages between them.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = r"""
import ctypes, json, sys
import numpy as np
from geopix_tiles.core.heap import trim_heap, tune_heap

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) >> 10

tuned = tune_heap()
big, pins = [], []
for _ in range(300):
    a = np.ones(1 << 20, dtype=np.uint8)  # 1 MB, written: resident
    big.append(a)
    pins.append(ctypes.create_string_buffer(2000))  # a small live chunk after it
full = rss()
del big
freed = rss()
trimmed = trim_heap() if sys.argv[1] == "trim" else False
print(json.dumps({"tuned": tuned, "full": full, "freed": freed, "after": rss(), "trimmed": trimmed}))
"""


def _run(mode: str, env: dict | None = None) -> dict:
    import os

    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, **(env or {})))
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_trim_returns_free_pages_between_live_chunks():
    control = _run("none")
    if not control["tuned"]:
        pytest.skip("not glibc: no mallopt / malloc_trim")
    assert control["full"] - control["freed"] < 100, control  # pinned: freeing alone gives (almost) nothing back
    r = _run("trim")
    assert r["trimmed"] and r["freed"] - r["after"] >= 200, r  # of the 300 MB freed


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_trim_is_off_with_the_heap_policy():
    r = _run("trim", {"GEOPIX_TILES_HEAP": "0"})
    assert not r["trimmed"]


def test_the_periodic_trim_runs_at_most_once_per_period(monkeypatch):
    from geopix_tiles.core import heap

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's malloc_trim")
    monkeypatch.delenv("GEOPIX_TILES_HEAP", raising=False)
    monkeypatch.setattr(heap, "_last_trim", [0.0])
    monkeypatch.setattr(heap, "_trim_free_mb", [0.0])  # no gate (the learned model's policy sets one)
    assert heap.trim_heap_if_due(60.0) is True  # first call: due
    assert heap.trim_heap_if_due(60.0) is False  # within the period: skipped
    assert heap.trim_heap_if_due(0.0) is False  # 0 turns it off
    monkeypatch.setenv("GEOPIX_TILES_TRIM_S", "0")
    monkeypatch.setattr(heap, "_last_trim", [0.0])
    assert heap.trim_heap_if_due() is False
    monkeypatch.setenv("GEOPIX_TILES_TRIM_S", "0.001")
    assert heap.trim_heap_if_due() is True


GATED = r"""
import ctypes, json, sys
import numpy as np
from geopix_tiles.core import heap

tuned = heap.tune_heap()
mb = int(sys.argv[1])
big, pins = [], []
for _ in range(mb):
    big.append(np.ones(1 << 20, dtype=np.uint8))
    pins.append(ctypes.create_string_buffer(2000))
del big
free = heap.heap_free_mb()
print(json.dumps({"tuned": tuned, "free": free, "gate": heap._trim_free_mb[0],
                  "trimmed": heap.trim_heap_if_due(0.001)}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_the_learned_models_periodic_trim_waits_for_free_memory():
    """Under the learned model's policy a due trim is skipped while the heaps hold less than 256 MB free
    (those pages are the model's next temporaries) and runs once they hold more."""
    import os

    def run(mb: int, env: dict | None = None) -> dict:
        out = subprocess.run([sys.executable, "-c", GATED, str(mb)], capture_output=True, text=True, timeout=120,
                             env=dict(os.environ, **(env or {})))
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    little = run(64)
    if not little["tuned"] or little["free"] is None:
        pytest.skip("not glibc >= 2.33: no mallopt / mallinfo2")
    assert little["gate"] == 256 and 60 <= little["free"] < 256 and not little["trimmed"], little
    lots = run(320)
    assert lots["free"] >= 300 and lots["trimmed"], lots
    assert run(64, {"GEOPIX_TILES_TRIM_FREE_MB": "0"})["trimmed"]  # the gate off: trims whenever due
