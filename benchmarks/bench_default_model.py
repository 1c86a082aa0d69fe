"""Default model speed on CPU: tiles/s of the shipped checkpoint against the previous one.

Issue 11 keeps the default model's CPU inference at >= 4 tiles/s (256 px tiles, 4 prompts,
2 cores). This script times ``GeoPixModel.segment`` (the path the engine calls) on the same
random batch for every checkpoint given, in interleaved rounds so background load hits all
alike, and reports tiles/s and the ratio to the first checkpoint (the baseline). The MiniLM
prompt embeddings are computed in a warm-up call and cached, as in a scene run.

    python benchmarks/bench_default_model.py --model runs/default_v1_model --model default \\
        [--batch 8] [--rounds 7] [--threads 2] [--write benchmarks/results/default_model_speed.md]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

from geopix_tiles.model import GeoPixModel

from report import publish

PROMPTS = ["water", "vegetation", "buildings", "roads"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="checkpoint dir or 'default' (first = baseline)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--write", help="append a Markdown table to this file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    models = [GeoPixModel.from_pretrained(m) for m in args.model]
    x = torch.rand(args.batch, 3, args.tile, args.tile, generator=torch.Generator().manual_seed(0))
    for m in models:
        m.segment(x, PROMPTS)  # warm-up: allocator, MiniLM prompt cache
    times: list[list[float]] = [[] for _ in models]
    for _ in range(args.rounds):
        for i, m in enumerate(models):
            t0 = time.perf_counter()
            m.segment(x, PROMPTS)
            times[i].append(time.perf_counter() - t0)
    rates = [args.batch / statistics.median(t) for t in times]
    load = os.getloadavg()[0]
    rows = [f"| {name} | {m.config.timm_model_name or m.config.clip_model} | "
            f"{sum(p.numel() for p in m.parameters()) / 1e6:.2f} M | {r:.2f} | {r / rates[0]:.2f} |"
            for name, m, r in zip(args.model, models, rates)]
    text = "\n".join([
        f"### {dt.date.today()} - {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{args.threads} threads, load {load:.2f} at start of the table, torch {torch.__version__}",
        f"`segment`, batch {args.batch} x {args.tile} px, {len(PROMPTS)} prompts, median of {args.rounds} "
        "interleaved rounds",
        "", "| checkpoint | tower | parameters | tiles/s | vs first |", "|---|---|---|---|---|", *rows, ""])
    return publish(text, args.write)


if __name__ == "__main__":
    raise SystemExit(main())
