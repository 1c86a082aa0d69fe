"""Text <-> tensors for GeoPix: prompt layout, placeholders, labels, batches.

Sequence layout (one image per sequence, Vicuna-style turns)::

    <s> USER: <image>*N \\n{question 1} ASSISTANT: {answer 1}</s> USER: {question 2} ASSISTANT: ...

* ``<image>`` is repeated ``config.num_image_tokens`` times; the model overwrites those
  embeddings with projected image features (LLaVA splice, no length change, so labels and
  positions never need re-indexing).
* Each segmentation target in an answer is written ``[SEG0]..[SEG5]``; the hidden state that
  *predicts* each SEG token (LISA's convention) becomes that target's prompt, and targets are
  matched to ``gt_masks`` in order of appearance.
* Each region in a question is written ``<mask><pos>``; regions are matched to
  ``region_masks`` in order of appearance.
* ``labels`` copy the answer ids (SEG tokens and ``</s>`` included, so the LM learns to emit
  them) and are ``-100`` everywhere else: the prefix, the image tokens, the questions and the
  ``<mask>``/``<pos>`` placeholders.

Text is tokenized piece by piece at fixed boundaries, so the teacher-forced segmentation
path, KV-cached decoding and training all see identical ids for the same text.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch

from .config import GeoPixConfig
from .tokenizer import IMAGE_TOKEN, MASK_TOKEN, POS_TOKEN, seg_tokens

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Conversation = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class SpecialIds:
    image: int
    seg: tuple[int, ...]
    mask: int
    pos: int
    bos: int | None
    eos: int
    pad: int


class GeoPixProcessor:
    """Builds model inputs from text; owns no weights."""

    def __init__(self, tokenizer: "PreTrainedTokenizerBase", config: GeoPixConfig) -> None:
        self.tokenizer = tokenizer
        self.config = config
        seg = seg_tokens(config.num_seg_scales, config.seg_tokens_per_scale)
        conv = tokenizer.convert_tokens_to_ids
        self.ids = SpecialIds(
            image=conv(IMAGE_TOKEN), seg=tuple(conv(t) for t in seg), mask=conv(MASK_TOKEN), pos=conv(POS_TOKEN),
            bos=tokenizer.bos_token_id, eos=tokenizer.eos_token_id, pad=tokenizer.pad_token_id,
        )
        self.seg_text = "".join(seg)
        self._cache: dict[tuple, object] = {}

    # ------------------------------------------------------------------ text pieces
    def encode(self, text: str) -> list[int]:
        if IMAGE_TOKEN in text:
            raise ValueError(f"{IMAGE_TOKEN} is inserted by the processor; remove it from the text")
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def prefix_ids(self) -> list[int]:
        """Everything up to and including the image tokens: identical for every prompt of a tile."""
        key = ("prefix",)
        if key not in self._cache:
            bos = [self.ids.bos] if self.ids.bos is not None else []
            self._cache[key] = bos + self.encode("USER: ") + [self.ids.image] * self.config.num_image_tokens
        return list(self._cache[key])

    def question_ids(self, question: str, first: bool = True) -> list[int]:
        return self.encode(("\n" if first else "USER: ") + question.strip() + " ASSISTANT:")

    def answer_ids(self, answer: str, eos: bool = True) -> list[int]:
        return self.encode(" " + answer.strip()) + ([self.ids.eos] if eos else [])

    #: the wording of :meth:`segmentation_question` around its prompt (read back by :meth:`requested_prompt`)
    _SEG_QUESTION = ("Please segment the ", " in this image.")

    @classmethod
    def segmentation_question(cls, prompt: str) -> str:
        head, tail = cls._SEG_QUESTION
        return f"{head}{prompt.strip()}{tail}"

    @classmethod
    def requested_prompt(cls, question: str) -> str:
        """The prompt inside :meth:`segmentation_question`'s wording, else the question itself.

        The text whose meaning conditions a generated mask: the same prompt that
        :meth:`GeoPixModel.segment` reads, so both give the same masks for the same request.
        """
        q = question.strip()
        head, tail = cls._SEG_QUESTION
        if q.startswith(head) and q.endswith(tail) and len(q) > len(head) + len(tail):
            return q[len(head):-len(tail)].strip()
        return question

    def segmentation_answer(self) -> str:
        return f"Sure, {self.seg_text}."

    @staticmethod
    def region_question(index: int = 1) -> str:
        return f"What is in region{index} {MASK_TOKEN}{POS_TOKEN}? Answer briefly."

    # ------------------------------------------------------------------ inference helpers
    def segmentation_suffix(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forced question + answer template for each prompt (after the image prefix).

        Returns right-padded ids ``[P, L]``, attention ``[P, L]`` and, per prompt, the
        positions ``[P, n_seg]`` whose hidden state predicts ``[SEG0]..[SEG5]``.
        """
        key = ("seg", tuple(prompts))
        if key not in self._cache:
            rows = [self.question_ids(self.segmentation_question(p)) + self.answer_ids(self.segmentation_answer(),
                                                                                       eos=False) for p in prompts]
            length = max(len(r) for r in rows)
            ids = torch.full((len(rows), length), self.ids.pad, dtype=torch.long)
            attn = torch.zeros((len(rows), length), dtype=torch.long)
            pos = torch.zeros((len(rows), len(self.ids.seg)), dtype=torch.long)
            for i, r in enumerate(rows):
                ids[i, : len(r)] = torch.tensor(r)
                attn[i, : len(r)] = 1
                for k, sid in enumerate(self.ids.seg):
                    pos[i, k] = r.index(sid) - 1
            if len(self._cache) > 256:
                self._cache = {k: v for k, v in self._cache.items() if k[0] == "prefix"}
            self._cache[key] = (ids, attn, pos)
        return self._cache[key]  # type: ignore[return-value]

    # ------------------------------------------------------------------ training batches
    def encode_conversation(self, conversation: Conversation) -> tuple[list[int], list[int]]:
        """(ids, labels) for one image's conversation of (question, answer) turns."""
        ids = self.prefix_ids()
        labels = [-100] * len(ids)
        for turn, (question, answer) in enumerate(conversation):
            q = self.question_ids(question, first=turn == 0)
            a = self.answer_ids(answer)
            ids += q + a
            labels += [-100] * len(q) + [t if t not in (self.ids.mask, self.ids.pos) else -100 for t in a]
        return ids, labels

    def build_batch(self, images: torch.Tensor, conversations: Sequence[Conversation],
                    gt_masks: Sequence[torch.Tensor] | None = None,
                    region_masks: Sequence[torch.Tensor] | None = None) -> dict[str, object]:
        """Collate a training batch for :meth:`GeoPixModel.forward`.

        ``images`` float ``[B, 3, H, W]`` in [0, 1]; ``conversations[b]`` a list of
        (question, answer) strings; ``gt_masks[b]`` ``[T_b, H, W]`` for the ``T_b`` SEG groups
        in image b's answers; ``region_masks[b]`` ``[R_b, H, W]`` for its ``<mask><pos>`` pairs.
        Each SEG group's target text (what a text encoder reads) is the prompt its turn's
        question asks for (:meth:`requested_prompt`).
        """
        encoded = [self.encode_conversation(c) for c in conversations]
        length = max(len(i) for i, _ in encoded)
        b = len(encoded)
        input_ids = torch.full((b, length), self.ids.pad, dtype=torch.long)
        labels = torch.full((b, length), -100, dtype=torch.long)
        attention = torch.zeros((b, length), dtype=torch.long)
        for row, (ids, lab) in enumerate(encoded):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, : len(lab)] = torch.tensor(lab)
            attention[row, : len(ids)] = 1
            n_seg = sum(1 for t in ids if t == self.ids.seg[0])
            if gt_masks is not None and n_seg != len(gt_masks[row]):
                raise ValueError(f"sample {row}: {n_seg} SEG groups in the text but {len(gt_masks[row])} masks")
            n_reg = sum(1 for t in ids if t == self.ids.mask)
            if region_masks is not None and n_reg != len(region_masks[row]):
                raise ValueError(f"sample {row}: {n_reg} <mask> placeholders but {len(region_masks[row])} regions")
        batch: dict[str, object] = {"images": images, "input_ids": input_ids, "attention_mask": attention,
                                    "labels": labels}
        if gt_masks is not None:
            batch["gt_masks"] = list(gt_masks)
            batch["target_texts"] = [[self.requested_prompt(q) for q, a in conv for _ in range(a.count(self.seg_text))]
                                     for conv in conversations]
        if region_masks is not None:
            batch["region_masks"] = list(region_masks)
        return batch

    def build_segmentation_batch(self, images: torch.Tensor, prompts: Sequence[Sequence[str]],
                                 masks: Sequence[torch.Tensor]) -> dict[str, object]:
        """Referring/category segmentation: one turn per target, answer = SEG template.

        ``prompts[b]`` are the target phrases of image b, ``masks[b]`` their ``[T_b, H, W]`` masks.
        """
        convs = [[(self.segmentation_question(p), self.segmentation_answer()) for p in ps] for ps in prompts]
        batch = self.build_batch(images, convs, gt_masks=masks)
        batch["target_texts"] = [list(ps) for ps in prompts]
        return batch

    def build_region_batch(self, images: torch.Tensor, answers: Sequence[Sequence[str]],
                           region_masks: Sequence[torch.Tensor]) -> dict[str, object]:
        """Region captioning/classification: one turn per region, question with ``<mask><pos>``."""
        convs = [[(self.region_question(i + 1), a) for i, a in enumerate(ans)] for ans in answers]
        return self.build_batch(images, convs, region_masks=region_masks)
