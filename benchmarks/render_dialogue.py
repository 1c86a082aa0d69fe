"""Render short dialogues with the default model to PNG, to look at what the replies say and show.

    python benchmarks/render_dialogue.py            # -> benchmarks/results/dialogue/*.png

Three views: the shipped NAIP sample (2020, a date the segmentation model never saw), a
held-out Dubai chip (tile_7) and a held-out Open Cities chip. Each panel is one reply: the
question and answer as the title, the reply's masks over the image.
"""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "dialogue"
VAL = ROOT / "tests" / "data" / "default_val"

#: one colour per class, whatever the reply calls it
COLOURS = {"water": (0.1, 0.4, 1.0), "vegetation": (0.1, 0.8, 0.2), "building": (1.0, 0.45, 0.0),
           "road": (0.95, 0.9, 0.1), "land": (0.75, 0.55, 0.3), "cloud": (0.9, 0.1, 0.6)}


def _colour(prompt: str) -> tuple[float, float, float]:
    from geopix_tiles.segmenters.registry import load_answer_model

    model = load_answer_model("default", "cpu")
    for name, phrases in model.config.concepts.items():
        if prompt in phrases:
            return COLOURS.get(name, (1.0, 1.0, 1.0))
    return (1.0, 1.0, 1.0)


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.clip(np.moveaxis(image[:3], 0, -1), 0, 1)


def render(name: str, scene, window, questions) -> Path:
    import geopix_tiles

    chat = geopix_tiles.chat(scene, "default", window=window, device="cpu")
    replies = [chat.ask(q) for q in questions]
    return draw(name, chat.image, [(r.question, r.text, r.arrays, r.prompts) for r in replies])


def draw(name: str, image: np.ndarray, replies) -> Path:
    fig, axes = plt.subplots(1, len(replies), figsize=(4.6 * len(replies), 6.4))
    base = _rgb(image)
    for ax, (question, text, arrays, prompts) in zip(np.atleast_1d(axes), replies):
        img = base.copy()
        for m, prompt in zip(arrays, prompts):
            img[m] = 0.45 * img[m] + 0.55 * np.asarray(_colour(prompt))
        ax.imshow(img)
        ax.set_axis_off()
        ax.set_title("\n".join(textwrap.wrap(f"Q: {question}", 48) + textwrap.wrap(f"A: {text}", 48)),
                     fontsize=7.5, loc="left")
    fig.tight_layout()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> int:
    from rasterio.windows import Window

    naip = ROOT / "geopix_tiles" / "data" / "naip_sample.tif"
    print(render("naip_sample", naip, Window(0, 0, 512, 512),
                 ["Describe this image.", "Where is the water?", "And the vegetation next to it?",
                  "How many buildings are there?"]))
    dubai = next(VAL.glob("val_00_dubai*.tif"))
    print(render_chip("dubai_tile7", dubai, ["Describe this image.", "Where are the buildings?",
                                             "And the roads next to them?", "Is there any water?"]))
    cities = next(VAL.glob("val_01_open_cities*.tif"))
    print(render("open_cities", cities, None, ["How many buildings are there?", "Where is the vegetation?",
                                               "What kind of scene is this?"]))
    return 0


def render_chip(name: str, path: Path, questions) -> Path:
    """A chip without georeference (Dubai): the model's own chat, replies in pixels rather than m²."""
    import torch

    from geopix_tiles.model.dialogue import Turn, View
    from geopix_tiles.segmenters.registry import load_answer_model
    from geopix_tiles.training.records import read_jsonl

    model = load_answer_model("default", "cpu")
    rec = next(r for r in read_jsonl(VAL / "val.jsonl") if Path(r.image_path).name == path.name)
    image = np.ascontiguousarray(rec.load()[:3], dtype=np.float32)  # the scene-wide stretch it was cut with
    view = View(model, model.encode_images(torch.from_numpy(image)[None]))
    turns, replies = [], []
    for q in questions:
        r = model.chat(view, q, turns)
        m = r.masks.numpy()
        turns.append(Turn(r.question, r.task, r.question.target, m.any(0) if len(m) else None))
        replies.append((q, r.text, m, r.prompts))
    return draw(name, image, replies)


if __name__ == "__main__":
    raise SystemExit(main())
