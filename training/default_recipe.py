"""Retrain the shipped default GeoPix checkpoint (``geopix_tiles/data/default_model/``).

The shipped model is ``default_v24``: ``default_v22`` continued for 1,000 steps in which the buildings of
60 % of the chips that hold them are repainted (dark to pale, five roof tints, texture kept) while every
class is anchored to v22's own masks on the original chip (roof colour consistency, ~13 min).
``default_v22`` is ``default_v18`` as it shipped (commit ``7dee1f9``), continued for
1,000 steps in which 60 % of the chips are shown blurred or resampled from a coarser grid while every
class is anchored to v18's own masks on the clean chip (sensor-degradation consistency, ~11 min).
v18 itself is the ``default_v2`` base (ImageNet tower + MiniLM, 4,000 steps on the exported chips,
~50 min), continued for 600 gentle steps that teach clouds from synthetic cloud blobs while every
other class is anchored to v2's own masks (``default_v14``, ~6 min), then for 1,500 steps in which 80 %
of the 5 m NAIP samples are shown zoomed out 2-12x so that water is learned at Sentinel-2 / Landsat
pixel sizes, every other class anchored to v14's masks (~14 min). One command, from the repository
root, with ``../shared/data`` present, reproduces v24::

    python -m geopix_tiles.training.default_recipe            # v24: export -> train -> ship -> dialogue -> presence

Its train step trains v22 first when ``runs/default_v22/model`` is missing (``CONTINUES``); v22 starts from
v18's shipped checkpoint, which :func:`shipped_from_git` takes from git (``FROM_SHIPPED``)
into ``runs/default_v18/shipped``; ``--variant v18`` retrains v18 from v2's recorded weights (taken from
git the same way, ``V2_COMMIT``, into ``runs/default_v2/model``), and ``--variant v2`` rebuilds that base
from scratch (deterministic on CPU).

Steps (each can be run alone with ``--step``):

1. ``export``  - cut the permissively licensed labelled scenes (``training/catalog.py``) into
   256 px chips with the fixed split of ``training/splits/default_v2.json`` and write
   ``runs/default_v2/data/{train,val}.jsonl`` (:func:`training.windows.export_jsonl`).
2. ``train``   - the project's own trainer on the variant's config (``training/configs/default_v24.yaml``
   after ``default_v22.yaml`` from v18's shipped checkpoint; for ``--variant v18``, ``default_v18.yaml`` after ``default_v14.yaml``
   when ``runs/default_v14/model`` is missing); resumes from the latest checkpoint in
   ``runs/<variant>/checkpoints`` when one exists.

3. ``ship``    - evaluate on the validation split (:func:`training.evaluate.evaluate_model`),
   store the weights as fp16 in ``geopix_tiles/data/default_model/`` and write
   ``training_record.json`` (seed, config, data manifest with sha256, metrics), plus the
   few held-out validation chips the tests use (``tests/data/default_val/``).
4. ``dialogue`` - train the scene head (UC Merced) and the intent head on the shipped
   checkpoint (:mod:`training.dialogue_heads`; the segmentation weights do not move), score
   the answers in words on the validation split (:mod:`training.dialogue_eval`), re-ship,
   and add both to ``training_record.json``.
5. ``presence`` - fit the presence check (:mod:`training.presence_check`: a probe that can veto
   a mask's "yes" when the pixels under it do not look like the class) on the training chips
   and UC Merced 0-59, score the answers in words again, re-ship.

Not in ``all`` (a recorded trial): ``--step folds`` trains two fold models, each without half
the training scenes (:mod:`training.cross_fit`; ``--fold A`` / ``--fold B`` trains one, so two
one-thread processes run at once: 21 min on 2 cores), and ``--step presence --cross-fit`` then
fits the check on their out-of-fold masks.

``--variant v3`` runs the same steps on ``default_v3`` (v2 + UC Merced scene-label negatives,
:mod:`training.scene_negatives`): the 2026-12-03 trial, not shipped (see MODEL_CARD.md, run history). ``--variant v4`` adds the
v2 teacher's masks on the same chips as positives (:mod:`training.pseudo_labels`); ``--variant v5``
is v4 without cloud negatives (``never_negative``); ``--variant v7`` continues the shipped v2 weights
for 4,000 more steps of the same recipe (a 2026-12-04 trial, not shipped). ``--variant v8`` / ``v9``
continue v2 with synthetic clouds over cloud-free chips (:func:`training.augment.with_cloud`; v9 over
the 5 m NAIP chips only) and ``v12`` / ``v13`` do so with every other class anchored to v2's own
masks (``data.anchor``; v13 with blobs over every cloud-free source): 2026-12-06 trials, not
shipped; ``v14`` = v12 trained gently is the one shipped (MODEL_CARD.md, run history). ``v15``
adds v6's UC Merced chips to v14 (a trial): the classes their scene rules out keep empty targets
under the anchor (``data.anchor_keeps_absent``), the others follow v2's masks.

GPU: the same command uses CUDA when it is available (the trainer picks ``cuda`` and bf16
autocast); on several GPUs launch the train step under ``torchrun --nproc_per_node N
training/default_recipe.py --step train``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import random
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANT = "default_v24"  # what ships; main() switches all three names for --variant
SPLIT = ROOT / "training" / "splits" / "default_v2.json"  # v14 and v18 continue v2 on its chips
CONFIG = ROOT / "training" / "configs" / f"{VARIANT}.yaml"
SHIP = ROOT / "geopix_tiles" / "data" / "default_model"
TEST_CHIPS = ROOT / "tests" / "data" / "default_val"
#: trial variants that continue the shipped weights on v2's exported chips (their configs read
#: ``runs/default_v2/data``), and so use v2's split file rather than a copy of it
ON_V2_CHIPS = {"v7", "v8", "v9", "v12", "v13", "v14", "v16", "v17", "v18", "v19", "v20", "v21", "v22", "v24", "v25", "v27", "v28", "v29", "v30", "v31"}
#: continuations of v2 that add chips of their own (their own export, with the split file named here)
OWN_CHIPS_FROM_V2 = {"v15": "default_v6"}
#: variants that continue another variant's trained weights (``runs/default_<that>/model``), which the
#: train step makes first when it is missing
CONTINUES = {"v16": "v14", "v17": "v14", "v18": "v14", "v19": "v14", "v24": "v22", "v25": "v22",
             **{v: "v24" for v in ("v27", "v28", "v29", "v30", "v31")}}
#: the commit whose ``geopix_tiles/data/default_model`` is default_v2 (shipped 2026-12-03, last
#: touched by 895d7b9); continuations start from, and are anchored to, that checkpoint, which
#: :func:`v2_base` extracts from git into ``runs/default_v2/model`` so they stay reproducible
#: once a continuation has replaced the shipped model
V2_COMMIT = "f996127"
V2_BASE = ROOT / "runs" / "default_v2" / "model"
#: continuations of a *shipped* checkpoint (fp16, text bank and fitted heads as users get it), taken from
#: git like v2: variant -> (commit whose ``geopix_tiles/data/default_model`` it is, where it goes)
FROM_SHIPPED = {v: ("7dee1f9", ROOT / "runs" / "default_v18" / "shipped") for v in ("v20", "v21", "v22")}
PROMPTS = ["buildings", "roads", "water", "vegetation", "land", "clouds"]


def _overlaps(win, box) -> bool:
    """Whether a rasterio Window touches a split block ``(y0, x0, y1, x1)`` (the split file's order)."""
    (y, ye), (x, xe) = win.toranges()
    y0, x0, y1, x1 = box
    return y < y1 and ye > y0 and x < x1 and xe > x0


def training_chain(variant: str) -> list[str]:
    """The variants the train step trains, in order: ``variant``, after the variants it continues whose
    trained weights (``runs/default_<v>/model``) are missing (v18 on a fresh clone: v14, then v18)."""
    chain = [variant]
    while chain[0] in CONTINUES and not (ROOT / "runs" / f"default_{CONTINUES[chain[0]]}" / "model"
                                         / "model.safetensors").exists():
        chain.insert(0, CONTINUES[chain[0]])
    return chain


def continues_shipped(variant: str) -> bool:
    """Whether ``variant``'s chain of continuations starts from a checkpoint as shipped (``FROM_SHIPPED``)."""
    while variant in CONTINUES:
        variant = CONTINUES[variant]
    return variant in FROM_SHIPPED


def data_dir(out: Path) -> Path:
    """The exported chips a variant trains and is scored on: v2's for the continuations of v2."""
    if VARIANT.removeprefix("default_") in ON_V2_CHIPS:
        return ROOT / "runs" / "default_v2" / "data"
    return out / "data"


def v2_base() -> Path:
    """Why from git: the continuation variants are defined relative to v2's exact weights, and the
    shipped copy is overwritten when one of them ships; the repository's history keeps v2."""
    return shipped_from_git(V2_COMMIT, V2_BASE, "default_v2")


def shipped_from_git(commit: str, dest: Path, name: str) -> Path:
    """The checkpoint shipped at ``commit`` (``geopix_tiles/data/default_model``), extracted into ``dest``."""
    import subprocess
    import tarfile
    import tempfile

    if (dest / "model.safetensors").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        tar = Path(tmp) / "ckpt.tar"
        try:
            subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(tar), commit,
                            "geopix_tiles/data/default_model"], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as e:
            raise SystemExit(f"default_recipe: cannot read {name} from git commit {commit} ({e}); "
                             f"run from a git clone of the repository, or put its checkpoint in {dest}")
        with tarfile.open(tar) as t:
            t.extractall(tmp, filter="data")
        (Path(tmp) / "geopix_tiles" / "data" / "default_model").rename(dest)
    return dest


