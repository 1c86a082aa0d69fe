"""The engine bound by its vectoriser: in its own thread against worker processes (issue 14, items 1 and 5).

A real probability raster (``segment --model default --raster``, 4 prompts) is fed back through
the engine as the scene, with a "model" that returns each tile's own bands / 255 (no model cost),
so the run is the engine's reading, blending, raster writing and vectorising of real masks.
Alternating runs with ``GEOPIX_VECTOR_WORKERS`` = 0 (the vector thread traces every strip, as on
2-core machines) and the given worker counts; the polygons must be identical.

    python benchmarks/bench_vector_workers.py PROBABILITY_RASTER.tif [--workers 0,2] [--repeats 2] [--out FILE.md]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class BandReplay:
    """Band ``k`` of the tile, / 255, as the probability of prompt ``k``."""

    band_roles = None
    tile_size = 256
    scaling = "reflectance"

    def check_prompts(self, prompts):
        pass

    def predict(self, tiles, prompts):
        return tiles[:, :len(prompts)] * np.float32(1 / 255)


def run_once(raster: str, workers: int, out: Path) -> tuple[float, float, int, int]:
    """Wall s, engine s, polygons and tiles of one engine run with ``workers`` vectorising processes."""
    from geopix_tiles import segment

    os.environ["GEOPIX_VECTOR_WORKERS"] = str(workers)
    t0 = time.perf_counter()
    frame, stats = segment(raster, ["p1", "p2", "p3", "p4"], model=BandReplay(), out=out / f"w{workers}.gpkg",
                           raster_out=out / f"w{workers}.tif", tile=256, overlap=64, overwrite=True,
                           return_stats=True, collect=False)
    return time.perf_counter() - t0, stats.seconds, stats.features, stats.tiles_done


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("raster")
    ap.add_argument("--workers", default="0,2")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out")
    args = ap.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    rows: dict[int, list] = {w: [] for w in counts}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for w in counts:
                rows[w].append(run_once(args.raster, w, Path(tmp)))
                print(w, rows[w][-1], flush=True)
        import pyogrio

        ref = pyogrio.read_dataframe(Path(tmp) / f"w{counts[0]}.gpkg")
        same = {w: bool(len(ref) == len(f := pyogrio.read_dataframe(Path(tmp) / f"w{w}.gpkg"))
                        and all(a.equals_exact(b, 0) for a, b in zip(ref.geometry, f.geometry))) for w in counts}
    base = np.median([r[1] for r in rows[counts[0]]])
    lines = [f"### {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC - {platform.machine()}, {os.cpu_count()} cores, "
             f"load {os.getloadavg()[0]:.2f}; {Path(args.raster).name}, medians of {args.repeats} alternating runs", "",
             "| vector workers | engine s | wall s | polygons | engine time vs 0 workers | same polygons |",
             "|---|---|---|---|---|---|"]
    for w in counts:
        eng, wall = np.median([r[1] for r in rows[w]]), np.median([r[0] for r in rows[w]])
        lines.append(f"| {w} | {eng:.2f} | {wall:.2f} | {rows[w][0][2]} | {eng / base:.2f} | {same[w]} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        path = Path(args.out)
        path.write_text((path.read_text() + "\n" if path.exists() else "") + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
