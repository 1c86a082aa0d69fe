"""Picture of a quick-form fit: each class prompt's mask beside its label on the shipped Dubai chip.

usage: python benchmarks/render_quick_form.py RUN_DIR/model OUT.png [--data two_chips.jsonl]

Issue 11 item 8: after ``geopix-tiles train --preset tiny --steps 400`` on the first two
labelled chips of ``tests/data/default_val`` (see ``tests/test_training_quick_form.py``), the
masks must differ by prompt and follow the labels; a number alone hid that the tiny model
used to paint one mask for every prompt. The lower rows: referring phrases that single out one
instance of the chip ("the medium-sized building at the top"), where the location prior acts.
"""
from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from geopix_tiles.model import GeoPixModel  # noqa: E402
from geopix_tiles.training import rle  # noqa: E402
from geopix_tiles.training.instruct import unique_refs  # noqa: E402
from geopix_tiles.training.records import read_jsonl  # noqa: E402

CLASSES = {"building": "buildings", "road": "roads", "vegetation": "vegetation", "land": "land", "water": "water"}
VAL = Path(__file__).resolve().parents[1] / "tests" / "data" / "default_val" / "val.jsonl"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--data", default=str(VAL), help="JSONL whose first labelled record is drawn")
    args = ap.parse_args()
    model = GeoPixModel.from_pretrained(args.model).eval()
    rec = [r for r in read_jsonl(args.data) if r.instances][0]
    img = torch.from_numpy(rec.load())[:3][None]
    with torch.no_grad():
        logits = model.segment(img, list(CLASSES.values()))[0]
    refs = _referring(rec, len(CLASSES))
    with torch.no_grad():
        ref_logits = model.segment(img, [p for p, _ in refs])[0] if refs else None
    fig, ax = plt.subplots(4, len(CLASSES) + 1, figsize=(3 * (len(CLASSES) + 1), 12))
    ax[0, 0].imshow(img[0].permute(1, 2, 0).numpy())
    ax[0, 0].set_title(Path(rec.image_path).stem[:28], fontsize=8)
    ax[1, 0].axis("off")
    for k, (cat, prompt) in enumerate(CLASSES.items()):
        gt = np.zeros(img.shape[-2:], bool)
        for inst in rec.instances:
            if inst.category == cat:
                gt |= rle.decode(inst.mask_rle).astype(bool)
        pred = (logits[k] > 0).numpy()
        iou = (pred & gt).sum() / max((pred | gt).sum(), 1)
        ax[0, k + 1].imshow(gt, cmap="gray")
        ax[0, k + 1].set_title(f"label: {cat}")
        ax[1, k + 1].imshow(pred, cmap="gray")
        ax[1, k + 1].set_title(f'"{prompt}" IoU {iou:.2f}')
    for a in (ax[2, 0], ax[3, 0], *ax[2:, len(refs) + 1:].ravel()):
        a.axis("off")
    for k, (prompt, gt) in enumerate(refs):
        pred = (ref_logits[k] > 0).numpy()
        iou = (pred & gt).sum() / max((pred | gt).sum(), 1)
        ax[2, k + 1].imshow(gt, cmap="gray")
        ax[2, k + 1].set_title("label: one instance", fontsize=9)
        ax[3, k + 1].imshow(pred, cmap="gray")
        ax[3, k + 1].set_title(textwrap.fill(f'"{prompt}"', 36) + f"\nIoU {iou:.2f}", fontsize=7)
    for a in ax.ravel():
        a.set_xticks([])
        a.set_yticks([])
    plt.tight_layout()
    plt.savefig(args.out, dpi=60)
    print(f"picture -> {args.out}")
    return 0


def _referring(rec, n: int) -> list[tuple[str, np.ndarray]]:
    """Up to ``n`` referring phrases that single out one instance of the chip (largest first), as trained."""
    unique = sorted(unique_refs(rec), key=lambda ir: -ir[0].area)
    return [(phrase, rle.decode(inst.mask_rle).astype(bool)) for inst, phrase in unique[:n]]


if __name__ == "__main__":
    raise SystemExit(main())