def export(shared: Path, out: Path, seed: int) -> dict:
    from geopix_tiles.core.tiling import TileGrid
    from geopix_tiles.training.adapters import build_source
    from geopix_tiles.training.catalog import PERMISSIVE, shared_data_specs
    from rasterio.windows import Window

    from geopix_tiles.training.windows import export_jsonl, records_from_scene

    split = json.loads(SPLIT.read_text())
    tile = int(split["tile"])
    specs = shared_data_specs(shared)
    val_images = {str((shared / p).resolve()) for p in split["val_images"]}
    rng = random.Random(seed)
    train, val = [], []
    for name in split["sources"]:
        assert name in PERMISSIVE, name
        src = build_source(specs[name])
        weak = name in split.get("weak_sources", {})
        for scene in src.scenes():
            paths = [str(Path(p).resolve()) for p in (scene.image.paths if hasattr(scene.image, "paths") else [])]
            block = split["val_blocks"].get(name, {}).get("yx_box")
            is_val_image = any(p in val_images for p in paths)
            if is_val_image or block:
                y0, x0, y1, x1 = block or (0, 0, scene.height, scene.width)
                grid = TileGrid(y1 - y0, x1 - x0, tile, 0)
                wins = [Window(x0 + t.x, y0 + t.y, t.width, t.height) for t in grid]
                for r in records_from_scene(scene, wins):
                    r.meta["split"] = "val"
                    r.meta["weak_labels"] = weak
                    val.append(r)
            if is_val_image:
                continue
            th, tw = min(tile, scene.height), min(tile, scene.width)
            mult = split.get("train_window_multiplier", {}).get(name, 1)
            n = max(4, round(2 * mult * scene.height * scene.width / (tile * tile)))
            wins, tries = [], 0
            while len(wins) < n and tries < 100 * n:
                tries += 1
                y = rng.randint(0, scene.height - th)  # row offset first: the draw order of the recorded runs
                win = Window(rng.randint(0, scene.width - tw), y, tw, th)
                if block and _overlaps(win, block):
                    continue
                wins.append(win)
            for r in records_from_scene(scene, wins):
                r.meta["split"] = "train"
                train.append(r)
    data = data_dir(out)
    negatives = scene_negatives(shared, split)
    export_jsonl(train + negatives, data / "train.jsonl", data / "chips_train")
    export_jsonl(val, data / "val.jsonl", data / "chips_val")
    counts = {"train": len(train), "val": len(val)}
    if negatives:
        counts["scene_negatives"] = len(negatives)
    print(f"exported {counts}", flush=True)
    return counts


