"""The default model on a GPU: its own CUDA rate, the CLI end to end, bf16 against fp32, training steps/s.

Issue 14, item 5: end-to-end tiles/s of `geopix-tiles segment --device cuda` against the
model's own CUDA rate (same tiles, prompts, batch), AMP/bf16 inference and training steps/s
recorded. Everything runs in this one script because a lent GPU machine is held for minutes,
not hours (``/work/.library/device``); each part writes its results as it finishes, so a part
that fails leaves the others. Parts:

* ``scene``     a ``--size`` px square GeoTIFF tiled from the shipped NAIP sample (mirrored
                copies, 4 bands, 512 px blocks, DEFLATE): the same file for every run;
* ``model``     ``load_segmenter("default", device)`` and ``predict`` on ``--model-tiles``
                tiles cut from the scene as the engine cuts them (256 px, scene-wide
                scaling), per batch size, bf16 autocast on and off; bf16 against fp32
                probabilities and masks on the same tiles;
* ``cli``       ``python -m geopix_tiles segment SCENE -o x.gpkg --raster x.tif --model
                default -p water,vegetation,buildings,roads --device DEVICE`` per variant
                (batch size, model threads): the summary's engine tiles/s, wall, peak RSS and
                CPU seconds per engine thread (``bench_thread_cpu.sample``);
* ``ceiling``   the engine with no model cost on the first CLI run's probability raster (its bands
                returned as the probabilities), per vectorising worker count: the host's ceiling;
* ``train``     the trainer from the shipped checkpoint on chips cut from the scene with weak
                NDVI/NDWI labels: steps/s of whole steps (data included) and of the model
                alone (one prepared batch), fp32 against bf16, per batch size.

    python benchmarks/bench_gpu.py --out DIR [--device cuda] [--size 16000] [--parts scene,model,cli,train]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_learned_cli import PROMPTS, SUMMARY  # noqa: E402
from bench_thread_cpu import sample  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "geopix_tiles" / "data" / "naip_sample.tif"


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def make_scene(path: Path, size: int) -> dict:
    """A ``size`` px square scene of mirrored copies of the NAIP sample, written row band by row band."""
    import rasterio
    from rasterio.windows import Window

    t0 = time.perf_counter()
    with rasterio.open(SAMPLE) as src:
        img = src.read()
        profile = src.profile
    h, w = img.shape[1:]
    quad = np.concatenate([np.concatenate([img, img[:, :, ::-1]], 2),
                           np.concatenate([img[:, ::-1], img[:, ::-1, ::-1]], 2)], 1)  # seamless 2h x 2w
    reps = (-(-size // quad.shape[1]), -(-size // quad.shape[2]))
    band_rows = 512
    profile.update(width=size, height=size, tiled=True, blockxsize=512, blockysize=512, compress="deflate",
                   BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS")
    with rasterio.open(path, "w", **profile) as dst:
        dst.descriptions = ("red", "green", "blue", "nir")
        for y0 in range(0, size, band_rows):
            rows = np.arange(y0, min(size, y0 + band_rows)) % quad.shape[1]
            band = np.tile(quad[:, rows], (1, 1, reps[1]))[:, :, :size]
            dst.write(band, window=Window(0, y0, size, len(rows)))
    return {"path": str(path), "size": size, "source": SAMPLE.name, "seconds": time.perf_counter() - t0,
            "mb": path.stat().st_size / 2**20}


def cut_tiles(scene_path: Path, n: int) -> np.ndarray:
    """The first ``n`` tiles of the engine's grid (256 px, overlap 64), scaled as the engine scales them."""
    import rasterio
    from rasterio.windows import Window

    from geopix_tiles.core.tiling import TileGrid
    from geopix_tiles.io.scene import compute_statistics, open_scene, select_bands

    scene = compute_statistics(select_bands(open_scene(str(scene_path)), (1, 2, 3)))
    grid = TileGrid(scene.height, scene.width, 256, 64)
    lo, hi = scene.low[:, None, None], scene.high[:, None, None]
    out = []
    with rasterio.open(scene_path) as src:
        for r in range(grid.n_rows):
            for t in grid.row_tiles(r):
                if len(out) == n:
                    return np.stack(out)
                a = src.read([1, 2, 3], window=Window(t.x, t.y, 256, 256), boundless=True).astype(np.float32)
                out.append(np.clip((a - lo) / (hi - lo), 0, 1))
    return np.stack(out)


