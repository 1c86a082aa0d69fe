"""Pixel dialogue: what a question asks (trained heads) and a reply written from the masks.

How a question is answered (the design the README states):

1. **What is asked about.** Spans of content words ("tennis court", "water bodies") are
   matched by MiniLM cosine against the model's concepts: its segmentation classes with
   their training synonyms, its scene classes (UC Merced's 21), and the unrelated concepts it
   was taught to leave empty. A pronoun ("them", "it") refers to the previous turn's target;
   "next to them" / "near the road" adds a relation to another mask.
2. **What kind of answer.** A trained intent head reads the question with its target words
   masked out (so "How many X" is a count whatever X is): presence, count, area, location,
   segment, caption, scene, or a follow-up that keeps the previous turn's kind.
3. **Masks** come from :meth:`GeoPixModel.segment_encoded` with the user's own phrase (the
   same call as ``segment``, on the same encoding), relations filter their connected parts.
4. **Words** are composed by :mod:`.answer` from those masks (counts, areas, locations) and
   the trained scene head; a question about something the model never learned, or with
   nothing to answer, gets a refusal that says why.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from torch import nn

from geopix_tiles.segmenters.canopy import HIDDEN_BY_CANOPY

from . import answer as A
from . import measured_replies as M
from . import question_words as Q
from .location_prior import named_place, place_named_alone, place_word_span, places_named

if TYPE_CHECKING:  # pragma: no cover
    from .geopix import GeoPixModel, ImageEncoding

__all__ = ["INTENTS", "SceneHead", "IntentHead", "Target", "Question", "Turn", "ChatReply", "View", "caption_from_masks", "class_phrases", "parse_question", "question_parts",
           "words_of", "masked_question", "reply_to"]

INTENTS = ("presence", "count", "area", "location", "segment", "caption", "scene", "follow_up")
#: cosine similarity a span needs to a concept phrase to be read as that concept
MATCH = 0.6
#: logit given to nodata pixels: below any threshold a reply or the check could use
NODATA_LOGIT = -30.0
#: scene-head probability needed to name a scene class in a reply
SCENE_SURE = 0.5

_STOP = set("""a an the is are was were be been there here any some this that these those of in on at to for from
with and or but not no do does did can could would should will shall may might must i you me my your we us our it
its they them their please show tell give find what which where how many much who whom whose why when whether
image images scene scenes tile tiles photo picture view area areas part parts region map see seen visible
segment segmentation outline highlight mask masks locate located location count number share fraction percent
percentage cover covered covers covering large big size total describe description caption summarise summarize
kind type sort class category land-use contain contains containing also about all every each mostly just only
now then next close near beside around along adjacent bordering by what's where's there's let look looks
into out up down one ones largest biggest smallest tiniest more less fewer bigger larger smaller greater image's
scene's view's picture's tile's photo's most densest concentrated main dominant predominant classes categories types
kinds sorts things objects features present list average mean median typical sizes""".split())
#: below this similarity to its class's phrases a question's word is only *read as* the class
READ_AS = 0.75
#: the pixels (m) the scene head answers about: fitted on UC Merced's 0.3 m chips, its top-1 accuracy on held-out
#: chips averaged down falls 0.84 (0.3 m) -> 0.76 (0.6) -> 0.47 (1.2) -> 0.19 (2.4) -> 0.10 (4.8 m), and on their
#: centres stretched finer to 0.65 (0.15 m) -> 0.30 (0.075 m) (``benchmarks/results/scene_pixel_size.md``); on the
#: 5 m NAIP sample it called fields and lakes "dense residential"
SCENE_PIXEL_M = (0.15, 1.0)
#: words that end a scene class's name ("dense residential area") but are stop words on their own
_SCENE_TAILS = {"area", "areas"}
_LARGEST = re.compile(r"\b(?:largest|biggest)\b")
_SMALLEST = re.compile(r"\b(?:smallest|tiniest)\b")
# "land" is both a class and an English word: keep it out of the stop list (it is not in it)
_PRONOUNS = {"them", "it", "they", "those", "these", "that", "its", "their", "ones", "one"}
_RELATIONS = (("next", "to"), ("close", "to"), ("adjacent", "to"), ("near",), ("beside",), ("around",),
              ("along",), ("bordering",), ("nearby",), ("by",), ("than",), ("under",), ("beneath",),
              ("underneath",), ("behind",))
#: "Is there water under the clouds?": the ground a cloud hides is not seen, whatever the question
_HIDDEN_BY = {"under", "beneath", "underneath", "behind"}
#: "covered by X", "taken up by X": the passive names the thing asked about after "by"
_PASSIVE = {"covered", "occupied", "taken", "filled", "dominated", "up"}
#: "more X than Y" / "less X than Y": a comparison of two classes' shares, not a place next to Y
_FEWER = {"less", "fewer", "smaller"}
#: "Which is bigger, the water or the vegetation?": a comparison asked with "or" and one of these
_COMPARATIVES = {"more", "bigger", "larger", "greater"} | _FEWER
#: a message that is only courtesy ("Thanks!", "Hello") is answered as such, not as an unknown thing
_COURTESY = {"thanks", "thank", "thx", "cheers", "hello", "hi", "hey", "ok", "okay", "great", "cool", "bye",
             "goodbye", "good", "morning", "nice", "perfect"}


# --------------------------------------------------------------------------- heads
class SceneHead(nn.Module):
    """Scene class from mean-pooled stride-16 and stride-32 tower features (a linear probe).

    A probe on the tower the segmentation heads already use costs nothing at inference (the
    features exist) and needs only scene labels to train, which is what UC Merced has.
    """

    def __init__(self, channels: Sequence[int], classes: int) -> None:
        super().__init__()
        dim = int(channels[-2]) + int(channels[-1])
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, classes)

    @staticmethod
    def pooled(feats: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat([feats[-2].float().mean((2, 3)), feats[-1].float().mean((2, 3))], 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self.pooled(feats).to(self.fc.weight.dtype)
        return self.fc(self.norm(x))


class IntentHead(nn.Module):
    """Intent of a question from the MiniLM embedding of its target-masked text."""

    def __init__(self, text_dim: int, intents: int, hidden: int = 128) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(text_dim, hidden), nn.GELU(), nn.Linear(hidden, intents))

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


# --------------------------------------------------------------------------- questions
@dataclass(frozen=True)
class Target:
    """A thing a question names: ``kind`` is "class", "scene" or "unknown"."""

    phrase: str
    kind: str
    name: str | None
    similarity: float


@dataclass(frozen=True)
class Question:
    text: str
    task: str
    target: Target | None
    relation: Target | None = None  # the other thing of "next to the roads"
    relation_to_previous: bool = False  # "next to them"
    refers_back: bool = False  # target is a pronoun: the previous turn's target
    place: int | None = None  # "in the north-east": a cell of the 3 x 3 grid (location_prior.CELLS)
    largest: bool = False  # "the largest lake": only the largest connected part of the mask
    # "larger than 10 ha" / "smaller than 500 m²": bounds on the size of the parts kept, ``(low, high, unit)``
    # with ``unit`` "m2" or "px"
    size_bounds: tuple[float, float, str] | None = None
    # "Which part has the most vegetation?": the part of the 3 x 3 grid where the class is densest; the cells
    # compared: "part" all nine, "side" the four sides, "corner" the four corners
    where_most: str | None = None
    unit: str | None = None  # "in hectares": a key of ``answer.AREA_UNITS`` the reply's areas are given in
    # "more than 10 buildings" / "more than half of the image": ``(op, value, "count" | "share")`` to answer yes or no
    threshold: tuple[str, float, str] | None = None
    # "more" / "less" for "more X than Y", "which" / "which-less" for "Which is bigger, X or Y?", "and" / "or"
    # for "roads and buildings" (each answered), "distance" for "How far is X from Y?": ``relation`` is Y
    comparison: str | None = None
    # "Is there more water in the north or the south?": the two cells compared (``place`` is then None)
    places: tuple[int, int] | None = None
    smallest: bool = False  # "the smallest lake": the smallest part a count would count
    mostly_in: bool = False  # "Are most of the buildings in the north?": does the bulk of the mask lie in ``place``
    size_statistic: bool = False  # "What is the average size of the lakes?": mean and median of the parts


@dataclass
class Turn:
    """One answered question, kept so that follow-ups can refer back."""

    question: Question
    task: str
    target: Target | None
    mask: np.ndarray | None  # union of the reply's masks


@dataclass
class ChatReply:
    """A reply: a sentence or more, and one mask per thing the sentence is about.

    ``facts[i]`` are the numbers of ``masks[i]`` the text reports; ``prompts[i]`` is the phrase
    that mask was segmented with.
    """

    text: str
    masks: torch.Tensor  # bool [M, H, W]
    mask_logits: torch.Tensor  # float [M, H, W]
    task: str = ""
    prompts: list[str] = field(default_factory=list)
    facts: list[A.MaskFacts] = field(default_factory=list)
    scene: tuple[str, float] | None = None
    question: Question | None = None


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z0-9][a-z0-9'\-]*", text.lower().replace("’", "'"))


def _relation_at(words: Sequence[str]) -> tuple[int, int] | None:
    for i in range(len(words)):
        for cue in _RELATIONS:
            if tuple(words[i:i + len(cue)]) == cue:
                return i, i + len(cue)
    return None


def _spans(words: Sequence[str], lo: int, hi: int, longest: int = 3,
           skip: tuple[int, int] | None = None) -> list[tuple[int, int]]:
    """All runs of up to ``longest`` consecutive content words within ``words[lo:hi]``.

    ``skip``: word positions ``[a, b)`` that are never part of a span (a named place: "the vehicle on
    the upper right" asks about the vehicle, and an unknown thing was once named "upper right").
    """
    def content(k: int) -> bool:
        return words[k] not in _STOP and words[k] not in _PRONOUNS and not (skip and skip[0] <= k < skip[1])

    out = []
    i = lo
    while i < hi:
        if not content(i) or words[i].isdigit():
            i += 1
            continue
        j = i
        while j < hi and content(j):
            j += 1
        for a in range(i, j):
            for b in range(a + 1, min(j, a + longest) + 1):
                out.append((a, b))
        if j < hi and words[j] in _SCENE_TAILS and not (skip and skip[0] <= j < skip[1]):
            # "a residential area": the scene classes' names end in "area", a stop word alone
            out.extend((a, j + 1) for a in range(max(i, j + 1 - longest), j))
        i = j
    return out


class ConceptIndex:
    """MiniLM embeddings of every phrase the model can be asked about, built once per model."""

    def __init__(self, model: "GeoPixModel") -> None:
        from .text_encoder import prompt_encoder

        c = model.config
        phrases, kinds, names = [], [], []
        for name, ps in c.concepts.items():
            for p in ps:
                phrases.append(p), kinds.append("class"), names.append(name)
        self.encoder = prompt_encoder()
        class_emb = self.encoder.encode(phrases) if phrases else np.zeros((0, 384), np.float32)
        for s in c.scene_classes:
            # a scene class a segmentation class already covers ("forest", "buildings") is asked of the masks
            if len(phrases) and float((self.encoder.encode([s, _plural(s)]) @ class_emb.T).max()) >= 0.8:
                continue
            for p in (s, _plural(s)):
                phrases.append(p), kinds.append("scene"), names.append(s)
        for u in c.unrelated_concepts:
            phrases.append(u), kinds.append("unknown"), names.append(None)
        self.phrases, self.kinds, self.names = phrases, kinds, names
        self.emb = self.encoder.encode(phrases) if phrases else np.zeros((0, 384), np.float32)

    def match(self, spans: Sequence[str]) -> Target | None:
        """The span most similar to any concept (ties go to the longer span)."""
        if not spans or not len(self.phrases):
            return None
        sims = self.encoder.encode(list(spans)) @ self.emb.T  # [S, P]
        best = sims.max(1)
        order = sorted(range(len(spans)), key=lambda i: (round(float(best[i]), 2), len(spans[i])), reverse=True)
        i = order[0]
        j = int(sims[i].argmax())
        s = float(best[i])
        if s < MATCH:  # name the unknown thing by its longest span ("wind turbines", not "wind")
            longest = max(spans, key=len)
            return Target(longest, "unknown", None, float(best[spans.index(longest)]))
        return Target(spans[i], self.kinds[j], self.names[j], s)


def _plural(s: str) -> str:
    return s if A.is_plural(s) else s + "s"


def _concepts(model: "GeoPixModel") -> ConceptIndex:
    idx = getattr(model, "_concept_index", None)
    if idx is None:
        idx = ConceptIndex(model)
        object.__setattr__(model, "_concept_index", idx)
    return idx


def masked_question(words: Sequence[str], spans: Sequence[tuple[int, int]]) -> str:
    """The question with the target (and relation) words replaced by X: what the intent head reads."""
    out = list(words)
    for a, b in sorted(spans, reverse=True):
        out[a:b] = ["x"]
    return " ".join(out)


def _locate(words: Sequence[str], phrase: str, lo: int, hi: int) -> tuple[int, int] | None:
    n = len(phrase.split())
    for a in range(lo, hi - n + 1):
        if " ".join(words[a:a + n]) == phrase:
            return a, a + n
    return None


@dataclass(frozen=True)
class _Parts:
    target: Target | None
    relation: Target | None
    relation_to_previous: bool
    refers_back: bool
    masked: str
    place: int | None = None
    comparison: str | None = None
    size_bounds: tuple[float, float, str] | None = None  # read (and taken out of the text) here, once
    threshold: tuple[str, float, str] | None = None
    places: tuple[int, int] | None = None


def question_parts(model: "GeoPixModel", text: str, previous: Turn | None = None) -> _Parts:
    """Target, relation and the masked text the intent head reads (steps 1-2 of the module docstring)."""
    bounds, text = Q.size_bounds(text)  # "larger than 10 ha" is no relation ("than") and no thing ("ha")
    threshold, text = Q.number_threshold(text)  # nor is "more than 10" in "more than 10 buildings"
    text = Q.strip_land_cover(text)  # "What's the main land cover?" asks about no bare land
    words = words_of(text)
    idx = _concepts(model)
    rel = _relation_at(words)
    if rel is not None and words[rel[0]] == "by" and rel[0] > 0 and words[rel[0] - 1] in _PASSIVE:
        rel = None  # "What percentage of the east is covered by vegetation?": the thing asked about, not a neighbour
    which = None  # "Which is bigger, the water or the vegetation?": "or" parts the two things compared
    if rel is None and "or" in words and any(w in _COMPARATIVES for w in words):
        i = words.index("or")
        rel, which = (i, i + 1), ("which-less" if any(w in _FEWER for w in words) else "which")
    place = place_word_span(words)
    alone = place_named_alone(words) if place is None else None  # "Describe the north-west."
    if alone is not None:
        place = alone[1]
    if ("how" in words and "far" in words) or "distance" in words:  # "How far is the lake from the road?"
        cut = "from" if "from" in words else "to" if "to" in words else "and" if "between" in words else None
        if cut is not None:
            i = words.index(cut)
            rel, which = (i, i + 1), "distance"
    if rel is None:  # "Are there roads and buildings?", "Is there water or vegetation?": two things, each answered
        for conj in ("and", "or"):
            if conj in words:
                i = words.index(conj)
                left = idx.match([" ".join(words[a:b]) for a, b in _spans(words, 0, i, skip=place)])
                right = idx.match([" ".join(words[a:b]) for a, b in _spans(words, i + 1, len(words), skip=place)])
                if left is not None and right is not None and left.kind == right.kind == "class" \
                        and left.name != right.name:
                    rel, which = (i, i + 1), conj
                break
    places = _two_places(words)
    if places is not None:  # "more water in the north or the south?": two places compared, one thing
        places, place = places
        rel = which = None
    head_end = rel[0] if rel else len(words)
    target = idx.match([" ".join(words[a:b]) for a, b in _spans(words, 0, head_end, skip=place)])
    masked_spans = []
    if target is not None:
        loc = _locate(words, target.phrase, 0, head_end)
        if loc:
            masked_spans.append(loc)
    refers_back = False
    # "And in the north?", "What about the east?": the previous thing, asked again of another place
    if target is None and previous is not None and previous.target is not None \
            and (any(w in _PRONOUNS for w in words[:head_end]) or Q.elliptic(words)):
        target, refers_back = previous.target, True
    relation, to_previous = None, False
    if rel:
        tail = words[rel[1]:]
        tail_place = place_word_span(tail)
        relation = idx.match([" ".join(tail[a:b]) for a, b in _spans(tail, 0, len(tail), skip=tail_place)])
        if relation is not None:
            loc = _locate(words, relation.phrase, rel[1], len(words))
            if loc:
                masked_spans.append(loc)
        elif previous is not None and previous.mask is not None and any(w in _PRONOUNS for w in tail):
            to_previous = True
    # the raw text, not the joined words: its punctuation keeps named_place's rule that a
    # ", with ..." clause describes a neighbour ("the water, with roads to the east" is all water)
    named = None if places is not None else named_place(text) or alone
    comparison = which
    if rel is not None and words[rel[0]] == "than":  # "more X than Y" / "less X than Y"
        comparison = "less" if any(w in _FEWER for w in words[:rel[0]]) else "more"
    return _Parts(target, relation, to_previous, refers_back, masked_question(words, masked_spans),
                  named[0] if named else None, comparison, bounds, threshold, places)


def _two_places(words: Sequence[str]) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """``((cell a, cell b), (start, end) of the words naming both))`` for "Is there more water in the north or the
    south?" / "... in the east than in the west?": two different places with "or"/"than" between them, in a
    question that compares; None otherwise."""
    if not any(w in _COMPARATIVES or w == "most" for w in words):
        return None
    named = places_named(list(words))
    if len(named) < 2:
        return None
    (a, s1, e1), (b, s2, e2) = named[0], named[1]
    if a == b or not any(w in ("or", "than", "vs", "versus") for w in words[e1:s2]):
        return None
    return (a, b), (s1, e2)


def parse_question(model: "GeoPixModel", text: str, previous: Turn | None = None) -> Question:
    """What ``text`` asks, about what (see the module docstring)."""
    p = question_parts(model, text, previous)
    task = _intent(model, p.masked)
    if task == "follow_up":
        task = previous.task if previous is not None and previous.task not in ("caption", "scene") else "location"
    words = words_of(text)
    if p.refers_back and previous is not None and previous.task not in ("caption", "scene") and Q.elliptic(words):
        task = previous.task  # "And in the north?" after "How many lakes are there in the south?": a count
    if p.target is None and Q.asks_land_cover(text) and task != "scene":
        task = "caption"  # "What's the main land cover?": the classes and their shares
    if p.target is None and Q.asks_classes_present(words):
        task = "caption"  # "Which classes are present?": the caption lists them with their shares
    if task == "caption" and p.target is not None and p.target.kind in ("class", "scene"):
        task = "presence"  # "Tell me about the roads.": about the roads (their parts, share, place), not the view
    asks_where, where_most = Q.where_most(words)
    if asks_where:  # "Which part of the image has most vegetation?", "Where is it densest?": where, not how many
        task = "location"
    largest, place = bool(_LARGEST.search(text.lower())), p.place
    smallest = bool(_SMALLEST.search(text.lower())) and not largest
    if p.refers_back and previous is not None:  # "How big is it?" after "Where is the largest lake?": that lake
        largest = largest or previous.question.largest
        smallest = (smallest or previous.question.smallest) and not largest
        place = place if place is not None else previous.question.place
    bounds = p.size_bounds
    if bounds is None and p.refers_back and previous is not None:
        bounds = previous.question.size_bounds
    unit = Q.asked_unit(text)
    threshold = p.threshold
    relation, comparison = p.relation, p.comparison
    if p.refers_back and previous is not None and relation is None and previous.question.comparison in ("and", "or"):
        # "Where are they?" after "Are there roads and buildings?": both things again
        relation, comparison = previous.question.relation, previous.question.comparison
    return Question(text, task, p.target, relation, p.relation_to_previous, p.refers_back, place,
                    largest, bounds, where_most, unit, threshold, comparison, p.places, smallest,
                    Q.mostly_in(text), Q.size_statistic(words))


def _intent(model: "GeoPixModel", masked: str) -> str:
    head = getattr(model, "intent_head", None)
    if head is None:
        return "location"
    from .text_encoder import prompt_encoder

    emb = torch.from_numpy(prompt_encoder().encode([masked])).to(model.device)
    with torch.no_grad():
        k = int(head(emb).argmax(-1))
    return model.config.intent_tasks[k]


# --------------------------------------------------------------------------- replies
def class_phrases(model: "GeoPixModel") -> list[tuple[str, str]]:
    """``(class, display phrase)`` for every segmentation class, in the model's order."""
    c = model.config
    names = list(c.extra.get("memory_class_names") or c.concepts)
    return [(n, (c.concepts.get(n) or [n])[0]) for n in names]