def scene_negatives(shared: Path, split: dict) -> list:
    """The split's UC Merced training chips as records naming what their scene rules out.

    Instance-free (v3), or with the teacher's masks as instances when the split names
    ``pseudo_labels`` (v4+; ``teacher_classes`` limits them, ``never_negative`` drops classes
    from what may be asked for with an empty mask).
    """
    from geopix_tiles.training.scene_negatives import scene_negative_records

    spec = split.get("scene_negatives", {}).get("uc_merced")
    if not spec:
        return []
    recs = scene_negative_records(shared / "uc_merced", spec["train_indices"])
    if spec.get("pseudo_labels"):  # v4: the teacher's masks for the classes the scene allows
        from geopix_tiles.training.pseudo_labels import add_pseudo_positives, read_pseudo_labels

        added = add_pseudo_positives(recs, read_pseudo_labels(ROOT / spec["pseudo_labels"]),
                                     spec.get("teacher_classes"))
        print(f"pseudo positives: {added} class masks on {len(recs)} chips", flush=True)
    never = set(spec.get("never_negative", ()))
    for r in recs:
        r.meta["split"] = "train"
        if never:  # classes whose only positives come from one sensor: "absent here" would name the sensor
            r.meta["classes"] = [c for c in r.meta["classes"] if c not in never]
    return recs


