"""The words of a free-text prompt that name what to segment.

Why: a sentence embedding is close to a bag of words. "the small houses near the road" lands
between "buildings" and "roads" in MiniLM space, so the text bank mixed the two and the masks
lost a fifth of their IoU. In English referring expressions the thing asked for comes first
and a relation word introduces the context ("near the road", "along the river", "that are
red", ", not the roads"); the class decision is made on the words before it. The relation
itself is not dropped from the reply path: ``chat``/``ask`` read it (:mod:`.dialogue`), and the
LLM still reads the whole prompt.
"""
from __future__ import annotations

import re

__all__ = ["RELATION_CUES", "subject_phrase"]

#: words (or word pairs) that end the subject of a referring expression
RELATION_CUES: tuple[tuple[str, ...], ...] = (
    ("next", "to"), ("close", "to"), ("adjacent", "to"), ("in", "front", "of"), ("surrounded", "by"),
    ("apart", "from"), ("other", "than"), ("and", "not"), ("but", "not"),
    ("near",), ("nearby",), ("beside",), ("besides",), ("around",), ("along",), ("alongside",), ("bordering",),
    ("by",), ("between",), ("behind",), ("across",), ("surrounding",), ("facing",), ("at",), ("on",), ("in",),
    ("inside",), ("outside",), ("within",), ("with",), ("without",), ("except",), ("not",), ("that",),
    ("which",), ("where",), ("who",),
)
_MAX_CUE = max(len(c) for c in RELATION_CUES)


def subject_phrase(text: str) -> str:
    """``"the small houses near the road"`` -> ``"the small houses"``; text without a relation unchanged.

    A cue in first position ("in the north") or a clause that would leave nothing keeps the
    whole text. A comma also ends the subject ("only the roofs, not the roads").
    """
    head = text.split(",", 1)[0].strip() or text.strip()
    words = head.split()
    low = [re.sub(r"[^a-z\-]", "", w.lower()) for w in words]
    for i in range(1, len(words)):
        for n in range(_MAX_CUE, 0, -1):
            if tuple(low[i:i + n]) in RELATION_CUES:
                return " ".join(words[:i])
    return head