class View:
    """What a reply is computed on: per-phrase mask logits of the view, and one encoding for the scene head.

    :meth:`GeoPixModel.chat` builds one from a single image; a conversation over a larger
    window (``geopix_tiles.answers.conversation``) supplies logits stitched from tiles exactly as ``segment``
    blends them. Logits are computed once per phrase and kept for the next turns.
    """

    def __init__(self, model: "GeoPixModel", encoding: "ImageEncoding", size: tuple[int, int] | None = None,
                 valid: np.ndarray | None = None) -> None:
        self.model, self.encoding = model, encoding
        self.size = tuple(size or encoding.size)
        # pixels the scene has data for (None: all): masks never cover the others, shares are of these
        self.valid = None if valid is None or bool(np.all(valid)) else np.asarray(valid, dtype=bool)
        if self.valid is not None and self.valid.shape != self.size:
            raise ValueError(f"valid mask of shape {self.valid.shape} does not match the view {self.size}")
        self.cache: dict[str, np.ndarray] = {}
        self.checks: dict[str, bool] = {}
        #: False on a view shown finer than its scene (a coarse scene upsampled, as ``segment`` shows it): the
        #: presence check was fitted on the model's own resolutions and vetoes real water there
        self.presence_checked = True
        #: False on a satellite-scale view (``answers.conversation.CLOUD_CHECK_BELOW_M``): the check was fitted on clouds of one
        #: Sentinel-2 chip and bright aerial roofs, and vetoed the real cumulus of the 300 m Landsat-7 sample,
        #: which ``segment`` (whose tile check never vetoes clouds) keeps
        self.clouds_checked = True
        #: False on a view of pixels coarser than ``segmenters.canopy.CANOPY_MAX_PIXEL_M``, where vegetation is a share
        #: of mixed pixels rather than crowns over things (``answers.conversation`` sets it, as ``segment`` decides)
        self.canopy_cut = True
        #: ground size (m) of the pixels the scene head sees; None when unknown (a chip without georeference)
        self.scene_pixel_m: float | None = None
        #: class -> why its masks are a rough guess here (the model sees it at coarser pixels than it learned it at)
        self.coarse_notes: dict[str, str] = {}
        self._clouds: np.ndarray | None = None
        self._canopy: np.ndarray | None = None

    def scene_probabilities(self) -> np.ndarray | None:
        """The scene head's probabilities for the view (None for a model without scene classes)."""
        probs = self.model.scene_probabilities(encoding=self.encoding)
        return None if probs is None else probs[0].float().cpu().numpy()

    def _compute(self, phrases: Sequence[str]) -> list[np.ndarray]:
        with torch.no_grad():
            lg, _ = self.model.segment_encoded(self.encoding, list(phrases))
        return list(lg[0].float().cpu().numpy())

    def logits(self, phrases: Sequence[str]) -> list[np.ndarray]:
        todo = [p for p in dict.fromkeys(phrases) if p not in self.cache]
        if todo:
            computed = self._compute(todo)
            if self.valid is not None:  # nodata (zeros to the model, often read as water) is never any class
                computed = [np.where(self.valid, lg, np.minimum(lg, NODATA_LOGIT)).astype(np.float32) for lg in computed]
            self.cache.update(zip(todo, computed))
        return [self.cache[p] for p in phrases]

    def clouds(self) -> np.ndarray:
        """Pixels under a cloud (the cloud mask; all False for a model without the class).

        Why replies use it: a cloud hides the ground, so a reply about water, buildings or any
        other class does not count pixels under one (the model alone paints the ground classes
        under clouds it was never shown them beneath: 77 % "water" on a Sentinel-2 chip that is
        all cloud). It is the mask "Is there any cloud?" answers with, so a cloud the presence
        check vetoes hides nothing.
        """
        if self._clouds is None:
            phrase = dict(class_phrases(self.model)).get("cloud")
            if phrase is None or self.doubted(phrase, "cloud"):
                self._clouds = np.zeros(self.size, bool)
            else:
                self._clouds = self.logits([phrase])[0] > 0
        return self._clouds

    def canopy(self) -> np.ndarray:
        """Pixels under tree and grass cover: the vegetation mask as replies count it, clouds out (all False for
        a model without the class, when the presence check vetoes it, or on a view of coarse pixels).

        Why replies use it: seen from above a crown over a roof or a pond is vegetation, and ``segment`` takes
        those pixels out of buildings and water (:mod:`geopix_tiles.segmenters.canopy`), so counts and areas in
        words agree with the masks a segment run draws. Vegetation painted under a cloud is no crown anyone
        saw: it hides nothing (a segment request keeps the pixels under clouds and says how many they are).
        """
        if self._canopy is None:
            phrase = dict(class_phrases(self.model)).get("vegetation")
            if not self.canopy_cut or phrase is None or self.doubted(phrase, "vegetation"):
                self._canopy = np.zeros(self.size, bool)
            else:
                self._canopy = self.cloud_free(self.logits([phrase])[0] > 0, "vegetation")
        return self._canopy

    def uncovered(self, mask: np.ndarray, name: str | None) -> np.ndarray:
        """``mask`` of class ``name`` without the pixels tree cover hides (buildings and water only)."""
        return mask & ~self.canopy() if name in HIDDEN_BY_CANOPY else mask

    def counted(self, target: "Target") -> np.ndarray:
        """``target``'s mask as a reply counts it: empty when the presence check vetoes it, clouds and canopy taken out.

        The mask of a second class in a question ("next to the roads", "more trees than water").
        """
        mask = self.logits([target.phrase])[0] > 0
        if self.doubted(target.phrase, target.name):
            return np.zeros_like(mask)
        return self.seen(mask, target.name)

    def seen(self, mask: np.ndarray, name: str | None) -> np.ndarray:
        """``mask`` of class ``name`` without what hides it from above: clouds (a cloud hides nothing of
        itself) and tree cover (:meth:`uncovered`)."""
        return self.uncovered(self.cloud_free(mask, name), name)

    def cloud_free(self, mask: np.ndarray, name: str | None) -> np.ndarray:
        """``mask`` of class ``name`` without the pixels a cloud hides (a cloud hides nothing of itself)."""
        return mask if name == "cloud" else mask & ~self.clouds()

    def doubted(self, phrase: str, name: str | None) -> bool:
        """True when the model's presence check vetoes the "yes" that ``phrase``'s mask says for class ``name``.

        Only a mask the reply rule calls present is checked (the check can only veto a yes);
        the verdict is kept for the next turns like the logits.
        """
        check = getattr(self.model, "presence_check", None) if self.presence_checked else None
        if check is None or name is None or name not in check.classes or (name == "cloud" and not self.clouds_checked):
            return False
        key = f"{phrase}\x00{name}"
        if key not in self.checks:
            logit = self.logits([phrase])[0]
            fg = logit > 0
            doubt = False
            if A.present(int(fg.sum()), float(fg.mean())):
                prob = torch.sigmoid(torch.from_numpy(logit).float())[None, None].to(self.model.device)
                p = check.confirm(self.encoding.feats, prob, [name])[0, 0]
                doubt = bool(check.vetoes(p, torch.tensor(float(fg.mean()))))
            self.checks[key] = doubt
        return self.checks[key]


