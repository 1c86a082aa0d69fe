"""Instruction samples generated from labels, the way GeoPixInstruct and Osprey built theirs.

Real remote-sensing labels carry classes and shapes, not sentences, so every text here is
derived from them: class, size, relative position in the tile and the nearest neighbour
of another class. Templates are varied, and a fixed subset per task is *held out* for
evaluation, so a model scored on held-out templates cannot pass by memorising phrasing.

Placeholders in the generated text (the model's processor expands them):

* ``<image>`` - where image tokens go (start of the first user turn);
* ``<mask><pos>`` - one region given as a mask (region tasks), in ``region_masks`` order;
* ``[SEG]`` - one segmentation target in the answer, in ``target_masks`` order; a GeoPix
  model expands each into its ``[SEG0]..[SEG5]`` tokens.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np

from . import rle
from .records import ImageRecord, Instance

__all__ = [
    "SEG", "REGION", "IMAGE", "TASKS", "InstructSample", "describe_instance", "describe_record",
    "make_samples", "templates", "expand_seg", "plural", "unique_refs",
]

SEG = "[SEG]"
REGION = "<mask><pos>"
IMAGE = "<image>"
TASKS = ("category_seg", "referring_seg", "region_class", "region_caption", "caption", "vqa", "dialogue")
Split = Literal["train", "eval"]

# --------------------------------------------------------------------------- templates
# The last ``_HELD_OUT`` templates of each list are reserved for evaluation.
_HELD_OUT = 2
_TEMPLATES: dict[str, list[str]] = {
    "category_seg": [
        "Please segment the {cat_pl} in this image.",
        "Can you segment the {cat_pl}?",
        "Segment every {cat} you can find.",
        "Show me where the {cat_pl} are, as masks.",
        "Please output masks of the {cat_pl} in this scene.",
        "Highlight all {cat_pl} in the tile.",
        "Which pixels belong to {cat_pl}? Give the segmentation.",
        "I need a mask for each group of {cat_pl}; can you provide them?",
    ],
    "referring_seg": [
        "Please segment {ref}.",
        "Can you segment {ref}?",
        "Where is {ref}? Please respond with a segmentation mask.",
        "Segment {ref} in this image.",
        "Give me the mask of {ref}.",
        "Could you outline {ref}?",
        "Find {ref} and output its mask.",
        "Locate {ref} with a mask, please.",
    ],
    "region_class": [
        "What is in {regions}? Answer briefly.",
        "What is the category of {regions}? Answer with class names.",
        "Classify {regions}.",
        "Which class does each of {regions} belong to?",
        "Name the object class of {regions}.",
        "Tell me the categories of {regions}.",
        "What type of object is shown in {regions}?",
        "For {regions}, what are the classes?",
    ],
    "region_caption": [
        "Give a short description of {regions}.",
        "Describe {regions} briefly.",
        "What can you tell me about {regions}?",
        "Write a brief caption for {regions}.",
        "Provide a short description of each of {regions}.",
        "Explain what is in {regions} and where it is.",
        "Summarise {regions} in a sentence each.",
        "Describe the content of {regions}.",
    ],
    "caption": [
        "Describe the image.",
        "Describe this remote sensing image in detail.",
        "What does this aerial tile show?",
        "Give a caption for this scene.",
        "Summarise the contents of this image.",
        "Write a description of this satellite image.",
        "What is in this picture?",
        "Provide a detailed caption of the scene.",
    ],
    "vqa_count": [
        "How many {cat_pl} are there in the image?",
        "Count the {cat_pl}.",
        "What is the number of {cat_pl} in this tile?",
        "How many {cat_pl} can you see?",
        "Tell me how many {cat_pl} appear.",
        "Could you count the {cat_pl} in the scene?",
        "What is the count of {cat_pl}?",
        "Number of {cat_pl} visible here?",
    ],
    "vqa_presence": [
        "Is there any {cat} in the image?",
        "Are there {cat_pl} in this tile?",
        "Does this scene contain {cat_pl}?",
        "Can you see any {cat}?",
        "Is any {cat} visible?",
        "Do you find {cat_pl} in this image?",
        "Does the image include a {cat}?",
        "Are any {cat_pl} present?",
    ],
    "dialogue": [
        "Where are the {cat_pl} in this image? Please answer with masks.",
        "Tell me about the {cat_pl} here and segment them.",
        "Describe the {cat_pl} in the scene and show each with a mask.",
        "What {cat_pl} can you find? Answer with text and segmentation.",
        "Walk me through the {cat_pl} in this tile, with masks.",
        "Explain where each {cat} is and segment it.",
        "List the {cat_pl} with their locations and masks.",
        "Point out the {cat_pl} and describe them, giving masks.",
    ],
}


def templates(kind: str, split: Split = "train") -> list[str]:
    """Templates of one kind for training or for held-out evaluation."""
    all_t = _TEMPLATES[kind]
    return all_t[:-_HELD_OUT] if split == "train" else all_t[-_HELD_OUT:]


# --------------------------------------------------------------------------- describing
_IRREGULAR = {"water": "water", "land": "land", "vegetation": "vegetation", "cloud": "cloud",
              "grass": "grass", "sand": "sand", "bare soil": "bare soil", "background": "background"}


def plural(cat: str) -> str:
    """English plural of a class name; mass nouns (water, vegetation) stay as they are."""
    c = cat.strip()
    if c.lower() in _IRREGULAR:
        return _IRREGULAR[c.lower()]
    if c.endswith(("s", "x", "ch", "sh")):
        return c + "es"
    if c.endswith("y") and len(c) > 1 and c[-2] not in "aeiou":
        return c[:-1] + "ies"
    return c + "s"


def _mass(cat: str) -> bool:
    return cat.strip().lower() in _IRREGULAR


def _position(cx: float, cy: float, w: int, h: int) -> str:
    col = 0 if cx < w / 3 else (2 if cx > 2 * w / 3 else 1)
    row = 0 if cy < h / 3 else (2 if cy > 2 * h / 3 else 1)
    names = [["upper left", "top", "upper right"], ["left", "center", "right"],
             ["lower left", "bottom", "lower right"]]
    return names[row][col]


def _size_word(area: int, total: int) -> str:
    f = area / max(total, 1)
    if f < 0.002:
        return "tiny"
    if f < 0.01:
        return "small"
    if f < 0.05:
        return "medium-sized"
    return "large"


def _direction(dx: float, dy: float) -> str:
    """Direction of a neighbour seen from an object, image up = north."""
    ang = math.degrees(math.atan2(-dy, dx)) % 360
    names = ["east", "north-east", "north", "north-west", "west", "south-west", "south", "south-east"]
    return names[int(((ang + 22.5) % 360) // 45)]


def _centre(inst: Instance) -> tuple[float, float]:
    x1, y1, x2, y2 = inst.bbox
    return (x1 + x2) / 2.0, (y1 + y2) / 2.0


def describe_instance(inst: Instance, others: Sequence[Instance], size: tuple[int, int]) -> dict[str, str]:
    """Attributes of one instance: size word, position, nearest other-class neighbour."""
    h, w = size
    cx, cy = _centre(inst)
    attrs = {"size": _size_word(inst.area, h * w), "position": _position(cx, cy, w, h), "neighbour": "",
             "direction": ""}
    best = None
    for o in others:
        if o is inst or o.category == inst.category:
            continue
        ox, oy = _centre(o)
        d = (ox - cx) ** 2 + (oy - cy) ** 2
        if best is None or d < best[0]:
            best = (d, o, ox - cx, oy - cy)
    if best is not None:
        attrs["neighbour"] = best[1].category
        attrs["direction"] = _direction(best[2], best[3])
    return attrs


def _at(pos: str) -> str:
    return f"{'at the' if pos in ('top', 'bottom', 'center', 'left', 'right') else 'in the'} {pos}"


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _phrase(inst: Instance, attrs: dict[str, str], definite: bool) -> str:
    cat = inst.category
    if _mass(cat):
        core = f"{'the ' if definite else ''}{attrs['size'] if attrs['size'] == 'large' else 'small'} area of {cat}"
    else:
        adj = attrs["size"]
        core = f"the {adj} {cat}" if definite else f"{_article(adj)} {adj} {cat}"
    pos = attrs["position"]
    s = f"{core} {_at(pos)}"
    if inst.extra.get("damage"):
        s += f" ({str(inst.extra['damage']).replace('-', ' ')})"
    if attrs["neighbour"]:
        s += f", with {plural(attrs['neighbour']) if not _mass(attrs['neighbour']) else attrs['neighbour']} to the {attrs['direction']}"
    return s


def describe_record(record: ImageRecord, overwrite: bool = False) -> ImageRecord:
    """Fill empty instance descriptions from the labels (size, position, neighbour)."""
    size = record.size
    if size is None:
        return record
    for inst in record.instances:
        if inst.description and not overwrite:
            continue
        attrs = describe_instance(inst, record.instances, size)
        text = _phrase(inst, attrs, definite=False)
        inst.description = text[0].upper() + text[1:] + "."
    return record


# --------------------------------------------------------------------------- samples
@dataclass
class InstructSample:
    """One conversation turn pair with the masks its placeholders stand for."""

    task: str
    question: str
    answer: str
    record: int  # index of the ImageRecord
    target_masks: list[dict[str, Any]] = field(default_factory=list)  # RLE, one per [SEG]
    target_categories: list[str] = field(default_factory=list)
    region_masks: list[dict[str, Any]] = field(default_factory=list)  # RLE, one per <mask><pos>
    region_categories: list[str] = field(default_factory=list)
    region_texts: list[str] = field(default_factory=list)
    template: str = ""
    #: the words that asked for each target (a class name, a synonym, free text); defaults to the categories
    target_texts: list[str] = field(default_factory=list)

    def texts(self) -> list[str]:
        if self.target_texts:
            return list(self.target_texts)
        return [plural(c) for c in self.target_categories]

    def check(self) -> None:
        if self.answer.count(SEG) != len(self.target_masks):
            raise AssertionError(f"{self.task}: {self.answer.count(SEG)} [SEG] for {len(self.target_masks)} masks")
        if self.question.count(REGION) != len(self.region_masks):
            raise AssertionError(f"{self.task}: {self.question.count(REGION)} regions for {len(self.region_masks)} masks")


def expand_seg(text: str, seg_tokens: Sequence[str]) -> str:
    """Replace each generic ``[SEG]`` by a model's own segmentation tokens."""
    return text.replace(SEG, "".join(seg_tokens))


