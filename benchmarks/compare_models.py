"""Two or more checkpoints side by side on every unseen scene with labels we have, through ``segment``.

Why one script: a training trial moves some scenes up and others down (MODEL_CARD, run history), and
a trial is judged on all of them at once, with the same code, the same day. Every figure goes through
the product's own ``segment`` (default ``resolution="auto"``, tile presence check and cloud mask as
shipped unless ``--no-presence-check``):

* Dubai tile_7 (9 whole images, human labels, never trained on): IoU per class and mean;
* xBD Joplin (QuickBird 0.45 m, another sensor and place; CC BY-NC-SA, scored only): building IoU;
* NAIP 2020 (held-out date, 5 m, and averaged to 15 / 30 m): water / vegetation vs NDWI / NDVI (weak);
* Landsat-7 sample (30 m): cloud IoU vs a white-pixel weak label;
* UC Merced held-out chips 60-78 (0.3 m, another sensor): classes the scene rules out that ``segment``
  paints (false alarms) and classes it surely shows that it finds (detections).

    python benchmarks/compare_models.py MODEL [MODEL ...] [--write benchmarks/results/compare_models.md]
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
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
SHARED = ROOT.parent / "shared" / "data"


def naip(model: str, work: Path, factor: int, **options) -> dict[str, float]:
    """NAIP 2020 averaged ``factor`` times: water and vegetation IoU against its NDWI / NDVI weak labels."""
    import rasterio

    from coarse_resolution import averaged
    from geopix_tiles import segment

    scene, water, veg, _ = averaged(work, factor)
    out = work / "naip_out.tif"
    segment(scene, ["water", "vegetation"], model=model, raster_out=out, device="cpu", vectorize=False,
            collect=False, overwrite=True, **options)
    with rasterio.open(out) as r:
        m = r.read() >= 128
    return {"water": float((m[0] & water).sum() / max(1, (m[0] | water).sum())),
            "vegetation": float((m[1] & veg).sum() / max(1, (m[1] | veg).sum()))}


def score(model: str, work: Path, flips: int = 1, **options) -> dict:
    from flips import dubai, joplin
    from landsat_clouds import score as landsat
    from scene_labels import through_segment

    from geopix_tiles.training.scene_negatives import HELD_OUT_INDICES, scene_negative_records

    t0 = time.time()
    out: dict = {}
    out["dubai"], _ = dubai(flips, work, model=model, **options)
    out["joplin_building"], _ = joplin(flips, work, model=model, **options)
    seg = {**options, "flips": flips}  # the other scorers hand their options to segment as they are
    out["naip"] = {f"{5 * f} m": naip(model, work, f, **seg) for f in (1, 3, 6)}
    out["landsat_cloud_iou"] = landsat(model, **seg)["cloud_iou_vs_weak"]
    recs = scene_negative_records(SHARED / "uc_merced", HELD_OUT_INDICES)
    ucm = through_segment(model, recs, **seg)
    out["ucm_false_alarms"], out["ucm_detections"] = ucm["false_alarm_rate_all"], ucm["detection_rate_all"]
    out["ucm_false_alarm_rate"] = ucm["false_alarm_rate"]
    out["s"] = time.time() - t0
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--no-presence-check", dest="presence_check", action="store_false")
    ap.add_argument("--no-cut-canopy", dest="cut_canopy", action="store_false",
                    help="buildings and water keep the pixels the model sees as vegetation (segment(cut_canopy=False))")
    ap.add_argument("--flips", type=int, default=1, choices=[1, 2, 4],
                    help="mirrored views averaged by segment (the ceiling a flip-distilled model is measured against)")
    ap.add_argument("--write", default=None, help="append the table to this Markdown file")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"needs {SHARED} (the shared data)")
    import torch

    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    load = os.getloadavg()[0]
    options = ({} if args.presence_check else {"presence_check": False}) | ({} if args.cut_canopy else {"cut_canopy": False})
    scores = {}
    with tempfile.TemporaryDirectory() as d:
        for m in args.models:
            scores[m] = s = score(m, Path(d), args.flips, **options)
            print(m, json.dumps(s), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(scores, indent=1))
    classes = ["building", "road", "vegetation", "water", "land"]
    lines = [f"### {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC - {platform.machine()}, {os.cpu_count()} cores, "
             f"load {load:.2f} at start; presence check {'on' if args.presence_check else 'off'}"
             + ("" if args.cut_canopy else "; canopy cut off")
             + (f"; {args.flips} mirrored views averaged" if args.flips > 1 else ""), "",
             "| model | Dubai tile_7 " + " / ".join(classes) + " | mean | Joplin buildings | NAIP 2020 water 5 / 15 / 30 m "
             "| vegetation 5 / 15 / 30 m | Landsat-7 clouds | UC Merced false alarms / detections |",
             "|---|---|---|---|---|---|---|---|"]
    for m, s in scores.items():
        nv = s["naip"]
        lines.append(f"| `{m}` | " + " / ".join(f"{s['dubai'][c]:.3f}" for c in classes) + f" | **{s['dubai']['mean']:.3f}** | "
                     f"**{s['joplin_building']:.3f}** | " + " / ".join(f"{v['water']:.3f}" for v in nv.values()) + " | "
                     + " / ".join(f"{v['vegetation']:.3f}" for v in nv.values())
                     + f" | {s['landsat_cloud_iou']:.3f} | {s['ucm_false_alarms']:.3f} / {s['ucm_detections']:.3f} |")
    from report import publish

    return publish("\n".join(lines) + "\n", args.write)


if __name__ == "__main__":
    raise SystemExit(main())
