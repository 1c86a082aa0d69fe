"""GeoPixModel: the GeoPix (text -> masks) and Aquila-plus (masks -> text) model in one.

Training loop contract (see :mod:`geopix_tiles.model.processor` for the sequence layout)::

    model = GeoPixModel(GeoPixConfig.tiny())
    batch = model.processor.build_segmentation_batch(
        images,                           # float [B, 3, H, W] in [0, 1], H, W any size
        [["buildings", "water"], ["roads"]],   # target phrases per image
        [masks_0, masks_1],               # [T_b, H, W] bool/float per image, same order
    )
    # or build_region_batch(images, answers, region_masks) for mask -> text samples,
    # or build_batch(images, conversations, gt_masks=..., region_masks=...) for anything mixed
    out = model(**batch)                  # GeoPixOutput
    out.loss.backward()                   # = 1.0 ce + 2.0 bce + 0.5 dice (+ class_loss if given)

``forward`` takes ``images, input_ids, attention_mask, labels, gt_masks, region_masks`` and
optionally ``class_labels`` (list of ``[T_b]`` memory class ids, ``-1`` = unknown) to
supervise the class-wise memory's head. All tensors may live on any device; lists are
per-sample so each image can have any number of targets and regions.

Inference paths share one image encoding per tile:

* :meth:`segment` - teacher-forces the known SEG answer for every prompt in one LLM forward
  on top of a KV cache of the image prefix (computed once per tile, repeated per prompt).
* :meth:`generate` - the one LLM decoding path (greedy, KV-cached, batched, optional
  ``<mask><pos>`` regions); emitted SEG groups become masks from the hidden states that
  predicted them. :meth:`describe` and every caller that wants the LLM's own words use it.
* :meth:`classify_regions` - region class and confidence by scoring each class name.
* :meth:`chat` - a grounded reply to a question (see :mod:`.dialogue`): trained heads read
  the question, masks come from :meth:`segment_encoded`, the words from those masks.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import GeoPixConfig
from .dialogue import ChatReply, IntentHead, SceneHead, Turn, View, parse_question, reply_to
from .generation import LogitsProcessor, greedy_decode
from .llm import build_llm, decoder_forward, llm_config_dict, load_llm
from .location_prior import LocationPrior, named_place
from .losses import mask_bce, mask_dice, token_ce
from .mask_decoder import MaskPredictor, Neck, PixelDecoder
from .memory import ClassMemory
from .presence_check import PresenceCheck
from .processor import GeoPixProcessor
from .prompt_subject import subject_phrase
from .projector import ImageProjector
from .region import MaskAwareExtractor, ShapeEmbedding
from .seg_head import SegTokenHead
from .tokenizer import build_tiny_tokenizer, load_local_tokenizer
from .vision import build_vision_tower

_ALIGN = 32  # total stride of the ConvNeXt trunk


@dataclass
class GeoPixOutput:
    """What :meth:`GeoPixModel.forward` returns; every loss term is a finite scalar tensor."""

    loss: torch.Tensor
    ce_loss: torch.Tensor
    bce_loss: torch.Tensor
    dice_loss: torch.Tensor
    class_loss: torch.Tensor
    logits: torch.Tensor
    mask_logits: list[torch.Tensor] = field(default_factory=list)
    class_weights: torch.Tensor | None = None


@dataclass
class Generation:
    """The LLM's own answer: text, its token ids, and one mask per emitted ``[SEG0]..[SEG5]`` group."""

    text: str
    token_ids: list[int]
    masks: torch.Tensor
    mask_logits: torch.Tensor


@dataclass
class ImageEncoding:
    """Per-tile work shared by every prompt: stage features, image tokens, neck outputs."""

    feats: list[torch.Tensor]
    image_tokens: torch.Tensor
    scale_feats: list[torch.Tensor]
    size: tuple[int, int]
    padded: tuple[int, int]
    pixel_feats: torch.Tensor | None = None


@dataclass
class SegmentPlan:
    """What a segment call needs that depends on the prompts and the batch size, not on the pixels.

    Built once per (prompts, batch) by :meth:`GeoPixModel.segment_plan`, so that
    :meth:`GeoPixModel.segment_planned` is device work only: no host synchronisation, no tensor
    made from Python data. That is what lets a GPU replay the whole call as one CUDA graph
    (:mod:`.cuda_graph`), and saves every call the prompt-side work.
    """

    prompts: tuple[str, ...]
    batch: int
    prefix_ids: torch.Tensor  # [B, Lp]
    image_slot: tuple[int, int]  # the <image> tokens' positions in the prefix: [start, end)
    ids: torch.Tensor  # [B*P, L] question + teacher-forced answer per (tile, prompt)
    attention: torch.Tensor  # [B*P, Lp + L]
    seg_pos: torch.Tensor  # [B*P, n_seg]
    tile_index: torch.Tensor  # [B*P]: tile of each row (0 x P, 1 x P, ...)
    text: torch.Tensor | None  # [B*P, scales, prompt_dim]: the text head's part of each decoder prompt
    share: torch.Tensor | None  # [B*P, 1, 1]: known share, clamped (see prompt_meaning)
    texts: list[str] | None  # per row, for the location prior; None leaves it out