def prompt_eval_records(val: list, dubai: int = 160, seed: int = 0) -> list:
    """Every validation chip of the small sources and a seeded sample of the large Dubai tile.

    Scoring ~20 prompts on all 650 Dubai chips would take a quarter of an hour on 2 cores; a
    fixed sample of 160 chips spread over the held-out tile keeps it to a few minutes.
    """
    from geopix_tiles.training.prompt_eval import source_of

    big = [r for r in val if source_of(r) == "dubai_aerial"]
    rest = [r for r in val if source_of(r) != "dubai_aerial"]
    rng = random.Random(seed)
    return rest + [big[i] for i in sorted(rng.sample(range(len(big)), min(dubai, len(big))))]


def manifest(shared: Path) -> list[dict]:
    split = json.loads(SPLIT.read_text())
    files = []
    for name in split["sources"] + sorted(split.get("scene_negatives", {})):
        for p in sorted((shared / name).rglob("*")):
            if p.is_file() and p.suffix.lower() in (".jpg", ".png", ".tif", ".tiff", ".geojson", ".json"):
                files.append({"path": str(p.relative_to(shared)), "bytes": p.stat().st_size,
                              "sha256": hashlib.sha256(p.read_bytes()).hexdigest()})
    return files


def train(resume: bool) -> dict:
    from geopix_tiles.training.config import load_config
    from geopix_tiles.training.trainer import train as run

    cfg = load_config(CONFIG)
    ck = Path(cfg.output_dir) / "checkpoints"
    resume = resume and ck.is_dir() and any(ck.glob("step-*"))
    t0 = time.time()
    res = run(cfg, resume=resume)
    res["wall_s"] = time.time() - t0
    (Path(cfg.output_dir) / "train_result.json").write_text(json.dumps(
        {"steps": res["steps"], "wall_s": res["wall_s"], "model_dir": res["model_dir"],
         "final": res["history"][-1] if res["history"] else None}, indent=1))
    return res


