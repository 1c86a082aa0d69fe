"""Closed-set baseline for the shipped default GeoPix checkpoint: same tower, same data, same split.

    python benchmarks/baseline_unet.py                 # train (same steps x batch as GeoPix), score both
    python benchmarks/baseline_unet.py --score-only    # re-score a saved U-Net and the default GeoPix

* Data: the chips exported by ``training/default_recipe.py`` (``runs/default_v2/data/{train,val}.jsonl``,
  fixed split ``training/splits/default_v2.json``, weak NAIP labels included); nothing else.
* Model (default ``--arch lite0``): GeoPix's own tower - the ImageNet EfficientNet-Lite0 of the
  ``small`` preset, built by the model code itself, with the same frozen stem / stride-4/8 levels,
  frozen BatchNorm statistics and a 0.1x learning rate on the rest - plus a small FPN with one
  sigmoid output per class (building, land, road, vegetation, water, cloud). Each source labels only
  some classes, so the loss is taken only on the classes its source annotates (2.0 x BCE + 0.5 x
  DICE, GeoPix's mask-loss weights). ``--arch convnext`` / ``unet`` are the earlier random-init ones.
* Budget: the same optimizer steps, batch size, seed and augmentation (``training/augment.py``) as
  the GeoPix config (``training/configs/default_v2.yaml``), AdamW with a cosine schedule.
* Scoring (both models, identically): every validation chip x every class its source annotates;
  the prediction for that class (GeoPix: the text prompt ``plural(class)``, e.g. "buildings") is
  compared with the union of that class's labelled pixels (empty when the class is absent, so
  false alarms on absent classes count). Per-class IoU = sum I / sum U; cIoU over all pairs; gIoU =
  mean per-pair IoU (1.0 when both are empty).

Writes ``benchmarks/results/baseline.json`` and ``benchmarks/results/baseline.md``.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLASSES = ["building", "land", "road", "vegetation", "water", "cloud"]
ANNOTATED = {"dubai_aerial": ["building", "land", "road", "vegetation", "water"], "open_cities": ["building"],
             "puerto_rico": ["building"], "s2_cloud": ["cloud"], "naip_weak": ["vegetation", "water"]}
DATA = ROOT / "runs" / "default_v2" / "data"
OUT = ROOT / "runs" / "baseline_unet"
RESULTS = ROOT / "benchmarks" / "results"


def annotated(record) -> list[str]:
    return ANNOTATED[str(record.meta.get("source", "")).split("/")[0]]


# --------------------------------------------------------------------------- model
def block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNet(nn.Module):
    def __init__(self, classes: int = len(CLASSES), width: int = 24, levels: int = 4) -> None:
        super().__init__()
        ch = [width * 2 ** i for i in range(levels + 1)]
        self.down = nn.ModuleList([block(3, ch[0])] + [block(ch[i], ch[i + 1]) for i in range(levels)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2) for i in reversed(range(levels))])
        self.dec = nn.ModuleList([block(2 * ch[i], ch[i]) for i in reversed(range(levels))])
        self.head = nn.Conv2d(ch[0], classes, 1)
        self.register_buffer("mean", torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        skips = []
        for i, d in enumerate(self.down):
            x = d(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        skips.pop()
        for up, dec in zip(self.up, self.dec):
            x = dec(torch.cat([up(x), skips.pop()], 1))
        return self.head(x)


class _TowerFPN(nn.Module):
    """A tower's four feature levels + a small FPN with one output per class (shared by both towers)."""

    def _build_head(self, chans, classes: int, width: int) -> None:
        self.lateral = nn.ModuleList([nn.Conv2d(c, width, 1) for c in chans])
        self.smooth = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.GELU())
        self.head = nn.Conv2d(width, classes, 1)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        feats = self.features(x)
        y = self.lateral[-1](feats[-1])
        for f, lat in zip(reversed(feats[:-1]), reversed(self.lateral[:-1])):
            y = lat(f) + F.interpolate(y, size=f.shape[-2:], mode="bilinear", align_corners=False)
        return F.interpolate(self.head(self.smooth(y)), size=size, mode="bilinear", align_corners=False)