def _scene(model: "GeoPixModel", view: View) -> tuple[str, float, np.ndarray] | None:
    """The likeliest scene class, its probability and all of them; None when the head cannot answer."""
    if _scene_refusal(model, view) is not None:
        return None
    p = view.scene_probabilities()
    if p is None:
        return None
    k = int(p.argmax())
    return model.config.scene_classes[k], float(p[k]), p


def _scene_refusal(model: "GeoPixModel", view: View) -> str | None:
    """Why the scene head cannot answer about ``view`` (None when it can)."""
    if getattr(model, "scene_head", None) is None or not model.config.scene_classes:
        return "this model has no scene classes"
    if view.scene_pixel_m is not None and not SCENE_PIXEL_M[0] <= view.scene_pixel_m <= SCENE_PIXEL_M[1]:
        x = view.scene_pixel_m
        size = f"{x:.0f}" if x >= 10 else f"{x:.1f}" if x >= 0.1 else f"{x:.2f}"
        return (f"I learned the kinds of scene I know from aerial photos of about 0.3 m per pixel, and this view's "
                f"pixels are about {size} m, where I am mostly wrong")
    return None


def _verb(phrase: str) -> str:
    return "are" if A.is_plural(phrase) else "is"


def _known_list(model: "GeoPixModel") -> str:
    return A.join_words([d for _, d in class_phrases(model)])


