"""What an accessor compute leaves behind in a notebook's process: thread teams, and the next torch work's speed.

    python benchmarks/bench_pool_threads.py [--repeats 3] [--md benchmarks/results/pool_threads.md]

Each run is a fresh process (a thread team, once made, lives as long as its thread): a small-operator
torch workload in the main thread (30 forward/backward passes of a 30-layer 16-channel conv stack on
2 x 32 x 32, the size of work a training step of a small model or a chat turn does between barriers),
then ``DataArray.geopix.segment(["water", "vegetation"], model="default").values`` on the shipped NAIP
sample through dask's threaded scheduler (chunks 250 x 333: 12 tasks), then the same workload again.
``shipped``: the model computes on one thread in dask's pool threads (``segmenters.protocol.pool_thread``);
``before``: the same code with that context replaced by a no-op, as it ran until 2026-12-07.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import contextlib, json, os, sys, threading, time, warnings
warnings.simplefilter("ignore")
import torch, rioxarray, geopix_tiles
from pathlib import Path
if sys.argv[1] == "before":
    import geopix_tiles.segmenters.protocol as protocol
    protocol.pool_thread = lambda segmenter: contextlib.nullcontext()

def native():
    py = {t.native_id for t in threading.enumerate()}
    return sum(int(t) not in py for t in os.listdir("/proc/self/task"))

torch.manual_seed(0)
net = torch.nn.Sequential(*[torch.nn.Conv2d(16, 16, 3, padding=1) for _ in range(30)])
x = torch.randn(2, 16, 32, 32)
def work():
    t = time.perf_counter()
    for _ in range(30):
        net(x).sum().backward()
    return time.perf_counter() - t
work()
out = {"threads_before": native(), "work_before_s": min(work() for _ in range(3))}
arr = rioxarray.open_rasterio(Path(geopix_tiles.__file__).parent / "data" / "naip_sample.tif", chunks={"x": 333, "y": 250})
t = time.perf_counter()
arr.geopix.segment(["water", "vegetation"], model="default", device="cpu").values
out["compute_s"] = time.perf_counter() - t
out["threads_after"] = native()
out["work_after_s"] = min(work() for _ in range(3))
print(json.dumps(out))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--md", help="append a results section to this markdown file")
    args = ap.parse_args()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    runs: dict[str, list[dict]] = {"before": [], "shipped": []}
    load = os.getloadavg()[0]
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for _ in range(args.repeats):
        for variant in runs:  # alternating, so drift of the machine's speed hits both
            res = subprocess.run([sys.executable, "-c", CHILD, variant], capture_output=True, text=True, env=env,
                                 cwd=ROOT, check=True)
            runs[variant].append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(variant, runs[variant][-1], flush=True)

    def med(variant: str, key: str) -> float:
        vals = sorted(r[key] for r in runs[variant])
        return vals[len(vals) // 2]

    lines = [f"### {stamp} - {platform.machine()}, {os.cpu_count()} cores, load {load:.2f} at start, "
             f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
             f"medians of {args.repeats} alternating fresh processes each",
             "",
             "| variant | native threads before / after the compute | accessor compute s | main-thread torch work "
             "before / after s | after / before |",
             "|---|---|---|---|---|"]
    for v in runs:
        lines.append(f"| {v} | {med(v, 'threads_before'):.0f} / {med(v, 'threads_after'):.0f} | {med(v, 'compute_s'):.2f} | "
                     f"{med(v, 'work_before_s'):.2f} / {med(v, 'work_after_s'):.2f} | "
                     f"{med(v, 'work_after_s') / med(v, 'work_before_s'):.2f} |")
    lines.append(f"\naccessor compute, shipped / before: {med('shipped', 'compute_s') / med('before', 'compute_s'):.2f}; "
                 f"torch work after the compute, shipped / before: "
                 f"{med('shipped', 'work_after_s') / med('before', 'work_after_s'):.2f}\n")
    text = "\n".join(lines)
    print(text)
    if args.md:
        with open(args.md, "a") as f:
            f.write("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
