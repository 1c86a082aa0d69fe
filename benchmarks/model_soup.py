"""Average the weights of checkpoints of one architecture (a uniform "model soup"), as a trial checkpoint.

Why: every continuation of default_v24 (v27-v31, v36, v37; different seeds and augmentations, all anchored to v24)
moved the same way - xBD Joplin and Dubai's water up, Landsat-7 clouds down and UC Merced false clouds up - with a
seed's worth of scatter around that line. Averaging siblings of one parent in weight space often keeps what they
share and cancels what they do not (Wortsman et al., 2022), so the soup tests whether any of the trade is noise.
Reads and writes safetensors only; the first checkpoint's config and tokenizer are copied.

    python benchmarks/model_soup.py runs/soup_a/model runs/default_v27/model runs/default_v28/model ...
    python benchmarks/refit_presence_check.py runs/soup_a/model runs/soup_a/checked
    python benchmarks/compare_models.py runs/soup_a/checked
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("models", nargs="+")
    args = ap.parse_args()
    from safetensors.torch import load_file, save_file

    out, sources = Path(args.out), [Path(m) for m in args.models]
    states = [load_file(str(m / "model.safetensors")) for m in sources]
    keys = states[0].keys()
    if any(s.keys() != keys for s in states):
        print("model_soup: the checkpoints do not share one architecture (their weight names differ)", file=sys.stderr)
        return 2
    soup = {k: (sum(s[k].double() for s in states) / len(states)).to(states[0][k].dtype)
            if states[0][k].is_floating_point() else states[0][k].clone() for k in keys}
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(sources[0], out)
    save_file(soup, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "soup.json").write_text(json.dumps([str(m) for m in sources], indent=1))
    print(f"averaged {len(states)} checkpoints -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