def reply_to(model: "GeoPixModel", view: View, question: Question, previous: Turn | None = None,
             pixel_area_m2: float | None = None) -> ChatReply:
    """The reply to a parsed question about ``view``."""
    h, w = view.size
    task, target = question.task, question.target

    def out(text: str, prompts: Sequence[str] = (), arrays: Sequence[np.ndarray] = (),
            logits: Sequence[np.ndarray] = (), scene: tuple[str, float] | None = None) -> ChatReply:
        m = torch.from_numpy(np.stack(arrays)) if arrays else torch.zeros((0, h, w), dtype=torch.bool)
        lg = torch.from_numpy(np.stack(logits)) if logits else torch.zeros((0, h, w))
        facts = [A.mask_facts(a, pixel_area_m2, view.valid) for a in arrays]
        return ChatReply(text, m, lg, task, list(prompts), facts, scene, question)

    words = words_of(question.text)
    if words and all(w in _COURTESY or w in _STOP for w in words) and any(w in _COURTESY for w in words):
        return out(f"You're welcome to ask me more: about the {_known_list(model)} in this view, or to describe it."
                   if any(w in ("thanks", "thank", "thx", "cheers") for w in words) else
                   f"Hello. Ask me about the {_known_list(model)} in this view, or to describe it.")
    if target is None and Q.asks_most_cover(words):  # "What covers most of the image?", "Which class is dominant?"
        return _most_cover(model, view, question.place, pixel_area_m2, out)
    if task == "caption":  # "Describe the north-west.": of that part, as "What is in the north-west?"
        return _caption(model, view, pixel_area_m2, out, place=question.place)
    if task == "scene":
        s = _scene(model, view)
        if s is None:
            return out(f"I can't tell which kind of scene this is: {_scene_refusal(model, view)}. "
                       f"I can describe it by its {_known_list(model)}.")
        name, p, _ = s
        if p >= SCENE_SURE:
            return out(f"This looks like an aerial view of {_a(name)} ({p:.0%} sure).", scene=(name, p))
        return out(f"I can't tell which kind of scene this is; my best guess is {_a(name)}, at only {p:.0%}.",
                   scene=(name, p))
    if question.relation is not None and question.relation.name == "cloud" and any(w in _HIDDEN_BY for w in words) \
            and (target is None or (target.kind == "class" and target.name != "cloud")):
        # "Is there water under the clouds?": no one sees through a cloud; the thing where the ground is seen
        clouds = view.clouds()
        share = A.share_of(clouds, view.valid)
        if not A.present(int(clouds.sum()), share):
            hidden = "I see no clouds in this view, so nothing is hidden under them."
        else:
            hidden = (f"I can't see under clouds: they cover {A.share_phrase(share)} of this view and the ground "
                      "under them is hidden.")
        if target is None:
            return out(hidden, ["clouds"], [clouds], [np.where(clouds, 1.0, -1.0).astype(np.float32)])
        r = reply_to(model, view, replace(question, relation=None, comparison=None), previous, pixel_area_m2)
        if not A.present(int(clouds.sum()), share):
            return replace(r, text=f"{hidden} {r.text}")
        return replace(r, text=f"{hidden} Where the ground is seen: {r.text[0].lower()}{r.text[1:]}")
    if target is None and question.place is not None:  # "What is in the north-east?": a caption of that part
        return _caption(model, view, pixel_area_m2, out, place=question.place)
    if target is None and task == "area":  # "What's the total area of the scene?": the view's own size
        return out(M.view_size_text(view, pixel_area_m2))
    if target is None:
        return out("I can't tell what you are asking about. Ask me about the "
                   f"{_known_list(model)}, or ask me to describe the image.")
    if target.kind == "unknown":
        return out(f"I can't tell: I have not learned to recognise {target.phrase}. I can find the "
                   f"{_known_list(model)}.")
    if question.comparison == "distance" and target.kind != "class":  # "How far is the coast from the clouds?"
        return out(f"I can't measure how far {_a(target.phrase)} lies from anything: I only measure distances between "
                   f"things I outline, the {_known_list(model)}.")
    if target.kind == "scene":
        return _scene_presence(model, view, target, task, out)
    if question.comparison in ("and", "or") and question.relation is not None:  # each thing its own reply, joined
        parts = [reply_to(model, view, replace(question, target=t, relation=None, comparison=None), previous,
                          pixel_area_m2) for t in (target, question.relation)]
        return ChatReply(" ".join(r.text for r in parts), torch.cat([r.masks for r in parts]),
                         torch.cat([r.mask_logits for r in parts]), task, [p for r in parts for p in r.prompts],
                         [f for r in parts for f in r.facts], None, question)
    phrase = named = target.phrase
    if target.kind == "class" and not A.is_plural(phrase) \
            and f"{phrase}s" in model.config.concepts.get(target.name or "", ()):
        # "the largest cloud" is one of "the clouds": the plural's mask, so that it is the largest part that
        # "How many clouds?" counts (the two phrases' masks differ: 919 against 886 km² on the Landsat-7 sample)
        phrase = f"{phrase}s"
    note = view.coarse_notes.get(target.name or "")
    if note is not None:  # "Are there buildings?" on a 5 m scene: the reply says how far to trust its mask
        noted_out = out

        def out(text: str, *args, **kwargs) -> ChatReply:  # noqa: F811 - the same reply, with the caveat
            return noted_out(f"{text} (Careful: {note}.)", *args, **kwargs)
    # words for a phrase the model only reads as its nearest class ("residential" -> buildings, "cars" -> roads):
    # the reply names the class and says how it read the question (the mask is the phrase's, as in segment)
    said = named
    if target.kind == "class" and target.name is not None and _describes(phrase) \
            and phrase not in model.config.concepts.get(target.name, ()):
        # "Is it cloudy?", "cloud-covered": a word describing the view asks about the class, so the reply names
        # the class and answers with its mask ("Are there clouds?" gets the same words and pixels)
        said = phrase = dict(class_phrases(model)).get(target.name, phrase)
    elif target.kind == "class" and target.similarity < READ_AS and target.name is not None:
        said = dict(class_phrases(model)).get(target.name, phrase)
        if said != phrase:
            plain_out = out

            def out(text: str, *args, **kwargs) -> ChatReply:  # noqa: F811 - the same reply, with the reading
                return plain_out(f"{text} (I read '{phrase}' as {said}.)", *args, **kwargs)
    if question.comparison == "distance" and (question.relation is None or question.relation.kind != "class"):
        # nothing to measure to: refused before any mask is computed
        other = _a(question.relation.phrase) if question.relation is not None else "that"
        return out(f"I can't measure how far the {said} lie{'' if A.is_plural(said) else 's'} from {other}: I only "
                   f"measure distances between things I outline, the {_known_list(model)}.")
    logit = view.logits([phrase])[0]
    mask = logit > 0
    # a "yes" the presence check doubts: words answer "no" (and return no pixels, so counts and
    # areas agree with the masks); a segment request still returns the pixels, with a warning
    doubt = view.doubted(phrase, target.name)
    if doubt and task != "segment":
        mask = np.zeros_like(mask)
    # the ground under a cloud is hidden: words never count it (a segment request keeps segment's
    # pixels and says how many of them lie under clouds); what tree cover hides is cut from every
    # reply's mask, as segment cuts it
    mask = view.uncovered(mask, target.name)
    seen = view.cloud_free(mask, target.name)  # = view.seen(...): the canopy is already out
    hidden = mask & ~seen
    if task != "segment":
        mask = seen
    if question.places is not None:  # "Is there more water in the north or the south?"
        return M.places_reply(view, question.places, mask, logit, phrase, said,
                              any(w in _FEWER for w in words), pixel_area_m2, out)
    distance = question.comparison == "distance"
    if question.comparison is not None and not distance and question.relation is not None \
            and question.relation.kind == "class":
        return _compare(view, question, mask, pixel_area_m2, out)
    if question.relation is not None and question.relation.kind == "class" and not distance:
        mask, rel_words = _near(mask, view.counted(question.relation), pixel_area_m2), \
            f" next to the {question.relation.phrase}"
    elif question.relation_to_previous and previous is not None and previous.mask is not None:
        prev = previous.target.phrase if previous.target is not None else "them"
        mask, rel_words = _near(mask, previous.mask, pixel_area_m2), f" next to the {prev}"
    else:
        rel_words = ""
    # "Is the largest lake in the north?" asks where the largest lake is, not for the largest lake of the north
    where_is_largest = (question.largest or question.smallest) and question.place is not None and task != "count" \
        and words_of(question.text)[:1] in (["is"], ["are"])
    if question.mostly_in and question.place is not None and not (question.largest or question.smallest):
        return M.mostly_in_reply(view, question.place, mask, logit, phrase, said, rel_words, pixel_area_m2, out)
    place_area = None
    if question.place is not None and not where_is_largest:  # "the water in the north-east": only that part
        place_area = A.place_region(question.place, mask.shape)
        mask = mask & place_area
        rel_words += f" {A.place_words(question.place)}"
    # whether the class is there is judged on its whole mask (of the place asked about); a part chosen from it
    # ("the largest lake", "lakes over 10 ha") then only needs pixels: one lake of a 25 km view is under 0.25 %
    class_present = A.present(int(mask.sum()), A.share_of(mask, view.valid))
    bounded = False
    if question.size_bounds is not None:  # "the lakes larger than 10 ha": only the parts of that size
        bounds = question.size_bounds
        if bounds[2] == "m2" and not pixel_area_m2:  # a plain chip: areas cannot select parts
            sizeless_out = out

            def out(text: str, *args, **kwargs) -> ChatReply:  # noqa: F811 - the same reply, with the reason
                return sizeless_out(f"{text} (I kept parts of every size: without a georeference I don't know "
                                    "this view's pixel size, so not their areas.)", *args, **kwargs)
        else:
            mask, size_words = M.within_bounds(mask, bounds, pixel_area_m2)
            rel_words, bounded = rel_words + size_words, True
    superlative = (question.largest or question.smallest) and task != "count"  # "how many of the largest" counts
    if superlative:  # "the largest lake": its largest connected part, which is one object
        mask = (A.smallest_part(mask, A.min_object_pixels(pixel_area_m2)) if question.smallest
                else A.largest_part(mask))
    most = ("smallest " if question.smallest else "largest ") if superlative else ""
    logit = A.masked_logits(mask, logit)
    if distance:
        return M.distance_reply(view, question, mask, logit, f"{most}{said}{rel_words}", pixel_area_m2, out)
    f = A.mask_facts(mask, pixel_area_m2, view.valid)
    what = f"{most}{said}{rel_words}"
    area = A.area_phrase(f.area_m2, f.pixels)
    if question.unit is not None and f.area_m2 is not None:  # "in acres": the unit asked for
        area = A.area_in(f.area_m2, question.unit)
    elif question.unit is not None:
        area += " (without a georeference I can't give it in " + question.unit + ")"
    share = A.share_phrase(f.share)
    found = class_present and bool(mask.any()) if (bounded or superlative) else f.present
    mass = target.name in _MASS
    # a cover class is counted in patches of its own name: "patches of water", not "patches of lakes"
    cover = dict(class_phrases(model)).get(target.name or "", said) if mass else said
    if question.size_statistic and found and not superlative:  # "What is the average size of the lakes?"
        return M.size_statistics_reply(mask, _count_phrase(f.count, cover, mass) + rel_words, pixel_area_m2,
                                       [phrase], logit, out)
    # "How much of the north is water?", "Is more than half of the north vegetation?": the share of that part
    part = None if place_area is None else (
        A.share_of(mask, place_area if view.valid is None else place_area & view.valid), A.place_noun(question.place))
    if question.threshold is not None:  # "Are there more than 10 buildings?", "... more than half of the image?"
        each = "" if bounded else f" (each at least {A.min_size_phrase(pixel_area_m2)})"
        counted = f"{_count_phrase(f.count if found else 0, cover, mass)}{rel_words}{each}"
        return M.threshold_reply(question.threshold, f if found else None, what, said, counted, area,
                                 [phrase], [mask], [logit], out, part)
    if not found:
        text = {"presence": f"No, I see no {what} in this view.",
                "count": f"I count no {what} in this view.",
                "area": f"I find no {what} in this view, so it covers 0 % of it.",
                }.get(task, f"I find no {what} in this view, so there is nothing to outline.")
        if task != "segment":  # "no" comes with no pixels: scattered ones below the presence rule are no answer
            mask = np.zeros_like(mask)
            logit = A.masked_logits(mask, logit)
        elif f.pixels:  # the request returns segment's pixels: the words say what they are
            text = (f"I find no {what} in this view: the mask holds only scattered pixels ({area}, {share} of the"
                    f" view), too few to call {said} present.")
        if doubt:
            text += f" What first looked like {said} does not on a closer look."
        elif A.present(int(hidden.sum()), A.share_of(hidden, view.valid)):
            text += (f" Clouds cover {A.share_phrase(A.share_of(view.clouds(), view.valid))} of it, and the ground"
                     " under them is hidden.")
        return out(text, [phrase], [mask], [logit])
    n = _count_phrase(f.count, cover, mass) if not superlative else "one connected part"
    if f.count == 0:  # present, but every part is below the counting size
        n = f"only small parts (none of at least {A.min_size_phrase(pixel_area_m2)})"
    size = f"{A.about(share)} of the view ({area})"
    if part is not None:  # the share of the part asked about first
        size = f"{A.about(A.share_phrase(part[0]))} of {part[1]} ({area}, {share} of the view)"
    # where the pixels lie; a question that named the place has it in ``what`` already
    at = "" if question.place is not None else f" {f.location}"
    comma_at = "" if question.place is not None else f", {f.location}"
    if where_is_largest:
        region = A.place_region(question.place, mask.shape)
        inside = float((mask & region).sum()) / max(1, int(mask.sum()))
        yy, xx = np.nonzero(mask)  # yes when its centre (what its location names) or most of it is there
        yes = inside >= 0.5 or bool(region[int(yy.mean()), int(xx.mean())])
        asked = A.place_words(question.place)
        part = "" if f.location == asked else f" ({A.share_phrase(inside) if inside else 'none'} of it {asked})"
        text = f"{'Yes' if yes else 'No'}, the {what} lies {f.location}{part}: {size}."
    elif task == "presence":
        # "Is there a river?": "there is a river", not "there is river" (a mass class asked by a count noun)
        article = re.search(rf"\b(an?)\s+{re.escape(said)}\b", question.text.lower())
        thing = f"{article.group(1)} {what}" if article and not A.is_plural(said) and not superlative else what
        text = f"Yes, there {_verb(said)} {thing}{at}: {n}, {size}."
    elif task == "count" and mass and f.count:
        text = M.cover_count_text(said, cover, n + rel_words, mask, pixel_area_m2, f"{size}{comma_at}",
                            sized=bounded)
    elif task == "count":
        each = "" if bounded else f" (each at least {A.min_size_phrase(pixel_area_m2)})"  # the question set the size
        text = (f"I count {n}{rel_words}{each}, covering {size}{comma_at}."
                if f.count else f"I count no {what} of at least {A.min_size_phrase(pixel_area_m2)}; smaller parts cover "
                                f"{size}{comma_at}.")
    elif task == "area":
        text = f"The {what} cover{'' if A.is_plural(said) else 's'} {size}{comma_at}."
    elif task == "location" and question.where_most and question.place is None:
        return M.densest_part_reply(view, question, what, said, mask, logit, pixel_area_m2, out)
    elif task == "location":
        text = (f"The {what} {_verb(said)} {f.location}: {n} covering {size}." if question.place is None
                else f"{A.place_words(question.place).capitalize()} of the view: {n} covering {size}.")
    else:  # segment
        text = f"Here is the mask of the {what}: {n} covering {size}{comma_at}."
        if doubt:
            text += f" Careful: on a closer look these pixels do not look like {said} to me."
        under = mask & ~view.cloud_free(mask, target.name)  # of the mask returned (after a place narrowed it)
        if A.present(int(under.sum()), A.share_of(under, view.valid)):
            text += (f" {A.share_phrase(float(under.sum()) / float(mask.sum()))} of these pixels"
                     " lie under clouds, where the ground is hidden.")
    return out(text, [phrase], [mask], [logit])


