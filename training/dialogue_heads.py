"""Train the dialogue heads of a checkpoint: scene classes on UC Merced, question intents on templates.

Both heads sit on features the model already computes (pooled tower features; the MiniLM
embedding of the question), so they train in minutes on a CPU after the segmentation model
and never move its weights: masks stay bit-identical.

* **Scene head** - UC Merced Land Use (public domain, 21 classes x 80 chips at 0.3 m). Chips
  ``00``-``59`` of each class train, ``60``-``79`` are held out (the dataset has no locations,
  so no spatial split is possible; the held-out numbers are in-domain). Chips are read with
  the same scene-wide stretch the chat path uses (:class:`geopix_tiles.answers.pixels.FilePixelSource`),
  with the four flips/rotations as augmentation.
* **Intent head** - questions written from templates x targets (class synonyms, scene
  classes, unrelated concepts) with optional relations ("next to them"), read through the
  same target masking as inference (:func:`geopix_tiles.model.dialogue.question_parts`). The
  last two templates of each intent are held out.

Run ``python -m geopix_tiles.training.dialogue_heads CHECKPOINT OUT --uc-merced DIR``.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["UC_MERCED_NAMES", "INTENT_TEMPLATES", "intent_samples", "scene_split", "train_scene_head",
           "train_intent_head", "add_dialogue_heads", "concept_config"]

UC_MERCED_NAMES = {
    "agricultural": "agricultural field", "airplane": "airplane", "baseballdiamond": "baseball diamond",
    "beach": "beach", "buildings": "built-up area", "chaparral": "chaparral shrubland", "denseresidential": "dense residential area",
    "forest": "forest", "freeway": "freeway", "golfcourse": "golf course", "harbor": "harbor",
    "intersection": "intersection", "mediumresidential": "medium residential area",
    "mobilehomepark": "mobile home park", "overpass": "overpass", "parkinglot": "parking lot", "river": "river",
    "runway": "runway", "sparseresidential": "sparse residential area", "storagetanks": "storage tanks",
    "tenniscourt": "tennis court",
}

#: per intent; the last two of each list are held out (never trained on)
INTENT_TEMPLATES: dict[str, list[str]] = {
    "presence": ["Is there any {t}?", "Are there {t} in this image?", "Do you see any {t}?",
                 "Does this tile contain {t}?", "Is there {t} here?", "Can you find any {t} in the scene?",
                 "Any {t} in this picture?", "Is any {t} visible?", "Can you see any {t}?", "Do we have {t} here?",
                 "Is {t} visible here?", "Does it have any {t}?", "Are {t} present in this view?",
                 "Does the image show {t}?", "Are any {t} present?"],
    "count": ["How many {t} are there?", "Count the {t}.", "What is the number of {t}?", "How many {t} can you see?",
              "Give me the count of {t}.", "How many {t} does the scene have?", "Number of {t}?",
              "Count all {t} in this tile.", "How many {t}?", "Tell me how many {t} there are.",
              "What's the number of {t} here?", "Count the {t}, please.",
              "Can you count the {t}?", "How many {t} are in the image?"],
    "area": ["How much of the image is {t}?", "What share of the scene is covered by {t}?",
             "How large is the area of {t}?", "What fraction of the tile is {t}?", "How big is the {t} area?",
             "What percentage of the view is {t}?", "How much area do the {t} cover?", "What is the total {t} area?",
             "How much {t} is there?", "What is the area of the {t}?", "What percent of the view is {t}?",
             "How much land do the {t} cover?",
             "How much ground do the {t} take up?", "What proportion of the picture is {t}?"],
    "location": ["Where are the {t}?", "Where is the {t}?", "Where is the {t} located?",
                 "In which part of the image are the {t}?", "Where can I find the {t}?", "Which side has the {t}?",
                 "Where do you see {t}?", "Where in the scene is the {t}?", "Where's the {t}?",
                 "Which part has the {t}?", "In which direction are the {t}?", "Where can I see {t}?",
                 "Tell me where the {t} are.", "In what part of the tile is the {t}?"],
    "segment": ["Please segment the {t}.", "Segment the {t}.", "Outline the {t}.", "Give me a mask of the {t}.",
                "Highlight the {t}.", "Show the {t} as a mask.", "Can you segment all {t}?", "Mask the {t}, please.",
                "Show me the {t}.", "Find the {t}.", "Map the {t}.", "Point out the {t}.", "Mark the {t}.",
                "Extract the {t}.", "Delineate the {t}.", "Draw the {t}.", "Give me the {t}.", "Detect the {t}.",
                "Paint the {t}.", "I need a mask of the {t}.", "Can you show me the {t}?",
                "Draw the outline of the {t}.", "Produce a segmentation of the {t}."],
    "caption": ["Describe this image.", "What is in this scene?", "Give a caption for this tile.",
                "What does this image show?", "Summarise the scene.", "Describe the scene in a sentence.",
                "What can you see here?", "Caption this picture.", "What do you see?", "Describe the scene.",
                "Tell me about this image.", "What's in the picture?", "Give me a description.", "What is this?",
                "Tell me what this image contains.", "What is shown in this aerial view?"],
    "scene": ["What kind of scene is this?", "What type of area is shown?", "Which land-use class is this image?",
              "What sort of place is this?", "Classify this scene.", "What land use does this tile show?",
              "What category of scene is it?", "What kind of place does this image show?",
              "What kind of area is this?", "What type of landscape is this?", "What land use is this?",
              "Which scene class fits this image?", "What type of land use is this?"],
    "follow_up": ["And the {t}?", "What about the {t}?", "And {t}?", "How about the {t}?", "And what about {t}?",
                  "Now the {t}.", "Then the {t}?", "The {t} too?", "Same for the {t}?", "Also the {t}?",
                  "And the {t} as well?", "What about {t} then?",
                  "And also the {t}?", "What of the {t}?"],
}
_RELATION_SUFFIXES = ["", "", "", " next to them", " near them", " next to the {r}", " near the {r}",
                      " along the {r}", " around the {r}"]
#: a place narrows a question without changing its kind ("Please segment the water in the north-east.")
_PLACE_SUFFIXES = [" in the north-east", " in the south", " on the left", " in the upper right", " in the centre",
                   " to the west", " in the bottom half"]
_HELD_OUT = 2


def concept_config(scene_names: Sequence[str] = tuple(UC_MERCED_NAMES.values())) -> dict[str, Any]:
    """The config fields the dialogue reads: concepts per class, unrelated concepts, scene classes, intents."""
    from geopix_tiles.model.dialogue import INTENTS

    from .instruct import plural
    from .vocabulary import TRAIN_SYNONYMS, TRAIN_UNRELATED

    display = {"land": "bare land", "cloud": "clouds"}
    concepts = {c: list(dict.fromkeys([display.get(c, plural(c)), c, *ps])) for c, ps in TRAIN_SYNONYMS.items()}
    return {"concepts": concepts, "unrelated_concepts": tuple(TRAIN_UNRELATED), "scene_classes": tuple(scene_names),
            "intent_tasks": tuple(INTENTS)}


def _with_suffix(question: str, suffix: str) -> str:
    """``suffix`` before the question's closing mark ("Where is the water" + " in the south" + "?")."""
    return question[:-1] + suffix + question[-1] if question[-1] in "?." else question + suffix


