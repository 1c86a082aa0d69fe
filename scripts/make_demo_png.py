"""Draw the README picture: ``geopix-tiles demo`` output over the NAIP sample -> docs/demo.png.

    geopix-tiles demo --out-dir outputs && python scripts/make_demo_png.py [OUTPUTS_DIR]
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geopix_tiles.plot import overlay  # noqa: E402


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "outputs"
    scene = ROOT / "geopix_tiles" / "data" / "naip_sample.tif"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    overlay(scene, None, ax=axes[0], legend=False, title="NAIP sample (R,G,B)")
    overlay(scene, str(out / "naip_sample.tif"), ax=axes[1], max_pixels=700,
            title="--model default: water, vegetation, buildings, roads")
    fig.tight_layout()
    dst = ROOT / "docs" / "demo.png"
    fig.savefig(dst, dpi=60)
    print(dst, dst.stat().st_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
