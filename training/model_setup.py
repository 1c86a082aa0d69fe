"""The model a training run starts from, and which of its parameters each stage trains.

Parameter groups (:data:`.config.GROUPS`: vision, projector, region, llm, embeddings,
seg_head, decoder, memory) are how stages name what they train; LoRA wraps a loaded LLM
instead of training it whole.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from geopix_tiles.errors import InputError

from .config import TrainConfig

__all__ = ["build_model", "use_lora", "apply_lora", "is_lora", "parameter_groups", "set_trainable"]


def build_model(cfg: TrainConfig, class_names: Sequence[str] = ()) -> Any:
    """The GeoPix model from a checkpoint, or from the tiny/base preset with overrides."""
    from geopix_tiles.model import GeoPixConfig, GeoPixModel

    torch.manual_seed(cfg.seed)
    if cfg.model.checkpoint:
        model = GeoPixModel.from_pretrained(cfg.model.checkpoint)
    else:
        try:
            if cfg.model.preset in ("tiny", "small"):
                mcfg = getattr(GeoPixConfig, cfg.model.preset)(**cfg.model.overrides)
            else:
                mcfg = GeoPixConfig.base(llm_path=cfg.model.llm_path, vision_weights=cfg.model.vision_weights,
                                         **cfg.model.overrides)
        except TypeError as exc:
            raise InputError(f"model.overrides has a key GeoPixConfig does not know ({exc})") from exc
        if class_names:
            mcfg.extra = dict(mcfg.extra, memory_class_names=list(class_names)[: mcfg.memory_classes])
        try:
            model = GeoPixModel(mcfg)
        except ValueError as exc:
            raise InputError(f"invalid model configuration ({exc})") from exc
    model.train()
    return model


def use_lora(cfg: TrainConfig, model: Any) -> bool:
    enabled = cfg.lora.enabled
    if isinstance(enabled, str):
        if enabled != "auto":
            raise InputError(f"lora.enabled must be true, false or auto, not {enabled!r}")
        return bool(model.config.llm_path)  # a real, loaded LLM: adapters; a tiny random one: full training
    return bool(enabled)


def apply_lora(cfg: TrainConfig, model: Any) -> None:
    from peft import LoraConfig, get_peft_model

    names = {n.rsplit(".", 1)[-1] for n, _ in model.llm.named_modules()}
    targets = [t for t in cfg.lora.target_modules if t in names]
    if not targets:
        raise InputError(f"none of lora.target_modules {cfg.lora.target_modules} exist in the LLM; "
                         f"pick from e.g. {sorted(n for n in names if 'proj' in n)[:8]}")
    lcfg = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=targets, bias="none", task_type="CAUSAL_LM")
    model.llm = get_peft_model(model.llm, lcfg)


def is_lora(model: Any) -> bool:
    return type(model.llm).__name__.startswith("Peft")


def parameter_groups(model: Any) -> dict[str, list[tuple[str, torch.nn.Parameter]]]:
    """Named parameters of each trainable group (see :data:`.config.GROUPS`)."""
    groups: dict[str, list[tuple[str, torch.nn.Parameter]]] = {g: [] for g in
                                                               ("vision", "projector", "region", "llm", "embeddings",
                                                                "seg_head", "decoder", "memory")}
    emb_ids = {id(model.llm.get_input_embeddings().weight)}
    out_emb = model.llm.get_output_embeddings()
    if out_emb is not None:
        emb_ids.add(id(out_emb.weight))
    lora = is_lora(model)
    seen: set[int] = set()
    for name, p in model.named_parameters(remove_duplicate=True):
        if id(p) in seen:
            continue
        seen.add(id(p))
        top = name.split(".", 1)[0]
        if top == "vision":
            if not model.vision.trainable_parameter(name.split(".", 1)[1]):
                continue  # frozen by the tower itself (e.g. the stem and first levels of EfficientNet)
            g = "vision"
        elif top == "projector":
            g = "projector"
        elif top in ("region_extractor", "shape_embed"):
            g = "region"
        elif top in ("seg_head", "text_head", "location_prior"):
            g = "seg_head"
        elif top in ("necks", "pixel_decoder"):
            g = "decoder"
        elif top == "mask_predictor":
            g = "memory" if ".memory." in name else "decoder"
        elif top == "llm":
            if id(p) in emb_ids:
                g = "embeddings"
            elif lora and "lora_" not in name:
                continue  # frozen base weights under LoRA
            else:
                g = "llm"
        else:
            g = "decoder"
        groups[g].append((name, p))
    return groups


def set_trainable(model: Any, train: Sequence[str]) -> list[tuple[str, torch.nn.Parameter]]:
    groups = parameter_groups(model)
    for p in model.parameters():
        p.requires_grad_(False)
    chosen: list[tuple[str, torch.nn.Parameter]] = []
    for g in train:
        for name, p in groups[g]:
            p.requires_grad_(True)
            chosen.append((name, p))
    if not chosen:
        raise InputError(f"stage trains {list(train)} but those groups have no parameters in this model")
    return chosen