class GeoPixModel(nn.Module):
    """See the module docstring for the training contract and inference paths."""

    def __init__(self, config: GeoPixConfig, tokenizer: Any = None, load_pretrained: bool = True,
                 native: bool = False) -> None:
        """``native=True`` builds the inference implementations of the tower and the LLM
        (:mod:`.efficientnet_lite`, :mod:`.llama_native`) where the config allows: same
        parameters and outputs, no timm / transformers model import. Training uses the default."""
        super().__init__()
        config.validate()
        self.config = config
        if tokenizer is None:
            tok_dir = config.tokenizer_path or config.llm_path
            tokenizer = (load_local_tokenizer(tok_dir, config.num_seg_scales, config.seg_tokens_per_scale)
                         if tok_dir else build_tiny_tokenizer(config.tokenizer_vocab_size, config.num_seg_scales,
                                                              config.seg_tokens_per_scale))
        if config.llm_path:
            llm = load_llm(config.llm_path)
        else:
            llm = build_llm(config.llm_config or {}, len(tokenizer), native=native)
        if llm.get_input_embeddings().weight.shape[0] < len(tokenizer):
            llm.resize_token_embeddings(len(tokenizer))
        self.llm = llm
        hidden = llm.get_input_embeddings().weight.shape[1]
        self.vision = build_vision_tower(config, load_pretrained, native=native)
        ch = self.vision.channels
        self.projector = ImageProjector(ch[config.projector_stage], hidden, config.image_token_grid)
        self.seg_head = SegTokenHead(hidden, config.prompt_dim, config.num_seg_scales, config.seg_tokens_per_scale)
        self.necks = nn.ModuleList(Neck(ch[s], config.decoder_dim, st)
                                   for s, st in zip(config.decoder_stages, config.decoder_strides))
        memory = ClassMemory(config.memory_classes, config.num_seg_scales, config.memory_slots, config.decoder_dim,
                             config.memory_heads, config.prompt_dim)
        self.mask_predictor = MaskPredictor(config.prompt_dim, config.decoder_dim, config.num_seg_scales,
                                            config.decoder_depth, config.decoder_heads, config.decoder_mlp_dim,
                                            config.decoder_attn_downsample, memory, config.pixel_decoder_dim)
        self.pixel_decoder = PixelDecoder(ch, config.pixel_decoder_dim) if config.pixel_decoder_dim else None
        self.region_extractor = MaskAwareExtractor(ch, config.region_dim, hidden)
        self.shape_embed = ShapeEmbedding(config.shape_size, config.shape_hidden, hidden)
        # prompt meaning from the offline sentence encoder, added to the SEG-token prompts
        text_in = hidden if config.text_encoder == "tokens" else config.text_dim
        self.text_head = (nn.Sequential(nn.Linear(text_in, hidden), nn.GELU(),
                                        nn.Linear(hidden, config.num_seg_scales * config.prompt_dim))
                          if config.text_encoder else None)
        self.location_prior = LocationPrior(config.location_grid) if config.location_grid else None
        if config.text_bank_size:
            self.register_buffer("text_bank", torch.zeros(config.text_bank_size, config.text_dim))
        self.scene_head = SceneHead(ch, len(config.scene_classes)) if config.scene_classes else None
        self.intent_head = IntentHead(config.text_dim, len(config.intent_tasks)) if config.intent_tasks else None
        check = config.extra.get("presence_check")  # fitted after training (training.presence_check)
        self.presence_check = (PresenceCheck(ch, check["classes"], check.get("threshold", 0.5))
                               if check else None)
        self.processor = GeoPixProcessor(tokenizer, config)

    # ------------------------------------------------------------------ basics
    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def device(self) -> torch.device:
        return self.projector.mlp[0].weight.device

    def head_parameters(self) -> int:
        """Trainable parameters outside the vision tower and the LLM (the GeoPix/Aquila heads)."""
        skip = {id(p) for m in (self.vision, self.llm) for p in m.parameters()}
        return sum(p.numel() for p in self.parameters() if id(p) not in skip)

    # ------------------------------------------------------------------ prompt meaning
    def _bank_rows(self) -> dict[str, int]:
        """phrase -> row of the text bank (built once per bank, not per batch)."""
        phrases = self.config.text_bank_phrases
        if getattr(self, "_rows_of", (None,))[0] is not phrases:
            self._rows_of = (phrases, {p: i for i, p in enumerate(phrases)})
        return self._rows_of[1]

    def _token_meaning(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-length mean of the LLM's input embeddings of each text's words (``text_encoder: tokens``).

        Differentiable: the embeddings learn with the rest, so that words asked for the same
        masks move together. Lower-cased with a leading space, as the words sit in a question. A
        referring phrase's context clause (", with roads to the north") is left to the SEG states:
        in a bag of words it names other classes and pulls the meaning towards them (two chips,
        evaluate seed 1: cIoU 0.62/0.59 over two training seeds with the cut, 0.62/0.51 without).
        """
        table = self.llm.get_input_embeddings()
        rows = []
        for t in texts:
            t = str(t).lower().split(", with ")[0]
            ids = self.processor.encode(" " + " ".join(t.split())) or [self.processor.ids.eos]
            rows.append(table(torch.tensor(ids, device=table.weight.device)).float().mean(0))
        return F.normalize(torch.stack(rows), dim=-1)

    def _prompt_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """MiniLM embeddings; phrases of the text bank reuse their stored row (no MiniLM load)."""
        if self.config.text_encoder == "tokens":
            return self._token_meaning(texts)
        rows = self._bank_rows()
        todo = [t for t in dict.fromkeys(texts) if t not in rows]
        computed: dict[str, torch.Tensor] = {}
        if todo:
            from .text_encoder import prompt_encoder

            computed = dict(zip(todo, torch.from_numpy(prompt_encoder().encode(todo)).to(self.device)))
        bank = self.text_bank if rows else None
        return torch.stack([computed[t] if t in computed else bank[rows[t]].float() for t in texts])

    def prompt_meaning(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """MiniLM embeddings of ``texts`` read through the text bank, and each one's known share.

        **Grounding.** The text head has only ever seen the embeddings of its training phrases
        (class names, synonyms, context phrases, unrelated concepts). A new phrase ("streets") can
        fall where the head was never fitted and land anywhere; its softmax mix over the bank
        (cosine / temperature) lies on what was trained: mostly "roads" for "streets", mostly
        unrelated concepts (empty masks) for "wind turbines". Known phrases map to themselves.

        **Known share** (``None`` without a bank or without ``text_bank_unknown``): the share of
        the mix that falls on trained phrases rather than the "none of these" entry. With one
        dominant neighbour at similarity s it is ``sigmoid((s - text_bank_unknown) / T)``: ~1 for
        "streets" (0.76 to "roads"), small for a phrase far from everything trained.

        Without a bank the raw embeddings come back. Both outputs come from one similarity matrix.
        """
        c = self.config
        if not c.text_bank_size:
            return self._prompt_embeddings(texts), None
        # A phrase naming a place ("the large building at the center") is a referring phrase, a
        # kind the text head was trained on word for word; the bank holds only category phrases,
        # so a mix over it would turn "the building in the lower left" into "buildings" and paint
        # every building. Those phrases keep their own embedding and count as fully known.
        referring = [named_place(t) is not None for t in texts]
        known = self._bank_rows()  # trained phrases stay as trained; new free text is read by its subject
        texts = [t if (t in known or ref) else subject_phrase(t) for t, ref in zip(texts, referring)]
        emb = self._prompt_embeddings(texts)
        bank = self.text_bank.to(emb.dtype)
        sims = emb @ bank.T
        grounded = F.normalize(torch.softmax(sims / c.text_bank_temperature, dim=-1) @ bank, dim=-1)
        keep = torch.tensor(referring, device=emb.device)[:, None]
        grounded = torch.where(keep, emb, grounded)
        if c.text_bank_unknown is None:
            return grounded, None
        with_none = torch.cat([sims, sims.new_full((sims.shape[0], 1), float(c.text_bank_unknown))], 1)
        share = 1.0 - torch.softmax(with_none / c.text_bank_temperature, dim=-1)[:, -1]
        return grounded, torch.where(keep[:, 0], torch.ones_like(share), share)

    @torch.no_grad()
    def prompt_classes(self, texts: Sequence[str]) -> list[str | None]:
        """The class each prompt means: the class whose phrases hold its nearest text-bank phrase.

        ``None`` for a prompt nearest to an unrelated concept, or when the model has no bank.
        Used where a class-wise setting applies to free text ("rooftops" -> building).
        """
        c = self.config
        if not c.text_bank_size:
            return [None] * len(texts)
        owner = {p: name for name, phrases in (c.concepts or {}).items() for p in phrases}
        rows = self._bank_rows()
        texts = [t if t in rows else subject_phrase(t) for t in texts]
        sims = self._prompt_embeddings(list(texts)) @ self.text_bank.to(torch.float32).T
        phrases = c.text_bank_phrases
        return [owner.get(phrases[int(k)]) for k in sims.argmax(1)]

    def text_prompts(self, texts: Sequence[str]) -> torch.Tensor | None:
        """``[N, scales, prompt_dim]`` from the meaning of ``texts`` (None without an encoder)."""
        if self.text_head is None:
            return None
        emb, _ = self.prompt_meaning(texts)
        w = self.text_head[0].weight
        return self.text_head(emb.to(w.dtype)).view(len(texts), self.config.num_seg_scales, -1)

    def known_share(self, texts: Sequence[str]) -> torch.Tensor | None:
        """See :meth:`prompt_meaning`; ``None`` when the model has no "none of these" entry."""
        if self.text_head is None:
            return None
        return self.prompt_meaning(texts)[1]

    def set_text_bank(self, phrases: Sequence[str]) -> None:
        """Store the MiniLM embeddings of ``phrases`` (the training vocabulary) as the bank."""
        from .text_encoder import prompt_encoder

        if self.config.text_encoder != "all-MiniLM-L6-v2":
            raise ValueError("the text bank holds MiniLM embeddings; this model has no MiniLM text encoder")
        emb = torch.from_numpy(prompt_encoder().encode(list(phrases))).to(self.device)
        if "text_bank" in self._buffers:
            del self._buffers["text_bank"]
        self.register_buffer("text_bank", emb.float())
        self.config.text_bank_size = len(phrases)
        self.config.text_bank_phrases = tuple(phrases)

    def seg_prompts(self, seg_states: torch.Tensor, texts: Sequence[str] | None) -> torch.Tensor:
        """SEG hidden states (plus the meaning of each target's text) -> decoder prompts."""
        prompts = self.seg_head(seg_states)
        term = self._text_term(texts, prompts.shape[0])
        return prompts if term is None else prompts + term.to(prompts.dtype)

    def _text_term(self, texts: Sequence[str] | None, n: int) -> torch.Tensor | None:
        """The text head's part of ``n`` decoder prompts, one per target text (``None`` without a text head)."""
        if self.text_head is None:
            return None
        if texts is None or len(texts) != n:
            raise ValueError(f"this model reads each target's text; give {n} target texts "
                             f"(got {None if texts is None else len(texts)})")
        distinct = list(dict.fromkeys(texts))  # e.g. P prompts repeated for B tiles: P rows
        rows = torch.tensor([distinct.index(t) for t in texts], device=self.device)
        return self.text_prompts(distinct).index_select(0, rows)

    def _decode_masks(self, enc: ImageEncoding, prompts: torch.Tensor, tile_index: torch.Tensor,
                      texts: Sequence[str] | None, tiles_in_order: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits ``[N, H, W]`` (cropped to the tile) and class weights, one path for all callers.

        ``tiles_in_order=True``: the caller vouches that ``tile_index`` is ``[0]*P + [1]*P + ...``
        (see :func:`.mask_decoder._per_tile_dot`), so the decoder need not look at it on the host.
        """
        logits, weights = self.mask_predictor(enc.scale_feats, prompts, tile_index, enc.padded, enc.pixel_feats,
                                              tiles_in_order=tiles_in_order)
        logits = logits[:, : enc.size[0], : enc.size[1]]
        bias = None if texts is None or self.location_prior is None else self.location_prior(texts, enc.size)
        if bias is not None:
            logits = logits + bias.to(logits.dtype)
        return logits, weights

    # ------------------------------------------------------------------ encoding
    def encode_images(self, images: torch.Tensor) -> ImageEncoding:
        """Vision tower, projector and necks: everything that depends only on the tile."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
        h, w = images.shape[-2:]
        ph, pw = -(-h // _ALIGN) * _ALIGN, -(-w // _ALIGN) * _ALIGN
        x = images.to(self.device, torch.float32)
        if (ph, pw) != (h, w):
            x = F.pad(x, (0, pw - w, 0, ph - h), mode="replicate")
        feats = self.vision(x)
        tokens = self.projector(feats[self.config.projector_stage])
        scale_feats = [neck(feats[s], (ph, pw)) for neck, s in zip(self.necks, self.config.decoder_stages)]
        pixel = self.pixel_decoder(feats, (ph, pw)) if self.pixel_decoder is not None else None
        return ImageEncoding(feats, tokens, scale_feats, (h, w), (ph, pw), pixel)

    def _pad_masks(self, masks: torch.Tensor, enc: ImageEncoding) -> torch.Tensor:
        masks = masks.to(self.device, torch.float32)
        if masks.shape[-2:] != enc.size:
            raise ValueError(f"region masks are {tuple(masks.shape[-2:])} but images are {enc.size}")
        (h, w), (ph, pw) = enc.size, enc.padded
        return F.pad(masks, (0, pw - w, 0, ph - h)) if (ph, pw) != (h, w) else masks

    def region_embeddings(self, enc: ImageEncoding, masks: torch.Tensor,
                          tile_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``<mask>`` and ``<pos>`` embeddings ``[R, hidden]`` for region masks ``[R, H, W]``."""
        m = self._pad_masks(masks, enc)
        return self.region_extractor(enc.feats, m, tile_index), self.shape_embed(m)

    def embed_inputs(self, enc: ImageEncoding, input_ids: torch.Tensor,
                     region_masks: Sequence[torch.Tensor] | None = None,
                     tile_index: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with ``<image>``, ``<mask>`` and ``<pos>`` placeholders replaced.

        Row ``i`` of ``input_ids`` belongs to tile ``tile_index[i]`` (default: row i).
        Regions are consumed in row-major order of the ``<mask>`` placeholders.
        """
        ids = self.processor.ids
        input_ids = input_ids.to(self.device)
        n = input_ids.shape[0]
        tile_index = torch.arange(n, device=self.device) if tile_index is None else tile_index.to(self.device)
        embeds = self.llm.get_input_embeddings()(input_ids)
        img_sel = input_ids == ids.image
        if img_sel.any():
            counts = img_sel.sum(1)
            if not bool((counts == self.config.num_image_tokens).all()):
                raise ValueError(f"each sequence needs exactly {self.config.num_image_tokens} <image> tokens")
            embeds = embeds.clone()
            embeds[img_sel] = enc.image_tokens.index_select(0, tile_index).reshape(-1, embeds.shape[-1]).to(embeds.dtype)
        mask_sel, pos_sel = input_ids == ids.mask, input_ids == ids.pos
        n_mask = int(mask_sel.sum())
        if n_mask or region_masks is not None:
            masks = [torch.as_tensor(m) for m in (region_masks or [])]
            total = sum(int(m.shape[0]) for m in masks)
            if n_mask != total or int(pos_sel.sum()) != total:
                raise ValueError(f"{n_mask} <mask> / {int(pos_sel.sum())} <pos> placeholders but {total} region masks")
            if total:
                rows = torch.cat([torch.full((int(m.shape[0]),), i, dtype=torch.long) for i, m in enumerate(masks)])
                rows = rows.to(self.device)
                if not torch.equal(rows, mask_sel.nonzero()[:, 0]):
                    raise ValueError("region masks must be given per row in the order of the <mask> placeholders")
                mask_emb, pos_emb = self.region_embeddings(enc, torch.cat([m.to(self.device) for m in masks]),
                                                           tile_index.index_select(0, rows))
                embeds = embeds.clone()
                embeds[mask_sel] = mask_emb.to(embeds.dtype)
                embeds[pos_sel] = pos_emb.to(embeds.dtype)
        return embeds

    def _seg_hidden(self, input_ids: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states predicting each SEG token, grouped per target: ``[T, n_seg, D]`` and rows ``[T]``."""
        seg_ids = self.processor.ids.seg
        found = [(input_ids == s).nonzero() for s in seg_ids]
        if any(f.shape != found[0].shape or not torch.equal(f[:, 0], found[0][:, 0]) for f in found):
            raise ValueError("every target needs the full [SEG0]..[SEG5] group in its answer")
        if any(bool((f[:, 1] < 1).any()) for f in found):
            raise ValueError("a SEG token cannot start a sequence")
        states = torch.stack([hidden[f[:, 0], f[:, 1] - 1] for f in found], 1)
        return states, found[0][:, 0]

    # ------------------------------------------------------------------ training forward
    def forward(self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, gt_masks: Sequence[torch.Tensor] | None = None,
                region_masks: Sequence[torch.Tensor] | None = None,
                class_labels: Sequence[torch.Tensor] | None = None,
                target_texts: Sequence[Sequence[str]] | None = None) -> GeoPixOutput:
        enc = self.encode_images(images)
        input_ids = input_ids.to(self.device)
        attention_mask = None if attention_mask is None else attention_mask.to(self.device)
        embeds = self.embed_inputs(enc, input_ids, region_masks)
        hidden, _ = decoder_forward(self.llm, embeds, attention_mask)
        logits = self.llm.get_output_embeddings()(hidden)
        zero = logits.sum() * 0.0
        ce = zero
        if labels is not None:
            ids = self.processor.ids
            labels = labels.to(self.device).masked_fill(
                (input_ids == ids.image) | (input_ids == ids.mask) | (input_ids == ids.pos), -100)
            ce = token_ce(logits, labels)
        seg_states, rows = self._seg_hidden(input_ids, hidden)
        bce = dice = cls = zero
        per_sample: list[torch.Tensor] = []
        weights = None
        if rows.numel():
            texts = None if target_texts is None else [t for ts in target_texts for t in ts]
            prompts = self.seg_prompts(seg_states, texts)
            mask_logits, weights = self._decode_masks(enc, prompts, rows, texts)
            counts = torch.bincount(rows, minlength=input_ids.shape[0]).tolist()
            per_sample = list(mask_logits.split(counts))
            if gt_masks is not None:
                target = torch.cat([torch.as_tensor(m).to(self.device).reshape(-1, *enc.size) for m in gt_masks])
                if target.shape != mask_logits.shape:
                    raise ValueError(f"gt_masks give {tuple(target.shape)} but the text has targets "
                                     f"{tuple(mask_logits.shape)}")
                bce = mask_bce(mask_logits, target).mean()
                dice = mask_dice(mask_logits, target).mean()
            if class_labels is not None:
                cl = torch.cat([torch.as_tensor(c).reshape(-1) for c in class_labels]).to(self.device).long()
                if cl.numel() != rows.numel():
                    raise ValueError(f"class_labels hold {cl.numel()} ids for {rows.numel()} targets")
                if (cl >= 0).any():
                    cls = F.cross_entropy(self.mask_predictor.memory.class_logits(prompts).float(), cl,
                                          ignore_index=-1)
        if gt_masks is not None and sum(len(m) for m in gt_masks) != rows.numel():
            raise ValueError(f"gt_masks hold {sum(len(m) for m in gt_masks)} masks but the text has "
                             f"{rows.numel()} [SEG0]..[SEG5] groups")
        c = self.config
        loss = c.ce_weight * ce + c.bce_weight * bce + c.dice_weight * dice + cls
        return GeoPixOutput(loss, ce, bce, dice, cls, logits, per_sample, weights)

    # ------------------------------------------------------------------ inference: text -> masks
    def check_prompts(self, prompts: Sequence[str]) -> None:
        """Raise InputError for prompts the model cannot answer (empty, too long, special tokens)."""
        from geopix_tiles.errors import InputError

        if isinstance(prompts, str) or not len(prompts):
            raise InputError("give at least one text prompt as a list, e.g. ['buildings', 'water']")
        specials = set(self.tokenizer.all_special_tokens) | {"<image>", "<mask>", "<pos>"}
        for p in prompts:
            if not isinstance(p, str) or not p.strip():
                raise InputError(f"prompt {p!r} is empty; give a short phrase such as 'buildings'")
            hit = next((s for s in specials if s in p), None)
            if hit:
                raise InputError(f"prompt {p!r} contains the reserved token {hit}; remove it")
            n = len(self.processor.encode(p))
            if n > self.config.max_prompt_tokens:
                raise InputError(f"prompt {p[:40]!r}... has {n} tokens (max {self.config.max_prompt_tokens}); shorten it")

    def _image_slot(self) -> tuple[int, int]:
        """``[start, end)`` of the <image> tokens in :meth:`GeoPixProcessor.prefix_ids`."""
        prefix = self.processor.prefix_ids()
        image = [i for i, t in enumerate(prefix) if t == self.processor.ids.image]
        if len(image) != self.config.num_image_tokens or image != list(range(image[0], image[0] + len(image))):
            raise ValueError("the image prefix must hold its <image> tokens in one run")
        return image[0], image[-1] + 1

    def _prefix_cache_from(self, enc: ImageEncoding, prefix_ids: torch.Tensor, slot: tuple[int, int]) -> Any:
        """The LLM cache of the image prefix ``prefix_ids [B, Lp]``, the tile's tokens in ``slot``.

        The <image> placeholders are replaced by slicing (what :meth:`embed_inputs` does with a
        boolean mask, the same numbers), so nothing here waits on the device.
        """
        embeds = self.llm.get_input_embeddings()(prefix_ids)
        s, e = slot
        embeds = torch.cat([embeds[:, :s], enc.image_tokens.to(embeds.dtype), embeds[:, e:]], 1)
        return decoder_forward(self.llm, embeds, None, use_cache=True)[1]

    def _prefix_cache(self, enc: ImageEncoding) -> tuple[Any, int]:
        ids = torch.tensor([self.processor.prefix_ids()], device=self.device).expand(enc.image_tokens.shape[0], -1)
        return self._prefix_cache_from(enc, ids, self._image_slot()), ids.shape[1]

    def segment_plan(self, prompts: Sequence[str], batch: int, place_prior: bool = True) -> SegmentPlan:
        """The prompt-side half of :meth:`segment_encoded` for ``batch`` tiles (see :class:`SegmentPlan`)."""
        b, p = int(batch), len(prompts)
        prefix = self.processor.prefix_ids()
        ids, attn, seg_pos = (t.to(self.device) for t in self.processor.segmentation_suffix(list(prompts)))
        ids, attn, seg_pos = ids.repeat(b, 1), attn.repeat(b, 1), seg_pos.repeat(b, 1)
        texts = list(prompts) * b
        share = self.known_share(list(prompts))
        if share is not None:
            share = share.repeat(b).view(-1, 1, 1).clamp(1e-6, 1.0)
        return SegmentPlan(
            prompts=tuple(prompts), batch=b,
            prefix_ids=torch.tensor([prefix], device=self.device).expand(b, -1),
            image_slot=self._image_slot(), ids=ids,
            attention=torch.cat([attn.new_ones((b * p, len(prefix))), attn], 1), seg_pos=seg_pos,
            tile_index=torch.arange(b, device=self.device).repeat_interleave(p), text=self._text_term(texts, b * p),
            share=share,
            texts=texts if place_prior else None)

    def segment_planned(self, enc: ImageEncoding, plan: SegmentPlan) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`segment_encoded` for a prepared plan: device work only, the same numbers."""
        b, p = plan.batch, len(plan.prompts)
        if enc.image_tokens.shape[0] != b:
            raise ValueError(f"the plan is for {b} tiles, the encoding holds {enc.image_tokens.shape[0]}")
        cache = self._prefix_cache_from(enc, plan.prefix_ids, plan.image_slot)
        cache.batch_repeat_interleave(p)
        hidden, _ = decoder_forward(self.llm, self.llm.get_input_embeddings()(plan.ids), plan.attention, cache)
        states = hidden.gather(1, plan.seg_pos[..., None].expand(-1, -1, hidden.shape[-1]))
        prompts_emb = self.seg_head(states)
        if plan.text is not None:
            prompts_emb = prompts_emb + plan.text.to(prompts_emb.dtype)
        logits, weights = self._decode_masks(enc, prompts_emb, plan.tile_index, plan.texts, tiles_in_order=True)
        logits = logits.float()
        if plan.share is not None:  # probability x known share, back in logit space
            prob = torch.sigmoid(logits) * plan.share
            logits = torch.logit(prob.clamp(1e-7, 1 - 1e-7))
        return logits.reshape(b, p, *enc.size), weights.reshape(b, p, -1)

    def segment_encoded(self, enc: ImageEncoding, prompts: Sequence[str],
                        place_prior: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits ``[B, P, H, W]`` and class weights ``[B, P, classes]`` from an encoding.

        ``place_prior=False`` leaves out the location prior: for tiles of a larger scene,
        where "in the lower left" names a part of the scene, not of each tile.
        """
        plan = self.segment_plan(prompts, enc.image_tokens.shape[0], place_prior)
        return self.segment_planned(enc, plan)

    def segment(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """Text -> masks. ``images`` float ``[B, 3, H, W]`` in [0, 1] -> logits ``[B, P, H, W]`` (>0 = foreground).

        Each tile is encoded once; all prompts are answered in one LLM forward that reuses
        the image-prefix KV cache. Runs without autograd.
        """
        self.check_prompts(prompts)
        with torch.no_grad():
            return self.segment_encoded(self.encode_images(images), prompts)[0]

    # ------------------------------------------------------------------ inference: masks -> text, chat
    def generate(self, images: torch.Tensor, questions: Sequence[str], region_masks: torch.Tensor | None = None,
                 max_new_tokens: int | None = None, logits_processor: LogitsProcessor | None = None,
                 encoding: ImageEncoding | None = None) -> list[Generation]:
        """The LLM's greedy answers to ``questions`` about ``images`` ``[B, 3, H, W]``.

        ``len(questions)`` is a multiple ``k`` of B: question ``i`` is about image ``i // k``
        (each tile is encoded once). ``region_masks`` ``[len(questions), R, H, W]`` fill the
        ``<mask><pos>`` placeholders of each question. Every complete ``[SEG0]..[SEG5]`` group
        in an answer becomes a mask from the hidden states that emitted it (the states
        :meth:`segment` teacher-forces).
        """
        with torch.no_grad():
            enc = encoding if encoding is not None else self.encode_images(images[None] if images.ndim == 3
                                                                           else images)
            b, n = enc.image_tokens.shape[0], len(questions)
            if n == 0 or n % b:
                raise ValueError(f"{n} questions for {b} images; give k questions per image (k >= 1)")
            tile = torch.arange(b, device=self.device).repeat_interleave(n // b)
            rows = [self.processor.question_ids(q) for q in questions]
            base, lp = self._prefix_cache(enc)
            out: list[Generation | None] = [None] * n
            by_len: dict[int, list[int]] = {}
            for i, r in enumerate(rows):  # lockstep decoding needs equal lengths: one group per length
                by_len.setdefault(len(r), []).append(i)
            groups = list(by_len.values())
            for gi, idx in enumerate(groups):
                cache = base if len(groups) == 1 else copy.deepcopy(base)
                sel = tile[idx]
                cache.batch_select_indices(sel)
                ids = torch.tensor([rows[i] for i in idx], device=self.device)
                regions = None
                if region_masks is not None and region_masks.shape[1]:
                    regions = [region_masks[i].to(self.device) for i in idx]
                embeds = self.embed_inputs(enc, ids, regions, sel)
                attn = torch.ones((len(idx), lp + ids.shape[1]), dtype=torch.long, device=self.device)
                tokens, states = greedy_decode(self.llm, embeds, attn, cache,
                                               max_new_tokens or self.config.max_new_tokens, self.processor.ids.eos,
                                               logits_processor)
                for j, i in enumerate(idx):
                    out[i] = self._generation(enc, tokens[j], states[j], questions[i], int(sel[j]))
        return out  # type: ignore[return-value]

    def _generation(self, enc: ImageEncoding, toks: list[int], states: torch.Tensor, question: str,
                    tile: int) -> Generation:
        h, w = enc.size
        groups = self._complete_seg_groups(toks)
        if groups:
            sel = torch.tensor(groups, device=self.device)
            texts = [self.processor.requested_prompt(question)] * len(groups)
            prompts = self.seg_prompts(states[sel], texts)
            index = torch.full((len(groups),), tile, dtype=torch.long, device=self.device)
            logits = self._decode_masks(enc, prompts, index, texts)[0].float()
        else:
            logits = torch.zeros((0, h, w), device=self.device)
        text = self.tokenizer.decode(toks, skip_special_tokens=True).strip()
        return Generation(text, toks, logits > 0, logits)

    def describe(self, images: torch.Tensor, region_masks: torch.Tensor,
                 max_new_tokens: int | None = None) -> list[list[str]]:
        """Masks -> the LLM's short answer (its trained region-class prompt) per region.

        ``region_masks`` bool ``[B, R, H, W]`` -> ``R`` texts per image. For a class with a
        confidence use :meth:`classify_regions`.
        """
        b, r = region_masks.shape[:2]
        if r == 0:
            return [[] for _ in range(b)]
        flat = region_masks.reshape(b * r, 1, *region_masks.shape[2:])
        gens = self.generate(images, [self.processor.region_question(1)] * (b * r), flat, max_new_tokens)
        texts = [g.text for g in gens]
        return [texts[i * r:(i + 1) * r] for i in range(b)]

    def class_names(self) -> list[str]:
        """The segmentation classes the model was trained on (its class-wise memory's names)."""
        names = self.config.extra.get("memory_class_names") or list(self.config.concepts)
        return [str(n) for n in names]

    def classify_regions(self, images: torch.Tensor, region_masks: torch.Tensor,
                         classes: Sequence[str] | None = None,
                         encoding: ImageEncoding | None = None) -> tuple[list[list[str]], list[list[float]]]:
        """Class and confidence of each region: the LLM's likelihood of each class name as the answer.

        Scoring every class (rather than reading one greedy answer) gives a confidence (a
        softmax over the classes' answer log-likelihoods) and can only answer with a class.
        """
        classes = list(classes or self.class_names())
        if not classes:
            from geopix_tiles.errors import InputError

            raise InputError("this checkpoint names no classes (config extra.memory_class_names or concepts), so it "
                             "cannot classify regions; use a checkpoint trained with geopix-tiles train, or pass "
                             "classes=[...]")
        b, r = region_masks.shape[:2]
        if r == 0:
            return [[] for _ in range(b)], [[] for _ in range(b)]
        proc = self.processor
        head = proc.prefix_ids() + proc.question_ids(proc.region_question(1))
        answers = [proc.answer_ids(c) for c in classes]
        length = len(head) + max(len(a) for a in answers)
        n = b * r * len(classes)
        ids = torch.full((n, length), proc.ids.pad, dtype=torch.long)
        attn = torch.zeros((n, length), dtype=torch.long)
        for k in range(n):
            row = head + answers[k % len(classes)]
            ids[k, :len(row)] = torch.tensor(row)
            attn[k, :len(row)] = 1
        with torch.no_grad():
            enc = encoding if encoding is not None else self.encode_images(images)
            masks = region_masks.reshape(b * r, *region_masks.shape[2:]).to(self.device)
            per_row = masks.repeat_interleave(len(classes), 0)
            tile = torch.arange(b, device=self.device).repeat_interleave(r * len(classes))
            ids, attn = ids.to(self.device), attn.to(self.device)
            embeds = self.embed_inputs(enc, ids, [m[None] for m in per_row], tile)
            hidden, _ = decoder_forward(self.llm, embeds, attn)
            logp = torch.log_softmax(self.llm.get_output_embeddings()(hidden[:, len(head) - 1:-1]).float(), -1)
            target = ids[:, len(head):]
            tok = logp.gather(-1, target[..., None])[..., 0] * attn[:, len(head):]
            score = tok.sum(1).view(b * r, len(classes))
            prob = torch.softmax(score, -1)
        conf, best = prob.max(-1)
        names = [classes[int(k)] for k in best]
        confs = [float(c) for c in conf]
        return [names[i * r:(i + 1) * r] for i in range(b)], [confs[i * r:(i + 1) * r] for i in range(b)]

    def scene_probabilities(self, images: torch.Tensor | None = None,
                            encoding: ImageEncoding | None = None) -> torch.Tensor | None:
        """``[B, scene classes]`` probabilities of the scene head (None when the model has none)."""
        if self.scene_head is None:
            return None
        with torch.no_grad():
            enc = encoding if encoding is not None else self.encode_images(images)
            return torch.softmax(self.scene_head(enc.feats).float(), -1)

    def chat(self, image: "torch.Tensor | ImageEncoding | View", question: str, history: Sequence[Turn] = (),
             pixel_area_m2: float | None = None) -> ChatReply:
        """A grounded reply to ``question`` about one image ``[3, H, W]``, its encoding, or a :class:`View`.

        ``history`` holds the earlier turns of the conversation (for "them", "and the roads
        next to them?"); ``pixel_area_m2`` lets replies speak in m² rather than pixels. Pass
        the same :class:`View` on every turn to segment each phrase once. See
        :mod:`.dialogue` for how the reply is built (and ``geopix_tiles.answers.conversation`` for
        georeferenced conversations over scene windows).
        """
        if not isinstance(question, str) or not question.strip():
            raise ValueError("the question is empty; ask something such as 'where is the water?'")
        with torch.no_grad():
            if isinstance(image, View):
                view = image
            else:
                enc = image if isinstance(image, ImageEncoding) else \
                    self.encode_images(image[None] if image.ndim == 3 else image)
                view = View(self, enc)
            previous = history[-1] if history else None
            q = parse_question(self, question.strip(), previous)
            return reply_to(self, view, q, previous, pixel_area_m2)

    def _complete_seg_groups(self, tokens: list[int]) -> list[list[int]]:
        """Step indices of each complete, in-order SEG group in a generated sequence."""
        seg = self.processor.ids.seg
        groups, current = [], []
        for i, t in enumerate(tokens):
            if t in seg:
                k = seg.index(t)
                if k == len(current):
                    current.append(i)
                    if len(current) == len(seg):
                        groups.append(current)
                        current = []
                else:
                    current = [i] if k == 0 else []
        return groups

    # ------------------------------------------------------------------ engine adapter
    def as_segmenter(self, device: str = "cpu", tile_size: int | None = None, autocast: bool | None = None) -> Any:
        """Wrap for the engine's :class:`geopix_tiles.segmenters.protocol.Segmenter` contract (moves the model).

        ``device`` is ``cpu``, ``cuda[:n]`` or ``auto``; ``autocast`` (bf16) is off unless asked for (slower and less
        faithful than fp32 for the default model on an H200).
        """
        from .segmenter import GeoPixSegmenter

        return GeoPixSegmenter(self, device=device, tile_size=tile_size, autocast=autocast)

    # ------------------------------------------------------------------ checkpoints
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json``, ``model.safetensors`` and the tokenizer files."""
        import json

        from safetensors.torch import save_model

        from .checkpoint import CONFIG_NAME, WEIGHTS_NAME, config_for_saving

        if getattr(self, "_fused", False):
            raise ValueError("this model was fused for inference (BatchNorm folded); save the model it came from")
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        data = config_for_saving(self.config, llm_config_dict(self.llm))
        (d / CONFIG_NAME).write_text(json.dumps(data, indent=2, sort_keys=True))
        save_model(self, str(d / WEIGHTS_NAME))
        self.tokenizer.save_pretrained(str(d))
        return d

    @torch.no_grad()
    def fuse_for_inference(self) -> "GeoPixModel":
        """Fold the native tower's BatchNorms into its convolutions and store it channels-last.

        Same function within float rounding (tested against the reference), ~1.7x faster tower
        on CPU. Inference only: the folded model cannot be trained or saved (its tensors moved).
        """
        self.eval()
        if hasattr(self.vision, "fuse"):
            self.vision.fuse()
        self._fused = True
        return self

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu",
                        native: bool = False) -> "GeoPixModel":
        """Load a checkpoint directory (or ``"default"``); JSON + safetensors only, never pickles.

        ``native=True``: the inference build (see ``__init__``), e.g. for the engine's segmenter.
        """
        from safetensors import safe_open
        from safetensors.torch import load_model

        from geopix_tiles.errors import InputError

        from .checkpoint import WEIGHTS_NAME, read_checkpoint_config, resolve_checkpoint_dir

        d = resolve_checkpoint_dir(path)
        config = read_checkpoint_config(d)
        tokenizer = None
        if native:  # the same tokenizer.json through tokenizers alone (no transformers import)
            from .plain_tokenizer import load_plain_tokenizer
            from .tokenizer import special_tokens

            tokenizer = load_plain_tokenizer(d, special_tokens(config.num_seg_scales, config.seg_tokens_per_scale))
        if tokenizer is None and ((d / "tokenizer.json").is_file() or (d / "tokenizer_config.json").is_file()):
            tokenizer = load_local_tokenizer(d, config.num_seg_scales, config.seg_tokens_per_scale)
        if tokenizer is None:
            raise InputError(f"checkpoint {d} has no tokenizer files; re-save it with GeoPixModel.save_pretrained")
        model = cls(config, tokenizer=tokenizer, load_pretrained=False, native=native)  # the checkpoint holds every weight
        weights = d / WEIGHTS_NAME
        own = model.state_dict()
        try:
            with safe_open(str(weights), "pt") as f:
                shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        except Exception as exc:
            raise InputError(f"{weights} is corrupt or unreadable ({type(exc).__name__}: {str(exc)[:120]}); "
                             "re-save the checkpoint") from exc
        bad = [k for k, shape in shapes.items() if k in own and tuple(own[k].shape) != shape]
        if bad:
            raise InputError(f"{weights} does not match its config.json ({len(bad)} tensors differ in shape, "
                             f"e.g. {bad[0]}); re-save the checkpoint")
        try:
            missing, unexpected = load_model(model, str(weights), strict=False)
        except Exception as exc:
            raise InputError(f"{weights} is corrupt or unreadable ({type(exc).__name__}: {str(exc)[:120]}); "
                             "re-save the checkpoint") from exc
        if missing or unexpected:
            what = f"missing {missing[:2]}" if missing else f"unexpected {unexpected[:2]}"
            raise InputError(f"{weights} does not match its config.json ({what}); re-save the checkpoint")
        from .segmenter import resolve_device

        model.eval()
        return model.to(resolve_device(device))