_MASS = {"water", "vegetation", "land", "cloud"}


def _describes(phrase: str) -> bool:
    """ "cloudy", "cloud-covered", "forested": one adjective, not a name for things ("lakes", "trees")."""
    return " " not in phrase and (phrase.endswith(("y", "ed")) or "-" in phrase)


def _compare(view: View, question: Question, mask: np.ndarray, pixel_area_m2: float | None, out) -> ChatReply:
    """"Is there more vegetation than water?": both classes' seen, checked masks, compared by share."""
    rel = question.relation
    other = view.counted(rel)
    if question.place is not None:
        region = A.place_region(question.place, mask.shape)
        mask, other = mask & region, other & region
    a, b = A.mask_facts(mask, pixel_area_m2, view.valid), A.mask_facts(other, pixel_area_m2, view.valid)
    pa, pb = question.target.phrase, rel.phrase
    more = a.pixels > b.pixels if question.comparison == "more" else a.pixels < b.pixels
    where = f" {A.place_words(question.place)}" if question.place is not None else ""
    if a.pixels == b.pixels:
        lead = "About the same"
    elif question.comparison in ("which", "which-less"):  # "Which is bigger, X or Y?": name it
        less = question.comparison == "which-less"
        pick = pa if (a.pixels < b.pixels) == less else pb
        lead = f"The {pick} cover{'' if A.is_plural(pick) else 's'} {'less' if less else 'more'}"
    else:
        lead = "Yes" if more else "No"

    def size(f) -> str:
        return f"{A.about(A.share_phrase(f.share))} of the view ({A.area_phrase(f.area_m2, f.pixels)})" if f.pixels \
            else "none of it"

    text = f"{lead}: {where.strip() + ', ' if where else ''}the {pa} cover{'' if A.is_plural(pa) else 's'} {size(a)}, " \
           f"the {pb} {size(b)}."
    text = text[0].upper() + text[1:]
    lg = [np.where(m, 1.0, -1.0).astype(np.float32) for m in (mask, other)]
    return out(text, [pa, pb], [mask, other], lg)


