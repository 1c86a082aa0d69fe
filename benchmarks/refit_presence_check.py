"""Refit a trial checkpoint's presence check the shipped way, so trials are compared with their own check.

A trained continuation carries the check fitted on its parent's tower features; ``segment``'s tile veto
and every "yes" in a reply go through it, so scoring a trial with its parent's check mixes two models.
This fits it exactly as ``default_recipe --step presence`` does (training chips of the exported split
+ UC Merced 0-59, :func:`training.presence_check.add_presence_check`) and writes the checkpoint with it
to ``OUT``; nothing is scored (``benchmarks/compare_models.py`` does that).

    python benchmarks/refit_presence_check.py runs/default_v20/model runs/default_v20/checked
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--data", default=str(ROOT / "runs" / "default_v2" / "data"))
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--folds", help="fit on the out-of-fold masks of these fold models (default_recipe --step folds)")
    ap.add_argument("--own-too", action="store_true", help="with --folds: the model's own masks of the same chips as well")
    args = ap.parse_args()
    import torch

    from geopix_tiles.model import GeoPixModel
    from geopix_tiles.training.presence_check import add_presence_check, scene_check_records
    from geopix_tiles.training.records import read_jsonl

    # OMP_NUM_THREADS when set: two refits at once each forcing 2 threads on a 2-core machine took ~16 min
    # for the pair instead of ~7 one after the other
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    model = GeoPixModel.from_pretrained(args.model)
    train = [r for r in read_jsonl(Path(args.data) / "train.jsonl") if r.meta.get("classes")]
    maskers = None
    if args.folds:
        from geopix_tiles.training.cross_fit import load_fold_models

        maskers = load_fold_models(Path(args.folds), "run default_recipe --variant v2 --step folds first")
    stats = add_presence_check(model, train, scene_check_records(Path(args.shared) / "uc_merced"),
                               fold_models=maskers, own_masks_too=args.own_too)
    print(json.dumps(stats, indent=1), flush=True)
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(out)
    (out / "presence_check_fit.json").write_text(json.dumps(stats, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