class ConvNeXtFPN(_TowerFPN):
    """GeoPix's earlier tower (timm ``convnext_atto``, random init) + the FPN head."""

    def __init__(self, classes: int = len(CLASSES), width: int = 64) -> None:
        super().__init__()
        import timm

        self.tower = timm.create_model("convnext_atto", pretrained=False, features_only=True)
        self._build_head(self.tower.feature_info.channels(), classes, width)
        self.register_buffer("mean", torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.tower((x - self.mean) / self.std)


class LiteFPN(_TowerFPN):
    """The GeoPix ``small`` preset's tower (ImageNet EfficientNet-Lite0, built by model/vision.py) + the FPN head."""

    def __init__(self, classes: int = len(CLASSES), width: int = 64) -> None:
        super().__init__()
        from geopix_tiles.model import GeoPixConfig
        from geopix_tiles.model.vision import build_vision_tower

        self.tower = build_vision_tower(GeoPixConfig.small())
        self._build_head(self.tower.channels, classes, width)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.tower(x)  # normalises with the tower's ImageNet constants itself


ARCHS = {"lite0": LiteFPN, "convnext": ConvNeXtFPN, "unet": UNet}
ARCH_TEXT = {"lite0": "GeoPix's ImageNet EfficientNet-Lite0 tower (same frozen levels, BN and 0.1x lr) + 64-wide "
                      "FPN, one sigmoid output per class",
             "convnext": "GeoPix's timm convnext_atto tower, random init, + 64-wide FPN, one sigmoid output per class",
             "unet": "4-level U-Net, width 24, one sigmoid output per class"}


# --------------------------------------------------------------------------- data
def tensors(records, size: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images [N,3,S,S], class targets [N,K,S,S] (uint8) and annotated-class flags [N,K]."""
    from geopix_tiles.training import rle

    n, k = len(records), len(CLASSES)
    imgs = torch.zeros((n, 3, size, size))
    tgt = torch.zeros((n, k, size, size), dtype=torch.uint8)
    ann = torch.zeros((n, k))
    for j, r in enumerate(records):
        a = r.load()[:3]
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        if a.shape[0] == 1:
            t = t.repeat(3, 1, 1)
        if t.shape[-2:] != (size, size):
            t = F.interpolate(t[None], size=(size, size), mode="bilinear", align_corners=False)[0]
        imgs[j] = t
        for c in annotated(r):
            ann[j, CLASSES.index(c)] = 1
        for inst in r.instances:
            if inst.category not in CLASSES:
                continue
            m = torch.from_numpy(rle.decode(inst.mask_rle).astype(np.uint8))
            if m.shape != (size, size):
                m = F.interpolate(m[None, None].float(), size=(size, size), mode="nearest")[0, 0].to(torch.uint8)
            tgt[j, CLASSES.index(inst.category)] |= m
    return imgs, tgt, ann


def masked_loss(logits: torch.Tensor, target: torch.Tensor, ann: torch.Tensor) -> torch.Tensor:
    t = target.float()
    w = ann[:, :, None, None].expand_as(logits)
    bce = (F.binary_cross_entropy_with_logits(logits, t, reduction="none") * w).sum() / w.sum().clamp(min=1)
    p = torch.sigmoid(logits).flatten(2)
    tf = t.flatten(2)
    dice = 1 - (2 * (p * tf).sum(-1) + 1) / (p.sum(-1) + tf.sum(-1) + 1)
    dice = (dice * ann).sum() / ann.sum().clamp(min=1)
    return 2.0 * bce + 0.5 * dice


def train_unet(steps: int, batch: int, lr: float, seed: int, threads: int | None, arch: str = "lite0",
               vision_lr_scale: float = 1.0, augment: bool = False):
    from geopix_tiles.training.records import read_jsonl

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    recs = read_jsonl(DATA / "train.jsonl")
    model = ARCHS[arch]()
    tower = [p for n, p in model.named_parameters() if n.startswith("tower.") and p.requires_grad]
    rest = [p for n, p in model.named_parameters() if not n.startswith("tower.") and p.requires_grad]
    scale = vision_lr_scale if arch == "lite0" else 1.0
    opt = torch.optim.AdamW([{"params": rest, "lr_scale": 1.0}, {"params": tower, "lr_scale": scale}], lr=lr,
                            betas=(0.9, 0.95), weight_decay=0.01)
    params = rest + tower
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(recs), generator=g)
    pos = 0
    model.train()
    t0 = time.time()
    hist = []
    for step in range(steps):
        if pos + batch > len(order):
            order, pos = torch.randperm(len(recs), generator=g), 0
        idx = order[pos:pos + batch]
        pos += batch
        for gr in opt.param_groups:
            gr["lr"] = gr["lr_scale"] * lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / max(steps, 1))))
        imgs, tgt, ann = tensors([recs[int(i)] for i in idx])  # same chips, read as GeoPix reads them
        if augment:
            from geopix_tiles.training.augment import augment_sample

            for j, i in enumerate(idx.tolist()):
                im, m = augment_sample(imgs[j], tgt[j].float(), True, seed, step * batch + j)
                imgs[j], tgt[j] = im, m.to(torch.uint8)
        loss = masked_loss(model(imgs), tgt, ann)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        hist.append(float(loss))
        if (step + 1) % 50 == 0:
            print(f"step {step + 1}/{steps} loss {np.mean(hist[-50:]):.4f} {time.time() - t0:.0f}s", flush=True)
    info = {"steps": steps, "batch_size": batch, "lr": lr, "seed": seed, "wall_s": time.time() - t0,
            "final_loss": float(np.mean(hist[-50:])), "threads": torch.get_num_threads(), "arch": arch,
            "vision_lr_scale": scale, "augment": augment}
    OUT.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_model

    save_model(model, str(OUT / "unet.safetensors"))
    (OUT / "train_info.json").write_text(json.dumps(info, indent=1))
    return model, info


# --------------------------------------------------------------------------- scoring
def score(predict, records, batch: int = 8) -> dict:
    """``predict(images [B,3,S,S]) -> logits [B,K,S,S]`` in CLASSES order; see the module docstring."""
    from geopix_tiles.training.metrics import SegmentationMeter

    meter = SegmentationMeter()
    by_source: dict[str, SegmentationMeter] = {}
    for s in range(0, len(records), batch):
        chunk = records[s:s + batch]
        imgs, tgt, ann = tensors(chunk)
        with torch.no_grad():
            pred = predict(imgs) > 0
        for j, r in enumerate(chunk):
            src = str(r.meta.get("source", "")).split("/")[0]
            for c in annotated(r):
                k = CLASSES.index(c)
                p, t = pred[j, k].numpy(), tgt[j, k].numpy().astype(bool)
                meter.add(p, t, c)
                by_source.setdefault(src, SegmentationMeter()).add(p, t, c)
    return {"per_class_iou": meter.per_class_iou(), "ciou": meter.ciou, "giou": meter.giou, "pairs": len(meter),
            "per_source_iou": {k: m.per_class_iou() for k, m in sorted(by_source.items())}}


def geopix_predictor(model):
    from geopix_tiles.training.instruct import plural

    prompts = [plural(c) for c in CLASSES]
    return lambda imgs: model.segment(imgs, prompts)


def markdown(out: dict) -> str:
    u, g = out["unet"], out["geopix_default"]
    um, gm = u["metrics"], g["metrics"]

    def f(x):
        return "n/a" if x is None else f"{x:.3f}"

    rows = []
    for c in CLASSES:
        a, b = gm["per_class_iou"].get(c), um["per_class_iou"].get(c)
        d = None if a is None or b is None else a - b
        rows.append(f"| {c} | {f(a)} | {f(b)} | {'n/a' if d is None else f'{d:+.3f}'} |")
    gt, ut = g.get("train") or {}, u["train"]
    return "\n".join([
        "# Default GeoPix model vs a closed-set baseline (same tower + per-class head)",
        "",
        f"Date {out['date']}; machine: {out['machine']['platform']}, {out['machine']['processor']}, "
        f"{out['machine']['cpu_threads']} torch threads (2-core CPU VM), torch "
        f"{out['machine']['torch']}. Produced by `python benchmarks/baseline_unet.py`.",
        "",
        "Same data, same fixed split (`training/splits/default_v2.json`, "
        f"{out['val_chips']} validation chips of 256 px never seen in training), same seed, same "
        f"optimizer-step budget: {ut['steps']} steps x batch {ut['batch_size']} for the baseline; "
        f"the GeoPix run used {out['geopix_schedule']} x batch {ut['batch_size']} "
        f"({f(gt.get('wall_s', 0) / 60) if gt.get('wall_s') else 'n/a'} min wall-clock). "
        f"Baseline wall-clock: {ut['wall_s'] / 60:.1f} min ({ut.get('threads') or 'all'} torch threads). "
        "Wall-clock numbers are indicative: the two runs were not taken under identical load.",
        "",
        f"Parameters: GeoPix default {g['parameters']:,} (text-prompted, 6 classes by prompt + region path); "
        f"baseline {u['parameters']:,} ({ARCH_TEXT[ut.get('arch', 'unet')]}).",
        "",
        "Scoring (identical for both): every validation chip x every class its source annotates "
        "(Dubai: 5 classes; Open Cities / Puerto Rico: building; Sentinel-2: cloud; NAIP: weak water and "
        "vegetation); GeoPix answers "
        "the prompt `plural(class)` (\"buildings\", \"roads\", \"water\", ...). Target = union of "
        "that class's labelled pixels, empty when absent (false alarms count). IoU = sum I / sum U.",
        "",
        "| class | GeoPix default (text prompt) | baseline (closed set) | difference |",
        "|---|---|---|---|",
        *rows,
        f"| **cIoU** (all pairs) | {f(gm['ciou'])} | {f(um['ciou'])} | {gm['ciou'] - um['ciou']:+.3f} |",
        f"| **gIoU** (mean per pair) | {f(gm['giou'])} | {f(um['giou'])} | {gm['giou'] - um['giou']:+.3f} |",
        "",
        f"({gm['pairs']} chip x class pairs.)",
        "",
        "Per source (IoU per class, GeoPix / baseline):",
        "",
        "| source | " + " | ".join(CLASSES) + " |",
        "|---|" + "---|" * len(CLASSES),
        *[f"| {src} | " + " | ".join(
            f"{f(gm['per_source_iou'][src].get(c))} / {f(um['per_source_iou'].get(src, {}).get(c))}"
            if c in gm["per_source_iou"][src] else "" for c in CLASSES) + " |" for src in gm["per_source_iou"]],
        "",
        "See MODEL_CARD.md for the discussion.",
        "",
    ])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--score-only", action="store_true")
    ap.add_argument("--train-only", action="store_true", help="train and save the baseline, score later")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--arch", choices=sorted(ARCHS), default="lite0",
                    help="lite0: the default GeoPix tower + FPN per-class head (default); convnext: the earlier "
                         "random-init convnext_atto; unet: a 4-level U-Net")
    ap.add_argument("--steps", type=int, default=None, help="default: the GeoPix config's total steps")
    ap.add_argument("--geopix", default="default",
                    help="GeoPix checkpoint to score beside the baseline (default: the shipped one)")
    args = ap.parse_args()
    from geopix_tiles.model import GeoPixModel
    from geopix_tiles.training.config import load_config
    from geopix_tiles.training.records import read_jsonl

    cfg = load_config(ROOT / "training" / "configs" / "default_v2.yaml")
    steps = args.steps or cfg.total_steps
    if args.score_only:
        from safetensors.torch import load_model

        info = json.loads((OUT / "train_info.json").read_text())
        unet = ARCHS[info.get("arch", "unet")]()
        load_model(unet, str(OUT / "unet.safetensors"))
    else:
        unet, info = train_unet(steps, cfg.batch_size, cfg.stages[-1].lr, cfg.seed, args.threads, args.arch,
                                cfg.stages[-1].vision_lr_scale, cfg.data.augment)
        if args.train_only:
            return 0
    unet.eval()
    val = read_jsonl(DATA / "val.jsonl")
    t0 = time.time()
    res_unet = score(unet, val)
    res_unet["score_s"] = time.time() - t0
    gp = GeoPixModel.from_pretrained(args.geopix)
    t0 = time.time()
    res_gp = score(geopix_predictor(gp), val)
    res_gp["score_s"] = time.time() - t0
    rec_path = ROOT / "geopix_tiles" / "data" / "default_model" / "training_record.json"
    gp_train = json.loads(rec_path.read_text()).get("train", {}) if rec_path.exists() else {}
    out = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_threads": torch.get_num_threads(), "torch": torch.__version__},
        "val_chips": len(val),
        "geopix_schedule": " + ".join(f"{st.steps} {st.name} steps" for st in cfg.stages),
        "unet": {"parameters": sum(p.numel() for p in unet.parameters()), "train": info, "metrics": res_unet},
        "geopix_default": {"parameters": sum(p.numel() for p in gp.parameters()), "train": gp_train,
                           "metrics": res_gp},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "baseline.json").write_text(json.dumps(out, indent=1))
    (RESULTS / "baseline.md").write_text(markdown(out))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