def _count_phrase(n: int, phrase: str, mass: bool) -> str:
    """ "4 buildings", "1 building", "3 separate patches of water"."""
    if mass:
        return f"{n:,} separate patch{'es' if n != 1 else ''} of {phrase}"
    words = phrase.split()
    if n == 1 and A.is_plural(phrase):
        words[-1] = words[-1][:-1]
    elif n != 1 and not A.is_plural(phrase):
        words[-1] = words[-1] + "s"
    return f"{n:,} {' '.join(words)}"


def _a(name: str) -> str:
    """``name`` with its indefinite article ("a harbor", "an airplane", "storage tanks")."""
    return name if A.is_plural(name) else f"{A.article(name)} {name}"


def _near(mask: np.ndarray, other: np.ndarray, pixel_area_m2: float | None) -> np.ndarray:
    # "next to": within 10 m, and at least 3 pixels (the masks' edges are uncertain by about that)
    px = 3 if not pixel_area_m2 else max(3, int(round(10.0 / pixel_area_m2 ** 0.5)))
    return A.near_components(mask, other, px)


def _scene_presence(model: "GeoPixModel", view: View, target: Target, task: str, out) -> ChatReply:
    s = _scene(model, view)
    if s is None:
        why = _scene_refusal(model, view)
        if why is None or why.startswith("this model"):
            return out(f"I can't tell: I have not learned to recognise {target.phrase}.")
        return out(f"I can't tell whether this is {_a(target.phrase)}: {why}. I can describe it by its "
                   f"{_known_list(model)}.")
    best, pbest, probs = s
    scenes = list(model.config.scene_classes)
    # "a residential area" names three classes (dense, medium, sparse): the question is about all of them
    asked = set(words_of(target.phrase)) - {"a", "an", "the"}
    group = [c for c in scenes if asked and asked <= set(words_of(c)) | set(words_of(_plural(c)))] or [target.name]
    p = float(sum(probs[scenes.index(c)] for c in group))
    if len(group) > 1:
        target = Target(target.phrase.removeprefix("a ").removeprefix("an "), target.kind, target.phrase, target.similarity)
        best = target.name if best in group else best
    if task in ("count", "area", "location", "segment"):
        lead = (f"I can't outline or count {_plural(target.name)}: I only know them as a kind of scene, "
                f"not pixel by pixel.")
    else:
        lead = ""
    if p >= SCENE_SURE:
        yes = f"Yes, this looks like an aerial view of {_a(target.name)} ({p:.0%} sure)."
    elif best == target.name:  # the likeliest scene, but not likely enough to say yes
        yes = (f"Perhaps: of the scenes I know this looks most like {_a(target.name)}, but I am only "
               f"{p:.0%} sure.")
    else:
        yes = (f"No, this does not look like {_a(target.name)} (only {p:.0%}); it looks most like "
               f"{_a(best)} ({pbest:.0%}).")
    return out((lead + " " + yes).strip(), scene=(best, pbest))


