"""``geopix-tiles train`` and ``geopix-tiles evaluate``.

Kept import-light (torch is imported inside the commands) because the main CLI builds its
parser, including these subcommands, for every invocation.

Multi-process training: launch the same command under ``torchrun --nproc_per_node N -m
geopix_tiles.interfaces.cli train ...``; every process reads ``RANK``/``WORLD_SIZE`` from the
environment.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from geopix_tiles.errors import InputError

__all__ = ["register", "run_train", "run_evaluate"]


def register(subparsers: Any) -> None:
    """Add ``train`` and ``evaluate`` to an argparse subparsers object."""
    t = subparsers.add_parser(
        "train", help="train a GeoPix model (two stages: text, then masks)",
        description="Train from a YAML config (see geopix_tiles/training/config.py for every key), or config-free: "
                    "geopix-tiles train --data FILE.jsonl --preset tiny --steps N --out DIR.")
    t.add_argument("config", nargs="?", help="YAML (or JSON) training config")
    t.add_argument("--data", help="GeoPixInstruct JSONL for the config-free form")
    t.add_argument("--val", help="validation JSONL (default: a held-out fraction of --data)")
    t.add_argument("--preset", default="tiny", choices=["tiny", "small", "base"],
                   help="model preset (config-free form): tiny (random init, token meanings), small (ImageNet tower + MiniLM, "
                        "the default model's), base (ConvNeXt-L CLIP + a local LLM)")
    t.add_argument("--steps", type=int, help="total optimizer steps (config-free form; overrides a config's stage split)")
    t.add_argument("--out", help="output directory (overrides the config's output_dir)")
    t.add_argument("--batch-size", type=int, help="per-process batch size")
    t.add_argument("--grad-accum", type=int, help="gradient accumulation steps")
    t.add_argument("--seed", type=int, help="random seed")
    t.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the output directory")
    t.add_argument("--export-data", action="store_true",
                   help="only cut the config's data sources into tiles and write the JSONL, then stop")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=run_train)

    e = subparsers.add_parser(
        "evaluate", help="score a checkpoint: cIoU, gIoU, per-class IoU, region accuracy, semantic similarity "
                         "(--dialogue: presence, counts, captions, segment-on-request, scenes)",
        description="Evaluate a GeoPix checkpoint directory on a GeoPixInstruct JSONL with held-out prompt templates.")
    e.add_argument("checkpoint", help="checkpoint directory (config.json + model.safetensors), a training run "
                                      "folder (its model/ is used) or 'default'")
    e.add_argument("--data", required=True, help="GeoPixInstruct JSONL to evaluate on")
    e.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    e.add_argument("--samples-per-image", type=int, default=4)
    e.add_argument("--max-images", type=int, default=0, help="evaluate only the first N images (0 = all)")
    e.add_argument("--batch-size", type=int, default=4)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--no-semantic", action="store_true", help="skip the MiniLM semantic similarity")
    e.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    e.add_argument("--dialogue", action="store_true",
                   help="also score the answers in words: presence, counts, captions, segment-on-request, regions")
    e.add_argument("--uc-merced", help="UC Merced folder (class subfolders): adds held-out scene accuracy and "
                                       "scene-class presence to --dialogue")
    e.set_defaults(func=run_evaluate)


def _build_config(args: argparse.Namespace) -> Any:
    from .config import DEFAULT_STAGES, load_config, quick_config

    if args.config:
        cfg = load_config(args.config)
        if args.data:
            cfg.data.train = args.data
        if args.val:
            cfg.data.val = args.val
        if args.steps is not None:
            import dataclasses

            s1 = args.steps // 4 if len(cfg.stages) > 1 else 0
            split = [s1, args.steps - s1] if len(cfg.stages) > 1 else [args.steps]
            cfg.stages = [dataclasses.replace(s, steps=n) for s, n in zip(cfg.stages, split)] + cfg.stages[2:]
    else:
        if not args.data:
            raise InputError("give a config file or --data FILE.jsonl (with --steps N --out DIR)")
        if not args.steps or not args.out:
            raise InputError("the config-free form needs --steps N and --out DIR, e.g. "
                             "geopix-tiles train --data d.jsonl --preset tiny --steps 200 --out runs/a")
        cfg = quick_config(args.data, steps=args.steps, out=args.out, preset=args.preset, val=args.val)
        _ = DEFAULT_STAGES
    if args.out:
        cfg.output_dir = args.out
    if args.batch_size:
        cfg.batch_size = args.batch_size
    if args.grad_accum:
        cfg.grad_accum = args.grad_accum
    if args.seed is not None:
        cfg.seed = args.seed
    if args.no_progress:
        cfg.progress = False
    return cfg.validate()


def run_train(args: argparse.Namespace) -> int:
    cfg = _build_config(args)
    if args.export_data:
        from .trainer import load_records

        if not cfg.data.sources:
            raise InputError("--export-data needs data.sources in the config")
        train, val = load_records(cfg)
        print(f"wrote {len(train)} training and {len(val)} validation tiles under {cfg.output_dir}/data")
        return 0
    from .trainer import train

    result = train(cfg, resume=args.resume)
    if result.get("model_dir"):
        print(f"model written to {result['model_dir']}", file=sys.stderr)
    hist = result.get("history") or []
    if hist:
        print(json.dumps({"steps": result["steps"], "final_loss": hist[-1]["loss"], "model_dir": result["model_dir"]}))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    import torch

    from geopix_tiles.model import GeoPixModel

    from .evaluate import evaluate_model
    from .records import read_jsonl

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    records = read_jsonl(args.data)
    if args.max_images:
        records = records[: args.max_images]
    if args.uc_merced and not Path(args.uc_merced).is_dir():
        raise InputError(f"--uc-merced '{args.uc_merced}' is not a folder; pass the UC Merced root with its class "
                         "subfolders")
    model = GeoPixModel.from_pretrained(args.checkpoint, device=device)
    res = evaluate_model(model, records, seed=args.seed, samples_per_image=args.samples_per_image,
                         batch_size=args.batch_size, semantic=not args.no_semantic, progress=not args.json,
                         dialogue=args.dialogue or bool(args.uc_merced), uc_merced=args.uc_merced)
    if args.json:
        print(json.dumps(res))
        return 0

    def f(x: Any) -> str:
        return "n/a" if x is None else f"{x:.4f}"

    print(f"cIoU                 {f(res['ciou'])}")
    print(f"gIoU                 {f(res['giou'])}")
    for c, v in res["per_class_iou"].items():
        print(f"  IoU {c:<16} {f(v)}")
    print(f"region accuracy      {f(res['region_accuracy'])}")
    print(f"semantic similarity  {f(res['semantic_similarity'])}")
    print(f"semantic IoU         {f(res['semantic_iou'])}")
    c = res["counts"]
    print(f"({c['images']} images, {c['masks']} masks, {c['regions']} regions, {c['captions']} captions)")
    d = res.get("dialogue")
    if d:
        print("dialogue")
        for key in ("presence_accuracy", "presence_accuracy_masks_only", "count_mean_abs_error",
                    "count_relative_error", "region_accuracy", "caption_semantic_similarity", "segment_request_iou_vs_segment", "segment_request_iou_vs_label",
                    "short_reply_share", "distinct_caption_share", "scene_accuracy", "scene_presence_accuracy"):
            if key in d:
                print(f"  {key:<32} {f(d[key])}")
    return 0
