"""Replies that measure the masks: sizes a question sets, distances, the densest part, the view's size, cover counts.

Why apart from :mod:`.dialogue`: the dialogue module parses a question and picks the reply; these
functions only measure the reply's own masks (scipy and the helpers of :mod:`.answer`), so every
number they write can be recomputed from the masks they return (the tests do). Each takes the
dialogue's ``out`` callable, which turns text and masks into a ``ChatReply``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from . import answer as A

if TYPE_CHECKING:  # pragma: no cover
    from .dialogue import ChatReply, Question, View

__all__ = ["threshold_reply", "within_bounds", "distance_reply", "densest_part_reply", "view_size_text", "cover_count_text",
           "places_reply", "most_cover_reply", "mostly_in_reply",
           "size_statistics_reply"]

Out = Callable[..., Any]


def within_bounds(mask: np.ndarray, bounds: tuple[float, float, str],
                  pixel_area_m2: float | None) -> tuple[np.ndarray, str]:
    """The parts of ``mask`` within a question's size bounds, and the words that say so ("of at least 10 ha")."""
    low, high, unit = bounds
    per = 1.0 if unit == "px" else float(pixel_area_m2 or 1.0)

    def words(v: float) -> str:  # the question's own figure: "10 ha", "200 m²", "500 pixels"
        if unit == "px":
            return f"{v:,.0f} pixels"
        if v >= 1e6:
            return f"{v / 1e6:,.4g} km²"
        return f"{v / 1e4:,.4g} ha" if v >= 1e4 else f"{v:,.4g} m²"

    # the parts kept are the parts counted: never below the counting size ("over 1 m²" keeps no 4-pixel speck)
    floor = max(low / per, A.min_object_pixels(pixel_area_m2 if unit == "m2" else None)) if low > 0 else 0.0
    kept = A.parts_within(mask, floor, high / per)
    if low > 0 and high < float("inf"):
        return kept, f" of {words(low)} to {words(high)}"
    return kept, f" of at least {words(low)}" if low > 0 else f" smaller than {words(high)}"


def distance_reply(view: "View", question: "Question", mask: np.ndarray, logit: np.ndarray, what: str,
                   pixel_area_m2: float | None, out: Out) -> "ChatReply":
    """ "How far is the largest lake from the road?": the gap between the nearest pixels of the two masks."""
    from scipy import ndimage

    rel = question.relation
    other = view.counted(rel)
    if question.place is not None:
        other = other & A.place_region(question.place, other.shape)
    lg = [logit, np.where(other, 1.0, -1.0).astype(np.float32)]
    prompts = [question.target.phrase, rel.phrase]
    # the thing measured from may be one part ("the largest lake", under the presence rule's 0.25 % of a large
    # view): it needs pixels; the thing measured to is a whole class, present by the reply rule
    for found, name in ((bool(mask.any()), what), (A.present(int(other.sum()), A.share_of(other, view.valid)),
                                                    rel.phrase)):
        if not found:
            return out(f"I find no {name} in this view, so I can't measure how far apart they are.", prompts,
                       [mask, other], lg)
    if (mask & other).any():
        gap = 0.0
    else:  # the distance from each pixel of ``mask`` to the nearest pixel of ``other``, in pixels
        gap = float(ndimage.distance_transform_edt(~other)[mask].min())
    side = pixel_area_m2 ** 0.5 if pixel_area_m2 else None
    if gap == 0:
        text = f"The {what} touch{'' if A.is_plural(what) else 'es'} the {rel.phrase}: their masks meet."
    elif side is None:
        text = f"About {gap:,.0f} pixels separate the {what} from the nearest {rel.phrase}, at their closest points."
    else:
        metres = gap * side
        words = f"{metres / 1000:,.1f} km" if metres >= 1000 else f"{A.round_sig(metres):,.0f} m"
        text = (f"About {words} separate the {what} from the nearest {rel.phrase}, at their closest points "
                f"({gap:,.1f} pixels of {side:.2g} m).")
    return out(text, prompts, [mask, other], lg)


_CELLS_OF = {"part": range(9), "side": (1, 3, 5, 7), "corner": (0, 2, 6, 8)}


