"""Would a neighbour-consistent tile veto keep objects whole without giving back the check's gain? Measured.

``segment``'s presence check cuts a class from a model tile whose pixels do not look like it
(``model/presence_check.py: veto_tiles``), each tile judged alone. On the GeoPix demo image the check
cuts the middle of a tree line (p 0.004-0.05) while the tiles above and below keep it: tile-shaped
holes. The rule tried here lets a neighbour speak for a doubted tile: a doubted tile keeps its mask
where a neighbouring tile that the check *confirmed* for the class paints the same pixels of their
shared overlap (at least ``MIN_AGREE`` pixels, and optionally a share of the doubted mask):

* ``one hop``: only a confirmed neighbour rescues;
* ``chain``: a rescued tile rescues its own neighbours in turn (objects judged as wholes).

Building it into the engine needs the blender to hold a row of tiles until the next row's verdicts
exist, so it is simulated first: one ``segment`` run per image records every tile's unvetoed
probabilities and verdict (the product's own engine, with the blender untouched), then the rule
decides which vetoes stand and ``segment`` runs again with those vetoes applied to the recorded
probabilities. The shipped rule's row must reproduce ``compare_models.py``'s Dubai tile_7 figure.

    python benchmarks/tile_check_neighbours.py [--write benchmarks/results/tile_check.md] [--png PATH]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

MIN_AGREE = 64  # pixels two tiles' masks must share (an 8 x 8 patch of their common ground)
RULES = {"per tile (shipped)": None, "one hop": ("hop", 0.0), "one hop, >= 0.2 of the doubted mask shared": ("hop", 0.2),
         "chain": ("chain", 0.0)}


class Recorder:
    """Every model tile's unvetoed probabilities and verdicts, by its place in the scene, and replay.

    The engine tells the segmenter nothing of where a tile is; the batches' tiles are looked up by
    the identity of the pixel array the engine hands to ``predict`` (benchmark only).
    """

    def __init__(self) -> None:
        import geopix_tiles.core.engine as engine
        import geopix_tiles.model.presence_check as pc

        self.tiles: dict[tuple[int, int], tuple] = {}
        self.replay: dict[tuple[int, int], list[int]] | None = None
        self._batches: dict[int, tuple] = {}
        self._here = threading.local()
        rows, predict, veto = engine.row_batches, engine.predict, pc.veto_tiles

        def row_batches(*a, **k):
            for b in rows(*a, **k):
                b.pixels, b.scale = b.model_pixels(), None  # the array predict will be handed (reader batches are raw)
                self._batches[id(b.pixels)] = (b.pixels, b.tiles)
                yield b

        def located_predict(seg, pixels, prompts):
            self._here.tiles = self._batches.pop(id(pixels))[1]
            return predict(seg, pixels, prompts)

        def recorded_veto(check, feats, probs, classes, doubts=None):
            tiles = self._here.tiles
            if self.replay is None:
                doubt = pc.tile_doubts(check, feats, probs, classes)
                _, said = pc.tile_yes(probs)
                for i, t in enumerate(tiles):
                    self.tiles[(t.y, t.x)] = (t, probs[i] > 0.5, doubt[i].clone(), said[i].clone())
                return veto(check, feats, probs, classes, doubt)
            out = probs.clone()
            for i, t in enumerate(tiles):
                for j in self.replay.get((t.y, t.x), ()):
                    out[i, j] = 0.0
            return out

        engine.row_batches, engine.predict, pc.veto_tiles = row_batches, located_predict, recorded_veto

    def agree(self, a: tuple, b: tuple, j: int) -> int:
        """Pixels of their common ground that both tiles paint as prompt ``j``."""
        ta, tb = a[0], b[0]
        y0, y1 = max(ta.y, tb.y), min(ta.y + ta.height, tb.y + tb.height)
        x0, x1 = max(ta.x, tb.x), min(ta.x + ta.width, tb.x + tb.width)
        if y1 <= y0 or x1 <= x0:
            return 0
        pa = a[1][j, y0 - ta.y:y1 - ta.y, x0 - ta.x:x1 - ta.x]
        pb = b[1][j, y0 - tb.y:y1 - tb.y, x0 - tb.x:x1 - tb.x]
        return int((pa & pb).sum())

    def vetoes(self, rule: tuple | None) -> dict[tuple[int, int], list[int]]:
        """The vetoes that stand under ``rule`` (None: every doubted tile, as shipped)."""
        out: dict[tuple[int, int], list[int]] = {}
        n_prompts = next(iter(self.tiles.values()))[2].shape[0]
        for j in range(n_prompts):
            doubted = {k for k, v in self.tiles.items() if bool(v[2][j])}
            kept: set = set()
            if rule is not None:
                kind, share = rule
                confirmed = [k for k, v in self.tiles.items() if bool(v[3][j]) and not bool(v[2][j])]

                def rescues(src, dst) -> bool:
                    need = max(MIN_AGREE, share * int(self.tiles[dst][1][j].sum()))
                    return self.agree(self.tiles[src], self.tiles[dst], j) >= need

                frontier = list(confirmed)
                while frontier:
                    src = frontier.pop()
                    for dst in sorted(doubted - kept):
                        if rescues(src, dst):
                            kept.add(dst)
                            if kind == "chain":
                                frontier.append(dst)
            for k in doubted - kept:
                out.setdefault(k, []).append(j)
        return out


def run(recorder: Recorder, path: Path, prompts: list[str], work: Path) -> dict[str, tuple[np.ndarray, int]]:
    """``segment``'s painted masks (``[P, H, W]`` bool) and the number of vetoes, per rule."""
    import rasterio

    from geopix_tiles import segment

    out = {}
    recorder.tiles.clear()
    for name, rule in RULES.items():
        recorder.replay = None if rule is None else recorder.vetoes(rule)
        segment(path, prompts, model="default", raster_out=work / "out.tif", device="cpu", vectorize=False,
                collect=False, overwrite=True, allow_no_georef=True)
        n = sum(int(v[2].sum()) for v in recorder.tiles.values()) if rule is None else \
            sum(len(v) for v in recorder.replay.values())
        with rasterio.open(work / "out.tif") as r:
            out[name] = (r.read() >= 128, n)
    recorder.replay = None
    return out