def _union_rle(insts: Sequence[Instance]) -> dict[str, Any]:
    m = None
    for i in insts:
        mi = i.mask()
        m = mi.astype(bool) if m is None else (m | mi.astype(bool))
    assert m is not None
    return rle.encode(m.astype(np.uint8))


def _regions(n: int) -> str:
    names = [f"region{i + 1} {REGION}" for i in range(n)]
    return names[0] if n == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def unique_refs(record: ImageRecord) -> list[tuple[Instance, str]]:
    """Instances whose definite description names them unambiguously in their tile."""
    size = record.size
    if size is None:
        return []
    refs = []
    for inst in record.instances:
        attrs = describe_instance(inst, record.instances, size)
        refs.append((inst, _phrase(inst, attrs, definite=True)))
    counts: dict[str, int] = {}
    for _, r in refs:
        counts[r] = counts.get(r, 0) + 1
    return [(i, r) for i, r in refs if counts[r] == 1]


def _count_words(n: int) -> str:
    words = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    return words[n] if n < len(words) else str(n)


def make_samples(records: Sequence[ImageRecord], tasks: Sequence[str] = TASKS, split: Split = "train",
                 seed: int = 0, per_record: int = 2, max_targets: int = 3, vocabulary: Sequence[str] | None = None,
                 negatives: float = 0.0, paraphrases: float = 0.0, unrelated: float = 0.0,
                 per_class: bool = False, exhaustive_targets: bool = False) -> list[InstructSample]:
    """Instruction samples for every record; deterministic for a seed.

    ``vocabulary`` is the class list used for presence questions with a "no" answer (the
    classes of the whole data set); it defaults to the classes seen in ``records``.

    ``negatives`` is the chance that a category-segmentation sample also asks for a class the
    record's source annotates exhaustively (``meta["classes"]``) but the tile lacks, with an
    empty target mask. Without such samples a model only ever sees prompts whose answer is
    non-empty and learns to paint something for every prompt, which is exactly the false
    alarm a scene-wide run cannot afford; records without ``meta["classes"]`` never get one.

    ``paraphrases`` is the chance that a category target is asked for by a training synonym
    (or, one time in four, by a free-text phrase naming another class as context) instead of
    its class name; ``unrelated`` the chance that a category sample also asks for a concept no
    source contains (``vocabulary.TRAIN_UNRELATED``) with an empty mask. Both only apply to
    ``category_seg`` samples and leave the others (and 0.0 the old samples) exactly as they were.

    ``per_class`` adds, when ``category_seg`` is among the tasks, one single-class category
    sample for every class of every record (the question :meth:`GeoPixModel.segment` asks):
    with a handful of chips the random draws above may never ask for a class on its own.

    ``exhaustive_targets``: questions about a whole class (category masks, counts, presence, captions) only
    for the classes a record labels exhaustively (``meta["classes"]``). A source that labels one roof of
    many (Puerto Rico) otherwise teaches every other house on its chips as "not a building"; its
    instances still serve referring and region samples, whose target is the instance itself.
    """
    for name, value in (("negatives", negatives), ("paraphrases", paraphrases), ("unrelated", unrelated)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} is a probability in [0, 1], got {value}")
    for t in tasks:
        if t not in TASKS:
            raise ValueError(f"unknown task {t!r}; choose from {', '.join(TASKS)}")
    rng = random.Random(seed)
    vocab = sorted(set(vocabulary or {i.category for r in records for i in r.instances}))
    out: list[InstructSample] = []
    for ri, rec in enumerate(records):
        describe_record(rec)
        by_cat: dict[str, list[Instance]] = {}
        whole = set(rec.meta.get("classes") or ()) if exhaustive_targets else None
        for inst in rec.instances:
            if whole is None or inst.category in whole:
                by_cat.setdefault(inst.category, []).append(inst)
        options = list(tasks)
        rng.shuffle(options)
        made = 0
        for task in options:
            if made >= per_record:
                break
            s = _make_one(task, ri, rec, by_cat, vocab, split, rng, max_targets, negatives, paraphrases, unrelated,
                          whole)
            if s is not None:
                s.check()
                out.append(s)
                made += 1
        if per_class and "category_seg" in tasks:
            for c in sorted(by_cat):
                t = templates("category_seg", split)[0]
                q = t.format(cat=c, cat_pl=plural(c))
                s = InstructSample("category_seg", f"{IMAGE}\n{q}", f"Sure, {SEG}.", ri, [_union_rle(by_cat[c])], [c],
                                   template=t)
                s.check()
                out.append(s)
    return out


