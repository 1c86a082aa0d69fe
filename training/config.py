"""Training configuration: one documented YAML (or JSON) file, validated before anything runs.

Example (every key optional except a data entry)::

    output_dir: runs/buildings          # checkpoints, logs, exported data; relative to this file
    seed: 0
    model:
      preset: tiny                      # tiny | base
      checkpoint: null                  # start from a GeoPix checkpoint directory instead
      llm_path: null                    # base preset: local causal-LM directory (safetensors)
      vision_weights: null              # base preset: local open_clip weights file
      overrides: {}                     # any GeoPixConfig field, e.g. {tile_size: 256}
    lora:                               # LoRA adapters (peft) on the LLM
      enabled: auto                     # auto = LoRA for a real (loaded) LLM, full training for a tiny one
      r: 8
      alpha: 16
      dropout: 0.05
      target_modules: [q_proj, k_proj, v_proj, o_proj]
    data:
      train: data/train.jsonl           # GeoPixInstruct JSONL (paths relative to it)...
      val: null                         # ...optional; else val_fraction of train images
      val_fraction: 0.1
      sources:                          # ...or/and labelled scenes through the adapters
        - {type: mask, image: scene.tif, mask: labels.tif, classes: {255: building}}
        - {type: vector, image: scene.tif, vector: roofs.gpkg, category: building}
      tile: 256                         # window size cut from sources (engine tile grid)
      sampling: random                  # random | grid  (validation always uses grid)
      windows_per_scene: 16
      samples_per_image: 2              # instruction samples generated per image and stage
      sample_draws: 1                   # independent draws of those questions per stage (0 = auto, for a few chips)
      max_targets: 3                    # masks per answer / regions per prompt
      negatives: 0.25                   # chance a category prompt also asks for an absent (annotated) class
      augment: false                    # zoom / flips / turns / colour (training/augment.py)
      haze: 0.0                         # with augment: chance of a hazed image (0 = off)
      clouds: 0.0                       # chance of a synthetic cloud where clouds are asked of a cloud-free chip
      cloud_free: []                    # source prefixes known to be cloud-free (e.g. [dubai_aerial, naip_weak])
      clouds_over: []                   # of those, the ones a synthetic cloud may cover (empty: all)
      anchor: null                      # a checkpoint whose masks are the targets of classes outside anchor_free
      anchor_free: []                   # classes that learn from their labels while the others stay anchored
      anchor_keeps_absent: []           # sources whose labelled absences ("none here") beat the anchor
      anchor_flips: 1                   # the anchor's masks averaged over 1, 2 or 4 mirrored views (test-time flips, distilled)
      anchor_flips_classes: []          # the classes whose anchor masks are so averaged (empty: all)
      degrade: 0.0                      # chance a sample is shown degraded (blur, resampling, noise, JPEG, colour) while the anchor answers on the clean chip
      degrade_ops: []                   # which of those (empty: all of training.augment.DEGRADATIONS)
      recolor: 0.0                      # chance a chip's recolor_classes objects are repainted (dark, tinted roofs) while the anchor answers on the original
      recolor_classes: [building]       # the classes whose objects recolor repaints (building, water)
      coarse: []                        # sources also shown much coarser (a 5 m chip as 10-60 m imagery)
      coarse_zoom: [0.08, 0.5]          # their zoom range (< 1: coarser) and chance per category sample
      coarse_p: 0.5
    stages:                             # GeoPix two-stage schedule; what trains is configurable
      - {name: text, steps: 100, lr: 2.0e-4, train: [projector, region, llm],
         tasks: [region_class, region_caption, caption, vqa]}
      - {name: masks, steps: 300, lr: 1.0e-4, train: [seg_head, decoder, memory, llm],
         tasks: [category_seg, referring_seg, dialogue, region_class, caption, vqa]}
    batch_size: 2                       # per process
    grad_accum: 1
    weight_decay: 0.0
    warmup_steps: 10
    grad_clip: 1.0
    mixed_precision: auto               # auto | no | bf16 | fp16  (auto: bf16/fp16 on CUDA, fp32 on CPU)
    checkpoint_every: 50                # steps; a checkpoint is also written at the end
    keep_checkpoints: 2
    log_every: 10
    eval_every: 0                       # 0 = only at the end

Trainable groups: ``vision``, ``projector``, ``region``, ``llm`` (LoRA adapters when LoRA is
on), ``embeddings`` (LLM token embeddings + head), ``seg_head``, ``decoder``, ``memory``.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from geopix_tiles.errors import InputError

from .instruct import TASKS

__all__ = ["TrainConfig", "StageConfig", "ModelSpec", "LoraSpec", "DataSpec", "load_config",
           "quick_config", "GROUPS", "DEFAULT_STAGES"]

PRESETS = ("tiny", "small", "base")
GROUPS = ("vision", "projector", "region", "llm", "embeddings", "seg_head", "decoder", "memory")
TEXT_TASKS = ["region_class", "region_caption", "caption", "vqa"]
MASK_TASKS = ["category_seg", "referring_seg", "dialogue", "region_class", "caption", "vqa"]


@dataclass
class StageConfig:
    name: str
    steps: int
    train: list[str]
    tasks: list[str]
    lr: float = 1e-4
    #: learning-rate factor for the pretrained vision tower (fine-tune it gently, or not at all)
    vision_lr_scale: float = 1.0


DEFAULT_STAGES = [
    StageConfig("text", 0, ["projector", "region", "llm", "embeddings"], TEXT_TASKS, 2e-4),
    StageConfig("masks", 0, ["seg_head", "decoder", "memory", "llm", "embeddings", "projector"], MASK_TASKS, 1e-4),
]


@dataclass
class ModelSpec:
    preset: str = "tiny"
    checkpoint: str | None = None
    llm_path: str | None = None
    vision_weights: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoraSpec:
    enabled: bool | str = "auto"
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class DataSpec:
    train: str | None = None
    val: str | None = None
    val_fraction: float = 0.1
    sources: list[dict[str, Any]] = field(default_factory=list)
    tile: int = 256
    sampling: str = "random"
    windows_per_scene: int = 16
    samples_per_image: int = 2
    max_targets: int = 3
    negatives: float = 0.25
    #: chance a category target is asked for by a synonym / free text (teaches prompt meaning)
    paraphrases: float = 0.0
    #: chance a category sample also asks for an absent, unrelated concept (empty mask)
    unrelated: float = 0.0
    #: geometric (zoom 0.25-3x as a ground-sampling-distance change, flips, 90 degree turns) and
    #: photometric (grey, colour, brightness, contrast) augmentation of training images
    augment: bool = False
    #: with ``augment``: chance of a hazed image (a bright bluish veil: path radiance, thin cloud,
    #: over-exposure); 0 = off, as in the shipped recipe (MODEL_CARD, "Tried")
    haze: float = 0.0
    #: chance that a category sample asking for clouds on a chip of a ``cloud_free`` source gets a
    #: synthetic cloud laid over it, its mask as the answer (``training.augment.with_cloud``); with
    #: it on, those chips also count as labelled for clouds, so "no clouds" is asked of them too.
    #: 0 = off
    clouds: float = 0.0
    #: sources (prefixes of a chip's ``source``) whose images are known to hold no cloud: aerial
    #: and NAIP acquisitions are flown cloud-free
    cloud_free: list[str] = field(default_factory=list)
    #: the ``cloud_free`` sources whose chips may get a synthetic cloud (empty: all of them). A cloud
    #: is kilometres wide: over a 256 px chip of a 0.3 m orthophoto it is a uniform veil, never the
    #: blobs that fit a chip of a few metres per pixel, so blobs are only laid over coarse chips
    clouds_over: list[str] = field(default_factory=list)
    #: a checkpoint whose masks become the targets of every class outside ``anchor_free`` (its
    #: probabilities, on the same augmented image): what a fine-tune is not meant to change stays
    #: where that model had it, while ``anchor_free`` classes learn from their labels. ``None``: off
    anchor: str | None = None
    anchor_free: list[str] = field(default_factory=list)
    #: sources (``meta["source"]``) whose labelled absences - classes in ``meta["classes"]`` with no
    #: instance - keep their empty target under the anchor: what a scene label rules out is known,
    #: so the old model's guess there is the error being corrected, not something to keep
    anchor_keeps_absent: list[str] = field(default_factory=list)
    #: the anchor answers as ``segment(flips=N)`` does: its probabilities averaged over N mirrored
    #: views (1, 2 or 4). Averaged views are better masks off our training domain (xBD Joplin
    #: 0.302 -> 0.322 with 4, ``benchmarks/results/flips.md``) at N times the model's cost;
    #: anchoring to them teaches one view to give what N views agree on
    anchor_flips: int = 1
    #: the classes whose anchored targets take the averaged views (empty: every anchored class);
    #: the others keep the anchor's single view
    anchor_flips_classes: list[str] = field(default_factory=list)
    #: chance a sample is shown through another camera (``training.augment.degrade``: blur, a coarser
    #: sensor resampled, saturation, band mixing, noise, JPEG) while ``anchor`` answers on the clean
    #: chip: consistency, so the masks stop depending on what a camera did to the pixels. 0 = off
    degrade: float = 0.0
    #: the degradations ``degrade`` draws from (empty: all of ``training.augment.DEGRADATIONS``)
    degrade_ops: list[str] = field(default_factory=list)
    #: chance a chip holding objects of ``recolor_classes`` gets them repainted - each its own
    #: brightness (dark to pale) and tint, texture kept (``training.augment.recolor_objects``) - while
    #: ``anchor`` answers on the original chip: our roofs are all pale, the world's are not. 0 = off
    recolor: float = 0.0
    recolor_classes: list[str] = field(default_factory=lambda: ["building"])
    #: sources (prefixes of ``meta["source"]``) whose category samples are, with chance ``coarse_p``,
    #: shown zoomed out by a factor drawn log-uniformly from ``coarse_zoom`` instead of the usual
    #: 0.3-3x: Sentinel-2 (10 m) and Landsat (30 m) scenes are 2-6x coarser than the 5 m NAIP
    #: chips, where the usual draw rarely goes (off when empty)
    coarse: list[str] = field(default_factory=list)
    coarse_zoom: list[float] = field(default_factory=lambda: [0.08, 0.5])
    coarse_p: float = 0.5
    #: one single-class category sample per class of every image, besides the random draws
    per_class: bool = False
    #: whole-class questions (category masks, counts, presence, captions) only for the classes a chip labels
    #: exhaustively: a one-roof-of-many source then never teaches its other houses as "not a building"
    #: (``instruct.make_samples``; off in the shipped recipe, which trained with it off)
    exhaustive_targets: bool = False
    #: independent draws of the questions per stage (templates, targets, synonyms); 0 = enough draws
    #: that a stage sees each question about once. One draw is plenty for thousands of chips; for a
    #: handful it means the same dozen sentences for every step, which the model learns by heart
    #: (it then fails on any other phrasing)
    sample_draws: int = 1


@dataclass
class TrainConfig:
    output_dir: str = "runs/geopix"
    seed: int = 0
    model: ModelSpec = field(default_factory=ModelSpec)
    lora: LoraSpec = field(default_factory=LoraSpec)
    data: DataSpec = field(default_factory=DataSpec)
    stages: list[StageConfig] = field(default_factory=lambda: [dataclasses.replace(s) for s in DEFAULT_STAGES])
    batch_size: int = 2
    grad_accum: int = 1
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float = 1.0
    mixed_precision: str = "auto"
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    log_every: int = 10
    eval_every: int = 0
    progress: bool = True

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> "TrainConfig":
        if not self.data.train and not self.data.sources:
            raise InputError("the config has no training data; set data.train (a JSONL file) or data.sources")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise InputError("batch_size and grad_accum must be at least 1")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise InputError(f"mixed_precision '{self.mixed_precision}' is not one of auto, no, bf16, fp16")
        if self.data.sampling not in ("random", "grid"):
            raise InputError(f"data.sampling '{self.data.sampling}' is not 'random' or 'grid'")
        if not 0.0 <= self.data.val_fraction < 1.0:
            raise InputError("data.val_fraction must be in [0, 1)")
        if not isinstance(self.data.sample_draws, int) or self.data.sample_draws < 0:
            raise InputError(f"data.sample_draws is a count (0 = automatic); got {self.data.sample_draws!r}")
        for key in ("negatives", "paraphrases", "unrelated", "haze", "clouds", "degrade", "recolor"):
            v = getattr(self.data, key)
            if not 0 <= v <= 1:
                raise InputError(f"data.{key} is a probability; got {v}, use a value in [0, 1]")
        if self.data.clouds > 0 and not self.data.cloud_free:
            raise InputError("data.clouds lays synthetic clouds over chips of data.cloud_free sources, but that "
                             "list is empty; name the sources known to be cloud-free (e.g. [naip_weak])")
        for key, chip, changed in (("degrade", "clean", "degraded"), ("recolor", "original", "repainted")):
            if getattr(self.data, key) > 0 and not self.data.anchor:
                raise InputError(f"data.{key} needs data.anchor: the anchor model's masks on the {chip} chip are the "
                                 f"{changed} chip's targets; set data.anchor to a checkpoint (e.g. the one you start from)")
        if self.data.anchor_flips not in (1, 2, 4) or isinstance(self.data.anchor_flips, bool):
            raise InputError(f"data.anchor_flips is the anchor's mirrored views: 1, 2 or 4; got {self.data.anchor_flips!r}")
        if self.data.anchor_flips > 1 and not self.data.anchor:
            raise InputError("data.anchor_flips averages the anchor model's views, but data.anchor is not set; "
                             "set data.anchor to a checkpoint or anchor_flips to 1")
        from .augment import DEGRADATIONS, RECOLOR_PALETTES

        bad = [o for o in self.data.degrade_ops if o not in DEGRADATIONS]
        if bad:
            raise InputError(f"data.degrade_ops names unknown degradations {bad}; choose from {', '.join(DEGRADATIONS)}")
        bad = [c for c in self.data.recolor_classes if c not in RECOLOR_PALETTES]
        if bad:
            raise InputError(f"data.recolor_classes names classes without repaint colours {bad}; "
                             f"choose from {', '.join(RECOLOR_PALETTES)}")
        if self.model.preset not in PRESETS and not self.model.checkpoint:
            raise InputError(f"model.preset '{self.model.preset}' is unknown; use {', '.join(PRESETS)}, "
                             "or set model.checkpoint")
        if not self.stages:
            raise InputError("the config needs at least one stage")
        for s in self.stages:
            if s.steps < 0:
                raise InputError(f"stage '{s.name}' has negative steps")
            bad = [g for g in s.train if g not in GROUPS]
            if bad:
                raise InputError(f"stage '{s.name}' trains unknown group(s) {bad}; choose from {', '.join(GROUPS)}")
            bad = [t for t in s.tasks if t not in TASKS]
            if bad:
                raise InputError(f"stage '{s.name}' has unknown task(s) {bad}; choose from {', '.join(TASKS)}")
            if not s.tasks:
                raise InputError(f"stage '{s.name}' has no tasks")
        if self.total_steps < 1:
            raise InputError("the stages add up to 0 steps; give each stage a 'steps' count")
        return self


def _build(cls: type, data: Any, where: str) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, Mapping):
        raise InputError(f"config section '{where}' must be a mapping")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"config section '{where}' has unknown key(s) {unknown}; known: {', '.join(sorted(names))}")
    return cls(**dict(data))


def config_from_dict(data: Mapping[str, Any], base: Path | None = None) -> TrainConfig:
    """Strict: unknown keys are errors so typos do not silently fall back to defaults."""
    if not isinstance(data, Mapping):
        raise InputError("the config file must hold a mapping of settings")
    d = dict(data)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise InputError(f"config has unknown key(s) {unknown}; known: {', '.join(sorted(names))}")
    kwargs: dict[str, Any] = {}
    for k, v in d.items():
        if k == "model":
            kwargs[k] = _build(ModelSpec, v, k)
        elif k == "lora":
            kwargs[k] = _build(LoraSpec, v, k)
        elif k == "data":
            kwargs[k] = _build(DataSpec, v, k)
        elif k == "stages":
            if not isinstance(v, list):
                raise InputError("'stages' must be a list of {name, steps, train, tasks, lr}")
            stages = []
            for i, s in enumerate(v):
                if not isinstance(s, Mapping):
                    raise InputError(f"stage {i} must be a mapping")
                default = DEFAULT_STAGES[min(i, len(DEFAULT_STAGES) - 1)]
                merged = {**dataclasses.asdict(default), **dict(s)}
                stages.append(_build(StageConfig, merged, f"stages[{i}]"))
            kwargs[k] = stages
        else:
            kwargs[k] = v
    try:
        cfg = TrainConfig(**kwargs)
        for key in ("batch_size", "grad_accum", "seed", "checkpoint_every", "log_every", "warmup_steps"):
            setattr(cfg, key, int(getattr(cfg, key)))
        for s in cfg.stages:
            s.steps = int(s.steps)
            s.lr = float(s.lr)
    except (TypeError, ValueError) as exc:
        raise InputError(f"config value has the wrong type ({exc})") from exc
    if base is not None:
        _resolve_paths(cfg, base)
    return cfg.validate()


def _resolve_paths(cfg: TrainConfig, base: Path) -> None:
    def res(p: str | None) -> str | None:
        if p is None:
            return None
        q = Path(p).expanduser()
        return str(q if q.is_absolute() else (base / q))

    cfg.output_dir = res(cfg.output_dir) or cfg.output_dir
    cfg.data.train = res(cfg.data.train)
    cfg.data.val = res(cfg.data.val)
    cfg.data.anchor = res(cfg.data.anchor)
    cfg.model.checkpoint = res(cfg.model.checkpoint)
    cfg.model.llm_path = res(cfg.model.llm_path)
    cfg.model.vision_weights = res(cfg.model.vision_weights)
    cfg.data.sources = [dict(s, _base=str(base)) for s in cfg.data.sources]


def load_config(path: str | Path) -> TrainConfig:
    """Read a YAML (or JSON) config; relative paths are relative to the file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"config file {p} does not exist; pass a YAML file (see training/config.py)")
    text = p.read_text()
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{p} is not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputError(f"{p} is not valid YAML ({str(exc).splitlines()[0]})") from exc
    return config_from_dict(data or {}, base=p.resolve().parent)