def ship(shared: Path, out: Path, max_val: int) -> dict:
    import torch

    from geopix_tiles.model import GeoPixModel
    from geopix_tiles.training.config import load_config
    from geopix_tiles.training.evaluate import evaluate_model
    from geopix_tiles.training.prompt_eval import evaluate_prompts, source_of
    from geopix_tiles.training.records import read_jsonl, write_jsonl

    cfg = load_config(CONFIG)
    exported = Path(cfg.output_dir) / "model"
    if exported.is_dir():
        model = GeoPixModel.from_pretrained(exported)
    else:  # an interrupted run: ship the latest resumable checkpoint (recorded as such)
        from safetensors.torch import load_file

        from geopix_tiles.training.trainer import build_model

        ck = sorted((Path(cfg.output_dir) / "checkpoints").glob("step-*"))[-1]
        names = sorted({i.category for r in read_jsonl(data_dir(out) / "train.jsonl") for i in r.instances})
        model = build_model(cfg, names)
        model.load_state_dict(load_file(str(ck / "model.safetensors")), strict=False)
        model.eval()
        print(f"shipping interrupted run from {ck}", flush=True)
    # the text bank: the model reads a prompt as its mix of the phrases it was trained on
    from geopix_tiles.training.vocabulary import training_phrases

    for key in ("text_bank_temperature", "text_bank_unknown"):  # inference settings, chosen on the dev lists
        if key in cfg.model.overrides:
            setattr(model.config, key, cfg.model.overrides[key])
    model.set_text_bank(training_phrases())
    # building and road prompts on scenes finer than 0.7 m are shown at 0.9 m by default: the model
    # learned them at ~1 m (Dubai) and finds half as much at 0.45 m; vegetation is better native
    # there (benchmarks/resolution.py, xBD Joplin)
    model.config.extra["working_resolution_m"] = [0.7, 0.9, ["building", "road"]]
    # scenes of 6-60 m (Sentinel-2, Landsat) are shown finer, at 5 m but at most 2x finer: water and vegetation
    # were learned from 5 m NAIP chips, and at 30 m the model found no water; upsampled 3x or more, dark rain
    # forest became water (segmenters/resampled.py)
    model.config.extra["coarsest_resolution_m"] = [6.0, 5.0, 12.0, 2.0]
    # buildings and roads were learned from imagery of ~0.02-1 m only (Dubai, Open Cities): shown at 2 m the model
    # paints 58-68 % of xBD Joplin as buildings (17.7 % labelled), at 5 m bright bare fields (the NAIP sample);
    # coarser than this a run still paints them and says so (segmenters/resampled.py: coarse_readings)
    model.config.extra["class_coarsest_m"] = {"building": 1.5, "road": 1.5}
    val = read_jsonl(data_dir(out) / "val.jsonl")
    rng = random.Random(0)
    subset = sorted(rng.sample(range(len(val)), min(max_val, len(val)))) if max_val else range(len(val))
    recs = [val[i] for i in subset]
    t0 = time.time()
    metrics = evaluate_model(model, recs, seed=0, samples_per_image=4, semantic=False)
    metrics["eval_wall_s"] = time.time() - t0
    metrics["val_images_scored"] = len(recs)
    metrics["val_images_total"] = len(val)
    print(json.dumps(metrics, indent=1), flush=True)
    t0 = time.time()
    prompt_metrics = evaluate_prompts(model, prompt_eval_records(val))
    prompt_metrics["eval_wall_s"] = time.time() - t0
    print(json.dumps(prompt_metrics, indent=1), flush=True)
    # fp16 storage: from_pretrained loads it back into fp32 parameters
    if SHIP.exists():
        shutil.rmtree(SHIP)
    model.half().save_pretrained(SHIP)
    model.float()
    result = json.loads((Path(cfg.output_dir) / "train_result.json").read_text()) \
        if (Path(cfg.output_dir) / "train_result.json").exists() else {}
    if result:
        result["model_dir"] = _repo_path(result.get("model_dir"))
    record = {
        "name": f"geopix-tiles {VARIANT}",
        "command": "python -m geopix_tiles.training.default_recipe",
        "seed": cfg.seed,
        "config_file": str(CONFIG.relative_to(ROOT)),
        "config": cfg.to_dict(),
        "split_file": str(SPLIT.relative_to(ROOT)),
        "split": json.loads(SPLIT.read_text()),
        "export_counts": json.loads((data_dir(out) / "export_counts.json").read_text())
        if (data_dir(out) / "export_counts.json").exists() else None,
        "data_manifest": manifest(shared),
        "train": result,
        "validation_metrics": metrics,
        "prompt_metrics": prompt_metrics,
        "storage_dtype": "float16",
        "parameters": sum(p.numel() for p in model.parameters()),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "device": "cuda" if torch.cuda.is_available() else "cpu"},
        "date": time.strftime("%Y-%m-%d"),
    }
    for d in (record["config"], ):  # paths in the repository's terms, not this machine's
        d["output_dir"] = f"runs/{VARIANT}"
        d["data"]["train"] = str((data_dir(out) / "train.jsonl").relative_to(ROOT))
        d["data"]["val"] = str((data_dir(out) / "val.jsonl").relative_to(ROOT))
        for part, key in (("model", "checkpoint"), ("data", "anchor")):
            d[part][key] = _repo_path(d[part].get(key))
    (SHIP / "training_record.json").write_text(json.dumps(record, indent=1))
    # a few held-out validation chips for the offline quality test (one per class where possible)
    if TEST_CHIPS.exists():
        shutil.rmtree(TEST_CHIPS)
    TEST_CHIPS.mkdir(parents=True)
    picked, seen, sources = [], set(), set()
    for r in val:  # one chip per source first, then chips that add a class
        src = source_of(r)
        if r.instances and src not in sources:
            picked.append(r)
            sources.add(src)
            seen |= {i.category for i in r.instances}
    for r in val:
        cats = {i.category for i in r.instances}
        if cats - seen and len(picked) < 10 and r not in picked:
            picked.append(r)
            seen |= cats
    chips = []
    for i, r in enumerate(picked):
        src = Path(r.image_path)
        dst = TEST_CHIPS / f"val_{i:02d}_{src.name.split('_', 1)[1]}"
        shutil.copy(src, dst)
        r.image_path = str(dst)
        chips.append(r)
    write_jsonl(chips, TEST_CHIPS / "val.jsonl")
    return metrics