def _absent_classes(rec: ImageRecord, by_cat: dict[str, list[Instance]]) -> list[str]:
    return sorted(set(rec.meta.get("classes") or ()) - set(by_cat))


def _make_one(task: str, ri: int, rec: ImageRecord, by_cat: dict[str, list[Instance]], vocab: list[str],
              split: Split, rng: random.Random, max_targets: int, negatives: float = 0.0, paraphrases: float = 0.0,
              unrelated: float = 0.0, whole: set[str] | None = None) -> InstructSample | None:
    """One sample of ``task``; ``whole`` (with ``exhaustive_targets``): the classes the record labels exhaustively,
    the only ones a caption or a presence question may speak of (None: any)."""
    pick = rng.choice
    if task == "category_seg" and (paraphrases > 0 or unrelated > 0):
        return _open_vocab_category(ri, rec, by_cat, split, rng, max_targets, negatives, paraphrases, unrelated)
    if task == "category_seg":
        absent = _absent_classes(rec, by_cat) if negatives > 0 and rec.size is not None else []
        negative = bool(absent) and (not by_cat or rng.random() < negatives)
        if not by_cat and not negative:
            return None
        k = rng.randint(1, max_targets)
        cats = rng.sample(sorted(by_cat), k=min(len(by_cat), k - 1 if negative else k)) if by_cat else []
        masks = [_union_rle(by_cat[c]) for c in cats]
        if negative:
            c = pick(absent)
            at = rng.randint(0, len(cats))
            cats.insert(at, c)
            masks.insert(at, rle.encode(np.zeros(rec.size, dtype=np.uint8)))
        if len(cats) == 1:
            c = cats[0]
            t = pick(templates("category_seg", split))
            q = t.format(cat=c, cat_pl=plural(c))
            a = f"Sure, {SEG}."  # the answer GeoPixModel.segment teacher-forces at inference
        else:
            t = pick(templates("category_seg", split))
            names = " and ".join(plural(c) for c in cats)
            q = t.format(cat=names, cat_pl=names)
            a = "Sure, " + ", ".join(f"{plural(c)}: {SEG}" for c in cats) + "."
        return InstructSample(task, f"{IMAGE}\n{q}", a, ri, masks, cats, template=t)
    if task == "referring_seg":
        refs = unique_refs(rec)
        if not refs:
            return None
        chosen = rng.sample(refs, k=min(len(refs), rng.randint(1, max_targets)))
        t = pick(templates("referring_seg", split))
        q = t.format(ref=" and ".join(r for _, r in chosen))
        a = "Sure, " + ", ".join(f"{r}: {SEG}" for _, r in chosen) + "." if len(chosen) > 1 else f"Sure, {SEG}."
        return InstructSample(task, f"{IMAGE}\n{q}", a, ri, [i.mask_rle for i, _ in chosen],
                              [i.category for i, _ in chosen], template=t, target_texts=[r for _, r in chosen])
    if task in ("region_class", "region_caption"):
        if not rec.instances:
            return None
        chosen = rng.sample(rec.instances, k=min(len(rec.instances), rng.randint(1, max_targets)))
        t = pick(templates(task, split))
        q = t.format(regions=_regions(len(chosen)))
        if task == "region_class" and t == templates("region_class", split)[0] and split == "train":
            chosen = chosen[:1]  # GeoPixModel.describe's prompt: one region, answer = class name
            q = t.format(regions=_regions(1))
            return InstructSample(task, f"{IMAGE}\n{q}", chosen[0].category, ri, region_masks=[chosen[0].mask_rle],
                                  region_categories=[chosen[0].category], region_texts=[chosen[0].category],
                                  template=t)
        if task == "region_class":
            parts = [i.category for i in chosen]
        else:
            parts = [i.description.rstrip(".") for i in chosen]
        a = "; ".join(f"region{k + 1}: {p}" for k, p in enumerate(parts)) + "."
        return InstructSample(task, f"{IMAGE}\n{q}", a, ri, region_masks=[i.mask_rle for i in chosen],
                              region_categories=[i.category for i in chosen], region_texts=parts, template=t)
    if task == "caption":
        if whole is not None and not whole:
            return None  # "no labelled objects" would be false of a chip that labels one roof of many
        t = pick(templates("caption", split))
        return InstructSample(task, f"{IMAGE}\n{t}", _caption(rec, by_cat), ri, template=t)
    if task == "vqa":
        if rng.random() < 0.5 and by_cat:
            c = pick(sorted(by_cat))
            if _mass(c):
                return None
            t = pick(templates("vqa_count", split))
            n = len(by_cat[c])
            a = f"There {'is' if n == 1 else 'are'} {_count_words(n)} {c if n == 1 else plural(c)}."
            return InstructSample(task, f"{IMAGE}\n{t.format(cat=c, cat_pl=plural(c))}", a, ri, template=t)
        asked = vocab if whole is None else sorted(whole)
        c = pick(asked) if asked else None
        if c is None:
            return None
        t = pick(templates("vqa_presence", split))
        present = c in by_cat
        a = (f"Yes, there {'is' if _mass(c) else 'are'} {c if _mass(c) else plural(c)} in the image." if present
             else f"No, there {'is' if _mass(c) else 'are'} no {c if _mass(c) else plural(c)} in the image.")
        return InstructSample(task, f"{IMAGE}\n{t.format(cat=c, cat_pl=plural(c))}", a, ri, template=t)
    if task == "dialogue":
        if not by_cat:
            return None
        c = pick(sorted(by_cat))
        insts = sorted(by_cat[c], key=lambda i: -i.area)[:max_targets]
        t = pick(templates("dialogue", split))
        n = len(by_cat[c])
        head = (f"There {'is' if n == 1 else 'are'} {_count_words(n)} {c if n == 1 or _mass(c) else plural(c)}"
                + (f"; the largest {len(insts)} are" if n > len(insts) else ":"))
        body = "; ".join(f"{i.description.rstrip('.').lower()} {SEG}" for i in insts)
        return InstructSample(task, f"{IMAGE}\n{t.format(cat=c, cat_pl=plural(c))}", f"{head} {body}.", ri,
                              [i.mask_rle for i in insts], [c] * len(insts), template=t,
                              target_texts=[i.description.rstrip(".").lower() for i in insts])
    raise ValueError(task)


