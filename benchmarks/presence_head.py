"""Can a check on what the masked pixels look like fix presence where the mask rule fails? Measured.

    python benchmarks/presence_head.py dump  [--out runs/presence_head.npz]   # the design study
    python benchmarks/presence_head.py fit   [--out runs/presence_head.npz]   # needs scikit-learn
    python benchmarks/presence_head.py dump-oof  # the training chips with out-of-fold masks (training/cross_fit.py)
    python benchmarks/presence_head.py fit-oof   # the check fitted on in-sample / out-of-fold masks
    python benchmarks/presence_head.py dump-haze / fit-haze   # the same with hazed copies of the training chips
    python benchmarks/presence_head.py score [--model DIR] [--json benchmarks/results/presence_check.json]
    python benchmarks/presence_head.py render  # -> benchmarks/results/presence_check.png
    python benchmarks/presence_head.py errors  # -> benchmarks/results/presence_errors.{json,png}

``score`` asks the shipped model "Is there any X?" through ``model.chat`` (the product's path) on
every held-out chip, once with its presence check and once without (same view, same masks),
on the validation split (Dubai tile_7 by image halves, NAIP 2020, ...) and on UC Merced's
held-out chips 60-78 (classes their scene rules out, classes it surely shows).

``errors`` looks at the answers the shipped model (check included) still gets wrong on Dubai
tile_7: the label's and the mask's share of the chip for every wrong "yes" and every miss, per
class, and a picture of a seeded sample of each kind (image, label, mask).

``dump`` runs the shipped model once per chip and keeps, for every (chip, class) question:
the mask rule's inputs (shares above 0.5, largest part, mean probability inside), the chip's
pooled tower features (what the scene head reads) and the tower features pooled inside the
predicted mask (what the mask *covers*). Chips: the training export (in-domain), the held-out
split (Dubai tile_7, never trained on) and UC Merced chips with questions their scene label
answers (``training.scene_negatives``: absent and surely-present classes); UC Merced
training indices 0-59 may train a check, held-out indices 60-78 only score it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def colour_features(images, prob):
    """``[B, K, 10]``: mean RGB and chromaticity under each mask, the chip's mean RGB, excess green.

    Candidate features for the check (2026-12-04): Dubai tile_7's wrong "yes" answers are bluish
    desert painted as vegetation and dark turf painted as water, which colour alone tells apart.
    """
    import torch

    from geopix_tiles.model.presence_check import masked_mean

    inside = masked_mean(images, prob)  # [B, K, 3]
    scene = images.mean((2, 3))[:, None].expand_as(inside)
    chroma = inside / inside.sum(-1, keepdim=True).clamp_min(1e-6)
    exg = (2 * inside[..., 1] - inside[..., 0] - inside[..., 2])[..., None]
    return torch.cat([inside, chroma, scene, exg], -1)


def dump(model, records, group: str, batch: int = 8, flips: int = 1, mask_model=None,
         transform=None) -> dict[str, list]:
    """The study's candidate features of every question (the shipped check uses a subset of them).

    ``mask_model``: masks (and so the mask rule's "yes") from another model, features from ``model``'s
    tower: out-of-fold masks of training chips, from a model that never trained on them, make the
    check's examples look like its questions on unseen scenes (cross-fitting).
    """
    import torch

    from geopix_tiles.model.dialogue import SceneHead, class_phrases
    from geopix_tiles.model.presence_check import mask_shape, masked_mean
    from geopix_tiles.training.presence_check import _images, _truths

    phrases = dict(class_phrases(model))
    size = int(model.config.tile_size)
    cols: dict[str, list] = {k: [] for k in ("group", "source", "cls", "truth", "share", "largest", "meanp",
                                              "glob", "inside", "inside1", "inside3", "outside", "scene2",
                                              "colour", "inside_core", "inside1_core")}
    for start in range(0, len(records), batch):
        chunk = records[start:start + batch]
        classes = sorted({c for r in chunk for c in (r.meta.get("classes") or []) + (r.meta.get("present_classes") or [])
                          if c in phrases})
        if not classes:
            continue
        with torch.no_grad():
            images = _images(chunk, size)
            if transform is not None:
                images = transform(images, start)
            enc = model.encode_images(images)
            masker = model if mask_model is None else mask_model
            menc = enc if mask_model is None else masker.encode_images(images)
            prob = torch.sigmoid(masker.segment_encoded(menc, [phrases[c] for c in classes])[0]).float()
            if flips == 2:  # the mean with the mirrored view's masks, mirrored back (segment's flips=2)
                mirrored = masker.encode_images(images.flip(-1))
                prob = (prob + torch.sigmoid(masker.segment_encoded(mirrored, [phrases[c] for c in classes])[0])
                        .float().flip(-1)) / 2
            glob = SceneHead.pooled(enc.feats)
            pooled = {"inside": masked_mean(enc.feats[-2].float(), prob),
                      "inside1": masked_mean(enc.feats[-1].float(), prob),
                      "inside3": masked_mean(enc.feats[-3].float(), prob),
                      "outside": masked_mean(enc.feats[-2].float(), 1 - prob),
                      "colour": colour_features(images.float(), prob),
                      # the mask's confident core (p^4): a mask that bleeds past the object dilutes the mean
                      "inside_core": masked_mean(enc.feats[-2].float(), prob ** 4),
                      "inside1_core": masked_mean(enc.feats[-1].float(), prob ** 4)}
            scene2 = torch.cat([enc.feats[-2].float().mean((2, 3)), enc.feats[-1].float().mean((2, 3))], 1)
        prob = prob.cpu().numpy()
        for k, rec in enumerate(chunk):
            for c, truth in _truths(rec, size):
                if c not in phrases:
                    continue
                j = classes.index(c)
                largest, meanp, _ = mask_shape(prob[k, j])
                cols["group"].append(group)
                cols["source"].append(str(rec.meta.get("scene_class") or rec.meta.get("source", "")))
                cols["cls"].append(c)
                cols["truth"].append(bool(truth))
                cols["share"].append(float((prob[k, j] > 0.5).mean()))
                cols["largest"].append(largest)
                cols["meanp"].append(meanp)
                cols["glob"].append(glob[k].cpu().numpy())
                cols["scene2"].append(scene2[k].cpu().numpy())
                for name, v in pooled.items():
                    cols[name].append(v[k, j].cpu().numpy())
        print(group, start + len(chunk), "/", len(records), flush=True)
    return cols


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("dump", "dump-oof", "fit", "fit-oof", "dump-haze", "fit-haze", "fit-core", "score",
                                       "render", "errors"))
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "presence_check.json"))
    ap.add_argument("--model", default=str(ROOT / "geopix_tiles" / "data" / "default_model"))
    ap.add_argument("--data", default=str(ROOT / "runs" / "default_v2" / "data"))
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "presence_head.npz"))
    ap.add_argument("--flips", type=int, default=1, choices=(1, 2), help="dump: masks from 1 view or 2 (mirrored)")
    ap.add_argument("--folds", default=str(ROOT / "runs" / "default_v2" / "folds"),
                    help="dump-oof: the fold models of `default_recipe --step folds` (without_A/model, without_B/model)")
    ap.add_argument("--oof", default=str(ROOT / "runs" / "presence_oof.npz"), help="dump-oof / fit-oof: the out-of-fold dump")
    ap.add_argument("--extra", default=str(ROOT / "runs" / "presence_haze.npz"), help="dump-haze / fit-haze: the hazed dump")
    args = ap.parse_args()
    if args.step == "dump-haze":
        return dump_haze(args)
    if args.step == "fit-haze":
        return fit_oof(np.load(args.out), np.load(args.extra), "train_haze")
    if args.step == "score":
        return score(args)
    if args.step == "render":
        return render()
    if args.step == "errors":
        return errors(args)
    if args.step == "dump-oof":
        return dump_oof(args)
    if args.step == "fit-core":
        return fit_core(np.load(args.out))
    if args.step == "fit-oof":
        return fit_oof(np.load(args.out), np.load(args.oof))
    if args.step == "dump":
        import torch

        from geopix_tiles.model import GeoPixModel
        from geopix_tiles.training.records import read_jsonl
        from geopix_tiles.training.scene_negatives import HELD_OUT_INDICES, scene_negative_records

        torch.set_num_threads(2)
        model = GeoPixModel.from_pretrained(args.model).eval()
        train = [r for r in read_jsonl(Path(args.data) / "train.jsonl") if r.meta.get("classes")]
        val = read_jsonl(Path(args.data) / "val.jsonl")
        uc_root = Path(args.shared) / "uc_merced"
        uc_train = scene_negative_records(uc_root, range(0, 60, 2))
        uc_test = scene_negative_records(uc_root, HELD_OUT_INDICES)
        cols: dict[str, list] = {}
        for name, recs in (("val", val), ("uc_test", uc_test), ("uc_train", uc_train), ("train", train)):
            part = dump(model, recs, name, flips=args.flips)
            for k, v in part.items():
                cols.setdefault(k, []).extend(v)
        np.savez(args.out, **{k: np.asarray(v) for k, v in cols.items()})
        return 0
    d = np.load(args.out)
    if "colour" in d.files:
        fit_colour(d)
        return 0
    return fit(d)


def _ask_both(model, view, name: str, phrase: str) -> tuple[bool, bool]:
    """("yes" with the check, "yes" from the masks alone) on the same view."""
    from geopix_tiles.model.presence_check import presence_check_off

    with_check = model.chat(view, f"Is there any {phrase}?").text.startswith("Yes")
    with presence_check_off(model):
        alone = model.chat(view, f"Is there any {phrase}?").text.startswith("Yes")
    return with_check, alone


def score(args) -> int:
    import time
    import warnings

    import torch
    from rasterio.errors import NotGeoreferencedWarning

    from geopix_tiles.model.answer import present
    from geopix_tiles.model.dialogue import View, class_phrases
    from geopix_tiles.segmenters.registry import load_answer_model
    from geopix_tiles.training.dataset import InstructDataset
    from geopix_tiles.training.dialogue_eval import _label_masks
    from geopix_tiles.training.prompt_eval import tile_batch
    from geopix_tiles.training.records import read_jsonl
    from geopix_tiles.training.scene_negatives import HELD_OUT_INDICES, scene_negative_records

    warnings.simplefilter("ignore", NotGeoreferencedWarning)
    torch.set_num_threads(2)
    model = load_answer_model(args.model, "cpu")  # the shipped folder by default; a trial's checked folder
    if model.presence_check is None:
        raise SystemExit(f"{args.model} has no presence check")
    phrases = dict(class_phrases(model))
    t0 = time.time()
    rows = []  # (group, class, truth, yes with check, yes from masks alone)
    val = read_jsonl(Path(args.data) / "val.jsonl")
    ds = InstructDataset(val, [], 256, cache=1)
    for i, rec in enumerate(val):
        view = View(model, model.encode_images(ds.image(i)[None]))
        labels = _label_masks(rec, 256)
        src = str(rec.meta.get("source", ""))
        group = ("val_dubai_parts_1_4" if src[-3:] in ("001", "002", "003", "004") else "val_dubai_parts_5_9") \
            if src.startswith("dubai") else "val_other_sources"
        for c in rec.meta.get("classes") or []:
            gt = labels.get(c)
            truth = gt is not None and present(int(gt.sum()), float(gt.mean()))
            rows.append((group, c, truth, *_ask_both(model, view, c, phrases[c])))
    for rec in scene_negative_records(Path(args.shared) / "uc_merced", HELD_OUT_INDICES):
        view = View(model, model.encode_images(tile_batch([rec], 256)))
        for kind, truth in (("classes", False), ("present_classes", True)):
            for c in rec.meta.get(kind) or []:
                rows.append(("uc_merced_60_78", c, truth, *_ask_both(model, view, c, phrases[c])))
    out: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "wall_s": round(time.time() - t0, 1), "groups": {}}
    groups = sorted({r[0] for r in rows}) + ["val_all"]
    for g in groups:
        rr = [r for r in rows if r[0] == g or (g == "val_all" and r[0].startswith("val_"))]
        t = np.array([r[2] for r in rr])
        w, a = np.array([r[3] for r in rr]), np.array([r[4] for r in rr])
        out["groups"][g] = {
            "questions": len(rr),
            "accuracy_with_check": float((w == t).mean()), "accuracy_masks_only": float((a == t).mean()),
            "false_yes_with_check": int((w & ~t).sum()), "false_yes_masks_only": int((a & ~t).sum()),
            "missed_with_check": int((~w & t).sum()), "missed_masks_only": int((~a & t).sum()),
            "per_class_with_check": {c: float(np.mean([r[3] == r[2] for r in rr if r[1] == c]))
                                     for c in sorted({r[1] for r in rr})},
            "per_class_masks_only": {c: float(np.mean([r[4] == r[2] for r in rr if r[1] == c]))
                                     for c in sorted({r[1] for r in rr})},
        }
        s = out["groups"][g]
        print(f"{g:22s} n={s['questions']:5d} accuracy {s['accuracy_masks_only']:.3f} -> {s['accuracy_with_check']:.3f}"
              f"  false yes {s['false_yes_masks_only']} -> {s['false_yes_with_check']}"
              f"  missed {s['missed_masks_only']} -> {s['missed_with_check']}", flush=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


def render(limit: int = 12) -> int:
    """Every question on the repository's held-out test chips where the check changed the answer."""
    import re
    import textwrap
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from rasterio.errors import NotGeoreferencedWarning

    from geopix_tiles.model.answer import present
    from geopix_tiles.model.dialogue import View, class_phrases
    from geopix_tiles.model.presence_check import presence_check_off
    from geopix_tiles.segmenters.registry import load_answer_model
    from geopix_tiles.training.dialogue_eval import _label_masks
    from geopix_tiles.training.dialogue_heads import chip_pixels
    from geopix_tiles.training.records import read_jsonl
    from geopix_tiles.training.scene_negatives import ABSENT_BY_SCENE, PRESENT_BY_SCENE

    warnings.simplefilter("ignore", NotGeoreferencedWarning)
    model = load_answer_model("default", "cpu")
    phrases = dict(class_phrases(model))
    views = []  # (title, image [3, H, W], {class: truth})
    for rec in read_jsonl(ROOT / "tests" / "data" / "default_val" / "val.jsonl"):
        labels = _label_masks(rec, 256)
        truth = {c: labels.get(c) is not None and present(int(labels[c].sum()), float(labels[c].mean()))
                 for c in rec.meta.get("classes") or []}
        views.append((Path(rec.image_path).name[:40], torch.from_numpy(np.ascontiguousarray(rec.load()[:3],
                                                                                           dtype=np.float32)), truth))
    uc = ROOT / "tests" / "data" / "uc_merced"
    for p in sorted(uc.glob("*.jpg")):
        n = int(re.sub(r"\D", "", p.stem))
        if 60 <= n < 80:
            sc = re.sub(r"\d+$", "", p.stem)
            truth = {c: False for c in ABSENT_BY_SCENE[sc]} | {c: True for c in PRESENT_BY_SCENE.get(sc, ())}
            views.append((f"UC Merced {p.name}", torch.from_numpy(chip_pixels(p, 256)), truth))
    panels = []
    for title, img, truth in views:
        view = View(model, model.encode_images(img[None]))
        for c, t in truth.items():
            q = f"Is there any {phrases[c]}?"
            r = model.chat(view, q)
            with presence_check_off(model):
                r0 = model.chat(view, q)
            if r.text.startswith("Yes") != r0.text.startswith("Yes"):
                panels.append((title, img, q, t, r0, r))
    panels = panels[:limit]
    cols = 4
    rows_n = max(1, -(-len(panels) // cols))
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 5.8 * rows_n), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (title, img, q, t, r0, r) in zip(axes.ravel(), panels):
        rgb = img.permute(1, 2, 0).numpy().clip(0, 1)
        ax.imshow(rgb)
        m = r0.masks[0].numpy() if len(r0.masks) else np.zeros(rgb.shape[:2], bool)
        over = np.zeros((*m.shape, 4))
        over[m] = (1.0, 0.1, 0.6, 0.45)
        ax.imshow(over)
        ok = "right" if r.text.startswith("Yes") == t else "WRONG"
        ax.set_title("\n".join(textwrap.wrap(f"{title} | {q} truth: {'yes' if t else 'no'}", 48)
                               + textwrap.wrap(f"masks alone (pink): {r0.text[:70]}", 48)
                               + textwrap.wrap(f"with check ({ok}): {r.text[:90]}", 48)), fontsize=7)
    fig.suptitle(f"Presence answers the check changed on the repository's held-out test chips ({len(panels)})")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    out = ROOT / "benchmarks" / "results" / "presence_check.png"
    fig.savefig(out, dpi=80)
    print(out, len(panels))
    return 0


def errors(args, per_kind: int = 6) -> int:
    """Shares of label and mask behind each answer still wrong on Dubai tile_7, and a picture of them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from geopix_tiles.model import answer as A
    from geopix_tiles.model.dialogue import View, class_phrases
    from geopix_tiles.segmenters.registry import load_answer_model
    from geopix_tiles.training.dataset import InstructDataset
    from geopix_tiles.training.dialogue_eval import _label_masks
    from geopix_tiles.training.records import read_jsonl

    torch.set_num_threads(2)
    model = load_answer_model("default", "cpu")
    phrases = dict(class_phrases(model))
    val = [r for r in read_jsonl(Path(args.data) / "val.jsonl") if str(r.meta.get("source", "")).startswith("dubai")]
    ds = InstructDataset(val, [], 256, cache=1)
    rows = []  # (chip, class, truth, said yes, label share, mask share)
    for i, rec in enumerate(val):
        view = View(model, model.encode_images(ds.image(i)[None]))
        labels = _label_masks(rec, 256)
        for c in rec.meta.get("classes") or []:
            gt = labels.get(c)
            lab = 0.0 if gt is None else float(gt.mean())
            fg = view.logits([phrases[c]])[0] > 0
            said = A.present(int(fg.sum()), float(fg.mean())) and not view.doubted(phrases[c], c)
            rows.append((i, c, gt is not None and A.present(int(gt.sum()), lab), said, lab, float(fg.mean())))
    out: dict = {"chips": len(val), "questions": len(rows), "per_class": {}}
    for c in sorted({r[1] for r in rows}):
        rr = [r for r in rows if r[1] == c]
        fy = [r for r in rr if r[3] and not r[2]]
        ms = [r for r in rr if r[2] and not r[3]]
        pct = lambda v: [round(float(x), 2) for x in np.percentile(np.asarray(v) * 100, [25, 50, 75])] if v else []
        out["per_class"][c] = {
            "questions": len(rr), "accuracy": round(float(np.mean([r[2] == r[3] for r in rr])), 3),
            "false_yes": len(fy), "false_yes_label_zero": round(float(np.mean([r[4] == 0 for r in fy])), 2) if fy else None,
            "false_yes_mask_share_pct_q25_50_75": pct([r[5] for r in fy]),
            "missed": len(ms), "missed_label_share_pct_q25_50_75": pct([r[4] for r in ms]),
            "missed_mask_share_pct_q25_50_75": pct([r[5] for r in ms])}
        print(c, json.dumps(out["per_class"][c]), flush=True)
    (ROOT / "benchmarks" / "results" / "presence_errors.json").write_text(json.dumps(out, indent=1))
    kinds = [("vegetation", True), ("vegetation", False), ("road", False), ("water", True)]  # (class, wrong yes?)
    rng = np.random.default_rng(0)
    fig, axes = plt.subplots(2 * len(kinds), per_kind, figsize=(2.4 * per_kind, 4.9 * len(kinds)), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k, (c, wrong_yes) in enumerate(kinds):
        pick = [r for r in rows if r[1] == c and (r[3] and not r[2] if wrong_yes else r[2] and not r[3])]
        for j, idx in enumerate(rng.choice(len(pick), min(per_kind, len(pick)), replace=False)):
            i, _, _, _, lab, share = pick[idx]
            img = ds.image(i)
            view = View(model, model.encode_images(img[None]))
            fg = view.logits([phrases[c]])[0] > 0
            gt = _label_masks(val[i], 256).get(c, np.zeros((256, 256), bool))
            rgb = img.permute(1, 2, 0).numpy().clip(0, 1)
            for row, m, colour, what in ((2 * k, gt, (1.0, 0.85, 0.0, 0.55), f"label {lab:.1%}"),
                                         (2 * k + 1, fg, (1.0, 0.1, 0.6, 0.55), f"mask {share:.1%}")):
                over = np.zeros((*m.shape, 4))
                over[m] = colour
                axes[row, j].imshow(rgb)
                axes[row, j].imshow(over)
                title = f"{c}: {'wrong yes' if wrong_yes else 'missed'}\n" if row % 2 == 0 else ""
                axes[row, j].set_title(f"{title}{str(val[i].meta.get('source', ''))[-14:]} {what}", fontsize=7)
    fig.suptitle("Dubai tile_7 (held out): answers the shipped model still gets wrong (yellow label, pink mask)")
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    png = ROOT / "benchmarks" / "results" / "presence_errors.png"
    fig.savefig(png, dpi=60)
    print(png)
    return 0


def probe_scores(x: np.ndarray, sel: np.ndarray, truth: np.ndarray, c: float) -> np.ndarray:
    """The shipped check's fit (``fit_check``) on ``x[sel]``, its probabilities on all of ``x``."""
    import torch

    from geopix_tiles.training.presence_check import fit_check

    class Probe(torch.nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.threshold = 0.5
            self.register_buffer("mean", torch.zeros(dim))
            self.register_buffer("scale", torch.ones(dim))
            self.fc = torch.nn.Linear(dim, 1)

    probe = Probe(x.shape[1])
    fit_check(probe, torch.from_numpy(x[sel]).float(), torch.from_numpy(truth[sel].astype(np.float32)), c)
    with torch.no_grad():
        return torch.sigmoid(probe.fc((torch.from_numpy(x).float() - probe.mean) / probe.scale))[:, 0].numpy()


def shipped_features(d) -> tuple[list, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(classes, class one-hot, the mask rule's "yes", truth, group, the shipped check's features) of a dump."""
    from geopix_tiles.model.answer import MIN_PRESENT_PIXELS, MIN_PRESENT_SHARE

    classes = sorted(set(d["cls"]))
    onehot = (d["cls"][:, None] == np.asarray(classes)[None]).astype(np.float32)
    rule = (d["share"] >= MIN_PRESENT_SHARE) & (d["share"] * 65536 >= MIN_PRESENT_PIXELS)
    shape = np.stack([d["largest"], d["meanp"], np.log(d["share"] + 1e-4)], 1)
    x = np.concatenate([d["inside"], d["inside1"], d["scene2"], onehot, shape], 1)
    return classes, onehot, rule, d["truth"], d["group"], x


def fit_colour(d) -> None:
    """The shipped feature set against it plus colour (alone and per class), as the shipped check is fitted."""
    classes, onehot, rule, truth, g, base = shipped_features(d)
    colour = d["colour"]
    per_class = (onehot[:, :, None] * colour[:, None, :]).reshape(len(colour), -1)
    variants = {"shipped features": base, "+ colour": np.concatenate([base, colour], 1),
                "+ colour per class": np.concatenate([base, colour, per_class], 1)}

    for name, x in variants.items():
        sel = np.isin(g, ("train", "uc_train")) & rule
        for c in (0.01, 0.03):
            p = probe_scores(x, sel, truth, c)
            said = rule & (p >= 0.5)
            accs = {n: float((said[g == n] == truth[g == n]).mean()) for n in ("train", "val", "uc_train", "uc_test")}
            per = {c_: round(float((said[(g == "val") & (d["cls"] == c_)] == truth[(g == "val") & (d["cls"] == c_)]).mean()), 3)
                   for c_ in classes}
            print(f"{name:20s} C={c:<5} " + " ".join(f"{n}={v:.3f}" for n, v in accs.items()) + f"  val per class {per}",
                  flush=True)


def dump_oof(args) -> int:
    """The training chips' questions with masks from the fold model that did not train on them."""
    import torch

    from geopix_tiles.model import GeoPixModel
    from geopix_tiles.training.cross_fit import fold_models, split_folds
    from geopix_tiles.training.records import read_jsonl

    torch.set_num_threads(2)
    model = GeoPixModel.from_pretrained(args.model).eval()
    models = fold_models(Path(args.folds))
    if models is None:
        raise SystemExit(f"no fold models in {args.folds}; run `default_recipe --step folds` first")
    folds = split_folds(read_jsonl(Path(args.data) / "train.jsonl"))
    cols: dict[str, list] = {}
    for f, path in models.items():
        masker = GeoPixModel.from_pretrained(path).eval()
        part = dump(model, folds[f], "train_oof", mask_model=masker)
        for k, v in part.items():
            cols.setdefault(k, []).extend(v)
    np.savez(args.oof, **{k: np.asarray(v) for k, v in cols.items()})
    return 0


def dump_haze(args) -> int:
    """The training chips' questions on hazed copies of the chips (shipped model's masks and features).

    Dubai tile_7's hazy image part 6 is where the check passes wrong "yes" answers (bluish desert
    as vegetation), and no training chip is hazy: a seeded veil (``training.augment.haze``, amount
    0.25-0.6) on every training chip gives the check such mistakes to learn from.
    """
    import random

    import torch

    from geopix_tiles.model import GeoPixModel
    from geopix_tiles.training.augment import haze
    from geopix_tiles.training.records import read_jsonl

    torch.set_num_threads(2)
    model = GeoPixModel.from_pretrained(args.model).eval()
    train = [r for r in read_jsonl(Path(args.data) / "train.jsonl") if r.meta.get("classes")]

    def hazed(images, start):
        out = []
        for i, x in enumerate(images):
            rng = random.Random(1_000_003 + start + i)
            out.append(haze(x, rng.uniform(0.25, 0.6), rng))
        return torch.stack(out)

    part = dump(model, train, "train_haze", transform=hazed)
    np.savez(args.extra, **{k: np.asarray(v) for k, v in part.items()})
    return 0


def fit_oof(d, oof, extra_group: str = "train_oof") -> int:
    """The shipped check's features fitted on in-sample masks (shipped), another set of examples
    (out-of-fold masks, hazed chips: ``extra_group``), or both."""
    keys = ("group", "cls", "truth", "share", "largest", "meanp", "inside", "inside1", "scene2")
    d = {k: np.concatenate([d[k], oof[k]]) for k in keys}
    classes, _, rule, truth, g, x = shipped_features(d)
    groups = ("train", extra_group, "val", "uc_train", "uc_test")
    print("mask rule:", {n: round(float((rule[g == n] == truth[g == n]).mean()), 3) for n in groups})

    for fitted_on in (("train", "uc_train"), (extra_group, "uc_train"), ("train", extra_group, "uc_train")):
        sel = np.isin(g, fitted_on) & rule
        for c in (0.01, 0.03):
            p = probe_scores(x, sel, truth, c)
            said = rule & (p >= 0.5)
            accs = {n: float((said[g == n] == truth[g == n]).mean()) for n in groups}
            per = {c_: round(float((said[(g == "val") & (d["cls"] == c_)] == truth[(g == "val") & (d["cls"] == c_)]).mean()), 3)
                   for c_ in classes}
            print(f"{'+'.join(fitted_on):28s} C={c:<5} " + " ".join(f"{n}={v:.3f}" for n, v in accs.items())
                  + f"  val per class {per}", flush=True)
    if extra_group == "train_oof":
        _fit_oof_nonlinear(x, rule, truth, g, d["cls"], classes, groups)
    return 0


def _fit_oof_nonlinear(x, rule, truth, g, cls, classes, groups) -> None:
    """Per-class probes, an MLP and gradient boosting on the same examples (scikit-learn)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    def report(name, p):
        said = rule & (p >= 0.5)
        accs = {n: float((said[g == n] == truth[g == n]).mean()) for n in groups}
        print(f"{name:40s} " + " ".join(f"{n}={v:.3f}" for n, v in accs.items()), flush=True)

    for on in (("train_oof", "uc_train"), ("train", "train_oof", "uc_train")):
        sel = np.isin(g, on) & rule
        z = StandardScaler().fit(x[sel]).transform(x)
        p = np.ones(len(x))
        for c in classes:
            s2 = sel & (cls == c)
            if len(set(truth[s2])) == 2:
                m = LogisticRegression(C=0.03, max_iter=3000, class_weight="balanced").fit(z[s2], truth[s2])
                p[cls == c] = m.predict_proba(z[cls == c])[:, 1]
        report("per-class probes C=0.03 " + "+".join(on), p)
        m = MLPClassifier((64,), alpha=0.1, max_iter=300, random_state=0, early_stopping=True).fit(z[sel], truth[sel])
        report("MLP 64 " + "+".join(on), m.predict_proba(z)[:, 1])
        m = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, class_weight="balanced",
                                           random_state=0).fit(x[sel], truth[sel])
        report("gradient boosting " + "+".join(on), m.predict_proba(x)[:, 1])


def fit_core(d) -> int:
    """The shipped check's features pooled under the whole (soft) mask against its confident core (p^4)."""
    classes, onehot, rule, truth, g, base = shipped_features(d)
    shape = base[:, -3:]
    variants = {
        "shipped (soft mask)": base,
        "core": np.concatenate([d["inside_core"], d["inside1_core"], d["scene2"], onehot, shape], 1),
        "soft + core": np.concatenate([d["inside"], d["inside1"], d["inside_core"], d["inside1_core"], d["scene2"],
                                       onehot, shape], 1),
    }
    sel = np.isin(g, ("train", "uc_train")) & rule
    for name, x in variants.items():
        for c in (0.01, 0.03, 0.1):
            said = rule & (probe_scores(x, sel, truth, c) >= 0.5)
            print(f"{name:22s} C={c:<5}", " ".join(f"{n}={float((said[g == n] == truth[g == n]).mean()):.4f}"
                                                   for n in ("train", "val", "uc_train", "uc_test")), flush=True)
    return 0


def fit(d) -> int:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from geopix_tiles.model.answer import MIN_PRESENT_PIXELS, MIN_PRESENT_SHARE

    classes = sorted(set(d["cls"]))
    onehot = (d["cls"][:, None] == np.asarray(classes)[None]).astype(np.float32)
    rule = (d["share"] >= MIN_PRESENT_SHARE) & (d["share"] * 65536 >= MIN_PRESENT_PIXELS)
    truth = d["truth"]
    g = d["group"]

    def acc(sel, said):
        return float((said[sel] == truth[sel]).mean())

    print("mask rule:", {n: round(acc(g == n, rule), 3) for n in ("train", "val", "uc_train", "uc_test")})
    feats = {
        "inside": d["inside"], "glob": d["glob"], "inside+glob": np.concatenate([d["inside"], d["glob"]], 1),
    }
    for fname, x in feats.items():
        for cls_x in (True,):
            X = np.concatenate([x, onehot * 3, np.stack([d["largest"], d["meanp"]], 1)], 1)
            for train_on in (("train",), ("train", "uc_train")):
                sel = np.isin(g, train_on) & rule  # a check only ever vetoes a "yes" of the mask rule
                sc = StandardScaler().fit(X[sel])
                for C in (0.01, 0.1):
                    clf = LogisticRegression(C=C, max_iter=2000, class_weight="balanced").fit(sc.transform(X[sel]), truth[sel])
                    pr = clf.predict_proba(sc.transform(X))[:, 1]
                    for t in (0.3, 0.5):
                        said = rule & (pr >= t)
                        print(f"{fname:12s} on={'+'.join(train_on):15s} C={C:<5} t={t}: " +
                              " ".join(f"{n}={acc(g == n, said):.3f}" for n in ("train", "val", "uc_train", "uc_test")),
                              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
