"""The default model on coarse scenes: the held-out NAIP date averaged down to Sentinel-2 and Landsat pixel sizes.

The shipped sample (``naip_sample.tif``, NAIP 2020-08-31, 5 m, never trained on) is averaged down by 1, 2, 3, 6
and 10 (5-50 m per pixel) and segmented for water and vegetation with ``resolution="native"`` and with
``"auto"`` (the default: the checkpoint's ``coarsest_resolution_m`` shows scenes of 6-60 m at 5 m but at most 2x finer, with no tile
presence check). Scored against weak labels made on the same averaged bands (NDWI > 0.2; NDVI > 0.3 outside it).

    python benchmarks/coarse_resolution.py [--factors 1,2,3,6,10] [--model default] [--write benchmarks/results/coarse_resolution.md]
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
import rasterio
from affine import Affine
from rasterio.enums import Resampling

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT / "geopix_tiles" / "data" / "naip_sample.tif"


def averaged(folder: Path, factor: int) -> tuple[Path, np.ndarray, np.ndarray, float]:
    """The sample averaged down ``factor`` times, its water and vegetation weak labels, its pixel size."""
    with rasterio.open(SAMPLE) as src:
        h, w = src.height // factor, src.width // factor
        data = src.read(out_shape=(src.count, h, w), resampling=Resampling.average)
        profile = src.profile
        profile.update(width=w, height=h, transform=src.transform * Affine.scale(src.width / w, src.height / h))
        descriptions = src.descriptions
    out = folder / f"naip_{factor}x.tif"
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = descriptions
    r, g, n = (data[k].astype(float) for k in (0, 1, 3))
    water = (g - n) / (g + n + 1e-6) > 0.2
    vegetation = ((n - r) / (n + r + 1e-6) > 0.3) & ~water
    return out, water, vegetation, abs(profile["transform"].a)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--factors", default="1,2,3,6,10")
    ap.add_argument("--model", default="default")
    ap.add_argument("--write")
    args = ap.parse_args()
    from geopix_tiles import segment

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for factor in (int(f) for f in args.factors.split(",")):
            scene, water, veg, metres = averaged(folder, factor)
            row = {"factor": factor, "metres": metres, "shape": water.shape}
            for mode in ("native", "auto"):
                out = folder / f"{factor}_{mode}.tif"
                t0 = time.perf_counter()
                _, stats = segment(scene, ["water", "vegetation"], model=args.model, raster_out=out, device="cpu",
                                   vectorize=False, collect=False, return_stats=True, resolution=mode)
                with rasterio.open(out) as r:
                    m = r.read() >= 128
                row[mode] = {"water": float((m[0] & water).sum() / max(1, (m[0] | water).sum())),
                             "vegetation": float((m[1] & veg).sum() / max(1, (m[1] | veg).sum())),
                             "s": time.perf_counter() - t0, "tiles": stats.tiles_total,
                             "shown_at": stats.extra.get("read_at_m")}
            rows.append(row)
            n, a = row["native"], row["auto"]
            print(f"x{factor} ({metres:.0f} m): water {n['water']:.3f} -> {a['water']:.3f}, vegetation "
                  f"{n['vegetation']:.3f} -> {a['vegetation']:.3f}, tiles {n['tiles']} -> {a['tiles']}", flush=True)
    load = os.getloadavg()[0]
    lines = [f"### {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC - {platform.machine()}, {os.cpu_count()} cores, "
             f"load {load:.2f} at the end; model `{args.model}`",
             "", "| scene | pixel | water IoU native -> auto | vegetation IoU native -> auto | auto shows it at | tiles native -> auto | s native -> auto |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        n, a = row["native"], row["auto"]
        shown = f"{a['shown_at']:.0f} m" if a["shown_at"] else "native"
        lines.append(f"| NAIP 2020 / {row['factor']} ({row['shape'][1]} x {row['shape'][0]} px) | {row['metres']:.0f} m | "
                     f"{n['water']:.3f} -> **{a['water']:.3f}** | {n['vegetation']:.3f} -> **{a['vegetation']:.3f}** | "
                     f"{shown} | {n['tiles']} -> {a['tiles']} | {n['s']:.1f} -> {a['s']:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        path = Path(args.write)
        head = "" if path.exists() else (
            "# The default model on coarse scenes (`benchmarks/coarse_resolution.py`)\n\n"
            "The shipped NAIP sample (2020-08-31, 5 m, a date never trained on) averaged down to Sentinel-2 and Landsat\n"
            "pixel sizes; water and vegetation against NDWI / NDVI weak labels made on the same averaged bands.\n"
            "`native`: the model sees the scene's own pixels; `auto` (the default): scenes of 6-60 m are shown at 5 m, at most 2x finer\n"
            "(`coarsest_resolution_m`), without the tile presence check.\n\n")
        with open(path, "a") as f:
            f.write(head + text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
