"""The offline tokenizer: deterministic, special tokens atomic, piecewise == whole-text ids."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from geopix_tiles.model import GeoPixConfig, GeoPixProcessor
from geopix_tiles.model.tokenizer import _train_bpe_json, build_tiny_tokenizer, special_tokens


def test_bpe_training_is_deterministic() -> None:
    specials = tuple(special_tokens())
    assert _train_bpe_json.__wrapped__(1024, specials) == _train_bpe_json.__wrapped__(1024, specials)


def test_special_tokens_are_single_ids_and_in_order() -> None:
    tok = build_tiny_tokenizer()
    ids = [tok.convert_tokens_to_ids(t) for t in special_tokens()]
    assert len(set(ids)) == len(ids) == 9 and tok.unk_token_id not in ids
    text = "What is in region1 <mask><pos>? Sure, [SEG0][SEG1][SEG2][SEG3][SEG4][SEG5]."
    enc = tok(text, add_special_tokens=False).input_ids
    for t in ("<mask>", "<pos>", "[SEG0]", "[SEG5]"):
        assert enc.count(tok.convert_tokens_to_ids(t)) == 1
    assert tok.decode(enc) == text


def test_piecewise_tokenization_matches_whole_text() -> None:
    proc = GeoPixProcessor(build_tiny_tokenizer(), GeoPixConfig.tiny())
    for q, a in [("Please segment the storage tanks in this image.", proc.segmentation_answer()),
                 ("Where are the boats?", "Two boats near the pier [SEG0][SEG1][SEG2][SEG3][SEG4][SEG5].")]:
        whole = proc.encode("\n" + q + " ASSISTANT: " + a)
        assert proc.question_ids(q) + proc.answer_ids(a, eos=False) == whole


def test_chat_template_renders_the_processor_layout() -> None:
    tok = build_tiny_tokenizer()
    text = tok.apply_chat_template([{"role": "user", "content": "<image>\nWhere are the roads?"},
                                    {"role": "assistant", "content": "Here."}], tokenize=False)
    assert text == "<s>USER: <image>\nWhere are the roads? ASSISTANT: Here.</s>"
