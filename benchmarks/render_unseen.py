"""Render the default model on real scenes it was never trained on, to PNG, for a human to look at.

    python benchmarks/render_unseen.py [--model default] [--out benchmarks/results/unseen]

Scenes (from ../shared/data; none is in the training split): the NAIP 2020 date (held out;
the shipped demo sample), the rasterio Landsat-7 RGB sample (30 m, another sensor), a
Sentinel-2 true-colour mosaic of the held-out block (10 m), a UC Merced forest and a UC Merced
dense-residential chip (0.3 m; chip 10, not among the scene negatives' training chips 0, 3, ..., 57),
UC Merced storage-tank, beach and overpass chips from the held-out indices 60-79 (bright roofs,
sand and surf, deep shadows: where the model used to paint clouds, vegetation and water), and
the GeoPix demo image 1, and NEON's airborne OSBS_029 plot (0.1 m, Florida pine savanna: a resolution
finer than anything the model trained on). Each picture is the
image beside its masks, drawn with ``geopix_tiles.plot.overlay`` from the engine's raster.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PROMPTS = ["water", "vegetation", "buildings", "roads", "clouds"]


def _jpg_to_tif(src: Path, dst: Path) -> Path:
    import numpy as np
    import rasterio
    from PIL import Image

    arr = np.asarray(Image.open(src).convert("RGB")).transpose(2, 0, 1)
    with rasterio.open(dst, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=3,
                       dtype="uint8") as ds:
        ds.write(arr)
        for i, d in enumerate(("red", "green", "blue"), 1):
            ds.set_band_description(i, d)
    return dst


def _s2_rgb(dst: Path) -> Path:
    import rasterio

    f = SHARED / "s2_cloud" / "features" / "aeey"
    with rasterio.open(f / "B04.tif") as r:
        prof = r.profile
        red = r.read(1)
    with rasterio.open(f / "B03.tif") as g, rasterio.open(f / "B02.tif") as b:
        green, blue = g.read(1), b.read(1)
    prof.update(count=3)
    with rasterio.open(dst, "w", **prof) as ds:
        ds.write(red, 1), ds.write(green, 2), ds.write(blue, 3)
        for i, d in enumerate(("red", "green", "blue"), 1):
            ds.set_band_description(i, d)
    return dst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "unseen"))
    ap.add_argument("--only", nargs="*", help="render only these scenes (names as the PNGs)")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import geopix_tiles
    from geopix_tiles.plot import overlay

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = ROOT / "runs" / "unseen_work"  # intermediate rasters, not committed
    work.mkdir(parents=True, exist_ok=True)
    scenes = {
        "naip_2020": SHARED / "naip" / "m_4709963_se_14_1_20200831.tif",
        "landsat7_rgb": SHARED / "rasterio_samples" / "RGB.byte.tif",
        "s2_aeey_rgb": _s2_rgb(work / "s2_rgb.tif"),
        "ucm_forest": _jpg_to_tif(SHARED / "uc_merced" / "forest" / "forest10.jpg", work / "ucm_forest.tif"),
        "ucm_denseres": _jpg_to_tif(SHARED / "uc_merced" / "denseresidential" / "denseresidential10.jpg",
                                    work / "ucm_dense.tif"),
        "ucm_storagetanks": _jpg_to_tif(SHARED / "uc_merced" / "storagetanks" / "storagetanks66.jpg",
                                        work / "ucm_tanks.tif"),
        "ucm_beach": _jpg_to_tif(SHARED / "uc_merced" / "beach" / "beach62.jpg", work / "ucm_beach.tif"),
        "ucm_overpass": _jpg_to_tif(SHARED / "uc_merced" / "overpass" / "overpass70.jpg", work / "ucm_overpass.tif"),
        "geopix_demo_1": _jpg_to_tif(SHARED / "geopix_demo" / "1.jpg", work / "gp1.tif"),
        "neon_osbs_01m": SHARED / "neon_trees" / "OSBS_029.tif",
    }
    for name, path in scenes.items():
        if args.only and name not in args.only:
            continue
        raster = work / f"{name}_masks.tif"
        opts = {"band_roles": "red=1,green=2,blue=3"} if name == "naip_2020" else {}
        geopix_tiles.segment(str(path), PROMPTS, model=args.model, raster_out=str(raster), overwrite=True,
                             allow_no_georef=True, vectorize=False, device="cpu", **opts)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
        overlay(str(path), None, ax=axes[0], legend=False, title=f"{name} (image)")
        overlay(str(path), str(raster), ax=axes[1], title=f"{name}: --model {args.model}")
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=60)
        plt.close(fig)
        print(out / f"{name}.png", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