def caption_from_masks(model: "GeoPixModel", class_masks: Sequence[np.ndarray], scene: tuple[str, float] | None,
                       pixel_area_m2: float | None = None, valid: np.ndarray | None = None,
                       locate: bool = True) -> tuple[str, list[int]]:
    """The caption of a view whose class masks (in :func:`class_phrases` order) are ``class_masks``.

    Returns the text and the indices of the classes it names, largest first. ``evaluate``
    writes its reference captions with this same function from the label masks.
    """
    classes = class_phrases(model)
    items = []
    for k, ((name, disp), m) in enumerate(zip(classes, class_masks)):
        f = A.mask_facts(m, pixel_area_m2, valid)
        if f.present:
            items.append((f.share, k, name, disp, f))
    items.sort(key=lambda t: -t[0])
    if scene is not None and scene[1] >= SCENE_SURE:
        opening = f"An aerial view of {_a(scene[0])}"
    else:
        opening = "An aerial view"
    if not items:
        return (f"{opening}. I can't tell what it shows: none of the {_known_list(model)} covers more than "
                f"{A.share_phrase(A.MIN_PRESENT_SHARE)} of it."), []
    parts = []
    for share, _, name, disp, f in items[:4]:
        extra = f", {f.count} separate objects" if name not in _MASS and f.count > 1 else ""
        parts.append(f"{disp} ({A.share_phrase(share)}{extra})")
    if not locate:  # a caption of a named part of the view: where its largest class lies is that part
        return f"{opening} with {A.join_words(parts)}.", [i[1] for i in items[:4]]
    top = items[0]
    where = top[4].location
    if where in ("", "across the whole view"):
        tail = f"The {top[3]} {'extend' if A.is_plural(top[3]) else 'extends'} across the whole view."
    else:
        tail = f"Most of the {top[3]} {'lie' if A.is_plural(top[3]) else 'lies'} {where}."
    return f"{opening} with {A.join_words(parts)}. {tail}", [i[1] for i in items[:4]]