def densest_part_reply(view: "View", question: "Question", what: str, said: str, mask: np.ndarray,
                       logit: np.ndarray, pixel_area_m2: float | None, out: Out) -> "ChatReply":
    """ "Which part has the most vegetation?": the cell of the reply grid the mask covers most densely (a side is
    its third, a corner its ninth, as "in the north" means), with that part's mask and numbers."""
    regions = [(c, A.place_region(c, mask.shape)) for c in _CELLS_OF[question.where_most or "part"]]
    dens = [(A.share_of(mask & r, r if view.valid is None else r & view.valid), c, r) for c, r in regions]
    best, cell, region = max(dens, key=lambda t: t[0])
    part = mask & region
    f = A.mask_facts(part, pixel_area_m2, view.valid)
    where = A.place_noun(cell)
    text = (f"{where[0].upper() + where[1:]} has the most {what}: they cover {A.share_phrase(best)} of that part "
            f"({A.area_phrase(f.area_m2, f.pixels)}), against {A.share_phrase(A.share_of(mask, view.valid))} of the "
            f"whole view.")
    if not A.is_plural(said):
        text = text.replace(": they cover", ": it covers", 1)
    return out(text, [question.target.phrase], [part], [A.masked_logits(part, logit)])


def view_size_text(view: "View", pixel_area_m2: float | None) -> str:
    """ "The view covers about 16.9 km²: 934 x 724 pixels of about 5 m." (of the pixels with data, if some lack it)."""
    h, w = view.size
    dims = f"{w:,} x {h:,} pixels"
    if not pixel_area_m2:
        return f"The view is {dims}; without a georeference I don't know its pixels' size, so not its area."
    side = pixel_area_m2 ** 0.5
    side_words = f"{side:,.0f} m" if side >= 10 else f"{side:.2g} m"
    text = f"The view covers {A.area_phrase(h * w * pixel_area_m2, h * w)}: {dims} of about {side_words}."
    if view.valid is not None and np.count_nonzero(view.valid) < 0.995 * view.valid.size:  # a collar worth naming
        n = int(np.count_nonzero(view.valid))
        text += f" The scene has data for {A.area_phrase(n * pixel_area_m2, n)} of it."
    return text


def cover_count_text(said: str, cover: str, counted: str, mask: np.ndarray, pixel_area_m2: float | None,
                     covering: str, sized: bool = False) -> str:
    """A count of a cover class (water, vegetation, bare land, clouds): its patches, the sizeable ones, the largest.

    The model knows such a class as a cover, not object by object: "How many lakes?" counted every 4 m²
    speck of water ("88 separate patches of lakes") and "How many trees?" gave the canopy's two patches
    as two trees. The reply keeps the count of the mask's parts (the number its facts hold) and adds what
    a reader can use: how many parts are at least :data:`answer.SIZEABLE_M2` and how large the largest is;
    a plural word for single things of a cover class ("trees", "fields") is told it is not counted one by one.
    """
    parts = A.part_sizes(mask, A.min_object_pixels(pixel_area_m2))
    lead = ""
    if A.is_plural(said) and said != cover and cover != "water":
        lead = f"I can't count {said} one by one: I see {cover} as a cover, and {said} that touch form one patch. "
    each = "" if sized else f" (each at least {A.min_size_phrase(pixel_area_m2)})"  # sized: the question set the size
    text = f"{lead}I count {counted}{each}, covering {covering}"
    if parts.size < 2 or sized:  # one part, or a size the question set: the count says it all
        return text + "."
    largest = A.area_phrase(parts[0] * pixel_area_m2 if pixel_area_m2 else None, int(parts[0]))
    big = A.sizeable_pixels(pixel_area_m2, mask.size)
    if big <= A.min_object_pixels(pixel_area_m2):  # pixels so coarse that every counted part is sizeable
        return f"{text}; the largest {largest}."
    k = int((parts >= big).sum())
    big_words = (A.area_phrase(big * pixel_area_m2, big).removeprefix("about ") if pixel_area_m2
                 else f"{A.share_phrase(A.SIZEABLE_SHARE)} of the view")
    if k == 0:
        return f"{text}; none of them is as large as {big_words}, the largest {largest}."
    return f"{text}; {k} of them {'is' if k == 1 else 'are'} {big_words} or larger, the largest {largest}."


