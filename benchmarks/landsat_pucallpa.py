"""Water on a place, sensor and pixel size the model never saw: Landsat over Pucallpa (Peru), scored per date.

    python benchmarks/landsat_pucallpa.py [--model default DIR ...] [--years 1985,2000,2020]
        [--shown native,auto,45,30,15] [--write benchmarks/results/landsat_pucallpa.md]

``../shared/data/landsat/<year>.tif`` (MIT, opengeos/data): 697 x 377 px in EPSG:4326 at ~90 m, four bands
SWIR1 / NIR / red / green (8-bit display stretch), the Ucayali river with its oxbow lakes, the city, rain
forest. None of it is in any training split (it has no blue band, and no labels). The model reads RGB, so
the input here is red, green and a stand-in blue (0.85 x green: no blue was measured), which makes muddy
river water light brown as it looks in true colour. **Weak label**: water where the modified NDWI
(green - SWIR1) / (green + SWIR1) > 0 (SWIR separates turbid river water from land, which NIR alone does
not); vegetation where (NIR - red) / (NIR + red) > 0.3 outside it. Both are on display-stretched bands,
so only large differences mean anything. ``--shown``: the pixel size the model is shown the scene at
(``native`` or metres; ``auto`` is what the checkpoint's ``coarsest_resolution_m`` rule picks).
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "landsat"


def rgb_scene(year: str, folder: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """The year's scene as an RGB GeoTIFF (red, green, 0.85 x green), its water and vegetation weak labels."""
    with rasterio.open(DATA / f"{year}.tif") as src:
        swir, nir, red, green = (b.astype(np.float32) for b in src.read())
        profile = src.profile
    water = (green - swir) / (green + swir + 1e-6) > 0
    vegetation = ((nir - red) / (nir + red + 1e-6) > 0.3) & ~water
    rgb = np.stack([red, green, 0.85 * green])
    lo, hi = np.percentile(rgb, [1, 99])  # one stretch for all three: keeps the colour ratios
    rgb = np.clip((rgb - lo) / (hi - lo) * 255, 0, 255).round().astype(np.uint8)
    profile.update(count=3, nodata=None, photometric="RGB")
    out = folder / f"pucallpa_{year}.tif"
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(rgb)
    return out, water, vegetation


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", default=["default"])
    ap.add_argument("--years", default="1985,2000,2020")
    ap.add_argument("--shown", default="native,auto,45,30,15")
    ap.add_argument("--write")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"landsat_pucallpa: {DATA} is missing (../shared/data/landsat)", file=sys.stderr)
        return 2
    from geopix_tiles import segment

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        scenes = {y: rgb_scene(y, folder) for y in args.years.split(",")}
        for model in args.model:
            for shown in args.shown.split(","):
                res = shown if shown in ("native", "auto") else float(shown)
                w, v, secs, at = [], [], 0.0, None
                for year, (scene, water, veg) in scenes.items():
                    out = folder / "o.tif"
                    t0 = time.perf_counter()
                    _, stats = segment(scene, ["water", "vegetation"], model=model, raster_out=out, device="cpu",
                                       vectorize=False, collect=False, return_stats=True, resolution=res,
                                       overwrite=True)
                    secs += time.perf_counter() - t0
                    at = stats.extra.get("read_at_m")
                    with rasterio.open(out) as r:
                        m = r.read() >= 128
                    w.append(iou(m[0], water))
                    v.append(iou(m[1], veg))
                row = (model, shown, at, w, v, secs)
                rows.append(row)
                print(f"{model} shown {shown} ({at or 'native'}): water {np.mean(w):.3f} {np.round(w, 3).tolist()} "
                      f"vegetation {np.mean(v):.3f} {np.round(v, 3).tolist()} {secs:.0f} s", flush=True)
    years = args.years.split(",")
    lines = [f"### {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC - {platform.machine()}, {os.cpu_count()} cores, "
             f"load {os.getloadavg()[0]:.2f} at the end", "",
             "| model | shown at | water IoU, mean | per year (" + ", ".join(years) + ") | vegetation IoU, mean | per year | s |",
             "|---|---|---|---|---|---|---|"]
    for model, shown, at, w, v, secs in rows:
        where = shown if shown != "auto" else f"auto ({at:.0f} m)" if at else "auto (native)"
        lines.append(f"| {model} | {where} | **{np.mean(w):.3f}** | {' / '.join(f'{x:.2f}' for x in w)} | "
                     f"**{np.mean(v):.3f}** | {' / '.join(f'{x:.2f}' for x in v)} | {secs:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        path = Path(args.write)
        head = "" if path.exists() else "# Landsat over Pucallpa, Peru (`benchmarks/landsat_pucallpa.py`)\n\n" + \
            (__doc__.split("\n\n", 2)[2].strip() + "\n\n")
        with open(path, "a") as f:
            f.write(head + text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
