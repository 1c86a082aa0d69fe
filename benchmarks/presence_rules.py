"""Which presence rule says "yes" when a class is there? Measured, not guessed.

    python benchmarks/presence_rules.py [--model DIR] [--out runs/presence_rules.json]

"Is there any water?" is answered from the reply's own mask (``model/answer.present``): a class
is present when its mask covers at least 0.25 % of the view and 16 pixels. The truth is the
label mask under the same rule. This script dumps, for every held-out chip of
``runs/default_v2/data/val.jsonl`` (``default_recipe --step export``) and a fixed sample of training chips, each class's label
share and the share of pixels above several probability levels, then scores candidate rules
(probability level x minimum share) on both. Training chips show the rule in-domain, held-out
ones off-domain; a rule worth shipping must not trade one for the other. Held-out Dubai is
also split by image (parts 1-4 vs 5-9) so a rule chosen on one half is scored on the other.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9)
SHARES = (0.0025, 0.005, 0.01, 0.02)


def dump(model, records, batch: int = 8) -> list[dict]:
    import torch

    from geopix_tiles.model.dialogue import class_phrases
    from geopix_tiles.training.dataset import InstructDataset
    from geopix_tiles.training.dialogue_eval import _label_masks

    phrases = dict(class_phrases(model))
    size = int(model.config.tile_size)
    ds = InstructDataset(records, [], size, cache=1)
    rows = []
    for start in range(0, len(records), batch):
        idx = list(range(start, min(start + batch, len(records))))
        classes = sorted({c for i in idx for c in (records[i].meta.get("classes") or []) if c in phrases})
        if not classes:
            continue
        imgs = torch.stack([ds.image(i) for i in idx])
        with torch.no_grad():
            prob = torch.sigmoid(model.segment(imgs, [phrases[c] for c in classes])).cpu().numpy()
        for k, i in enumerate(idx):
            rec = records[i]
            labels = _label_masks(rec, size)
            for j, c in enumerate(classes):
                if c not in (rec.meta.get("classes") or []):
                    continue
                gt = labels.get(c)
                p = prob[k, j]
                rows.append({"source": str(rec.meta.get("source", "")), "class": c,
                             "label_share": 0.0 if gt is None else float(gt.mean()),
                             "label_pixels": 0 if gt is None else int(gt.sum()),
                             "pred_share": [float((p > t).mean()) for t in LEVELS],
                             **_shape_features(p)})
    return rows


def _shape_features(p: np.ndarray) -> dict:
    """How the mask at 0.5 is made: its largest 4-connected part and how sure the model is inside it."""
    from scipy import ndimage

    m = p > 0.5
    if not m.any():
        return {"largest_share": 0.0, "parts": 0, "mean_prob": 0.0}
    lab, n = ndimage.label(m)
    sizes = np.bincount(lab.ravel())[1:]
    return {"largest_share": float(sizes.max() / m.size), "parts": int(n), "mean_prob": float(p[m].mean())}


def score(rows: list[dict], level: float, share: float) -> dict:
    from geopix_tiles.model.answer import MIN_PRESENT_PIXELS, present

    li = LEVELS.index(level)
    npx = 256 * 256  # the default model's tile: chips are read at tile_size
    ok, per = [], {}
    for r in rows:
        truth = present(r["label_pixels"], r["label_share"])
        said = r["pred_share"][li] * npx >= MIN_PRESENT_PIXELS and r["pred_share"][li] >= share
        ok.append(truth == said)
        per.setdefault(r["class"], []).append(truth == said)
    return {"accuracy": float(np.mean(ok)) if ok else None, "n": len(ok),
            "per_class": {c: round(float(np.mean(v)), 3) for c, v in sorted(per.items())}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "geopix_tiles" / "data" / "default_model"))
    ap.add_argument("--data", default=str(ROOT / "runs" / "default_v2" / "data"))
    ap.add_argument("--train-sample", type=int, default=300)
    ap.add_argument("--out", default=str(ROOT / "runs" / "presence_rules.json"))
    args = ap.parse_args()
    from geopix_tiles.model import GeoPixModel
    from geopix_tiles.training.records import read_jsonl

    model = GeoPixModel.from_pretrained(args.model).eval()
    val = read_jsonl(Path(args.data) / "val.jsonl")
    train = [r for r in read_jsonl(Path(args.data) / "train.jsonl") if r.instances or r.meta.get("classes")]
    train = [r for r in train if r.meta.get("source") != "uc_merced_negatives"]
    rng = random.Random(0)
    train = [train[i] for i in sorted(rng.sample(range(len(train)), min(args.train_sample, len(train))))]
    rows = {"val": dump(model, val), "train": dump(model, train)}
    halves = {"val_dubai_parts_1_4": [r for r in rows["val"] if r["source"][-3:] in ("001", "002", "003", "004")],
              "val_dubai_parts_5_9": [r for r in rows["val"] if r["source"].startswith("dubai")
                                      and r["source"][-3:] not in ("001", "002", "003", "004")]}
    table = []
    for lv in LEVELS:
        for sh in SHARES:
            row = {"level": lv, "share": sh}
            for name, rr in list(rows.items()) + list(halves.items()):
                row[name] = score(rr, lv, sh)["accuracy"]
            table.append(row)
    shipped = {name: score(rr, 0.5, 0.0025) for name, rr in list(rows.items()) + list(halves.items())}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"model": args.model, "shipped_rule": shipped, "table": table,
                                          "rows": rows}, indent=1))
    print(json.dumps(shipped, indent=1))
    for row in table:
        print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