def threshold_reply(threshold: tuple[str, float, str], f: "A.MaskFacts | None", what: str, said: str,
                    counted: str, area: str, prompts: list, masks: list, logits: list, out: Out,
                    part: tuple[float, str] | None = None) -> "ChatReply":
    """ "Are there more than 10 buildings?" / "Does vegetation cover more than half of the image?": yes or no
    from the reply's mask (its count, or its share of the view), with the number. ``f`` is None when the thing is
    not there (count 0, share 0, no pixels returned); ``counted`` is the count in words ("34 buildings ...").
    ``part``: (the mask's share of a part of the view, its name, e.g. "the north") when the question names one:
    a share threshold is then that part's."""
    op, value, kind = threshold
    share, of = (f.share if f is not None else 0.0, "the view") if part is None else part
    have = 0.0 if f is None else float(f.count if kind == "count" else share)
    ok = {">": have > value, ">=": have >= value, "<": have < value, "<=": have <= value}[op]
    rel = {">": "more than", ">=": "at least", "<": "fewer than" if kind == "count" else "less than",
           "<=": "at most"}[op]
    lead = "Yes" if ok else "No"
    if f is None:
        return out(f"{lead}: I find no {what} in this view.", prompts, [np.zeros_like(masks[0])], logits)
    if kind == "count":
        text = f"{lead}: I count {counted}, {'' if ok else 'not '}{rel} {value:,.0f}."
    else:
        limit = next((w for v, w in _FRACTION_WORDS if abs(value - v) < 1e-6), None) or A.share_phrase(value)
        # near the limit the usual rounding ("about 25 %" for 24.97 %) would contradict the yes or no
        shown = f"{100 * share:.2f} %" if abs(share - value) < 0.01 else A.share_phrase(share)
        text = (f"{lead}: the {what} cover{'' if A.is_plural(said) else 's'} about {shown} of "
                f"{of} ({area}), {'' if ok else 'not '}{rel} {limit}.")
    return out(text, prompts, masks, logits)


_FRACTION_WORDS = ((0.5, "half"), (1 / 3, "a third"), (0.25, "a quarter"), (2 / 3, "two thirds"),
                   (0.75, "three quarters"), (0.1, "a tenth"))


def places_reply(view: "View", cells: tuple[int, int], mask: np.ndarray, logit: np.ndarray, phrase: str, said: str,
                 fewer: bool, pixel_area_m2: float | None, out: Out) -> "ChatReply":
    """ "Is there more water in the north or the south?": the share of each part its mask covers (a side is its
    third, a corner its ninth, as "in the north" means), the part with more (``fewer``: less) first, and each
    part's mask."""
    rows = []
    for cell in cells:
        region = A.place_region(cell, mask.shape)
        part = mask & region
        share = A.share_of(part, region if view.valid is None else region & view.valid)
        f = A.mask_facts(part, pixel_area_m2, view.valid)
        rows.append((share, cell, part, A.area_phrase(f.area_m2, f.pixels), f.present))
    lg = [A.masked_logits(r[2], logit) for r in rows]
    verb = "" if A.is_plural(said) else "s"
    if not any(r[4] for r in rows):
        text = f"I find no {said} in {A.place_noun(cells[0])} or in {A.place_noun(cells[1])}."
        none = np.zeros_like(mask)
        return out(text, [phrase, phrase], [none] * 2, [A.masked_logits(none, logit)] * 2)
    a, b = rows
    if A.share_phrase(a[0]) == A.share_phrase(b[0]):
        text = (f"About as much: the {said} cover{verb} {A.share_phrase(a[0])} of {A.place_noun(a[1])} "
                f"({a[3]}) and of {A.place_noun(b[1])} ({b[3]}).")
    else:
        win, lose = (a, b) if (a[0] > b[0]) != fewer else (b, a)
        name = A.place_noun(win[1])
        text = (f"{name[0].upper() + name[1:]} has {'less' if fewer else 'more'} {said}: {A.share_phrase(win[0])} "
                f"of it ({win[3]}), against {A.share_phrase(lose[0])} of {A.place_noun(lose[1])} ({lose[3]}).")
    return out(text, [phrase, phrase], [a[2], b[2]], lg)


