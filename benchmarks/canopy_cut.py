"""What ``cut_canopy`` does to the default model's masks: the same scenes through ``segment`` with and without it.

Why a script of its own: the cut is an inference rule (building and water probabilities times the share of the
pixel the model's own vegetation leaves seen, :mod:`geopix_tiles.segmenters.canopy`), so it is judged on the
scenes where it could help (suburbs under street trees: xBD Joplin, precision and recall too), where it could
hurt (water shores at 5-30 m: NAIP 2020 averaged, which set the ``auto`` pixel-size gate) and on Dubai tile_7.
Both sides run in the same process, one after the other; ``--render`` draws one Joplin image and one UC Merced
residential chip (image, labels where there are some, the building mask without and with the cut).

    python benchmarks/canopy_cut.py [--write benchmarks/results/canopy.md] [--render benchmarks/results/canopy.png]
"""
from __future__ import annotations

import argparse
import datetime as dt
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
HOUSES = ROOT / "tests" / "data" / "uc_merced" / "mediumresidential63.jpg"


def joplin(work: Path, cut: bool) -> dict[str, float]:
    """Building IoU, precision and recall over the four xBD Joplin images (``buildings`` alone, as a user asks)."""
    from flips import joplin_counts

    c = joplin_counts(1, work, cut_canopy=cut)
    return {"iou": c["inter"] / c["union"], "precision": c["inter"] / max(1, c["painted"]),
            "recall": c["inter"] / c["labelled"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write")
    ap.add_argument("--render")
    ap.add_argument("--render-only", action="store_true", help="only draw --render (no scoring)")
    args = ap.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"needs {SHARED} (the shared data)")
    import torch

    from compare_models import naip
    from flips import dubai
    from report import publish

    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    load = os.getloadavg()[0]
    if args.render_only:
        with tempfile.TemporaryDirectory() as d:
            render(Path(args.render), Path(d))
        return 0
    t0 = time.time()
    rows = {}
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        for cut in (False, True):
            r = rows[cut] = {"joplin": joplin(work, cut), "dubai": dubai(1, work, cut_canopy=cut)[0]}
            # cut_canopy=True on every factor: the NAIP rows are what set the "auto" gate, so they show the cut itself
            r["naip"] = {5 * f: naip("default", work, f, cut_canopy=cut)["water"] for f in (1, 2, 3, 6)}
            print(cut, r, flush=True)
        if args.render:
            render(Path(args.render), work)
    lines = [f"### {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC - {platform.machine()}, {os.cpu_count()} cores, "
             f"load {load:.2f} at start, {time.time() - t0:.0f} s; the shipped default model through `segment`", "",
             "| cut_canopy | xBD Joplin buildings IoU / precision / recall | Dubai tile_7 building / water / mean "
             "| NAIP 2020 water vs NDWI at 5 / 10 / 15 / 30 m |", "|---|---|---|---|"]
    for cut, r in rows.items():
        j, du = r["joplin"], r["dubai"]
        lines.append(f"| {'on' if cut else 'off'} | {j['iou']:.3f} / {j['precision']:.3f} / {j['recall']:.3f} | "
                     f"{du['building']:.3f} / {du['water']:.3f} / {du['mean']:.3f} | "
                     + " / ".join(f"{v:.3f}" for v in r["naip"].values()) + " |")
    return publish("\n".join(lines) + "\n", args.write)


def render(out: Path, work: Path) -> None:
    """One Joplin image (labels in yellow) and the UC Merced residential chip: buildings without and with the cut."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio
    from PIL import Image

    from geopix_tiles import segment
    from resolution import XBD, georeferenced

    path, truth = georeferenced(XBD / "labels" / "joplin-tornado_00000001_pre_disaster.json", work)
    houses = work / "houses.tif"
    with rasterio.open(houses, "w", driver="GTiff", width=256, height=256, count=3, dtype="uint8") as dst:
        dst.write(np.asarray(Image.open(HOUSES).convert("RGB").resize((256, 256))).transpose(2, 0, 1))
    fig, axes = plt.subplots(2, 3, figsize=(13, 9))
    for row, (scene, label) in zip(axes, ((path, truth), (houses, None))):
        with rasterio.open(scene) as src:
            rgb = src.read([1, 2, 3]).transpose(1, 2, 0)
        masks = {}
        for cut in (False, True):
            segment(scene, ["buildings", "vegetation"], model="default", raster_out=work / "r.tif", device="cpu",
                    vectorize=False, collect=False, overwrite=True, cut_canopy=cut, allow_no_georef=True)
            with rasterio.open(work / "r.tif") as r:
                masks[cut] = r.read() >= 128
        row[0].imshow(rgb)
        if label is not None:
            row[0].contour(label, levels=[0.5], colors="yellow", linewidths=0.6)
        row[0].set_title("image" + (" (labelled buildings: yellow)" if label is not None else ""))
        removed = masks[False][0] & ~masks[True][0]
        for ax, cut in zip(row[1:], (False, True)):
            over = rgb.astype(float) / 255
            b, v = masks[cut]
            over[v & ~b] = 0.5 * over[v & ~b] + 0.5 * np.array([0.2, 0.8, 0.2])
            over[b] = 0.4 * over[b] + 0.6 * np.array([1.0, 0.2, 0.6])
            if cut:
                over[removed] = 0.3 * over[removed] + 0.7 * np.array([0.0, 0.9, 1.0])
            ax.imshow(over)
            ax.set_title("cut on: what the cut took, cyan" if cut else "buildings pink, vegetation green, cut off")
        for ax in row:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=70)
    print(f"picture -> {out}")


if __name__ == "__main__":
    raise SystemExit(main())
