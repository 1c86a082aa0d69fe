"""At which ground resolution does the default model find buildings on an unseen sensor? Measured.

xBD Joplin (QuickBird-2, 2009 and 2011, pan-sharpened; never trained on: its licence is
non-commercial, so it may only score) has human building polygons on four 1024 px images.
Each label file gives every polygon in pixels and in longitude/latitude, which fixes the
image's affine georeference (fitted here: 0.451 m per pixel in UTM 15N). Each image is written
as a GeoTIFF on that grid and segmented for "buildings" through the product's own path
(``segment(..., resolution=R)``: the engine on a VRT resampled to R metres per pixel), the
probabilities >= 0.5 scored as pixel IoU (sum I / sum U over the four images, and per image).
"vegetation" is scored too, against a *weak* label (RGB excess greenness 2G - R - B > 20: lawns and
trees; there is no NIR band), to see what a resolution does to an area class. ``resolution_classes.png`` shows roads,
vegetation and water on one image natively and at ``auto`` (no labels for them: looked at).

    python benchmarks/resolution.py [--resolutions native,auto,0.6,0.9,1.2,1.5] [--write benchmarks/results/resolution.json] [--model DIR --no-render]

``auto`` is the product's default (the checkpoint's ``working_resolution_m``: scenes finer than
0.7 m are read at 0.9 m).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
XBD = ROOT.parent / "shared" / "data" / "xbd_joplin"


def georeferenced(label_file: Path, folder: Path) -> tuple[Path, np.ndarray]:
    """The label file's image as a GeoTIFF in UTM 15N (affine fitted to its polygon pairs) and its building mask."""
    import rasterio
    from affine import Affine
    from PIL import Image
    from pyproj import Transformer
    from rasterio.features import rasterize
    from shapely import wkt

    data = json.loads(label_file.read_text())
    xy = [wkt.loads(f["wkt"]) for f in data["features"]["xy"]]
    ll = [wkt.loads(f["wkt"]) for f in data["features"]["lng_lat"]]
    px = np.array([c for g in xy for c in g.exterior.coords])
    lon_lat = np.array([c for g in ll for c in g.exterior.coords])
    east, north = Transformer.from_crs(4326, 32615, always_xy=True).transform(lon_lat[:, 0], lon_lat[:, 1])
    design = np.c_[px, np.ones(len(px))]
    (a, b, c), *_ = np.linalg.lstsq(design, east, rcond=None)
    (d, e, f), *_ = np.linalg.lstsq(design, north, rcond=None)
    img = np.asarray(Image.open(XBD / "images" / data["metadata"]["img_name"]).convert("RGB")).transpose(2, 0, 1)
    path = folder / (label_file.stem + ".tif")
    with rasterio.open(path, "w", driver="GTiff", width=img.shape[2], height=img.shape[1], count=3, dtype="uint8",
                       crs="EPSG:32615", transform=Affine(a, b, c, d, e, f), tiled=True, compress="deflate") as dst:
        dst.write(img)
    truth = rasterize([(g, 1) for g in xy], out_shape=img.shape[1:]).astype(bool)
    return path, truth


