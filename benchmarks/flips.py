"""Does averaging the model over mirrored views (``segment(..., flips=N)``) give better masks on unseen scenes? Measured.

Two held-out sets with human labels, both through the product's own ``segment`` (the default model,
default ``resolution="auto"``), for ``flips`` 1, 2 and 4:

* **Dubai tile_7** (the whole tile never trained on; same city as the training tiles): its 9 whole
  images written as GeoTIFFs, 5 classes, pixel IoU = sum I / sum U over the images (unlabelled and
  black label pixels ignored);
* **xBD Joplin** (QuickBird-2, 0.45 m, another sensor and place; CC BY-NC-SA, so scoring only): the 4
  images on their fitted UTM grid (``benchmarks/resolution.py``), buildings.

Wall seconds per setting are this machine's, with nothing else running, for the cost side.

    python benchmarks/flips.py [--flips 1,2,4] [--write benchmarks/results/flips.md]
"""
from __future__ import annotations

import argparse
import datetime as dt
import glob
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
SHARED = ROOT.parent / "shared" / "data"
CLASSES = {"building": "buildings", "road": "roads", "vegetation": "vegetation", "water": "water", "land": "bare land"}


def dubai_images(images: str = "*"):
    """``(image path, RGB [3, H, W] uint8, label [H, W, 3])`` of tile_7's whole images matching ``images``."""
    from PIL import Image

    for img in sorted(glob.glob(str(SHARED / "dubai_aerial" / "tile_7" / "images" / f"{images}.jpg"))):
        label = np.asarray(Image.open(img.replace("images", "masks").replace(".jpg", ".png")).convert("RGB")).astype(int)
        yield img, np.asarray(Image.open(img).convert("RGB")).transpose(2, 0, 1), label


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    """``[3, H, W]`` uint8 as a GeoTIFF without georeference (segment it with ``allow_no_georef``)."""
    import rasterio

    with rasterio.open(path, "w", driver="GTiff", width=rgb.shape[2], height=rgb.shape[1], count=3,
                       dtype="uint8") as dst:
        dst.write(rgb)


def add_dubai_counts(inter: dict, union: dict, painted: np.ndarray, label: np.ndarray) -> None:
    """Adds one image's pixels painted (``[5, H, W]`` bool, ``CLASSES`` order) against its label, per class;
    unlabelled and black label pixels are ignored."""
    from geopix_tiles.training.catalog import DUBAI_COLOURS

    ignore = np.all(label == DUBAI_COLOURS["unlabeled"], -1) | np.all(label == 0, -1)
    for k, c in enumerate(CLASSES):
        truth = np.all(label == DUBAI_COLOURS[c], -1)
        mask = painted[k] & ~ignore
        inter[c] += int((mask & truth).sum())
        union[c] += int((mask | truth).sum())


def dubai_iou(inter: dict, union: dict) -> dict:
    """IoU per class, sum I / sum U over the images, and their mean."""
    iou = {c: inter[c] / max(1, union[c]) for c in CLASSES}
    iou["mean"] = float(np.mean(list(iou.values())))
    return iou