def _most_cover(model: "GeoPixModel", view: View, place: int | None, pixel_area_m2: float | None, out) -> ChatReply:
    """Which class covers the most, each measured by its own mask as an area reply measures it (classes the view
    sees coarser than learned are left out, as captions leave them)."""
    classes = [(name, phrase) for name, phrase in class_phrases(model) if name not in view.coarse_notes]
    logits = view.logits([phrase for _, phrase in classes])  # one pass over the tiles for all of them
    rows = []
    for (name, phrase), logit in zip(classes, logits):
        mask = view.clouds() if name == "cloud" else view.counted(Target(phrase, "class", name, 1.0))
        rows.append((phrase, mask, logit))
    return M.most_cover_reply(rows, view.valid, place, pixel_area_m2, out)


def _caption(model: "GeoPixModel", view: View, pixel_area_m2: float | None, out, place: int | None = None) -> ChatReply:
    """The caption of the view, or (``place``) of that part of it, with shares of that part."""
    classes = class_phrases(model)
    logits = view.logits([d for _, d in classes])
    s = _scene(model, view)
    scene = (s[0], s[1]) if s is not None else None
    # a caption describes a partition of the view: each pixel goes to its most likely class (if any
    # is > 0.5), so shares add up to at most 100 % and a bright field is not both clouds and vegetation
    stack = np.stack(logits)
    # a class the model sees coarser than it learned it (buildings on a 5 m scene) is left out of captions
    for k, (name, _) in enumerate(classes):
        if name in view.coarse_notes:
            stack[k] = -np.inf
    best = stack.argmax(0)
    fg = stack.max(0) > 0
    parts = [(best == k) & fg & (not view.doubted(d, name)) for k, (name, d) in enumerate(classes)]
    # a cloud hides the ground: its pixels are cloud whatever else the ground classes say there
    # (the reply's own cloud mask: empty when the presence check vetoes the clouds)
    parts = [view.clouds() if name == "cloud" else view.seen(part, name) for part, (name, _) in zip(parts, classes)]
    valid = view.valid
    if place is not None:
        region = A.place_region(place, view.size)
        parts = [part & region for part in parts]
        valid = region if valid is None else valid & region
    text, named = caption_from_masks(model, parts, scene if place is None else None, pixel_area_m2, valid,
                                     locate=place is None)
    if place is not None:
        text = f"{A.place_words(place).capitalize()} of the view: {text[0].lower()}{text[1:]}"
    if view.valid is not None:
        text += f" The scene has no data for {A.share_phrase(1.0 - float(view.valid.mean()))} of the view; shares are of the rest."
    return out(text, [classes[k][1] for k in named], [parts[k] for k in named],
               [A.masked_logits(parts[k], logits[k]) for k in named],
               scene)