def _ious(ref: np.ndarray, other: np.ndarray) -> list[float]:
    """IoU of the >= 0.5 masks of two ``[B, P, H, W]`` outputs, per prompt."""
    out = []
    for k in range(ref.shape[1]):
        a, b = ref[:, k] >= 0.5, other[:, k] >= 0.5
        union = (a | b).sum()
        out.append(float((a & b).sum() / union) if union else 1.0)
    return out


def model_rates(scene_path: Path, device: str, n_tiles: int, batches: list[int],
                modes: list[tuple[bool, bool, bool | None]], cpu_reference: int = 0) -> dict:
    """The segmenter's own tiles/s per batch size and mode (check, bf16, CUDA graphs), its fp32 output
    against the CPU's, how far bf16 moves the output, and CUDA graphs against op-by-op."""
    from geopix_tiles.segmenters.registry import load_segmenter

    tiles = cut_tiles(scene_path, n_tiles)
    seg = load_segmenter("default", device=device)
    graphs_default = bool(getattr(seg, "cuda_graphs", False))
    res: dict = {"tiles": len(tiles), "rates": [], "cuda_graphs_default": graphs_default}
    for check, autocast, graphs in modes:
        seg.tile_check, seg.autocast = check, autocast
        seg.cuda_graphs = graphs_default if graphs is None else graphs
        seg._graphs = None
        for b in batches:
            groups = [tiles[i:i + b] for i in range(0, len(tiles) - b + 1, b)]
            for g in groups[:2]:
                seg.predict(g, PROMPTS)  # warm-up: cuDNN autotuning, allocator
            _sync(device)
            t0 = time.perf_counter()
            for g in groups:
                seg.predict(g, PROMPTS)
            _sync(device)
            rate = sum(len(g) for g in groups) / (time.perf_counter() - t0)
            used = bool(getattr(seg, "cuda_graphs", False))  # False after a failed recording
            res["rates"].append({"tile_check": check, "autocast_bf16": autocast, "cuda_graphs": used, "batch": b,
                                 "tiles_per_s": rate})
            print(f"model check={check} bf16={autocast} graphs={used} batch={b}: {rate:.1f} tiles/s", flush=True)
        if getattr(seg, "cuda_graph_error", None):
            res.setdefault("cuda_graph_errors", []).append(seg.cuda_graph_error)
            print("CUDA graph error:", seg.cuda_graph_error, flush=True)
            seg.cuda_graph_error = None
    if graphs_default and device.startswith("cuda"):  # the recorded call against the op-by-op one
        seg.tile_check, seg.autocast = True, False
        seg.cuda_graphs, seg._graphs = False, None
        eager = np.concatenate([seg.predict(tiles[i:i + 64], PROMPTS) for i in range(0, 256, 64)])
        seg.cuda_graphs = True
        replay = np.concatenate([seg.predict(tiles[i:i + 63], PROMPTS) for i in range(0, 252, 63)]
                                + [seg.predict(tiles[252:256], PROMPTS)])  # 63-tile rows padded to 64, then 4 -> 64
        diff = np.abs(eager - replay)
        res["graph_vs_eager"] = {"tiles": 256, "max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
                                 "within_1_255": float((diff <= 1 / 255).mean()),
                                 "mask_iou_per_prompt": dict(zip(PROMPTS, _ious(eager, replay))),
                                 "graphs_used": bool(seg.cuda_graphs), "error": seg.cuda_graph_error}
        print("graph vs eager:", res["graph_vs_eager"], flush=True)
    if cpu_reference and device.startswith("cuda"):
        import torch

        seg.tile_check, seg.autocast = True, False
        seg.cuda_graphs, seg._graphs = graphs_default, None
        gpu = seg.predict(tiles[:cpu_reference], PROMPTS)
        cpu = load_segmenter("default", device="cpu").predict(tiles[:cpu_reference], PROMPTS)
        diff = np.abs(gpu - cpu)
        res["gpu_fp32_vs_cpu"] = {"tiles": cpu_reference, "max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
                                  "within_1_255": float((diff <= 1 / 255).mean()),
                                  "mask_iou_per_prompt": dict(zip(PROMPTS, _ious(cpu, gpu))),
                                  "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
                                  "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32)}
        print("GPU fp32 vs CPU:", res["gpu_fp32_vs_cpu"], flush=True)
    res["bf16_vs_fp32"] = {}
    seg.cuda_graphs, seg._graphs = False, None  # bf16 against fp32 op by op (autocast and graphs are separate)
    for check in sorted({c for c, a, _ in modes if a}):  # bf16 against fp32 where bf16 was timed
        seg.tile_check = check
        seg.autocast = False
        ref = seg.predict(tiles[:256], PROMPTS)
        seg.autocast = True
        fast = seg.predict(tiles[:256], PROMPTS)
        ious = _ious(ref, fast)
        diff = np.abs(ref - fast)
        res["bf16_vs_fp32"]["check" if check else "no_check"] = {
            "max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "within_1_255": float((diff <= 1 / 255).mean()),
            "tiles_differing_by_0.5": int((diff.reshape(len(ref), -1).max(1) >= 0.5).sum()),
            "mask_iou_per_prompt": dict(zip(PROMPTS, ious))}
        print(f"bf16 vs fp32 check={check}:", res["bf16_vs_fp32"]["check" if check else "no_check"], flush=True)
    return res


def profile_model(scene_path: Path, device: str, out: Path, batch: int = 64) -> dict:
    """Where one ``predict`` call's time goes (torch.profiler): host-side op calls against device kernels.

    The default model ran at a few hundred tiles/s on an H200, far below what its arithmetic allows,
    so the question for the next GPU session is how much of a call is the host issuing ops.
    """
    import torch
    from torch.profiler import ProfilerActivity, profile

    from geopix_tiles.segmenters.registry import load_segmenter

    tiles = cut_tiles(scene_path, batch)
    seg = load_segmenter("default", device=device)
    seg.cuda_graphs = False  # the ops one by one: what a recorded call replaces
    for _ in range(3):
        seg.predict(tiles, PROMPTS)
    _sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    t0 = time.perf_counter()
    with profile(activities=activities) as prof:
        seg.predict(tiles, PROMPTS)
        _sync(device)
    wall = time.perf_counter() - t0
    events = prof.key_averages()
    table = events.table(sort_by="self_cuda_time_total" if device.startswith("cuda") else "self_cpu_time_total",
                         row_limit=40)
    (out / "profile.txt").write_text(table)
    res = {"batch": batch, "wall_s": wall, "op_calls": int(sum(e.count for e in events)),
           "device_s": float(sum(getattr(e, "self_device_time_total", 0) or getattr(e, "self_cuda_time_total", 0)
                                 for e in events)) / 1e6}
    print("profile", res, flush=True)
    return res


def cli_runs(scene_path: Path, device: str, work: Path, variants: list[dict], deadline: float) -> list[dict]:
    """The CLI per variant, sampled for CPU per engine thread and peak RSS; none started after ``deadline``."""
    out = []
    for v in variants:
        if time.monotonic() > deadline:
            out.append({**v, "error": "skipped: past the script's --deadline-s"})
            continue
        tag = "".join(f"_{k.split('_')[-1].lower()}{val}" for k, val in v["env"].items())
        d = work / f"cli_b{v['batch']}_t{v['threads']}_r{v['raster_threads']}{tag}"
        d.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "geopix_tiles", "segment", str(scene_path), "-o", str(d / "x.gpkg"),
               "--raster", str(d / "x.tif"), "--model", "default", "--device", device,
               "--overwrite", "--quiet"] + (["--batch-size", str(v["batch"])] if v["batch"] else [])
        for p in PROMPTS:
            cmd += ["-p", p]
        env = dict(os.environ)
        for key, var in (("threads", "GEOPIX_MODEL_THREADS"), ("raster_threads", "GEOPIX_RASTER_THREADS")):
            env.pop(var, None)
            if v[key]:
                env[var] = str(v[key])
        env.update(v["env"])
        peak: list[float] = []
        with open(d / "log.txt", "w") as log:
            per, wall, rc = sample(cmd, stdout=log, env=env, peak=peak, cwd=str(d))  # not the checkout: the installed package
        text = (d / "log.txt").read_text()
        m = SUMMARY.search(text)
        if rc != 0 or m is None:
            out.append({**v, "error": text[-1500:]})
            print("cli failed", v, text[-1500:], flush=True)
            continue
        r = {**v, "tiles": int(m.group(3)), "engine_s": float(m.group(4)), "engine_rate": float(m.group(5)),
             "polygons": int(m.group(6)), "wall_s": wall, "e2e_rate": int(m.group(3)) / wall,
             "peak_rss_mb": peak[0] if peak else None, "cpu_s_by_thread": per}
        out.append(r)
        print("cli", {k: r[k] for k in r if k != "cpu_s_by_thread"}, flush=True)
        print("   cpu by thread:", {k: round(x, 1) for k, x in sorted(per.items(), key=lambda kv: -kv[1])}, flush=True)
    return out