def dubai(flips: int, work: Path, images: str = "*", pixels=None, model: str = "default",
          **options) -> tuple[dict, float]:
    """``images``: a glob of tile_7's image names (``image_part_00[1-5]``); ``pixels``: an optional
    ``[3, H, W] uint8 -> uint8`` change made to each image before it is segmented (e.g. a veil of haze);
    ``model``: a checkpoint directory to score instead of the shipped one."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    from geopix_tiles import segment

    warnings.simplefilter("ignore", NotGeoreferencedWarning)
    inter = dict.fromkeys(CLASSES, 0)
    union = dict.fromkeys(CLASSES, 0)
    t0 = time.time()
    for _, rgb, label in dubai_images(images):
        if pixels is not None:
            rgb = pixels(rgb)
        path = work / "dubai.tif"
        write_rgb(path, rgb)
        segment(path, list(CLASSES.values()), model=model, raster_out=work / "dubai_out.tif", device="cpu",
                vectorize=False, collect=False, overwrite=True, allow_no_georef=True, flips=flips, **options)
        with rasterio.open(work / "dubai_out.tif") as r:
            add_dubai_counts(inter, union, r.read() >= 128, label)
    return dubai_iou(inter, union), time.time() - t0


def joplin(flips: int, work: Path, model: str = "default", **options) -> tuple[float, float]:
    """Building IoU over the four xBD Joplin images and the seconds it took."""
    t0 = time.time()
    counts = joplin_counts(flips, work, model=model, **options)
    return counts["inter"] / max(1, counts["union"]), time.time() - t0


def joplin_counts(flips: int, work: Path, model: str = "default", pixels=None, **options) -> dict[str, int]:
    """Pixel counts of "buildings" against the labels over the four xBD Joplin images: intersection, union,
    labelled, painted and all pixels. ``pixels``: an optional ``([3, H, W] float32 image, [H, W] bool building
    labels) -> image`` change made to each image before it is segmented (e.g. the roofs repainted)."""
    import rasterio

    from geopix_tiles import segment
    from resolution import XBD, georeferenced

    counts = dict.fromkeys(("inter", "union", "labelled", "painted", "total"), 0)
    for label_file in sorted((XBD / "labels").glob("*.json")):
        path, truth = georeferenced(label_file, work)
        if pixels is not None:
            with rasterio.open(path) as src:
                img, profile = src.read().astype(np.float32), src.profile
            path = work / "joplin_in.tif"
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(np.clip(pixels(img, truth), 0, 255).astype(np.uint8))
        segment(path, ["buildings"], model=model, raster_out=work / "joplin_out.tif", device="cpu",
                vectorize=False, collect=False, overwrite=True, flips=flips, **options)
        with rasterio.open(work / "joplin_out.tif") as r:
            mask = r.read(1) >= 128
        counts["inter"] += int((mask & truth).sum())
        counts["union"] += int((mask | truth).sum())
        counts["labelled"] += int(truth.sum())
        counts["painted"] += int(mask.sum())
        counts["total"] += mask.size
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flips", default="1,2,4")
    ap.add_argument("--write", default=str(ROOT / "benchmarks" / "results" / "flips.md"))
    args = ap.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"needs {SHARED} (the shared data)")
    import torch

    torch.set_num_threads(2)
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for flips in (int(f) for f in args.flips.split(",")):
            iou, dubai_s = dubai(flips, Path(d))
            building, joplin_s = joplin(flips, Path(d))
            rows.append((flips, iou, dubai_s, building, joplin_s))
            print(flips, {k: round(v, 3) for k, v in iou.items()}, round(dubai_s, 1), round(building, 3),
                  round(joplin_s, 1), flush=True)
    write_table(Path(args.write), "Mirrored views averaged (`segment(..., flips=N)`)", "flips.py", load,
                "Pixel IoU against human labels on scenes never trained on (see the script's docstring).",
                "flips", ["xBD Joplin buildings", "s"],
                [(flips, iou, dubai_s, [f"**{building:.3f}**", f"{joplin_s:.0f}"])
                 for flips, iou, dubai_s, building, joplin_s in rows])
    return 0


def write_table(path: Path, title: str, script: str, load: float, note: str, first: str, extra: list[str],
                rows: list[tuple]) -> None:
    """The Markdown result table of a Dubai tile_7 comparison, written above the file's earlier runs;
    ``rows``: (setting, IoU per class, s, extra cells)."""
    lines = [f"# {title}, default model, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
             "", f"{platform.machine()}, {os.cpu_count()} cores, load {load:.2f} at start; `python benchmarks/{script}`.",
             note, "",
             f"| {first} | Dubai tile_7: " + " | ".join(CLASSES) + " | mean | s | " + " | ".join(extra) + " |",
             "|---|" + "---|" * (len(CLASSES) + 2 + len(extra))]
    for setting, iou, seconds, cells in rows:
        lines.append(f"| {setting} | " + " | ".join(f"{iou[c]:.3f}" for c in CLASSES)
                     + f" | **{iou['mean']:.3f}** | {seconds:.0f} | " + " | ".join(cells) + " |")
    earlier = path.read_text() if path.exists() else ""  # kept below the new table: the file is a history
    path.write_text("\n".join(lines) + "\n" + (f"\n## Earlier runs\n\n{earlier}" if earlier else ""))
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