def main() -> int:
    from PIL import Image
    from rasterio.errors import NotGeoreferencedWarning

    from flips import CLASSES, SHARED, add_dubai_counts, dubai_images, dubai_iou, write_rgb

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", help="a Markdown file to append the table to")
    ap.add_argument("--png", default=str(ROOT / "benchmarks" / "results" / "tile_check_neighbours.png"))
    args = ap.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"needs {SHARED} (the shared data)")
    import torch

    torch.set_num_threads(2)
    warnings.simplefilter("ignore", NotGeoreferencedWarning)
    load = os.getloadavg()[0]
    recorder = Recorder()
    inter = {r: dict.fromkeys(CLASSES, 0) for r in RULES}
    union = {r: dict.fromkeys(CLASSES, 0) for r in RULES}
    cuts = dict.fromkeys(RULES, 0)
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        for img, rgb, label in dubai_images():
            write_rgb(work / "dubai.tif", rgb)
            for name, (painted, n) in run(recorder, work / "dubai.tif", list(CLASSES.values()), work).items():
                cuts[name] += n
                add_dubai_counts(inter[name], union[name], painted, label)
            print(Path(img).name, flush=True)
        demo = np.asarray(Image.open(SHARED / "geopix_demo" / "1.jpg").convert("RGB")).transpose(2, 0, 1)
        write_rgb(work / "demo.tif", demo)
        demo_masks = run(recorder, work / "demo.tif", ["vegetation"], work)
    lines = ["| tile veto | vetoes standing (Dubai tile_7, all prompts) | " + " | ".join(CLASSES) + " | mean | "
             "GeoPix demo 1: vegetation share |", "|---|---|" + "---|" * (len(CLASSES) + 2)]
    for name in RULES:
        iou = dubai_iou(inter[name], union[name])
        lines.append(f"| {name} | {cuts[name]} | " + " | ".join(f"{iou[c]:.3f}" for c in CLASSES)
                     + f" | **{iou['mean']:.3f}** | {demo_masks[name][0][0].mean():.3f} |")
    print(f"x86_64, {os.cpu_count()} cores, load {load:.2f} at start; `python benchmarks/tile_check_neighbours.py`")
    print("\n".join(lines))
    if args.write:
        with open(args.write, "a") as f:
            f.write("\n" + "\n".join(lines) + "\n")
    _picture(Path(args.png), demo.transpose(1, 2, 0), {k: v[0][0] for k, v in demo_masks.items()})
    return 0


def _picture(path: Path, rgb: np.ndarray, masks: dict[str, np.ndarray]) -> None:
    """The demo image's vegetation under each rule: where the tile-shaped holes go and what comes back."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(masks), figsize=(3.2 * len(masks), 3.9))
    for ax, (name, m) in zip(axes, masks.items()):
        over = rgb.astype(float) / 255
        over[m] = 0.5 * over[m] + 0.5 * np.array([0.1, 0.9, 0.1])
        ax.imshow(over)
        ax.set_title(f"{name}\nvegetation {m.mean():.1%}", fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=68)
    plt.close(fig)
    from PIL import Image

    Image.open(path).convert("RGB").quantize(colors=256).save(path, optimize=True)  # a record, kept small in git
    print("wrote", path)


if __name__ == "__main__":
    raise SystemExit(main())