def intent_samples(model: Any, split: str = "train", n_targets: int = 12, seed: int = 0) -> list[tuple[str, str]]:
    """``(masked question, intent)`` pairs through the inference masking."""
    from geopix_tiles.model.dialogue import Question, Target, Turn, question_parts

    rng = random.Random(seed)
    c = model.config
    targets = [p for ps in c.concepts.values() for p in ps] + list(c.scene_classes) + list(c.unrelated_concepts)
    rels = [ps[0] for ps in c.concepts.values()]
    prev_target = Target("buildings", "class", "building", 1.0)
    previous = Turn(Question("Where are the buildings?", "location", prev_target), "location", prev_target,
                    np.ones((4, 4), bool))
    out = []
    for task, temps in INTENT_TEMPLATES.items():
        temps = temps[:-_HELD_OUT] if split == "train" else temps[-_HELD_OUT:]
        for t in temps:
            for _ in range(n_targets if "{t}" in t else 3):
                q = t.format(t=rng.choice(targets))
                if "{t}" in t and rng.random() < 0.4:
                    q = _with_suffix(q, rng.choice(_RELATION_SUFFIXES).format(r=rng.choice(rels)))
                if "{t}" in t and rng.random() < 0.25:
                    q = _with_suffix(q, rng.choice(_PLACE_SUFFIXES))
                if rng.random() < 0.2:
                    q = rng.choice(["And ", "So, ", "OK. ", "Now, "]) + q[0].lower() + q[1:]
                if rng.random() < 0.2:
                    q = q.lower()
                out.append((question_parts(model, q, previous).masked, task))
    return out


def train_intent_head(model: Any, epochs: int = 400, seed: int = 0) -> dict[str, float]:
    """Fit ``model.intent_head``; returns train and held-out-template accuracy."""
    from geopix_tiles.model.dialogue import IntentHead
    from geopix_tiles.model.text_encoder import prompt_encoder

    torch.manual_seed(seed)
    tasks = list(model.config.intent_tasks)
    enc = prompt_encoder()

    def tensors(pairs):
        x = torch.from_numpy(enc.encode([q for q, _ in pairs]))
        y = torch.tensor([tasks.index(t) for _, t in pairs])
        return x, y

    xtr, ytr = tensors(intent_samples(model, "train", seed=seed))
    xte, yte = tensors(intent_samples(model, "eval", seed=seed + 1))
    head = IntentHead(model.config.text_dim, len(tasks))
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=1e-2)
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(xtr), ytr, label_smoothing=0.05)
        loss.backward()
        opt.step()
    head.eval()
    with torch.no_grad():
        acc_tr = float((head(xtr).argmax(-1) == ytr).float().mean())
        acc_te = float((head(xte).argmax(-1) == yte).float().mean())
    model.intent_head = head.to(model.device)
    return {"intent_train_accuracy": acc_tr, "intent_heldout_template_accuracy": acc_te,
            "intent_train_questions": int(len(ytr)), "intent_heldout_questions": int(len(yte))}


