"""How the scene head's accuracy falls as the pixels it sees get coarser than UC Merced's 0.3 m.

The scene head (21 UC Merced classes) was fitted on 0.3 m chips. A conversation shows it the
whole view shrunk to one model tile, so a 1024 px window of 0.3 m reaches it at 1.2 m per pixel
and the NAIP sample (5 m, 934 px) at ~18 m. Here the held-out chips (60-79 of each class) are
averaged down by ``k`` and stretched back to 256 px (the detail of ``0.3 k`` m pixels, the same
field of view), or for ``k`` < 1 their centre ``256 k`` px stretched to 256 (finer pixels, a smaller
field), and the head's top-1 accuracy is measured for each ``k``.

    python benchmarks/scene_pixel_size.py [--write benchmarks/results/scene_pixel_size.md]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
FACTORS = (0.25, 0.5, 1, 2, 4, 8, 16)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uc-merced", default=str(ROOT.parent / "shared" / "data" / "uc_merced"))
    ap.add_argument("--write", default=str(ROOT / "benchmarks" / "results" / "scene_pixel_size.md"))
    args = ap.parse_args()
    if not Path(args.uc_merced).is_dir():
        raise SystemExit(f"needs {args.uc_merced} (the shared data)")
    import torch
    import torch.nn.functional as F

    from geopix_tiles.model import GeoPixModel
    from geopix_tiles.training.dialogue_heads import chip_pixels, scene_split

    torch.set_num_threads(2)
    load, t0 = os.getloadavg()[0], time.time()
    model = GeoPixModel.from_pretrained("default").eval()
    chips = scene_split(args.uc_merced)["eval"]
    right = dict.fromkeys(FACTORS, 0)
    with torch.no_grad():
        for i in range(0, len(chips), 32):
            part = chips[i:i + 32]
            x = torch.from_numpy(np.stack([chip_pixels(p, 256) for p, _ in part]).astype(np.float32))
            y = torch.tensor([k for _, k in part])
            for f in FACTORS:
                if f < 1:  # finer: the centre 256 f px stretched to 256 (the same pixels over a smaller field)
                    c = int(256 * f)
                    o = (256 - c) // 2
                    v = F.interpolate(x[..., o:o + c, o:o + c], size=(256, 256), mode="bilinear", align_corners=False)
                else:
                    v = x if f == 1 else F.interpolate(F.avg_pool2d(x, f), size=(256, 256), mode="bilinear",
                                                       align_corners=False)
                probs = model.scene_probabilities(encoding=model.encode_images(v))
                right[f] += int((probs.argmax(-1).cpu() == y).sum())
    n = len(chips)
    # windows of several tiles: 2x2 mosaics of four held-out chips of one class (0.3 m, 512 px), shown to the head
    # shrunk to one tile (as conversations did) or tile by tile with the probabilities averaged (as they do now)
    by_class: dict[int, list] = {}
    for p, k in chips:
        by_class.setdefault(k, []).append(p)
    mosaic_right = {"shrunk to one tile": 0, "mean of its tiles": 0}
    mosaics = 0
    with torch.no_grad():
        for k, paths in sorted(by_class.items()):
            for i in range(0, len(paths) - 3, 4):
                four = torch.from_numpy(np.stack([chip_pixels(p, 256) for p in paths[i:i + 4]]).astype(np.float32))
                big = torch.cat([torch.cat([four[0], four[1]], -1), torch.cat([four[2], four[3]], -1)], -2)[None]
                small = F.interpolate(big, size=(256, 256), mode="bilinear", antialias=True, align_corners=False)
                shrunk = model.scene_probabilities(encoding=model.encode_images(small))[0]
                mean = model.scene_probabilities(encoding=model.encode_images(four)).mean(0)
                mosaic_right["shrunk to one tile"] += int(int(shrunk.argmax()) == k)
                mosaic_right["mean of its tiles"] += int(int(mean.argmax()) == k)
                mosaics += 1
    lines = [f"### {time.strftime('%Y-%m-%d %H:%M', time.gmtime(t0))} UTC - x86_64, {os.cpu_count()} cores, load "
             f"{load:.2f} at start, {time.time() - t0:.0f} s; default model, {n} held-out UC Merced chips", "",
             "| pixel the head sees (m) | " + " | ".join(f"{0.3 * f:.2g}" for f in FACTORS) + " |",
             "|---|" + "---|" * len(FACTORS),
             "| top-1 accuracy (21 classes) | " + " | ".join(f"{right[f] / n:.3f}" for f in FACTORS) + " |", "",
             f"{mosaics} windows of 2 x 2 held-out chips of one class (512 px at 0.3 m), top-1: "
             + ", ".join(f"{k} {v / mosaics:.3f}" for k, v in mosaic_right.items()) + "."]
    from report import publish

    return publish("\n".join(lines) + "\n", args.write, f"{__doc__.splitlines()[0]}\n\n`benchmarks/scene_pixel_size.py`")


if __name__ == "__main__":
    raise SystemExit(main())
