"""Releasing the CUDA libraries' resident pages in a CPU run: RSS falls, results do not change.

Run in a fresh interpreter: the pages are counted per process, and the test suite's own
process has long since touched whatever it touched.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("torch")

PROBE = r"""
import json, torch
import torch.nn.functional as F
from geopix_tiles.core.lib_pages import _clean_gpu_mappings, release_gpu_library_pages

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])

g = torch.Generator().manual_seed(0)
x, w = torch.randn(2, 3, 64, 64, generator=g), torch.randn(8, 3, 3, 3, generator=g)
a, b = torch.randn(64, 64, generator=g), torch.randn(64, 64, generator=g)
before_out = (F.conv2d(x, w), a @ b)
mapped = len(_clean_gpu_mappings())
before = rss()
released = release_gpu_library_pages()
after = rss()
after_out = (F.conv2d(x, w), a @ b)
print(json.dumps({"mapped": mapped, "released": released, "before": before, "after": after,
                  "same": all(torch.equal(p, q) for p, q in zip(before_out, after_out)),
                  "cuda": torch.version.cuda is not None}))
"""


def _probe(env_extra: dict | None = None) -> dict:
    import os

    env = dict(os.environ, **(env_extra or {}))
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/smaps and madvise are Linux's")
def test_cpu_run_gives_back_cuda_library_pages_and_computes_the_same():
    r = _probe()
    if not r["cuda"] or r["mapped"] == 0:
        pytest.skip("a CPU build of torch maps no CUDA library: nothing to release")
    assert r["same"], r
    assert r["released"] >= 20 * 1024, r  # kB; ~130 MB with torch 2.14's CUDA 13 build
    assert r["before"] - r["after"] >= 0.8 * r["released"], r


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/smaps and madvise are Linux's")
def test_switch_off_keeps_the_pages():
    r = _probe({"GEOPIX_TILES_LIB_PAGES": "0"})
    assert r["released"] == 0 and r["same"]


PARK_PROBE = r"""
import atexit, ctypes, hashlib, json, sys, torch
from geopix_tiles.core import lib_pages

regions = lib_pages._gpu_library_bss()
def digest():
    return hashlib.sha1(b"".join(ctypes.string_at(a, b - a) for a, b, _ in regions)).hexdigest()
before = digest()
def check():  # registered before the park, so it runs after the copy back
    print("restored", digest() == before, flush=True)
atexit.register(check)
kb = lib_pages.park_gpu_library_data()
zeroed = sum(ctypes.string_at(a, b - a).count(0) for a, b, _ in regions)  # dropped pages read back as zeros
print(json.dumps({"regions": len(regions), "parked_kb": kb, "zeroed": zeroed,
                  "size": sum(b - a for a, b, _ in regions), "cuda": torch.version.cuda is not None,
                  "device": torch.cuda.is_available()}), flush=True)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/smaps and madvise are Linux's")
def test_gpu_library_data_is_parked_and_restored_before_exit():
    """libcublasLt's written .bss (81 MB) leaves RSS for the run and is back, byte for byte, before the
    library's static destructors run at a normal interpreter exit (which must not crash)."""
    out = subprocess.run([sys.executable, "-c", PARK_PROBE], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    r = json.loads(lines[0])
    if not r["cuda"] or r["device"] or r["regions"] == 0:
        pytest.skip("no CUDA build of torch, or a CUDA device is visible: nothing is parked")
    assert r["parked_kb"] >= 1024, r
    assert r["zeroed"] == r["size"], r  # dropped: every byte reads as zero during the run
    assert lines[-1] == "restored True", lines


WARM_PROBE = r"""
import json, mmap, sys, tempfile, torch
import torch.nn.functional as F
from geopix_tiles.core.lib_pages import _mappings, release_library_pages

def file_kb(pred):
    return sum(m.rss for m in _mappings() if m.path.startswith("/") and "w" not in m.perms and pred(m.path))

g = torch.Generator().manual_seed(0)
x, w = torch.randn(2, 3, 64, 64, generator=g), torch.randn(8, 3, 3, 3, generator=g)
before_out = F.conv2d(x, w)
# a read-only data file mapping (a checkpoint, a raster): never dropped
data = tempfile.NamedTemporaryFile(suffix=".bin")
data.write(b"\x07" * (4 << 20)); data.flush()
view = mmap.mmap(data.fileno(), 0, prot=mmap.PROT_READ)
view.read(4 << 20)  # fault it in
libs_before, data_before = file_kb(lambda p: ".so" in p), file_kb(lambda p: p == data.name)
released = release_library_pages("model")
again = release_library_pages("model")  # once per stage and process
libs_after, data_after = file_kb(lambda p: ".so" in p), file_kb(lambda p: p == data.name)
after_out = F.conv2d(x, w)
libs_refaulted = file_kb(lambda p: ".so" in p)
print(json.dumps({"released": released, "again": again, "libs_before": libs_before, "libs_after": libs_after,
                  "libs_refaulted": libs_refaulted, "data_before": data_before, "data_after": data_after,
                  "same": torch.equal(before_out, after_out)}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/smaps and madvise are Linux's")
def test_warm_run_gives_back_library_start_up_pages_only():
    """The libraries' import-time pages leave RSS; a computation after it gives the same result
    (its code faults back in, less than was there); a mapped data file keeps its pages."""
    import os

    out = subprocess.run([sys.executable, "-c", WARM_PROBE], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, GEOPIX_TILES_LIB_PAGES="1"))
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["same"], r
    assert r["released"] >= 50 * 1024, r  # kB: torch alone leaves > 100 MB of library pages resident
    assert r["again"] == 0, r
    assert r["libs_after"] <= r["libs_before"] - r["released"] * 0.9, r
    assert r["libs_refaulted"] < r["libs_before"] - 50 * 1024, r  # the conv's code comes back, not the rest
    assert r["data_after"] == r["data_before"] >= 4 * 1024 - 4, r
    off = subprocess.run([sys.executable, "-c", WARM_PROBE], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, GEOPIX_TILES_LIB_PAGES="0"))
    assert json.loads(off.stdout.strip().splitlines()[-1])["released"] == 0