def _open_vocab_category(ri: int, rec: ImageRecord, by_cat: dict[str, list[Instance]], split: Split,
                         rng: random.Random, max_targets: int, negatives: float, paraphrases: float,
                         unrelated: float) -> InstructSample | None:
    """Category segmentation whose targets are named in varied words, plus unrelated-concept negatives."""
    from .vocabulary import TRAIN_UNRELATED, context_phrase, surface_phrase

    absent = _absent_classes(rec, by_cat) if negatives > 0 and rec.size is not None else []
    negative = bool(absent) and (not by_cat or rng.random() < negatives)
    foreign = rec.size is not None and rng.random() < unrelated
    if not by_cat and not negative and not foreign:
        return None
    k = rng.randint(1, max_targets)
    n_present = max(0, min(len(by_cat), k - int(negative) - int(foreign)))
    cats = rng.sample(sorted(by_cat), k=n_present) if by_cat else []
    masks = [_union_rle(by_cat[c]) for c in cats]
    texts = []
    for c in cats:
        t = surface_phrase(c, rng, plural(c)) if rng.random() < paraphrases else plural(c)
        others = [o for o in by_cat if o != c]
        if others and rng.random() < paraphrases / 4:
            t = context_phrase(t, plural(rng.choice(sorted(others))), rng)
        texts.append(t)
    empty = rle.encode(np.zeros(rec.size, dtype=np.uint8)) if rec.size is not None else None
    for extra, make in ((negative, lambda: rng.choice(absent)), (foreign, None)):
        if not extra:
            continue
        at = rng.randint(0, len(cats))
        if make is not None:
            c = make()
            t = surface_phrase(c, rng, plural(c)) if rng.random() < paraphrases else plural(c)
        else:
            c, t = "unrelated", rng.choice(TRAIN_UNRELATED)
        cats.insert(at, c)
        texts.insert(at, t)
        masks.insert(at, empty)
    if not cats:
        return None
    tmpl = rng.choice(templates("category_seg", split))
    if len(cats) == 1:
        q = tmpl.format(cat=texts[0], cat_pl=texts[0])
        a = f"Sure, {SEG}."
    else:
        names = " and ".join(texts)
        q = tmpl.format(cat=names, cat_pl=names)
        a = "Sure, " + ", ".join(f"{t}: {SEG}" for t in texts) + "."
    return InstructSample("category_seg", f"{IMAGE}\n{q}", a, ri, masks, cats, template=tmpl, target_texts=texts)


def _caption(rec: ImageRecord, by_cat: dict[str, list[Instance]]) -> str:
    if not by_cat:
        return "The image shows no labelled objects."
    size = rec.size or (1, 1)
    total = size[0] * size[1]
    parts = []
    for c in sorted(by_cat, key=lambda k: -sum(i.area for i in by_cat[k])):
        insts = by_cat[c]
        cover = 100.0 * sum(i.area for i in insts) / total
        where = _position(*_centre(max(insts, key=lambda i: i.area)), size[1], size[0])
        if _mass(c):
            parts.append(f"{c} covering about {cover:.0f}% of the tile, mostly {_at(where)}")
        else:
            parts.append(f"{_count_words(len(insts))} {c if len(insts) == 1 else plural(c)} "
                         f"(about {cover:.0f}% of the area), the largest {_at(where)}")
    return "The image shows " + "; ".join(parts) + "."
