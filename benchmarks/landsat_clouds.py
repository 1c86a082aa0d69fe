"""Clouds on another sensor: the rasterio Landsat-7 RGB sample (30 m), scored against a weak label.

    python benchmarks/landsat_clouds.py [--model default DIR ...] [--out benchmarks/results/landsat_clouds.json]

The default model's clouds come from one Sentinel-2 chip; a recipe that tells the model "no clouds"
on thousands of chips of other sensors can teach it that clouds are a Sentinel-2 texture (the
``default_v4`` trial). This sample (``../shared/data/rasterio_samples/RGB.byte.tif``, never trained
on) has bright cumulus over the sea and land. **Weak label**: a valid pixel is "cloud" when all three
bands exceed 200 (white); it misses thin cloud edges and would count white roofs, so only large
differences between models mean anything. Printed per model: the share painted as clouds, IoU and
recall against the weak label, and the share painted as water.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SCENE = ROOT.parent / "shared" / "data" / "rasterio_samples" / "RGB.byte.tif"


def score(model: str, scene: Path = SCENE, **options) -> dict:
    """The model's clouds and water on ``scene``; ``options`` go to ``segment`` (e.g. ``presence_check``)."""
    import numpy as np
    import rasterio

    from geopix_tiles import segment

    with rasterio.open(scene) as src:
        rgb = src.read()
        valid = src.read_masks(1) > 0
    weak = (rgb.min(0) > 200) & valid
    with tempfile.TemporaryDirectory() as d:
        segment(scene, ["clouds", "water"], model=model, raster_out=Path(d) / "o.tif", vectorize=False,
                collect=False, device="cpu", **options)
        with rasterio.open(Path(d) / "o.tif") as o:
            painted = o.read() >= 128
    cloud, water = painted[0] & valid, painted[1] & valid
    n = int(valid.sum())
    return {"weak_cloud_share": float(weak.sum() / n), "cloud_share": float(cloud.sum() / n),
            "cloud_iou_vs_weak": float((cloud & weak).sum() / max(1, (cloud | weak).sum())),
            "cloud_recall_vs_weak": float((cloud & weak).sum() / max(1, weak.sum())),
            "water_share": float(water.sum() / n)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", default=["default"])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    scores = {}
    for m in args.model:
        scores[m] = s = score(m)
        print(f"{m}: clouds {s['cloud_share']:.4f} of the scene (weak label {s['weak_cloud_share']:.4f}), "
              f"IoU {s['cloud_iou_vs_weak']:.3f}, recall {s['cloud_recall_vs_weak']:.3f}; water {s['water_share']:.3f}",
              flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(scores, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
