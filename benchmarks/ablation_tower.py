"""Tower ablation for the default model: ImageNet EfficientNet-Lite0 vs the same tower from random init.

Same data (``runs/default_v2/data``), split, seed, recipe (``training/configs/default_v2.yaml``)
and a shorter, equal step budget for every variant; scored with
:func:`geopix_tiles.training.prompt_eval.evaluate_prompts` on the same held-out chips as the
shipped model (``default_recipe.prompt_eval_records``). Writes
``benchmarks/results/ablation_tower.{json,md}``.

    python benchmarks/ablation_tower.py [--steps 800] [--variants imagenet,random,aerial]

The aerial variant needs ``pip install --no-deps geoembed`` (``.ci/setup`` installs it).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = {
    "imagenet": {},  # the shipped recipe's tower
    "random": {"vision_pretrained": None, "vision_frozen_levels": 0},  # same architecture, random init, all trained
    # geoembed's aerial-orthophoto ResNet-18 (model/aerial_resnet.py), frozen up to stride 8 like the
    # ImageNet tower; its pretraining scaled tiles to [-1, 1] as well (image_mean/std 0.5 of the preset)
    "aerial": {"timm_model_name": "aerial_resnet18", "vision_pretrained": "geoembed_v3", "vision_frozen_levels": 2},
    # the larger ImageNet EfficientNet-Lite towers of the optional ``[towers]`` extra, same freezing
    "lite1": {"timm_model_name": "tf_efficientnet_lite1", "vision_pretrained": "efficientnet_lite1"},
    "lite2": {"timm_model_name": "tf_efficientnet_lite2", "vision_pretrained": "efficientnet_lite2"},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--variants", default="imagenet,random")
    args = ap.parse_args()
    from geopix_tiles.model import GeoPixModel
    from geopix_tiles.training.config import load_config
    from geopix_tiles.training.default_recipe import prompt_eval_records
    from geopix_tiles.training.prompt_eval import evaluate_prompts
    from geopix_tiles.training.records import read_jsonl
    from geopix_tiles.training.trainer import train

    base = load_config(ROOT / "training" / "configs" / "default_v2.yaml")
    val = prompt_eval_records(read_jsonl(ROOT / "runs" / "default_v2" / "data" / "val.jsonl"))
    out = ROOT / "benchmarks" / "results"
    # variants run at another time (same --steps) are kept, so one variant can be added later
    results = {}
    if (out / "ablation_tower.json").is_file():
        results = {k: v for k, v in json.loads((out / "ablation_tower.json").read_text()).items()
                   if v.get("steps") == args.steps}
    for name in args.variants.split(","):
        cfg = dataclasses.replace(base, output_dir=str(ROOT / "runs" / f"ablation_{name}"), progress=False)
        cfg.model = dataclasses.replace(base.model, overrides=dict(base.model.overrides, **VARIANTS[name]))
        text = dataclasses.replace(base.stages[0])
        masks = dataclasses.replace(base.stages[1], steps=args.steps - text.steps,
                                    vision_lr_scale=1.0 if name == "random" else base.stages[1].vision_lr_scale)
        cfg.stages = [text, masks]
        t0 = time.time()
        res = train(cfg)
        wall = time.time() - t0
        model = GeoPixModel.from_pretrained(res["model_dir"])
        metrics = evaluate_prompts(model, val)
        results[name] = {"steps": args.steps, "train_wall_s": wall, "overrides": VARIANTS[name],
                         "date": time.strftime("%Y-%m-%d"), **metrics}
        print(name, json.dumps({k: metrics[k] for k in ("per_class_iou", "mean_iou")}), flush=True)
    (out / "ablation_tower.json").write_text(json.dumps(results, indent=1))
    classes = sorted(next(iter(results.values()))["per_class_iou"])
    lines = [f"# Tower ablation ({time.strftime('%Y-%m-%d')}, 2-core CPU, `python benchmarks/ablation_tower.py "
             f"--steps {args.steps}`)", "",
             "Same data, split, seed and recipe as the shipped model, "
             f"{args.steps} steps x batch {base.batch_size} for each variant (the shipped model: "
             f"{base.total_steps}); IoU with the class name as prompt on the held-out chips.", "",
             "| tower | " + " | ".join(classes) + " | mean | paraphrase ratio (mean) | unknown concepts (max share) "
             "| run on | train s |",
             "|---|" + "---|" * (len(classes) + 5)]
    for name, r in results.items():
        ratios = [p["ratio"] for p in r["paraphrases"].values() if p["ratio"] is not None]
        lines.append(f"| {name} | " + " | ".join(f"{(r['per_class_iou'][c] or 0):.3f}" for c in classes)
                     + f" | {r['mean_iou']:.3f} | {sum(ratios) / max(len(ratios), 1):.2f} | "
                     f"{max(r['unknown_concept_coverage'].values()):.4f} | {r.get('date', '2026-12-01')} | "
                     f"{r['train_wall_s']:.0f} |")
    (out / "ablation_tower.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
