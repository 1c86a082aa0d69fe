"""Two-stage GeoPix training: seeded, resumable, accumulating, mixed precision, DDP (the loop).

Its parts live beside it: :mod:`.distributed` (process setup), :mod:`.loading` (records),
:mod:`.model_setup` (model, LoRA, parameter groups), :mod:`.state_files` (optimizer / RNG state).

Design choices, and why:

* **Steps, not epochs.** The sample order is a function of ``(seed, stage, step)``
  (:func:`.dataset.step_indices`), so a checkpoint needs no sampler state and ``--resume``
  continues with exactly the batches an uninterrupted run would have seen.
* **Checkpoints are safetensors + JSON.** Model and optimizer tensors go to safetensors;
  scalars, optimizer hyper-parameters and RNG states (as lists) go to JSON. Nothing is
  pickled, so a checkpoint from elsewhere cannot execute code.
* **DDP by plain ``torch.distributed``** (``torchrun`` or any launcher that sets
  ``RANK``/``WORLD_SIZE``; gloo on CPU, NCCL on CUDA). Micro-batch ``m`` of a global batch
  goes to rank ``m % world`` at accumulation step ``m // world``, so world size and
  accumulation trade one-for-one without changing the gradient.
* **What trains is per stage** (parameter groups named in :data:`.config.GROUPS`); the
  optimizer is rebuilt at a stage change because its parameter set changes.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from geopix_tiles.errors import InputError

from .config import TrainConfig
from .dataset import InstructDataset, collate, mark_cloud_free, micro_indices, step_indices
from .distributed import DistInfo, barrier, dist_info, init_distributed
from .instruct import make_samples
from .loading import load_records
from .model_setup import apply_lora, build_model, parameter_groups, set_trainable, use_lora
from .state_files import optimizer_from_files, optimizer_to_files, rng_state, set_rng_state

__all__ = ["Trainer", "DistInfo", "dist_info", "load_records", "build_model", "parameter_groups", "train"]

CKPT_DIR = "checkpoints"
MODEL_DIR = "model"
#: cap of the automatic question draws (sample_draws: 0): 64 draws of a handful of chips is ~1,000 questions
_MAX_AUTO_DRAWS = 64


# --------------------------------------------------------------------------- trainer
def training_device(device: str | None, local_rank: int = 0) -> torch.device:
    """The device a rank trains on: ``None`` picks CUDA when there is one; a bare ``cuda`` gets the rank's index.

    ``torch.cuda.set_device`` refuses a device without an index (torch 2.11 on the H200:
    "Expected a torch.device with a specified index"), so ``--device cuda`` failed there.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    return dev