def scene_split(root: str | Path) -> dict[str, list[tuple[Path, int]]]:
    """UC Merced chips by split: index 00-59 train, 60-79 held out, per class."""
    from .scene_negatives import chip_index

    root = Path(root)
    folders = list(UC_MERCED_NAMES)
    out: dict[str, list[tuple[Path, int]]] = {"train": [], "eval": []}
    for k, folder in enumerate(folders):
        for p in sorted((root / folder).glob("*.jpg")):
            idx = chip_index(p) or 0
            out["train" if idx < 60 else "eval"].append((p, k))
    return out


def chip_pixels(path: str | Path, size: int) -> np.ndarray:
    """A chip as the chat path sees it: the scene-wide stretch, resampled to ``size`` x ``size``."""
    from rasterio.windows import Window

    from geopix_tiles.answers.pixels import FilePixelSource

    with FilePixelSource(path, allow_no_georef=True) as src:  # UC Merced JPEGs carry no georeference
        return src.read(Window(0, 0, src.width, src.height), (size, size))


def _features(model: Any, paths: Sequence[tuple[Path, int]], augment: bool, batch: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    from geopix_tiles.model.dialogue import SceneHead

    size = int(model.config.tile_size)
    xs, ys = [], []
    views = (lambda x: x, lambda x: x.flip(-1), lambda x: x.flip(-2), lambda x: x.rot90(1, (-2, -1)))
    for start in range(0, len(paths), batch):
        chunk = paths[start:start + batch]
        imgs = torch.from_numpy(np.stack([chip_pixels(p, size) for p, _ in chunk]))
        for v in (views if augment else views[:1]):
            with torch.no_grad():
                feats = model.encode_images(v(imgs)).feats
            xs.append(SceneHead.pooled(feats).cpu())
            ys.append(torch.tensor([k for _, k in chunk]))
    return torch.cat(xs), torch.cat(ys)


def train_scene_head(model: Any, uc_merced: str | Path, epochs: int = 300, seed: int = 0) -> dict[str, Any]:
    """Fit ``model.scene_head`` on the UC Merced train chips; held-out accuracy on chips 60-79."""
    from geopix_tiles.model.dialogue import SceneHead

    torch.manual_seed(seed)
    split = scene_split(uc_merced)
    t0 = time.time()
    xtr, ytr = _features(model, split["train"], augment=True)
    xte, yte = _features(model, split["eval"], augment=False)
    head = SceneHead(model.vision.channels, len(model.config.scene_classes))
    opt = torch.optim.AdamW(head.parameters(), lr=2e-3, weight_decay=5e-2)
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head.fc(head.norm(xtr)), ytr, label_smoothing=0.1)
        loss.backward()
        opt.step()
    head.eval()
    with torch.no_grad():
        pred = head.fc(head.norm(xte)).argmax(-1)
        acc = float((pred == yte).float().mean())
        acc_tr = float((head.fc(head.norm(xtr)).argmax(-1) == ytr).float().mean())
    per_class = {model.config.scene_classes[k]: float((pred[yte == k] == k).float().mean())
                 for k in range(len(model.config.scene_classes))}
    model.scene_head = head.to(model.device)
    return {"scene_train_accuracy": acc_tr, "scene_heldout_accuracy": acc, "scene_per_class": per_class,
            "scene_train_chips": len(split["train"]), "scene_heldout_chips": len(split["eval"]),
            "scene_feature_s": round(time.time() - t0, 1)}


def add_dialogue_heads(model: Any, uc_merced: str | Path, keep_intent: bool = False) -> dict[str, Any]:
    """Set the dialogue config fields on ``model`` and train both heads (in place).

    ``keep_intent``: keep the model's own intent head. It reads only the question's MiniLM embedding,
    never the image, so a model whose vision weights moved gives it nothing new to learn, and a refit
    of its 400 epochs flips borderline phrasings by numerical noise alone.
    """
    for k, v in concept_config().items():
        setattr(model.config, k, v)
    if hasattr(model, "_concept_index"):
        del model._concept_index
    model.eval()
    if keep_intent and getattr(model, "intent_head", None) is not None:
        result: dict[str, Any] = {"intent_head": "kept from the checkpoint (it reads only the question)"}
    else:
        result = train_intent_head(model)
    result.update(train_scene_head(model, uc_merced))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--uc-merced", required=True)
    ap.add_argument("--fp16", action="store_true", help="store the weights as float16 (the shipped default)")
    args = ap.parse_args(argv)
    from geopix_tiles.model import GeoPixModel

    model = GeoPixModel.from_pretrained(args.checkpoint)
    result = add_dialogue_heads(model, args.uc_merced)
    (model.half() if args.fp16 else model).save_pretrained(args.out)
    Path(args.out, "dialogue_heads.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "scene_per_class"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