def most_cover_reply(rows: list[tuple[str, np.ndarray, np.ndarray]], valid: np.ndarray | None, place: int | None,
                     pixel_area_m2: float | None, out: Out) -> "ChatReply":
    """ "What covers most of the image?": the class whose mask (as an area reply measures it) covers the largest
    share of the view or of ``place``, then the next two. ``rows``: (class phrase, mask, logits) of every class
    the view is answered for."""
    region = None if place is None else A.place_region(place, rows[0][1].shape)
    of = "the view" if place is None else A.place_noun(place)
    where = region if valid is None else valid if region is None else region & valid
    measured = []
    for phrase, mask, logit in rows:
        part = mask if region is None else mask & region
        measured.append((A.share_of(part, where), phrase, part, logit))
    measured.sort(key=lambda t: -t[0])
    share, phrase, part, logit = measured[0]
    if not A.present(int(part.sum()), share):
        return out(f"I find none of the {A.join_words([m[1] for m in measured])} in {of}.")
    f = A.mask_facts(part, pixel_area_m2, valid)
    rest = [f"{m[1]} ({A.share_phrase(m[0])})" for m in measured[1:3] if A.present(int(m[2].sum()), m[0])]
    then = f"; then {A.join_words(rest)}" if rest else ""
    text = (f"{phrase[0].upper() + phrase[1:]} cover{'' if A.is_plural(phrase) else 's'} more of {of} than any other "
            f"class: about {A.share_phrase(share)} ({A.area_phrase(f.area_m2, f.pixels)}){then} (each class measured "
            "on its own mask).")
    return out(text, [phrase], [part], [A.masked_logits(part, logit)])


def mostly_in_reply(view: "View", place: int, mask: np.ndarray, logit: np.ndarray, phrase: str, said: str,
                    rel_words: str, pixel_area_m2: float | None, out: Out) -> "ChatReply":
    """ "Are most of the buildings in the north?": yes when more than half of the class's mask (its area) lies in
    that part, with that share and where the whole mask lies; the mask returned is the whole class's."""
    what = f"{said}{rel_words}"
    if not A.present(int(mask.sum()), A.share_of(mask, view.valid)):
        none = np.zeros_like(mask)
        return out(f"I find no {what} in this view.", [phrase], [none], [A.masked_logits(none, logit)])
    region = A.place_region(place, mask.shape)
    inside = float((mask & region).sum()) / float(mask.sum())
    asked = A.place_words(place)
    f = A.mask_facts(mask, pixel_area_m2, view.valid)
    plural = A.is_plural(said)
    text = (f"{'Yes' if inside > 0.5 else 'No'}: {A.share_phrase(inside)} of the {what} (by area) "
            f"lie{'' if plural else 's'} {asked}; all of {'them' if plural else 'it'} cover{'' if plural else 's'} "
            f"{A.share_phrase(f.share)} of the view ({A.area_phrase(f.area_m2, f.pixels)}), {f.location}.")
    return out(text, [phrase], [mask], [A.masked_logits(mask, logit)])


def size_statistics_reply(mask: np.ndarray, counted: str, pixel_area_m2: float | None, prompts: list,
                          logit: np.ndarray, out: Out) -> "ChatReply":
    """ "What is the average size of the lakes?": mean and median of the parts a count counts (``counted`` says
    them: "62 separate patches of water"), with the largest and the smallest; the mask is those parts."""
    px = A.min_object_pixels(pixel_area_m2)
    sizes = A.part_sizes(mask, px)
    kept = A.parts_within(mask, px)
    if sizes.size == 0:
        return out(f"I find only parts smaller than {A.min_size_phrase(pixel_area_m2)}, too small to measure one by "
                   "one.", prompts, [kept], [A.masked_logits(kept, logit)])

    def size(pixels: float) -> str:
        return A.area_phrase(pixels * pixel_area_m2, int(round(pixels))).removeprefix("about ") if pixel_area_m2 \
            else f"{pixels:,.0f} pixels"

    text = (f"The {counted} (each at least {A.min_size_phrase(pixel_area_m2)}) average about {size(sizes.mean())} "
            f"(median {size(float(np.median(sizes)))}); the largest {size(sizes.max())}, the smallest "
            f"{size(sizes.min())}.")
    return out(text, prompts, [kept], [A.masked_logits(kept, logit)])