class Trainer:
    """Owns the model, data, optimizer and the step loop; see the module docstring."""

    def __init__(self, cfg: TrainConfig, info: DistInfo | None = None, device: str | None = None) -> None:
        self.cfg = cfg
        self.info = info or dist_info()
        init_distributed(self.info)
        self.device = training_device(device, self.info.local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.out = Path(cfg.output_dir)
        if self.info.main:
            self.out.mkdir(parents=True, exist_ok=True)
        barrier(self.info)
        self._seed_all(cfg.seed)
        self.train_records, self.val_records = load_records(cfg, self.info)
        if cfg.data.clouds > 0:
            mark_cloud_free(self.train_records, cfg.data.cloud_free, cfg.data.clouds_over)
        self.class_names = sorted({i.category for r in self.train_records for i in r.instances})
        self.model = build_model(cfg, self.class_names)
        self.lora = use_lora(cfg, self.model)
        if self.lora:
            apply_lora(cfg, self.model)
        self.model.to(self.device)
        names = self.model.config.extra.get("memory_class_names") or self.class_names
        self.memory_classes = list(names)[: self.model.config.memory_classes]
        self.size = int(self.model.config.tile_size)
        self._datasets: dict[int, InstructDataset] = {}
        self.anchor = None
        if cfg.data.anchor:  # frozen: its masks are the targets of the classes a fine-tune must keep
            from geopix_tiles.model import GeoPixModel

            self.anchor = GeoPixModel.from_pretrained(cfg.data.anchor).to(self.device).eval().requires_grad_(False)
        self.stage_index = -1
        self.optimizer: torch.optim.Optimizer | None = None
        self.ddp: Any = None
        self.step = 0
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

    # ---------------------------------------------------------------- setup helpers
    @staticmethod
    def _seed_all(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def _amp_dtype(self) -> torch.dtype | None:
        mp = self.cfg.mixed_precision
        if mp == "no" or (mp == "auto" and self.device.type != "cuda"):
            return None
        if mp == "fp16":
            return torch.float16 if self.device.type == "cuda" else torch.bfloat16
        if mp == "bf16" or (self.device.type == "cuda" and torch.cuda.is_bf16_supported()):
            return torch.bfloat16
        return torch.float16

    def global_batch(self) -> int:
        return self.cfg.batch_size * self.cfg.grad_accum * self.info.world

    def stage_of(self, step: int) -> tuple[int, int]:
        """``(stage index, step within the stage)`` of a global step."""
        start = 0
        for i, s in enumerate(self.cfg.stages):
            if step < start + s.steps:
                return i, step - start
            start += s.steps
        return len(self.cfg.stages) - 1, step - (start - self.cfg.stages[-1].steps)

    def dataset(self, stage_idx: int) -> InstructDataset:
        if stage_idx not in self._datasets:
            st = self.cfg.stages[stage_idx]
            d = self.cfg.data

            def draw(k: int) -> list:
                return make_samples(self.train_records, tasks=st.tasks, split="train",
                                    seed=self.cfg.seed + 7919 * stage_idx + 104729 * k,
                                    per_record=d.samples_per_image, max_targets=d.max_targets,
                                    vocabulary=self.class_names, negatives=d.negatives, paraphrases=d.paraphrases,
                                    unrelated=d.unrelated, per_class=d.per_class,
                                    exhaustive_targets=d.exhaustive_targets)

            samples = draw(0)
            draws = d.sample_draws or min(_MAX_AUTO_DRAWS, -(-st.steps * self.cfg.batch_size // max(len(samples), 1)))
            for k in range(1, draws):
                samples += draw(k)
            if not samples:
                raise InputError(f"stage '{st.name}' has no samples: its tasks {st.tasks} need labelled instances")
            self._datasets[stage_idx] = InstructDataset(self.train_records, samples, self.size,
                                                        class_names=self.memory_classes,
                                                        augment=self.cfg.data.augment,
                                                        haze=self.cfg.data.haze, clouds=self.cfg.data.clouds,
                                                        coarse=self.cfg.data.coarse,
                                                        coarse_zoom=self.cfg.data.coarse_zoom,
                                                        coarse_p=self.cfg.data.coarse_p,
                                                        degrade=self.cfg.data.degrade,
                                                        degrade_ops=self.cfg.data.degrade_ops,
                                                        recolor=self.cfg.data.recolor,
                                                        recolor_classes=self.cfg.data.recolor_classes,
                                                        seed=self.cfg.seed + 7919 * stage_idx)
        return self._datasets[stage_idx]

    def enter_stage(self, stage_idx: int) -> None:
        """Freeze/unfreeze groups and build a fresh optimizer (and DDP wrapper) for a stage."""
        st = self.cfg.stages[stage_idx]
        params = set_trainable(self.model, st.train)
        groups = []
        for is_vision in (False, True):
            scale = st.vision_lr_scale if is_vision else 1.0
            chosen = [(n, p) for n, p in params if n.startswith("vision.") == is_vision]
            for decay in (True, False):
                ps = [p for n, p in chosen if (p.ndim >= 2) == decay]
                if ps:
                    groups.append({"params": ps, "weight_decay": self.cfg.weight_decay if decay else 0.0,
                                   "lr_scale": scale})
        self.optimizer = torch.optim.AdamW(groups, lr=st.lr, betas=(0.9, 0.95), eps=1e-8, foreach=True)
        if self.info.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DDP(self.model, device_ids=ids, find_unused_parameters=True)
        else:
            self.ddp = None
        self.stage_index = stage_idx

    def lr_at(self, stage_idx: int, step_in_stage: int) -> float:
        """Linear warm-up, then cosine decay to 10 % of the stage's learning rate."""
        st = self.cfg.stages[stage_idx]
        w = min(self.cfg.warmup_steps, max(st.steps - 1, 0))
        if w and step_in_stage < w:
            return st.lr * (step_in_stage + 1) / w
        span = max(st.steps - w, 1)
        t = min(max(step_in_stage - w, 0) / span, 1.0)
        return st.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    # ---------------------------------------------------------------- one step
    def _forward(self, batch: dict[str, Any]) -> Any:
        module = self.ddp if self.ddp is not None else self.model
        ctx = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
               else contextlib.nullcontext())
        with ctx:
            return module(**batch)

    def accumulate_gradients(self, step: int) -> dict[str, float]:
        """Forward/backward every micro-batch of ``step`` on this rank (no optimizer step)."""
        stage_idx, _ = self.stage_of(step)
        if stage_idx != self.stage_index:
            self.enter_stage(stage_idx)
        assert self.optimizer is not None
        _, step_in_stage = self.stage_of(step)
        ds = self.dataset(stage_idx)
        gidx = step_indices(len(ds), self.cfg.seed + 7919 * stage_idx, step_in_stage, self.global_batch())
        self.optimizer.zero_grad(set_to_none=True)
        totals = {"loss": 0.0, "ce": 0.0, "bce": 0.0, "dice": 0.0}
        accum = self.cfg.grad_accum
        for k in range(accum):
            items = [ds[i] for i in micro_indices(gidx, self.cfg.batch_size, self.info.world, self.info.rank, k)]
            batch = collate(items, self.model.processor)
            sync = self.ddp is None or k == accum - 1
            ctx = contextlib.nullcontext() if sync else self.ddp.no_sync()
            if self.anchor is not None:
                anchor_targets(self.anchor, batch, items, self.cfg.data.anchor_free, self.cfg.data.anchor_keeps_absent,
                               self.cfg.data.anchor_flips, self.cfg.data.anchor_flips_classes)
            with ctx:
                out = self._forward(batch)
                loss = out.loss / accum
                self.scaler.scale(loss).backward()
            totals["loss"] += float(out.loss.detach()) / accum
            totals["ce"] += float(out.ce_loss.detach()) / accum
            totals["bce"] += float(out.bce_loss.detach()) / accum
            totals["dice"] += float(out.dice_loss.detach()) / accum
        return totals

    def train_step(self, step: int) -> dict[str, float]:
        totals = self.accumulate_gradients(step)
        assert self.optimizer is not None
        stage_idx, step_in_stage = self.stage_of(step)
        lr = self.lr_at(stage_idx, step_in_stage)
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        self.scaler.unscale_(self.optimizer)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if self.cfg.grad_clip and self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        totals["lr"] = lr
        totals["loss"] = self._mean_across_ranks(totals["loss"])
        return totals

    def _mean_across_ranks(self, value: float) -> float:
        if self.info.world == 1:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return float(t.item()) / self.info.world

    # ---------------------------------------------------------------- checkpoints
    def checkpoint_dir(self, step: int) -> Path:
        return self.out / CKPT_DIR / f"step-{step:07d}"

    def save_checkpoint(self, step: int) -> Path | None:
        """Everything needed to continue exactly after ``step`` steps (rank 0 writes)."""
        from safetensors.torch import save_file, save_model

        barrier(self.info)
        if not self.info.main:
            barrier(self.info)
            return None
        d = self.checkpoint_dir(step)
        tmp = d.with_name(d.name + ".partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        save_model(self.model, str(tmp / "model.safetensors"), force_contiguous=True)  # tied weights stored once
        assert self.optimizer is not None
        opt_t, opt_meta = optimizer_to_files(self.optimizer)
        rng_t, rng_meta = rng_state()
        save_file({**opt_t, **rng_t}, str(tmp / "trainer.safetensors"))
        meta = {"step": step, "stage": self.stage_index, "optimizer": opt_meta, "rng": rng_meta,
                "scaler": self.scaler.state_dict(), "world": self.info.world, "lora": self.lora,
                "config": self.cfg.to_dict(), "time": time.time()}
        (tmp / "trainer_state.json").write_text(json.dumps(meta))
        if d.exists():
            shutil.rmtree(d)
        os.replace(tmp, d)
        self._prune_checkpoints()
        barrier(self.info)
        return d

    def _prune_checkpoints(self) -> None:
        keep = max(1, self.cfg.keep_checkpoints)
        ckpts = sorted(p for p in (self.out / CKPT_DIR).glob("step-*") if not p.name.endswith(".partial"))
        for p in ckpts[:-keep]:
            shutil.rmtree(p, ignore_errors=True)

    def latest_checkpoint(self) -> Path | None:
        ckpts = sorted(p for p in (self.out / CKPT_DIR).glob("step-*")
                       if not p.name.endswith(".partial") and (p / "trainer_state.json").exists())
        return ckpts[-1] if ckpts else None

    def load_checkpoint(self, d: Path) -> int:
        """Restore model, optimizer, scaler and RNG; return the next step to run."""
        from safetensors.torch import load_file, load_model

        meta = json.loads((d / "trainer_state.json").read_text())
        if bool(meta.get("lora")) != self.lora:
            raise InputError(f"checkpoint {d} was trained {'with' if meta.get('lora') else 'without'} LoRA; "
                             "set lora.enabled to match or start a new output_dir")
        missing, unexpected = load_model(self.model, str(d / "model.safetensors"), strict=False)
        if missing or unexpected:
            raise InputError(f"checkpoint {d} does not match the model (missing {missing[:2]}, unexpected "
                             f"{unexpected[:2]}); resume with the same config")
        step = int(meta["step"])
        stage_idx, _ = self.stage_of(step)
        self.enter_stage(stage_idx if step < self.cfg.total_steps else int(meta["stage"]))
        tensors = load_file(str(d / "trainer.safetensors"))
        assert self.optimizer is not None
        if int(meta["stage"]) == self.stage_index:
            optimizer_from_files(self.optimizer, {k: v.to(self.device) if v.ndim > 0 else v
                                                   for k, v in tensors.items() if k.startswith("state.")},
                                  meta["optimizer"])
        self.scaler.load_state_dict(meta["scaler"])
        set_rng_state({k: v for k, v in tensors.items() if k.startswith("rng.")}, meta["rng"])
        return step

    def export_model(self, directory: Path | None = None) -> Path | None:
        """A plain GeoPix checkpoint (``save_pretrained``), LoRA merged into the LLM."""
        d = directory or (self.out / MODEL_DIR)
        if not self.info.main:
            return None
        model = self.model
        if self.lora:
            model = copy.deepcopy(self.model).cpu()
            model.llm = model.llm.merge_and_unload()
        model.save_pretrained(d)
        (d / "training.json").write_text(json.dumps({"steps": self.step, "classes": self.class_names,
                                                     "config": self.cfg.to_dict()}, indent=1))
        return d

    # ---------------------------------------------------------------- loop
    def run(self, resume: bool = False, stop_after: int | None = None) -> dict[str, Any]:
        """Train to the configured number of steps (or ``stop_after`` steps, for tests)."""
        start = 0
        if resume:
            ck = self.latest_checkpoint()
            if ck is None:
                raise InputError(f"--resume: no checkpoint in {self.out / CKPT_DIR}; run without --resume first")
            start = self.load_checkpoint(ck)
        total = self.cfg.total_steps
        end = total if stop_after is None else min(total, stop_after)
        if self.info.main:
            (self.out / "train_config.json").write_text(json.dumps(self.cfg.to_dict(), indent=1))
        log = (self.out / "log.jsonl").open("a") if self.info.main else None
        bar = _progress(range(start, end), total, start, self.info.main and self.cfg.progress)
        history: list[dict[str, float]] = []
        t0 = time.time()
        samples = 0
        try:
            for step in bar:
                losses = self.train_step(step)
                self.step = step + 1
                samples += self.global_batch()
                rate = samples / max(time.time() - t0, 1e-9)
                losses.update(step=step + 1, stage=self.stage_index, samples_per_s=rate)
                history.append(losses)
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{losses['loss']:.4f}", stage=self.cfg.stages[self.stage_index].name,
                                    rate=f"{rate:.2f}/s")
                if log is not None and (step + 1) % max(1, self.cfg.log_every) == 0:
                    log.write(json.dumps(losses) + "\n")
                    log.flush()
                if self.cfg.checkpoint_every and (step + 1) % self.cfg.checkpoint_every == 0 and step + 1 < end:
                    self.save_checkpoint(step + 1)
        finally:
            if log is not None:
                log.close()
        if end > start:
            self.save_checkpoint(end)
        exported = None
        if end == total:
            exported = self.export_model()
        barrier(self.info)
        return {"history": history, "model_dir": str(exported) if exported else None, "steps": end}

    def close(self) -> None:
        import torch.distributed as dist

        if self.info.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _progress(it: range, total: int, start: int, enabled: bool) -> Any:
    if not enabled:
        return it
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return it
    return tqdm(it, total=total, initial=start, desc="train", unit="step", dynamic_ncols=True)


def anchor_targets(anchor: torch.nn.Module, batch: dict[str, Any], items: Sequence[dict[str, Any]],
                   free: Sequence[str], keeps_absent: Sequence[str] = (), flips: int = 1,
                   flips_classes: Sequence[str] = ()) -> int:
    """Replace the targets of anchored classes in ``batch`` by ``anchor``'s probabilities; returns how many.

    A mask target (category or referring) of one of the anchor's classes that is not in
    ``free`` takes the anchor's mask for the same (augmented) image and words, so the fine-tune
    is pulled back to the old model's answer wherever it is not meant to change. Chips under a
    synthetic cloud keep their labels (the anchor never saw such clouds; its masks under them
    are guesses). On chips of a ``keeps_absent`` source a class labelled absent keeps its
    empty target (a scene label that rules it out is the correction the fine-tune is for).
    A degraded chip (``data.degrade``) is answered by the anchor on its clean copy. With
    ``flips`` > 1 the anchor answers as ``segment(flips=N)``: its probabilities averaged over the
    mirrored views of :data:`~geopix_tiles.segmenters.flipped.FLIPS` (regions mirrored with the image);
    ``flips_classes``, when given, limits that to those classes (the rest keep the single view).
    """
    from geopix_tiles.segmenters.flipped import FLIPS

    seen = {k: v for k, v in batch.items() if k not in ("labels", "gt_masks", "class_labels")}
    if any(it.get("clean_image") is not None for it in items):
        clean = [it["image"] if it.get("clean_image") is None else it["clean_image"] for it in items]
        seen["images"] = torch.stack(clean).to(batch["images"].device, batch["images"].dtype)
    views: list[list[torch.Tensor]] = []  # per view (the first is the chip as it is): per sample [T, H, W]
    with torch.no_grad():
        for axes in FLIPS[flips]:
            view = dict(seen)
            if axes:
                view["images"] = seen["images"].flip(axes)
                if seen.get("region_masks") is not None:
                    view["region_masks"] = [torch.as_tensor(m).flip(axes) for m in seen["region_masks"]]
            out = anchor(**view)
            views.append([torch.sigmoid(lg.float()).flip(axes) if axes else torch.sigmoid(lg.float())
                          for lg in out.mask_logits])
    single = views[0]
    mean = [sum(v[b] for v in views) / len(views) for b in range(len(single))]
    known = set(getattr(anchor.config, "extra", {}).get("memory_class_names") or ())
    n = 0
    for b, item in enumerate(items):
        s = item["sample"]
        if item.get("clouded"):
            continue
        for j, c in enumerate(s.target_categories):
            if item.get("source") in keeps_absent and c in item.get("absent", ()):
                continue
            if c in known and c not in free:
                target = mean[b][j] if not flips_classes or c in flips_classes else single[b][j]
                batch["gt_masks"][b][j] = target.to(batch["gt_masks"][b].dtype)
                n += 1
    return n


def train(cfg: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Train from a config (any process of a ``torchrun`` launch calls this)."""
    trainer = Trainer(cfg)
    try:
        return trainer.run(resume=resume)
    finally:
        trainer.close()
