"""The checkpoint's ``tokenizer.json`` read by ``tokenizers`` alone, for inference.

Why: ``transformers``' tokenizer classes cost ~1.5 s of imports (its lazy module scans the
whole package) for what is, in our checkpoints, a plain ``tokenizers`` file with added
special tokens. This wrapper gives the processor and the model the few calls they make
(``tokenizer(text).input_ids``, ``decode``, ``convert_tokens_to_ids``, the special ids) with
the same results; ``tests/test_model_native.py`` checks the ids against transformers.
Training and saving keep transformers' tokenizer.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PlainTokenizer", "load_plain_tokenizer"]


@dataclass(frozen=True)
class _Encoding:
    input_ids: list[int]


class PlainTokenizer:
    """Subset of ``PreTrainedTokenizerFast`` over a ``tokenizers.Tokenizer``."""

    def __init__(self, raw, bos: str | None, eos: str | None, pad: str | None, unk: str | None,
                 extra: list[str]) -> None:  # noqa: ANN001 - tokenizers.Tokenizer
        self._raw = raw
        self.bos_token, self.eos_token, self.pad_token, self.unk_token = bos, eos, pad, unk
        self.all_special_tokens = list(dict.fromkeys(t for t in (bos, eos, unk, pad, *extra) if t))
        self._special_ids = {raw.token_to_id(t) for t in self.all_special_tokens}

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self._raw.token_to_id(token)

    @property
    def bos_token_id(self) -> int | None:
        return self._id(self.bos_token)

    @property
    def eos_token_id(self) -> int | None:
        return self._id(self.eos_token)

    @property
    def pad_token_id(self) -> int | None:
        return self._id(self.pad_token)

    def __len__(self) -> int:
        return self._raw.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self._raw.get_vocab(with_added_tokens=True)

    def convert_tokens_to_ids(self, token: str) -> int | None:
        i = self._raw.token_to_id(token)
        return self._id(self.unk_token) if i is None else i

    def __call__(self, text: str, add_special_tokens: bool = True) -> _Encoding:
        return _Encoding(self._raw.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        if skip_special_tokens:
            ids = [i for i in ids if i not in self._special_ids]
        return self._raw.decode(list(ids), skip_special_tokens=False)

    def save_pretrained(self, directory: str) -> None:
        raise ValueError("the inference tokenizer does not save; load the checkpoint without native=True to re-save it")


def load_plain_tokenizer(path: str | Path, specials: list[str]) -> PlainTokenizer | None:
    """The tokenizer of checkpoint folder ``path``, or None when it needs transformers.

    Only folders whose ``tokenizer_config.json`` names a plain tokenizers backend and whose
    ``tokenizer.json`` already holds every GeoPix special token qualify.
    """
    path = Path(path)
    cfg_file, tok_file = path / "tokenizer_config.json", path / "tokenizer.json"
    if not (cfg_file.is_file() and tok_file.is_file()):
        return None
    try:
        cfg = json.loads(cfg_file.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(cfg, dict) or cfg.get("tokenizer_class") not in ("TokenizersBackend", "PreTrainedTokenizerFast") \
            or "auto_map" in cfg:
        return None
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(tok_file))
    added = {t.content for t in raw.get_added_tokens_decoder().values()}
    extra = [str(t) for t in cfg.get("extra_special_tokens") or cfg.get("additional_special_tokens") or []]
    names = [cfg.get(k) for k in ("bos_token", "eos_token", "pad_token", "unk_token")]
    if any(not isinstance(n, (str, type(None))) for n in names) or any(t not in added for t in (*specials, *extra)):
        return None
    bos, eos, pad, unk = names
    return PlainTokenizer(raw, bos, eos, pad, unk, extra)