def _repo_path(path: str | None) -> str | None:
    """``path`` relative to the repository when it lies inside it (records name no machine's folders)."""
    if not path:
        return path
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else path


def dialogue(shared: Path, out: Path, max_val: int = 0) -> dict:
    from geopix_tiles.model import GeoPixModel
    from geopix_tiles.training.dialogue_heads import add_dialogue_heads

    model = GeoPixModel.from_pretrained(SHIP)
    uc = shared / "uc_merced"
    # a continuation of a shipped checkpoint keeps its intent head: it reads only the question, and the
    # shipped one is what the natural-phrasing tests were checked against
    heads = add_dialogue_heads(model, uc, keep_intent=continues_shipped(VARIANT.removeprefix("default_")))
    print(json.dumps({k: v for k, v in heads.items() if k != "scene_per_class"}, indent=1), flush=True)
    scores = _score_dialogue(model, out, uc, max_val)
    record = json.loads((SHIP / "training_record.json").read_text())
    record["dialogue_heads"] = heads
    record["dialogue_metrics"] = scores
    _reship(model, record)
    return scores


FOLD_STEPS = 2500  # each fold model: the recipe's stages scaled to 2,500 steps (~22 min at one thread)


def folds(cfg, out: Path, which) -> dict:
    """The two fold models whose out-of-fold masks the presence check is fitted on (:mod:`training.cross_fit`)."""
    from geopix_tiles.training.cross_fit import train_fold_models

    return train_fold_models(cfg, data_dir(out) / "train.jsonl", data_dir(out) / "val.jsonl", out / "folds",
                             FOLD_STEPS, only=which)


