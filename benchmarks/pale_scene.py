"""Pale, flat scenes: ``segment``'s scene stretch with and without its cap (``stretch="auto"`` / ``"full"``).

The learned models see each scene through its own 2-98 % stretch. On a pale, flat scene (Dubai tile_7
image 6, a white desert: 2 % at 0.66-0.70 of 98 %) that stretch amplifies the sand's grain ~3x, and the
default model painted a fifth of it as vegetation. Since 2026-12-06 the stretch's dark end is at most half
its bright end (``stretch="auto"``, ``geopix_tiles.io.scene.MAX_LOW_SHARE``); ``"full"`` is the plain stretch. This script measures the trade, through the product's own ``segment``:

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

def veil(rgb: np.ndarray) -> np.ndarray:
    return np.round(rgb.astype(np.float32) * 0.4 + 0.6 * 240).astype(np.uint8)


def render(out: Path, work: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio
    from PIL import Image

    from geopix_tiles import segment
    from geopix_tiles.io.scene import MAX_LOW_SHARE
    from geopix_tiles.plot import overlay

    rgb = np.asarray(Image.open(SHARED / "dubai_aerial/tile_7/images/image_part_006.jpg").convert("RGB"))
    path = work / "image6.tif"
    with rasterio.open(path, "w", driver="GTiff", width=rgb.shape[1], height=rgb.shape[0], count=3,
                       dtype="uint8") as dst:
        dst.write(rgb.transpose(2, 0, 1))
    prompts = ["water", "vegetation", "roads", "buildings"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.6))
    overlay(str(path), None, ax=axes[0], legend=False, title="Dubai tile_7 image 6 (held out)")
    for ax, stretch, name in ((axes[1], "full", "plain 2-98 % stretch (before; stretch='full')"),
                              (axes[2], "auto", f"dark end <= {MAX_LOW_SHARE:g} x bright end (now; 'auto')")):
        segment(path, prompts, model="default", raster_out=work / "m.tif", device="cpu", vectorize=False,
                collect=False, overwrite=True, allow_no_georef=True, stretch=stretch)
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

    torch.set_num_threads(2)
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for stretch in ("full", "auto"):
            as_is, s1 = dubai(1, Path(d), stretch=stretch)
            hazed, _ = dubai(1, Path(d), images="image_part_00[1-5]", pixels=veil, stretch=stretch)
            building, _ = joplin(1, Path(d), stretch=stretch)
            label = "full (before)" if stretch == "full" else "auto (shipped)"
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
