"""Pale, flat scenes: the scene stretch with and without its cap (``geopix_tiles.io.scene.MAX_LOW_SHARE``).

The learned models see each scene through its own 2-98 % stretch. On a pale, flat scene (Dubai tile_7
image 6, a white desert: 2 % at 0.66-0.70 of 98 %) that stretch amplifies the sand's grain ~3x, and the
default model painted a fifth of it as vegetation. Since 2026-12-06 the stretch's dark end is at most half
its bright end. This script measures the trade, through the product's own ``segment``:

* Dubai tile_7 (held out; human labels), its 9 images as they are: only image 6 is capped;
* the same tile's images 1-5 under a synthetic veil of haze (``0.4 x + 144``: 2 % at ~0.6 of 98 %), where
  the plain stretch undoes the veil exactly and the cap does not (the cost side);
* xBD Joplin buildings (another sensor; none capped: a check that nothing else moves);

and draws image 6 with both stretches' masks (``results/pale_scene.png``).

    python benchmarks/pale_scene.py [--write benchmarks/results/pale_scene.md]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from flips import SHARED, dubai, joplin, write_table  # noqa: E402

PLAIN = 1.0  # MAX_LOW_SHARE that never acts: the plain 2-98 % stretch of before


def veil(rgb: np.ndarray) -> np.ndarray:
    return np.round(rgb.astype(np.float32) * 0.4 + 0.6 * 240).astype(np.uint8)


def render(out: Path, work: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio
    from PIL import Image

    from geopix_tiles import segment
    from geopix_tiles.io import scene
    from geopix_tiles.plot import overlay

    rgb = np.asarray(Image.open(SHARED / "dubai_aerial/tile_7/images/image_part_006.jpg").convert("RGB"))
    path = work / "image6.tif"
    with rasterio.open(path, "w", driver="GTiff", width=rgb.shape[1], height=rgb.shape[0], count=3,
                       dtype="uint8") as dst:
        dst.write(rgb.transpose(2, 0, 1))
    prompts = ["water", "vegetation", "roads", "buildings"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.6))
    overlay(str(path), None, ax=axes[0], legend=False, title="Dubai tile_7 image 6 (held out)")
    shipped = scene.MAX_LOW_SHARE
    for ax, share, name in ((axes[1], PLAIN, "plain 2-98 % stretch (before)"),
                            (axes[2], shipped, f"dark end <= {shipped:g} x bright end (now)")):
        scene.MAX_LOW_SHARE = share
        try:
            segment(path, prompts, model="default", raster_out=work / "m.tif", device="cpu", vectorize=False,
                    collect=False, overwrite=True, allow_no_georef=True)
        finally:
            scene.MAX_LOW_SHARE = shipped
        overlay(str(path), str(work / "m.tif"), ax=ax, title=name)
    fig.tight_layout()
    fig.savefig(out, dpi=60)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", default=str(ROOT / "benchmarks" / "results" / "pale_scene.md"))
    args = ap.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"needs {SHARED} (the shared data)")
    import torch

    from geopix_tiles.io import scene

    torch.set_num_threads(2)
    load = os.getloadavg()[0]
    shipped = scene.MAX_LOW_SHARE
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for share in (PLAIN, shipped):
            scene.MAX_LOW_SHARE = share
            try:
                as_is, s1 = dubai(1, Path(d))
                hazed, s2 = dubai(1, Path(d), images="image_part_00[1-5]", pixels=veil)
                building, s3 = joplin(1, Path(d))
            finally:
                scene.MAX_LOW_SHARE = shipped
            label = "plain (before)" if share == PLAIN else f"cap {share:g} (shipped)"
            rows.append((label, as_is, s1, [f"{hazed['mean']:.3f}", f"{hazed['vegetation']:.3f}",
                                            f"{hazed['water']:.3f}", f"**{building:.3f}**"]))
            print(label, {k: round(v, 3) for k, v in as_is.items()}, {k: round(v, 3) for k, v in hazed.items()},
                  round(building, 3), flush=True)
        render(Path(args.write).with_suffix(".png"), Path(d))
    write_table(Path(args.write), "Pale scenes: the stretch with and without its cap", "pale_scene.py", load,
                "Pixel IoU against human labels through `segment`; hazed = Dubai tile_7 images 1-5 under a "
                "synthetic veil (`0.4 x + 144`).", "stretch",
                ["hazed 1-5: mean", "vegetation", "water", "xBD Joplin buildings"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
