"""How much does the model's "building" depend on roof colour? Measured on xBD Joplin, never trained on.

xBD Joplin (QuickBird-2, 0.45 m, US suburbs; CC BY-NC-SA, so scored, never learned from): its four
images with human building polygons on their fitted UTM grid (``benchmarks/resolution.py``), each
segmented for "buildings" through the product's ``segment`` (defaults: ``resolution="auto"``, the
tile presence check, the cloud mask) as they are and with the **labelled roofs alone** repainted:
1.6x brighter (+30 levels), a pale beige, 0.6x as bright. The ground around them is untouched, so
a change of recall is the roofs' colour and nothing else. A model that knows a roof by its shape,
edges and shadow keeps its recall; one that learnt "bright" as part of "building" does not.

    python benchmarks/roof_colour.py [MODEL ...] [--write benchmarks/results/roof_colour.md] [--render PNG]

``--render``: one image as it is, labels in yellow, then each model's "buildings" in pink.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _bright(img: np.ndarray, roofs: np.ndarray) -> np.ndarray:
    img[:, roofs] = img[:, roofs] * 1.6 + 30
    return img


def _beige(img: np.ndarray, roofs: np.ndarray) -> np.ndarray:
    grey = img[:, roofs].mean(0)
    for band, base in enumerate((110, 100, 85)):
        img[band, roofs] = grey * 0.5 + base
    return img


def _dark(img: np.ndarray, roofs: np.ndarray) -> np.ndarray:
    img[:, roofs] = img[:, roofs] * 0.6
    return img


CHANGES = {"as is": None, "roofs 1.6x brighter": _bright, "roofs beige": _beige, "roofs 0.6x as bright": _dark}


def score(model: str, work: Path) -> dict[str, dict[str, float]]:
    from flips import joplin_counts

    out = {}
    for name, change in CHANGES.items():
        c = joplin_counts(1, work, model=model, pixels=change)
        out[name] = {"iou": c["inter"] / max(1, c["union"]), "recall": c["inter"] / max(1, c["labelled"]),
                     "painted": c["painted"] / c["total"], "labelled": c["labelled"] / c["total"]}
        print(model, name, {k: round(v, 3) for k, v in out[name].items()}, flush=True)
    return out


def render(models: list[str], out: Path, work: Path, stem: str = "joplin-tornado_00000001_pre_disaster") -> None:
    """The image with its labels, then each model's mask, as the product paints them (looked at before shipping)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio

    from geopix_tiles import segment
    from resolution import XBD, georeferenced

    path, truth = georeferenced(XBD / "labels" / f"{stem}.json", work)
    with rasterio.open(path) as src:
        rgb = src.read().transpose(1, 2, 0)
    panels = [("xBD Joplin (0.45 m), building labels (yellow)", None)]
    for m in models:
        segment(path, ["buildings"], model=m, raster_out=work / "render_out.tif", device="cpu", vectorize=False,
                collect=False, overwrite=True)
        with rasterio.open(work / "render_out.tif") as r:
            mask = r.read(1) >= 128
        iou = (mask & truth).sum() / max(1, (mask | truth).sum())
        panels.append((f"'buildings', {m}: IoU {iou:.3f}", mask))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 6))
    for ax, (title, mask) in zip(axes, panels):
        img = rgb.astype(np.float32) / 255
        if mask is None:
            inner = truth.copy()  # the labels' outlines: a label pixel with a neighbour outside it
            inner[1:] &= truth[:-1]
            inner[:-1] &= truth[1:]
            inner[:, 1:] &= truth[:, :-1]
            inner[:, :-1] &= truth[:, 1:]
            img[truth & ~inner] = (1.0, 0.9, 0.0)
        else:
            img[mask] = img[mask] * 0.4 + np.array([1.0, 0.1, 0.6]) * 0.6
        ax.imshow(img)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=["default"])
    ap.add_argument("--write", default=None, help="append the table to this Markdown file")
    ap.add_argument("--render", default=None, help="also draw one image with each model's mask to this PNG")
    args = ap.parse_args()
    from resolution import XBD

    if not XBD.is_dir():
        raise SystemExit(f"needs {XBD} (the shared data)")
    import torch

    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        results = {m: score(m, Path(d)) for m in args.models}
        if args.render:
            render(args.models, Path(args.render), Path(d))
    lines = [f"### {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC - {platform.machine()}, {os.cpu_count()} cores, "
             f"load {load:.2f} at start", "",
             "| model | roofs | building IoU | recall | share painted (labelled) |", "|---|---|---|---|---|"]
    for m, rows in results.items():
        for name, r in rows.items():
            lines.append(f"| `{m}` | {name} | {r['iou']:.3f} | {r['recall']:.3f} | {r['painted']:.3f} ({r['labelled']:.3f}) |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        with open(args.write, "a") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