def engine_ceiling(work: Path, workers: list[int]) -> list[dict]:
    """The engine with no model cost: a CLI run's probability raster fed back as the scene, its bands
    returned as the probabilities (``bench_vector_workers.BandReplay``), per vectorising worker count.

    What the engine itself can do on this host (reading, blending, writing, vectorising real masks):
    the ceiling of the CLI's rate whatever the model.
    """
    from bench_vector_workers import run_once

    rasters = sorted(work.glob("cli_*/x.tif"))
    if not rasters:
        raise FileNotFoundError("no CLI output raster under the work folder: run the cli part first")
    out = []
    for w in workers:
        wall, engine_s, features, tiles = run_once(str(rasters[0]), w, work)
        out.append({"workers": w, "wall_s": wall, "engine_s": engine_s, "features": features, "tiles": tiles,
                    "engine_rate": tiles / engine_s})
        print("ceiling", out[-1], flush=True)
    return out


def training_chips(scene_path: Path, folder: Path, n: int = 32) -> Path:
    """``n`` 256 px chips from the scene, weakly labelled: NDVI > 0.3 vegetation, NDWI > 0.1 water."""
    import rasterio
    from rasterio.windows import Window

    from geopix_tiles.training.records import ImageRecord, Instance, write_jsonl

    folder.mkdir(parents=True, exist_ok=True)
    recs = []
    with rasterio.open(scene_path) as src:
        profile = src.profile
        profile.update(width=256, height=256, count=3, tiled=False, compress=None)
        for profile_key in ("blockxsize", "blockysize", "BIGTIFF", "NUM_THREADS"):
            profile.pop(profile_key, None)
        for i in range(n):
            win = Window((i % 8) * 256, (i // 8) * 256, 256, 256)
            a = src.read(window=win).astype(np.float32)
            red, green, nir = a[0], a[1], a[3]
            ndvi = (nir - red) / np.maximum(nir + red, 1)
            ndwi = (green - nir) / np.maximum(green + nir, 1)
            path = folder / f"chip{i}.tif"
            with rasterio.open(path, "w", **{**profile, "transform": src.window_transform(win)}) as dst:
                dst.write(a[:3].astype(np.uint8))
            insts = [Instance.from_mask(c, m.astype(np.uint8)) for c, m in (("vegetation", ndvi > 0.3),
                                                                            ("water", ndwi > 0.1)) if m.any()]
            recs.append(ImageRecord(str(path), insts))
    write_jsonl(recs, folder / "train.jsonl")
    return folder / "train.jsonl"


def train_rates(scene_path: Path, device: str, work: Path, batches: list[int], steps: int) -> list[dict]:
    """Whole trainer steps/s (items built on the fly) and model-only steps/s (one batch reused)."""
    import torch

    from geopix_tiles.training.config import DataSpec, ModelSpec, StageConfig, TrainConfig
    from geopix_tiles.training.dataset import collate
    from geopix_tiles.training.trainer import Trainer

    data = training_chips(scene_path, work / "chips")
    out = []
    for mp in ("no", "bf16"):
        for b in batches:
            cfg = TrainConfig(output_dir=str(work / f"train_{mp}_{b}"),
                              model=ModelSpec(checkpoint=str(ROOT / "geopix_tiles" / "data" / "default_model")),
                              data=DataSpec(train=str(data), val_fraction=0.0, samples_per_image=4, paraphrases=0.0,
                                            unrelated=0.0),
                              stages=[StageConfig("masks", 10_000, ["vision", "projector", "llm", "embeddings",
                                                                    "seg_head", "decoder", "memory"],
                                                  ["category_seg"], 1e-4)],
                              batch_size=b, checkpoint_every=0, progress=False, mixed_precision=mp).validate()
            tr = Trainer(cfg, device=device)
            losses = [tr.train_step(s)["loss"] for s in range(3)]  # warm-up
            _sync(device)
            t0 = time.perf_counter()
            for s in range(3, 3 + steps):
                losses.append(tr.train_step(s)["loss"])
            _sync(device)
            whole = steps / (time.perf_counter() - t0)
            ds = tr.dataset(0)
            batch = collate([ds[i] for i in range(b)], tr.model.processor)
            for _ in range(2):
                tr.optimizer.zero_grad(set_to_none=True)
                tr._forward(batch).loss.backward()
                tr.optimizer.step()
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                tr.optimizer.zero_grad(set_to_none=True)
                tr._forward(batch).loss.backward()
                tr.optimizer.step()
            _sync(device)
            alone = steps / (time.perf_counter() - t0)
            r = {"mixed_precision": mp, "batch": b, "steps_per_s": whole, "samples_per_s": whole * b,
                 "model_only_steps_per_s": alone, "first_loss": losses[0], "last_loss": losses[-1],
                 "finite": bool(np.isfinite(losses).all())}
            out.append(r)
            print("train", r, flush=True)
            tr.close()
            del tr
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
    return out


def _variant(text: str) -> dict:
    """``BATCH:MODEL_THREADS[:RASTER_THREADS][:NAME=VALUE...]``; 0 leaves the CLI's own default,
    ``NAME=VALUE`` sets an environment variable for that run (e.g. ``GEOPIX_CUDA_GRAPHS=0``)."""
    fields = text.split(":")
    env = dict(f.split("=", 1) for f in fields if "=" in f)
    parts = [int(x) for x in fields if "=" not in x] + [0, 0]
    return {"batch": parts[0], "threads": parts[1], "raster_threads": parts[2], "env": env}


def environment(device: str) -> dict:
    import torch

    env = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.machine(),
           "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
           "load": os.getloadavg()[0]}
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def render(results: dict, title: str = "") -> str:
    """The recorded JSON as Markdown tables (what ``benchmarks/results/gpu.md`` holds)."""
    env = results.get("environment", {})
    lines = [f"### {title or env.get('date', '')} - {env.get('gpu', 'no GPU')}, {env.get('cpus')} CPU cores, "
             f"torch {env.get('torch')}, Python {env.get('python')}, load {env.get('load', 0):.2f} at start", ""]
    scene = results.get("scene", {})
    if "size" in scene:
        lines += [f"Scene: {scene['size']} x {scene['size']} px, 4 bands, tiled from `{scene['source']}` "
                  f"({scene['mb']:.0f} MB DEFLATE); prompts {', '.join(results['prompts'])}; 256 px tiles, overlap 64.", ""]
    model = results.get("model", {})
    if "rates" in model:
        lines += [f"Model's own rate (`predict` on {model['tiles']} tiles, no engine):", "",
                  "| presence check | bf16 autocast | CUDA graphs | batch | tiles/s |", "|---|---|---|---|---|"]
        lines += [f"| {'on' if r.get('tile_check', True) else 'off'} | {'on' if r['autocast_bf16'] else 'off'} "
                  f"| {'on' if r.get('cuda_graphs') else 'off'} | {r['batch']} "
                  f"| {r['tiles_per_s']:.0f} |" for r in model["rates"]]
        for err in model.get("cuda_graph_errors", []):
            lines += ["", f"CUDA graph recording failed: `{err}`"]
        for key, label in (("gpu_fp32_vs_cpu", "GPU fp32 against the CPU (check on)"),
                           ("graph_vs_eager", "CUDA graphs (63-tile calls padded to 64) against op by op")):
            if key in model:
                m = model[key]
                lines += ["", f"{label}, {m['tiles']} tiles: max |diff| {m['max_abs']:.4f}, mean {m['mean_abs']:.5f}, "
                          f"{100 * m['within_1_255']:.2f} % of values within 1/255; mask IoU "
                          + ", ".join(f"{k} {v:.3f}" for k, v in m["mask_iou_per_prompt"].items())
                          + (f" (cuDNN TF32 {m['cudnn_allow_tf32']}, matmul TF32 {m['matmul_allow_tf32']})"
                             if "cudnn_allow_tf32" in m else "")]
        compared = model.get("bf16_vs_fp32", {})
        if "max_abs" in compared:  # the first run's format: one comparison, check on
            compared = {"check": compared}
        for check, m in compared.items():
            lines += ["", f"bf16 against fp32 on the GPU ({check.replace('_', ' ')}): max |diff| {m['max_abs']:.3f}, "
                      f"mean {m['mean_abs']:.4f}, {100 * m['within_1_255']:.1f} % within 1/255, "
                      f"{m.get('tiles_differing_by_0.5', '?')} tiles with a pixel moved by >= 0.5; mask IoU "
                      + ", ".join(f"{k} {v:.3f}" for k, v in m["mask_iou_per_prompt"].items())]
    cli = [c for c in results.get("cli", []) if isinstance(c, dict)] if isinstance(results.get("cli"), list) else []
    if cli:
        lines += ["", "CLI end to end (`segment --model default -o x.gpkg --raster x.tif`, CPU seconds per engine thread):",
                  "", "| batch | model threads | raster threads | environment | tiles | engine tiles/s | wall s "
                  "| end-to-end tiles/s | peak RSS MB | busiest threads (CPU s) |", "|---|---|---|---|---|---|---|---|---|---|"]
        for c in cli:
            name = lambda k, v: str(v) if v else "default"  # noqa: E731
            env_text = " ".join(f"{k}={v}" for k, v in c.get("env", {}).items()) or "-"
            if "error" in c:
                lines.append(f"| {name('b', c['batch'])} | {name('t', c['threads'])} | {name('r', c.get('raster_threads', 0))} "
                             f"| {env_text} | failed: {c['error'].splitlines()[-1][:80]} |")
                continue
            busy = sorted(c["cpu_s_by_thread"].items(), key=lambda kv: -kv[1])[:4]
            lines.append(f"| {name('b', c['batch'])} | {name('t', c['threads'])} | {name('r', c.get('raster_threads', 0))} "
                         f"| {env_text} | {c['tiles']} | {c['engine_rate']:.1f} | {c['wall_s']:.1f} | {c['e2e_rate']:.1f} "
                         f"| {c['peak_rss_mb']:.0f} | " + ", ".join(f"{k} {v:.1f}" for k, v in busy) + " |")
    ceiling = results.get("ceiling")
    if isinstance(ceiling, list) and ceiling:
        lines += ["", "The engine with no model cost (a CLI output raster fed back, its bands as the probabilities; "
                  "reading, blending, writing and vectorising only):", "",
                  "| vectorising workers | tiles | engine s | engine tiles/s | wall s | polygons |", "|---|---|---|---|---|---|"]
        lines += [f"| {c['workers']} | {c['tiles']} | {c['engine_s']:.1f} | {c['engine_rate']:.0f} | {c['wall_s']:.1f} "
                  f"| {c['features']} |" for c in ceiling]
    train = results.get("train")
    if isinstance(train, list) and train:
        lines += ["", "Training from the shipped checkpoint (category masks, weak NDVI/NDWI labels on scene chips):", "",
                  "| precision | batch | steps/s (data included) | samples/s | steps/s, model alone | loss first -> last |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {'bf16 autocast' if t['mixed_precision'] == 'bf16' else 'fp32'} | {t['batch']} | "
                  f"{t['steps_per_s']:.1f} | {t['samples_per_s']:.0f} | {t['model_only_steps_per_s']:.1f} | "
                  f"{t['first_loss']:.3f} -> {t['last_loss']:.3f} |" for t in train]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="folder for gpu.json and the run's files")
    ap.add_argument("--render", help="print a recorded gpu.json as Markdown and exit")
    ap.add_argument("--work", help="scratch folder for the scene and outputs (default: OUT/work)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", type=int, default=16000)
    ap.add_argument("--model-tiles", type=int, default=1024)
    ap.add_argument("--model-batches", default="8,64,256")
    ap.add_argument("--model-modes", default="cb,cf,nb,nf",
                    help="model timings: c/n = presence check on/off, b/f = bf16 autocast / fp32, then optionally "
                         "g/e = CUDA graphs / op by op (default: the segmenter's)")
    ap.add_argument("--cpu-reference", type=int, default=64, help="tiles compared against the CPU (fp32, check on)")
    ap.add_argument("--cli", default="0:0:0,0:0:1,8:1:0,64:2:0",
                    help="CLI variants BATCH:MODEL_THREADS[:RASTER_THREADS], comma-separated; 0 = the CLI's default")
    ap.add_argument("--ceiling-workers", default="0,4",
                    help="ceiling part: vectorising worker counts for the model-free engine runs")
    ap.add_argument("--train-batches", default="8,32")
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--parts", default="scene,model,profile,train,cli", help="in the order they run")
    ap.add_argument("--deadline-s", type=float, default=1e9, help="start no CLI variant after this many seconds")
    args = ap.parse_args()
    if args.render:
        print(render(json.loads(Path(args.render).read_text())))
        return 0
    if not args.out:
        ap.error("--out is required")
    out = Path(args.out)
    work = Path(args.work) if args.work else out / "work"
    work.mkdir(parents=True, exist_ok=True)
    parts = args.parts.split(",")
    results: dict = {"environment": environment(args.device), "prompts": PROMPTS}
    scene = work / f"naip_tiled_{args.size}.tif"

    def save() -> None:
        (out / "gpu.json").write_text(json.dumps(results, indent=1, default=float))

    deadline = time.monotonic() + args.deadline_s
    steps = [("scene", lambda: make_scene(scene, args.size)),
             ("model", lambda: model_rates(scene, args.device, args.model_tiles,
                                           [int(b) for b in args.model_batches.split(",")],
                                           [(m[0] == "c", m[1] == "b", {"g": True, "e": False}.get(m[2:3]))
                                            for m in args.model_modes.split(",")],
                                           args.cpu_reference)),
             ("cli", lambda: cli_runs(scene, args.device, work, [_variant(v) for v in args.cli.split(",")], deadline)),
             ("ceiling", lambda: engine_ceiling(work, [int(w) for w in args.ceiling_workers.split(",")])),
             ("profile", lambda: profile_model(scene, args.device, out)),
             ("train", lambda: train_rates(scene, args.device, work, [int(b) for b in args.train_batches.split(",")],
                                           args.train_steps))]
    by_name = dict(steps)
    for name in parts:
        fn = by_name[name]
        t0 = time.perf_counter()
        try:
            results[name] = fn()
        except Exception:  # noqa: BLE001 - one part failing must not lose the others' numbers
            results[name] = {"error": traceback.format_exc()[-3000:]}
            print(f"{name} failed:\n{results[name]['error']}", flush=True)
        print(f"== {name} done in {time.perf_counter() - t0:.1f} s", flush=True)
        save()
    print(render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
