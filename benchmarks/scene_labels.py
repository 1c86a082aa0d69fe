"""Another sensor's scene labels as a test: false alarms for classes a scene rules out, detections
of classes it surely shows.

    python benchmarks/scene_labels.py [--model DIR ...] [--through-segment] [--out benchmarks/results/scene_labels.json]

UC Merced (0.3 m US orthophotos) held-out chips 60-79, every other one
(``training.scene_negatives.HELD_OUT_INDICES``; no model was trained on them), scored with
:func:`training.prompt_eval.evaluate_scene_labels`. Both halves are printed because either alone
can be gamed: a model that paints nothing has no false alarms (the ``default_v3`` trial).
``--through-segment`` also answers from what ``segment`` writes for each chip (the presence check's tile
veto on), which is what users get; the masks alone are what the model's mask head says.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", default=["default"])
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=None, help="also write the full scores as JSON")
    ap.add_argument("--through-segment", action="store_true",
                    help="also score what `segment` writes (its presence check's tile veto on): what users get")
    ap.add_argument("--no-mask-clouds", dest="mask_clouds", action="store_false",
                    help="through segment: run it with mask_clouds=False (the default before 2026-12-06 afternoon)")
    args = ap.parse_args()
    from geopix_tiles.model import GeoPixModel
    from geopix_tiles.training.prompt_eval import evaluate_scene_labels
    from geopix_tiles.training.scene_negatives import HELD_OUT_INDICES, scene_negative_records

    recs = scene_negative_records(Path(args.shared) / "uc_merced", HELD_OUT_INDICES)
    scores = {}
    for name in args.model:
        scores[name] = evaluate_scene_labels(GeoPixModel.from_pretrained(name), recs)
        s = scores[name]
        print(f"{name}: false alarms {s['false_alarm_rate_all']:.3f} {s['false_alarm_rate']} | "
              f"detections {s['detection_rate_all']:.3f} {s['detected_share']}", flush=True)
        if args.through_segment:
            scores[name + " (segment)"] = s = through_segment(name, recs, "auto" if args.mask_clouds else False)
            print(f"{name} through segment: false alarms {s['false_alarm_rate_all']:.3f} {s['false_alarm_rate']} | "
                  f"detections {s['detection_rate_all']:.3f} {s['detection_rate']}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(scores, indent=1))
    return 0


def through_segment(model: str, recs: list, mask_clouds: bool | str = "auto", **options) -> dict:
    """The same questions answered from ``segment``'s raster (tile check on unless ``options`` say
    ``presence_check=False``), chip by chip, with the reply rule; ``options`` go to ``segment``."""
    import tempfile
    from collections import defaultdict

    import numpy as np
    import rasterio

    from geopix_tiles import segment
    from geopix_tiles.model.answer import present
    from geopix_tiles.training.prompt_eval import plural

    said = {"absent": defaultdict(list), "present": defaultdict(list)}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "o.tif"
        for r in recs:
            asked = {"absent": r.meta.get("classes") or [], "present": r.meta.get("present_classes") or []}
            classes = sorted({c for v in asked.values() for c in v})
            segment(r.image_path, [plural(c) for c in classes], model=model, raster_out=out, device="cpu",
                    vectorize=False, collect=False, overwrite=True, allow_no_georef=True, mask_clouds=mask_clouds,
                    **options)
            with rasterio.open(out) as o:
                masks = o.read() >= 128
            for kind, cs in asked.items():
                for c in cs:
                    m = masks[classes.index(c)]
                    said[kind][c].append(present(int(m.sum()), float(m.mean())))

    def rate(d: dict) -> dict:
        return {c: float(np.mean(v)) for c, v in sorted(d.items())}

    return {"false_alarm_rate": rate(said["absent"]), "detection_rate": rate(said["present"]),
            "false_alarm_rate_all": float(np.mean([x for v in said["absent"].values() for x in v])),
            "detection_rate_all": float(np.mean([x for v in said["present"].values() for x in v]))}


if __name__ == "__main__":
    raise SystemExit(main())
