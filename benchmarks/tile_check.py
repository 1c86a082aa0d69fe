"""What the presence check's tile veto does to ``segment``'s masks on unseen scenes. Measured.

The default model's segmenter drops a class from a model tile when the tile's mask says "yes"
but the presence check does not take the pixels under it for the class (clouds excepted; see
``model/presence_check.py: veto_tiles``). Scored through the product's ``segment`` with
``presence_check`` on (the default) and off, on the same held-out sets as ``benchmarks/flips.py``
(Dubai tile_7 whole images, 5 classes; xBD Joplin buildings) and the Landsat-7 sample's clouds
(``benchmarks/landsat_clouds.py``: weak label, clouds are never vetoed, so they must not move).

    python benchmarks/tile_check.py [--write benchmarks/results/tile_check.md]
    python benchmarks/tile_check.py --verdicts   # every tile's verdict on the Landsat-7 sample and Dubai tile_7

``--verdicts`` logs, for every model tile whose mask says "yes" under the reply rule, the class, the mask's
share of the tile, the check's probability and whether the tile was cut, and summarises them per scene
and class (how large the cut masks were): the figures behind ``MAX_VETO_SHARE`` / ``SURE_NO``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def verdicts() -> int:
    """Every tile verdict of ``segment`` (check on) on the Landsat-7 sample and Dubai tile_7, summarised."""
    from collections import defaultdict

    import numpy as np

    import geopix_tiles.model.presence_check as pc
    from flips import dubai
    from landsat_clouds import score

    log: list[tuple] = []
    scene = ["?"]
    shipped = pc.tile_doubts

    def logged(check, feats, probs, classes):  # the shipped verdicts, and what they were made of
        out = shipped(check, feats, probs, classes)
        for j, c in enumerate(classes):
            if c not in check.classes or c in pc.TILE_CHECK_SKIPS:
                continue
            share, said = (t[:, 0] for t in pc.tile_yes(probs[:, j:j + 1]))
            if bool(said.any()):
                p = check.confirm(feats, probs[:, j:j + 1], [c])[:, 0]
                for b in said.nonzero()[:, 0].tolist():
                    log.append((scene[0], c, float(share[b]), float(p[b]), bool(out[b, j])))
        return out

    pc.tile_doubts = logged  # veto_tiles looks it up at call time
    try:
        with tempfile.TemporaryDirectory() as d:
            scene[0] = "Landsat-7 sample (water)"
            score("default")
            scene[0] = "Dubai tile_7"
            dubai(1, Path(d))
    finally:
        pc.tile_doubts = shipped
    groups = defaultdict(list)
    for row in log:
        groups[row[:2]].append(row[2:])
    print(f"| scene | class | tiles saying yes | cut | largest share cut | check of the cut (min-max) | "
          f"doubted over {pc.MAX_VETO_SHARE} of the tile, kept |")
    print("|---|---|---|---|---|---|---|")
    for (sc, c), rows in sorted(groups.items()):
        share, p, cut = (np.array(v) for v in zip(*rows))
        kept_big = int(((share > pc.MAX_VETO_SHARE) & (p < 0.5) & ~cut).sum())
        span = f"{p[cut].min():.2f}-{p[cut].max():.2f}" if cut.any() else "-"
        print(f"| {sc} | {c} | {len(rows)} | {int(cut.sum())} | {share[cut].max() if cut.any() else 0:.2f} | {span} | "
              f"{kept_big} |")
    return 0


def main() -> int:
    from flips import SHARED, dubai, joplin, write_table
    from landsat_clouds import score

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", default=str(ROOT / "benchmarks" / "results" / "tile_check.md"))
    ap.add_argument("--verdicts", action="store_true", help="log and summarise every tile verdict instead")
    args = ap.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"needs {SHARED} (the shared data)")
    import torch

    torch.set_num_threads(2)
    if args.verdicts:
        return verdicts()
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for check in (False, True):
            iou, dubai_s = dubai(1, Path(d), presence_check=check)
            building, _ = joplin(1, Path(d), presence_check=check)
            cloud_iou = score("default", presence_check=check)["cloud_iou_vs_weak"]
            rows.append((check, iou, dubai_s, [f"{building:.3f}", f"{cloud_iou:.3f}"]))
            print(check, {k: round(v, 3) for k, v in iou.items()}, round(building, 3), round(cloud_iou, 3), flush=True)
    write_table(Path(args.write), "Presence check tile veto in `segment`", "tile_check.py", load,
                "Pixel IoU on scenes never trained on; Landsat-7 clouds against a weak white-pixel label.",
                "presence_check", ["xBD Joplin buildings", "Landsat-7 clouds (weak)"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