def quick_stages(steps: int, preset: str) -> list[StageConfig]:
    """Stages of the config-free form, fitted to the preset (mask stage: mostly category prompts).

    A tenth of the steps aligns text (projector, region path, LLM), the rest trains masks with
    everything that must learn: tiny's random-init tower trains at the full rate (a frozen random
    tower cannot fit anything), a pretrained tower (small, base) at a tenth of it. The tiny and
    small presets carry a from-scratch LLM and heads: small fits at 1e-3, tiny (random tower as
    well) at 2e-3 (two chips in 400 steps: cIoU 0.62 at 1e-3, 0.78 at 2e-3, 0.70 at 3e-3);
    base (a real LLM under LoRA) keeps 1e-4.
    """
    lr = {"tiny": 2e-3, "small": 1e-3}.get(preset, 1e-4)
    s1 = steps // 10 if steps >= 10 else 0
    text = StageConfig("text", s1, ["projector", "region", "llm", "embeddings"], TEXT_TASKS, lr)
    masks = StageConfig("masks", steps - s1, list(GROUPS),
                        ["category_seg"] * 4 + ["referring_seg", "region_class", "caption", "vqa"], lr,
                        vision_lr_scale=1.0 if preset == "tiny" else 0.1)
    return [s for s in (text, masks) if s.steps > 0]


def quick_config(data: str, steps: int, out: str, preset: str = "tiny", val: str | None = None,
                 batch_size: int = 2, seed: int = 0, **extra: Any) -> TrainConfig:
    """The config-free form: :func:`quick_stages`, short warm-up, the checkpoint at the end."""
    extra.setdefault("warmup_steps", min(10, steps // 10))
    # make_samples draws each task at most once per image and sample set, so with 2 samples per
    # image two chips were only ever asked for one class ("buildings"); 8 samples, category
    # segmentation listed four times and one single-class question per class (per_class) ask for
    # every class they hold.
    cfg = TrainConfig(output_dir=out, seed=seed, model=ModelSpec(preset=preset),
                      data=DataSpec(train=data, val=val, samples_per_image=8, per_class=True, sample_draws=0),
                      stages=quick_stages(steps, preset),
                      batch_size=batch_size, **extra)
    return cfg.validate()