def presence(shared: Path, out: Path, max_val: int = 0, cross_fit: bool = False) -> dict:
    """Fit the presence check on the shipped checkpoint, score the answers in words again, re-ship.

    ``cross_fit``: the training chips' masks come from the fold models (``--step folds``); a
    2026-12-04 trial, not what ships (validation presence 0.881 -> 0.885, UC Merced 0.958 -> 0.951).
    """
    from geopix_tiles.model import GeoPixModel
    from geopix_tiles.training.cross_fit import load_fold_models
    from geopix_tiles.training.presence_check import add_presence_check, scene_check_records
    from geopix_tiles.training.records import read_jsonl

    model = GeoPixModel.from_pretrained(SHIP)
    uc = shared / "uc_merced"
    train_recs = [r for r in read_jsonl(data_dir(out) / "train.jsonl") if r.meta.get("classes")]
    maskers = load_fold_models(out / "folds", "--cross-fit needs them: run --step folds first") if cross_fit else None
    stats = add_presence_check(model, train_recs, scene_check_records(uc), fold_models=maskers)
    print(json.dumps(stats, indent=1), flush=True)
    scores = _score_dialogue(model, out, uc, max_val)
    record = json.loads((SHIP / "training_record.json").read_text())
    record["presence_check"] = stats
    record["dialogue_metrics_before_presence_check"] = record.get("dialogue_metrics")
    record["dialogue_metrics"] = scores
    _reship(model, record)
    return scores


def _score_dialogue(model, out: Path, uc: Path, max_val: int) -> dict:
    """The answers-in-words metrics on the validation split (all of it, or ``max_val`` chips drawn with seed 0)."""
    from geopix_tiles.training.dialogue_eval import evaluate_dialogue
    from geopix_tiles.training.records import read_jsonl

    val = read_jsonl(data_dir(out) / "val.jsonl")
    rng = random.Random(0)
    subset = sorted(rng.sample(range(len(val)), min(max_val, len(val)))) if max_val else range(len(val))
    t0 = time.time()
    scores = evaluate_dialogue(model, [val[i] for i in subset], uc_merced=uc)
    scores["eval_wall_s"] = round(time.time() - t0, 1)
    scores["val_images_scored"] = len(subset)
    print(json.dumps(scores, indent=1), flush=True)
    return scores


