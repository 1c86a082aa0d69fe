"""What the presence check's tile veto does to ``segment``'s masks on unseen scenes. Measured.

The default model's segmenter drops a class from a model tile when the tile's mask says "yes"
but the presence check does not take the pixels under it for the class (clouds excepted; see
``model/presence_check.py: veto_tiles``). Scored through the product's ``segment`` with
``presence_check`` on (the default) and off, on the same held-out sets as ``benchmarks/flips.py``
(Dubai tile_7 whole images, 5 classes; xBD Joplin buildings) and the Landsat-7 sample's clouds
(``benchmarks/landsat_clouds.py``: weak label, clouds are never vetoed, so they must not move).

    python benchmarks/tile_check.py [--write benchmarks/results/tile_check.md]
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


def main() -> int:
    from flips import SHARED, dubai, joplin, write_table
    from landsat_clouds import score

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", default=str(ROOT / "benchmarks" / "results" / "tile_check.md"))
    args = ap.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"needs {SHARED} (the shared data)")
    import torch

    torch.set_num_threads(2)
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
