"""Presence in conversations over whole scenes: the presence check judged per model tile or on the whole view.

``segment`` applies the presence check to each model tile. A conversation over a window of many
tiles used to check its replies a second time on the whole window shrunk to one tile (the
view's own encoding), which on the NAIP sample vetoed the farm buildings ``segment`` keeps.
Since 2026-12-06 a tiled conversation's words follow the tiles' verdicts (clouds, which
``segment`` never vetoes, keep the whole view's check). This script asks "Is there any X?" of
whole scenes never trained on, both ways, in one pass, and scores it against their labels:
Dubai tile_7 (9 whole images, 5 classes, human labels; read at most 1024 px on the longer
side, as a conversation does) and xBD Joplin (buildings in every image).

    python benchmarks/chat_presence.py [--write benchmarks/results/chat_presence.md]
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

RULES = ("whole view", "tiles")


def _ask_both(chat, questions: list[tuple[str, str]]) -> dict[str, list[bool]]:
    """``{rule: [said yes]}`` for each ``(class, phrase)``: the tiles' rule (shipped), then the whole view's."""
    from geopix_tiles.model.dialogue import View

    said = {"tiles": [chat.ask(f"Is there any {p}?").text.startswith("Yes") for _, p in questions]}
    view = chat.view
    view.checks.clear()
    view._clouds = None
    view.doubted = types.MethodType(View.doubted, view)  # the rule before: the view shrunk to one tile
    said["whole view"] = [chat.ask(f"Is there any {p}?").text.startswith("Yes") for _, p in questions]
    return said


def dubai(scores: dict, errors: dict) -> None:
    from PIL import Image
    from rasterio.errors import NotGeoreferencedWarning

    import geopix_tiles
    from geopix_tiles.model.answer import present
    from geopix_tiles.training.catalog import DUBAI_COLOURS
    from flips import CLASSES, SHARED

    warnings.simplefilter("ignore", NotGeoreferencedWarning)
    questions = list(CLASSES.items())
    for img in sorted(glob.glob(str(SHARED / "dubai_aerial" / "tile_7" / "images" / "*.jpg"))):
        chat = geopix_tiles.chat(img, "default", allow_no_georef=True, device="cpu")
        h, w = chat.image.shape[-2:]
        label = Image.open(img.replace("images", "masks").replace(".jpg", ".png")).convert("RGB")
        label = np.asarray(label.resize((w, h), Image.NEAREST)).astype(int)
        said = _ask_both(chat, questions)
        for k, (c, _) in enumerate(questions):
            gt = np.all(label == DUBAI_COLOURS[c], -1)
            truth = present(int(gt.sum()), float(gt.mean()))
            for rule in RULES:
                scores.setdefault(rule, {}).setdefault(c, []).append(said[rule][k] == truth)
                if said[rule][k] != truth:
                    errors.setdefault(rule, []).append(f"{Path(img).stem} {c}: said {'yes' if said[rule][k] else 'no'}")


def joplin(scores: dict, errors: dict, work: Path) -> None:
    import geopix_tiles
    from resolution import XBD, georeferenced

    for label_file in sorted((XBD / "labels").glob("*.json")):
        path, truth = georeferenced(label_file, work)
        said = _ask_both(geopix_tiles.chat(path, "default", device="cpu"), [("building", "buildings")])
        for rule in RULES:
            scores.setdefault(rule, {}).setdefault("joplin building", []).append(said[rule][0] == bool(truth.any()))
            if said[rule][0] != bool(truth.any()):
                errors.setdefault(rule, []).append(f"{label_file.stem} building: said {'yes' if said[rule][0] else 'no'}")


def main() -> int:
    from flips import SHARED

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", default=str(ROOT / "benchmarks" / "results" / "chat_presence.md"))
    args = ap.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"needs {SHARED} (the shared data)")
    import torch

    torch.set_num_threads(2)
    load, t0 = os.getloadavg()[0], time.time()
    scores: dict = {}
    errors: dict = {}
    dubai(scores, errors)
    with tempfile.TemporaryDirectory() as d:
        joplin(scores, errors, Path(d))
    cols = sorted(next(iter(scores.values())))
    lines = [f"### {time.strftime('%Y-%m-%d %H:%M', time.gmtime(t0))} UTC - x86_64, {os.cpu_count()} cores, "
             f"load {load:.2f} at start, {time.time() - t0:.0f} s",
             "\"Is there any X?\" through `geopix_tiles.chat` (default model), right answers / questions; "
             "Dubai tile_7 truth: the class covers >= 16 px and 0.25 % of the view (the reply rule).", "",
             "| rule | " + " | ".join(cols) + " | all |", "|---|" + "---|" * (len(cols) + 1)]
    for rule in RULES:
        row = scores[rule]
        every = [x for c in cols for x in row[c]]
        lines.append(f"| {rule} | " + " | ".join(f"{sum(row[c])}/{len(row[c])}" for c in cols)
                     + f" | **{sum(every)}/{len(every)} = {np.mean(every):.3f}** |")
    lines.append("")
    for rule in RULES:
        lines.append(f"Wrong with the {rule} rule: " + ("; ".join(errors.get(rule, [])) or "none") + ".")
    from report import publish

    return publish("\n".join(lines) + "\n", args.write, f"{__doc__.splitlines()[0]}\n\n`benchmarks/chat_presence.py`")


if __name__ == "__main__":
    raise SystemExit(main())