def _reship(model, record: dict) -> None:
    """Replace the shipped checkpoint with ``model`` (fp16) and ``record``: written beside it, then renamed."""
    tmp = SHIP.with_name(SHIP.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.half().save_pretrained(tmp)
    (tmp / "training_record.json").write_text(json.dumps(record, indent=1))
    shutil.rmtree(SHIP)
    tmp.rename(SHIP)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--step", choices=["all", "export", "train", "ship", "dialogue", "folds", "presence"], default="all")
    ap.add_argument("--fold", choices=["A", "B"], help="folds: train only the model without this fold (run two at once)")
    ap.add_argument("--cross-fit", action="store_true",
                    help="presence: fit the check on the fold models' out-of-fold masks (needs --step folds first)")
    ap.add_argument("--max-val", type=int, default=0, help="score only N validation chips (0 = all)")
    ap.add_argument("--no-resume", action="store_true")
    ap.add_argument("--variant", choices=["v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v12", "v13", "v14", "v15", "v16", "v17", "v18", "v19", "v20", "v21", "v22", "v24", "v25", "v27", "v28", "v29", "v30", "v31"],
                    default="v24",
                    help="v24 (default): the shipped model, v22 + roof colour consistency; v22: v18 as shipped + blur / resampling consistency (shipped before v24); v18: v14 + water learned on coarse (zoomed-out) NAIP pixels (shipped before v22); v2: the base from scratch; v3: + UC Merced scene-label negatives (a recorded trial); "
                         "v4: v3 + the v2 teacher's masks on the same chips; v5: v4 without cloud negatives; "
                         "v6: v4 without the teacher's bare-land masks; v7: v2 trained 4,000 steps longer; v8: v2 + 1,500 steps with synthetic clouds; v9: v8 with clouds over the 5 m NAIP chips only; v12: v9 with the other classes anchored to v2 (category and referring targets); v13: v12 with blobs over every cloud-free source; v14: v12 trained gently (600 steps at 2e-4), shipped before v18; v15: v14 + UC Merced chips whose scene rules classes out (empty targets that beat the anchor) beside v2's masks for the rest; "
                         "v16 / v17: v14 + NAIP chips zoomed out 2-12x with water and vegetation free (v16 600 gentle steps, v17 1,500 stronger ones; trials); v18: v17 with vegetation anchored too (shipped until v22); v19: v18 with the tower frozen (a trial); "
                         "v20: the shipped v18 + sensor-degradation consistency (degraded chips, every class anchored to v18 on the clean chip); "
                         "v21: v20 with water learning from its labels; v22: v20 with blur and resampling only (shipped until v24); "
                         "v24: v22 + roof colour consistency (buildings repainted, every class anchored to v22 on the original chip; shipped); "
                         "v25: v24 with buildings learning from their labels; "
                         "v27 / v28: v24 + 1,000 steps anchored to v24's masks averaged over four mirrored views (seeds 7 / 11); "
                         "v29 / v30: the same for buildings and roads only; v31: v27 with one view (the control)")
    args = ap.parse_args()
    global VARIANT, SPLIT, CONFIG
    VARIANT = f"default_{args.variant}"
    # continuations of the shipped weights train on v2's exported chips, so they hold its split
    SPLIT = ROOT / "training" / "splits" / f"default_{'v2' if args.variant in ON_V2_CHIPS else args.variant}.json"
    if args.variant in OWN_CHIPS_FROM_V2:
        SPLIT = ROOT / "training" / "splits" / f"{OWN_CHIPS_FROM_V2[args.variant]}.json"
    from_v2 = args.variant in ON_V2_CHIPS or args.variant in OWN_CHIPS_FROM_V2
    CONFIG = ROOT / "training" / "configs" / f"{VARIANT}.yaml"
    shared = Path(args.shared)
    if not shared.is_dir():
        print(f"train_default: {shared} does not exist; pass --shared PATH/TO/shared/data", file=sys.stderr)
        return 2
    from geopix_tiles.training.config import load_config

    cfg = load_config(CONFIG)
    out = Path(cfg.output_dir)
    if args.step in ("all", "export") and not (data_dir(out) / "train.jsonl").exists():
        # the continuations of v2 need v2's chips: v2's split (SPLIT) and v2's seed
        seed = load_config(ROOT / "training" / "configs" / "default_v2.yaml").seed \
            if from_v2 else cfg.seed
        counts = export(shared, out, seed)
        (data_dir(out) / "export_counts.json").write_text(json.dumps(counts))
    if args.step in ("all", "train"):
        if from_v2:
            print(f"v2 base: {v2_base()}", flush=True)
        for v in training_chain(args.variant):
            if v != args.variant:
                print(f"{args.variant} continues {v}: training {v} first", flush=True)
            if v in FROM_SHIPPED:
                commit, dest = FROM_SHIPPED[v]
                print(f"{v} starts from the checkpoint shipped at {commit}: {shipped_from_git(commit, dest, 'it')}",
                      flush=True)
            CONFIG = ROOT / "training" / "configs" / f"default_{v}.yaml"
            train(resume=not args.no_resume)
        CONFIG = ROOT / "training" / "configs" / f"{VARIANT}.yaml"
    if args.step in ("all", "ship"):
        ship(shared, out, args.max_val)
    if args.step in ("all", "dialogue"):
        dialogue(shared, out, args.max_val)
    if args.step == "folds":  # a recorded trial, not part of the shipped recipe (MODEL_CARD.md, run history)
        folds(cfg, out, [args.fold] if args.fold else ["A", "B"])
    if args.step in ("all", "presence"):
        presence(shared, out, args.max_val, cross_fit=args.cross_fit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
