"""What the presence check's tile veto does to ``segment``'s masks on unseen scenes. Measured.

The default model's segmenter drops a class from a model tile when the tile's mask says "yes"
but the presence check does not take the pixels under it for the class (clouds excepted; see
``model/presence_check.py: veto_tiles``). Scored through the product's ``segment`` with
``presence_check`` on (the default) and off, on the same held-out sets as ``benchmarks/flips.py``
(Dubai tile_7 whole images, 5 classes; xBD Joplin buildings) and the Landsat-7 sample's clouds
(``benchmarks/landsat_clouds.py``: weak label, clouds are never vetoed, so they must not move).

    python benchmarks/tile_check.py [--write benchmarks/results/tile_check.md]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> int:
    from flips import CLASSES, SHARED, dubai, joplin

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", default=str(ROOT / "benchmarks" / "results" / "tile_check.md"))
    args = ap.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"needs {SHARED} (the shared data)")
    import tempfile as _t

    import torch

    from landsat_clouds import score

    torch.set_num_threads(2)
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for check in (False, True):
            iou, dubai_s = dubai(1, Path(d), presence_check=check)
            building, _ = joplin(1, Path(d), presence_check=check)
            from geopix_tiles import segment
            import numpy as np
            import rasterio

            with _t.TemporaryDirectory() as e:  # Landsat clouds, as landsat_clouds.score but with the switch
                scene = SHARED / "rasterio_samples" / "RGB.byte.tif"
                with rasterio.open(scene) as src:
                    rgb, valid = src.read(), src.read_masks(1) > 0
                weak = (rgb.min(0) > 200) & valid
                segment(scene, ["clouds"], model="default", raster_out=Path(e) / "o.tif", vectorize=False,
                        collect=False, device="cpu", presence_check=check)
                with rasterio.open(Path(e) / "o.tif") as o:
                    cloud = (o.read(1) >= 128) & valid
                cloud_iou = float((cloud & weak).sum() / max(1, (cloud | weak).sum()))
            rows.append((check, iou, dubai_s, building, cloud_iou))
            print(check, {k: round(v, 3) for k, v in iou.items()}, round(building, 3), round(cloud_iou, 3), flush=True)
    lines = [f"# Presence check tile veto in `segment`, default model, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
             "", f"{platform.machine()}, {os.cpu_count()} cores, load {load:.2f} at start; `python benchmarks/tile_check.py`.",
             "Pixel IoU on scenes never trained on; Landsat-7 clouds against a weak white-pixel label.", "",
             "| presence_check | Dubai tile_7: " + " | ".join(CLASSES) + " | mean | s | xBD Joplin buildings | Landsat-7 clouds (weak) |",
             "|---|" + "---|" * (len(CLASSES) + 4)]
    for check, iou, dubai_s, building, cloud_iou in rows:
        lines.append(f"| {check} | " + " | ".join(f"{iou[c]:.3f}" for c in CLASSES)
                     + f" | **{iou['mean']:.3f}** | {dubai_s:.0f} | {building:.3f} | {cloud_iou:.3f} |")
    Path(args.write).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
