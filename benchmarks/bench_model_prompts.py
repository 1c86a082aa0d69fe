"""How much does each extra prompt cost on a tile? (GeoPix tiny preset, CPU or CUDA)

Measures, in one process and with interleaved rounds (so background load hits every variant
alike), the wall time of answering P prompts on a batch of tiles:

* ``shared``   - GeoPixModel.segment: tile encoded once, image-prefix KV cache reused, all
                 prompts teacher-forced in one LLM forward (the production path);
* ``no_kv``    - same, but every (tile, prompt) sequence runs the full prompt incl. the image
                 tokens through the LLM (training-style forward), i.e. no prefix reuse;
* ``per_prompt`` - one segment() call per prompt: the tile is re-encoded for every prompt;
* ``decode``   - KV-cached greedy decoding of the SEG answer (generate path) for one prompt,
                 i.e. what sampling token by token would cost instead of teacher forcing.

Results are ratios to ``shared`` with one prompt, measured in the same run. Usage::

    python benchmarks/bench_model_prompts.py [--tile 256] [--batch 1] [--rounds 15] [--device cpu]
        [--write benchmarks/results/model_prompts.md]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from geopix_tiles.model import GeoPixConfig, GeoPixModel

PROMPTS = ["buildings", "water", "storage tanks", "roads", "ships in the harbour", "trees", "airplanes",
           "the large white roofs near the river"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--write", default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = GeoPixModel(GeoPixConfig.tiny()).eval().to(device)
    x = torch.rand(args.batch, 3, args.tile, args.tile, device=device)
    proc = model.processor

    def shared(p: int) -> None:
        model.segment(x, PROMPTS[:p])

    def no_kv(p: int) -> None:
        imgs = x.repeat_interleave(p, 0)
        batch = proc.build_segmentation_batch(imgs, [[q] for _ in range(args.batch) for q in PROMPTS[:p]],
                                              [torch.zeros(1, args.tile, args.tile)] * (args.batch * p))
        batch.pop("gt_masks")
        with torch.no_grad():
            enc = model.encode_images(x)  # encode once, then expand per prompt: only the KV reuse differs
            ids = batch["input_ids"].to(device)
            tile_index = torch.arange(args.batch, device=device).repeat_interleave(p)
            emb = model.embed_inputs(enc, ids, tile_index=tile_index)
            from geopix_tiles.model.llm import decoder_forward

            hidden, _ = decoder_forward(model.llm, emb, batch["attention_mask"].to(device))
            states, rows = model._seg_hidden(ids, hidden)
            model.mask_predictor(enc.scale_feats, model.seg_head(states), tile_index[rows], enc.padded, enc.pixel_feats)

    def per_prompt(p: int) -> None:
        for q in PROMPTS[:p]:
            model.segment(x, [q])

    forced = proc.answer_ids(proc.segmentation_answer(), eos=True)

    def force(generated: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        out = torch.full_like(logits, float("-inf"))
        out[:, forced[generated.shape[1]]] = 0
        return out

    def decode(p: int) -> None:
        for b in range(args.batch):
            for q in PROMPTS[:p]:
                model.generate(x[b:b + 1], [proc.segmentation_question(q)], logits_processor=force)

    variants = {("shared", 1): lambda: shared(1), ("shared", 8): lambda: shared(8),
                ("no_kv", 8): lambda: no_kv(8), ("per_prompt", 8): lambda: per_prompt(8),
                ("decode", 1): lambda: decode(1)}
    times: dict[tuple[str, int], list[float]] = {k: [] for k in variants}
    for fn in variants.values():  # warm-up (allocator, oneDNN kernels)
        fn(), fn()
    for _ in range(args.rounds):
        for key, fn in variants.items():
            _sync(device)
            t = time.perf_counter()
            fn()
            _sync(device)
            times[key].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med[("shared", 1)]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({cpu}), {torch.get_num_threads()} threads"
    lines = [
        f"### {dt.date.today().isoformat()} - {dev}",
        "",
        f"tiny preset, tile {args.tile} px, batch {args.batch} tile(s), median of {args.rounds} interleaved rounds, "
        f"torch {torch.__version__}, load average at start {os.getloadavg()[0]:.1f}; decoder_dim "
        f"{model.config.decoder_dim}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters",
        "",
        "| variant | prompts | median ms | ratio to shared x1 |",
        "|---|---:|---:|---:|",
    ]
    for (name, p), v in med.items():
        lines.append(f"| {name} | {p} | {v * 1000:.1f} | {v / base:.2f} |")
    lines += ["", f"**8 prompts / 1 prompt (shared path): {med[('shared', 8)] / base:.2f}x** (goal < 2x); "
              f"per-prompt re-encoding would cost {med[('per_prompt', 8)] / base:.2f}x, "
              f"no KV-prefix reuse {med[('no_kv', 8)] / base:.2f}x; "
              f"KV-cached decoding of the SEG answer costs {med[('decode', 1)] / base:.2f}x teacher forcing.", ""]
    text = "\n".join(lines)
    print(text)
    if args.write:
        with open(args.write, "a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