def run(resolutions: list[float | str], model: str = "default") -> dict:
    import rasterio

    from geopix_tiles.api import segment
    from geopix_tiles.io.ground import pixel_size_m

    work = Path(tempfile.mkdtemp(prefix="geopix-resolution-"))
    scenes = [georeferenced(p, work) for p in sorted((XBD / "labels").glob("*.json"))]
    with rasterio.open(scenes[0][0]) as src:
        native = pixel_size_m(src.transform, src.crs)
    rows = []
    for res in resolutions:
        inter = union = 0
        per_image = {}
        t0 = time.time()
        veg_i = veg_u = 0
        for path, truth in scenes:
            out = work / f"{path.stem}-{res}.tif"
            _, stats = segment(path, ["buildings", "vegetation"], model=model, raster_out=out, device="cpu",
                               vectorize=False, collect=False, overwrite=True, resolution=res, return_stats=True)
            with rasterio.open(out) as r:
                mask, veg = r.read(1) >= 128, r.read(2) >= 128
            with rasterio.open(path) as src:
                red, green, blue = src.read().astype(np.float32)
            greenness = (2 * green - red - blue) > 20  # a WEAK vegetation label: RGB excess green, no NIR here
            i, u = int((mask & truth).sum()), int((mask | truth).sum())
            inter, union = inter + i, union + u
            veg_i, veg_u = veg_i + int((veg & greenness).sum()), veg_u + int((veg | greenness).sum())
            per_image[path.stem] = {"iou": round(i / max(1, u), 3), "predicted_share": round(float(mask.mean()), 3),
                                    "label_share": round(float(truth.mean()), 3),
                                    "vegetation_share": round(float(veg.mean()), 3),
                                    "greenness_share": round(float(greenness.mean()), 3)}
        read_at = stats.extra.get("read_at_m")
        rows.append({"resolution": res, "resolution_m": read_at or round(native, 3), "native": read_at is None,
                     "shown_coarser": stats.extra.get("read_at_prompts"),
                     "iou": round(inter / max(1, union), 3),
                     "vegetation_iou_vs_weak_greenness": round(veg_i / max(1, veg_u), 3),
                     "wall_s": round(time.time() - t0, 1), "images": per_image})
        print(json.dumps(rows[-1]), flush=True)
    return {"date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "native_m": round(native, 3), "rows": rows, "work": str(work)}


def render(result: dict, out: Path, show: tuple[str, ...] = ("native", "auto")) -> None:
    """One image: label, and the mask at each resolution in ``show``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio

    work = Path(result["work"])
    stem = "joplin-tornado_00000000_pre_disaster"
    with rasterio.open(work / f"{stem}.tif") as src:
        img = src.read().transpose(1, 2, 0)
    _, truth = georeferenced(XBD / "labels" / f"{stem}.json", work)
    fig, axes = plt.subplots(1, 1 + len(show), figsize=(6 * (1 + len(show)), 6.3))
    axes[0].imshow(img)
    axes[0].contour(truth, [0.5], colors="yellow", linewidths=0.6)
    axes[0].set_title("xBD Joplin (0.45 m), building labels (yellow)")
    for ax, key in zip(axes[1:], show):
        res = key if key in ("native", "auto") else float(key)
        with rasterio.open(work / f"{stem}-{res}.tif") as r:
            mask = r.read(1) >= 128  # band 1: buildings
            extent = (0, img.shape[1], img.shape[0], 0)
        row = next(x for x in result["rows"] if x["resolution"] == res)
        ax.imshow(img)
        over = np.zeros((*mask.shape, 4))
        over[mask] = (1.0, 0.1, 0.6, 0.5)
        ax.imshow(over, extent=extent)
        ax.set_title(f"'buildings', resolution={res!r} (read at {row['resolution_m']} m): IoU "
                     f"{row['images'][stem]['iou']} (all four: {row['iou']})")
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=60)


def render_classes(result: dict, out: Path, stem: str = "joplin-tornado_00000001_pre_disaster") -> None:
    """The other classes (no labels here: looked at, not scored) read natively and at ``auto``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio

    from geopix_tiles.api import segment

    work = Path(result["work"])
    path = work / f"{stem}.tif"
    with rasterio.open(path) as src:
        img = src.read().transpose(1, 2, 0)
    prompts = ["roads", "vegetation", "water"]
    fig, axes = plt.subplots(2, len(prompts), figsize=(6 * len(prompts), 12.4))
    for i, res in enumerate(("native", "auto")):
        raster = work / f"{stem}-classes-{res}.tif"
        segment(path, prompts, model="default", raster_out=raster, device="cpu", vectorize=False, collect=False,
                overwrite=True, resolution=res)
        with rasterio.open(raster) as r:
            masks = r.read() >= 128
        for k, prompt in enumerate(prompts):
            over = np.zeros((*masks[k].shape, 4))
            over[masks[k]] = (1.0, 0.1, 0.6, 0.5)
            axes[i, k].imshow(img)
            axes[i, k].imshow(over, extent=(0, img.shape[1], img.shape[0], 0))
            axes[i, k].set_title(f"'{prompt}', resolution={res!r}: {masks[k].mean():.0%} of the scene")
            axes[i, k].axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=45)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolutions", default="native,auto,0.6,0.9,1.2,1.5")
    ap.add_argument("--write", default=str(ROOT / "benchmarks" / "results" / "resolution.json"))
    ap.add_argument("--model", default="default", help="a checkpoint directory to score instead of the shipped one")
    ap.add_argument("--no-render", action="store_true", help="scores only (the pictures are of the shipped model)")
    args = ap.parse_args()
    if not XBD.is_dir():
        raise SystemExit(f"needs {XBD} (the shared data)")
    import torch

    torch.set_num_threads(2)
    res = [r if r in ("native", "auto") else float(r) for r in args.resolutions.split(",")]
    result = run(res, args.model)
    result["model"] = args.model
    Path(args.write).write_text(json.dumps(result, indent=1))
    if args.no_render:
        return 0
    render(result, Path(args.write).with_suffix(".png"))
    render_classes(result, Path(args.write).with_name("resolution_classes.png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
