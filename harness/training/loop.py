"""The one training loop every gradient-based unlearning method shares.

A method (a :class:`baselines.base.LossMethod`) supplies only its objective: ``loss(step)`` from the
model's outputs on a forget batch, on the retain batch sampled alongside it, and reference quantities.
Everything else lives here, once:

- **Data** (:mod:`harness.training.examples`). Each forget/retain record becomes ``input + output + EOS``; the prompt tokens are masked with
  ``-100`` (``mask_prompt``), so the answer tokens and the EOS are labelled — the ZJUKLAB / TOFU
  convention. The prompt keeps at most its last ``prompt_max_fraction × max_length`` tokens and the
  whole example is cut to ``max_length``. Batches are padded at token level by transformers'
  ``DataCollatorForSeq2Seq`` (labels padded with ``-100``).
- **Pairing.** Every forget example is paired with one retain example, as the field does: drawn at
  random with a generator seeded by ``(seed, epoch)`` (``retain_sampling="random"``, TOFU), or the
  ``i mod len(retain)``-th one (``"cycle"``, ZJUKLAB's ``ForgetRetainDataset``).
- **Optimisation.** peft LoRA (``finetune="lora"``) or full fine-tuning; ``torch.optim.AdamW`` with
  weight decay on matrices only; warm-up and a linear/cosine schedule from ``transformers.get_scheduler``;
  gradient accumulation, device placement, backward and data sharding through ``accelerate``. The global
  batch is ``per_device_batch_size × processes × gradient_accumulation_steps``; the schedule is sized
  in un-sharded optimiser steps (accelerate's convention: a prepared scheduler advances once per
  process per optimiser step).
- **Reference model without a second copy** (:mod:`harness.training.step`,
  :mod:`harness.training.reference`). With LoRA the frozen base *is* the reference: its outputs
  come from the same weights under ``model.disable_adapter()`` (no grad, eval mode). With full
  fine-tuning, what the method needs from the reference (:meth:`LossMethod.reference_needs`) is computed
  once before training and kept on the CPU: per-token log-probabilities of the labels (a few bytes per
  token), and only when asked the full next-token distributions (float16, ``tokens × vocab``, refused
  above ``reference_cache_limit_gb``) or one layer's hidden states.
- **Hooks.** Every epoch (or every N optimiser steps) a fixed sample of forget and retain records is
  scored by the benchmark's training curves (:meth:`harness.tasks.base.BenchmarkTask.curves`; LUME:
  regurgitation = ROUGE-L recall on sc items, knowledge = exact match on qa items, mean answer loss);
  losses and learning rate are logged every step. Everything goes to ``train_log.jsonl`` through
  ``ctx.log_event`` (event layout: ``docs/contracts.md``). Optional trainable-parameter snapshots at
  given steps (``snapshots/step_N.safetensors``) and per-epoch checkpoints.

Determinism: on the CPU, two runs with the same seed produce identical weights (seeded LoRA init,
seeded data order via accelerate's seedable sampler, seeded retain pairing, seeded dropout).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import shutil
import tempfile
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Mapping, Optional, Protocol, Sequence, Union

from pydantic import Field

from harness.core.params import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Seed

from harness.core.types import Benchmark, Record, UnlearnContext
from harness.training.examples import PairedCollator, PairedDataset, build_example
from harness.training.reference import ReferenceCache
from harness.training.step import TrainingError, TrainStep

log = logging.getLogger("unlearnbench.training")

Finetune = Literal["lora", "full"]
RetainSampling = Literal["random", "cycle"]
Padding = Literal["longest", "max_length"]
PaddingSide = Literal["right", "left"]
Scheduler = Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial"]
FINETUNE_MODES = typing.get_args(Finetune)
RETAIN_SAMPLING = typing.get_args(RetainSampling)
PADDING = typing.get_args(Padding)
PADDING_SIDES = typing.get_args(PaddingSide)
SCHEDULERS = typing.get_args(Scheduler)


@dataclass
class TrainSettings:
    """Hyperparameters of the shared loop (every gradient-based method accepts all of them)."""

    finetune: Finetune = "lora"
    """``lora`` (peft adapters; the frozen base is the reference) or ``full`` (all weights trained)."""
    lora_r: PositiveInt = 32
    lora_alpha: PositiveFloat = 32
    lora_dropout: Annotated[float, Field(ge=0, lt=1)] = 0.05
    lora_target_modules: Union[str, Annotated[list[str], Field(min_length=1)]] = "all-linear"
    """peft ``target_modules``; ``all-linear`` = every linear layer except the LM head."""
    learning_rate: PositiveFloat = 1e-4
    epochs: PositiveInt = 5
    max_steps: Optional[PositiveInt] = None
    """Stop after this many optimiser steps (``None``: run all epochs)."""
    per_device_batch_size: PositiveInt = 4
    gradient_accumulation_steps: PositiveInt = 1
    weight_decay: NonNegativeFloat = 0.01
    warmup_steps: NonNegativeInt = 0
    warmup_epochs: NonNegativeFloat = 0.0
    """Warm-up length in epochs (ZJUKLAB: one epoch); exclusive with ``warmup_steps``."""
    scheduler: Scheduler = "linear"
    max_grad_norm: Optional[NonNegativeFloat] = 1.0
    """Gradient clipping norm (``None`` or 0: no clipping)."""
    max_length: Annotated[int, Field(ge=2)] = 256
    prompt_max_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.8
    """The prompt keeps at most its last ``fraction × max_length`` tokens (ZJUKLAB: 0.8)."""
    mask_prompt: bool = True
    """Label only answer tokens + EOS (prompt tokens get -100); ``False`` labels the whole example."""
    padding: Padding = "longest"
    """``longest`` (pad to the batch's longest example) or ``max_length`` (ZJUKLAB pads to 256)."""
    padding_side: PaddingSide = "right"
    retain_sampling: RetainSampling = "random"
    """``random`` (seeded draw per forget example and epoch) or ``cycle`` (``i mod len(retain)``)."""
    seed: Optional[Seed] = None
    """Training seed; ``None`` uses the harness seed (``UnlearnContext.seed``)."""
    gradient_checkpointing: bool = False
    eval_every: Union[Literal["epoch"], NonNegativeInt, None] = "epoch"
    """``epoch``, a number of optimiser steps, or 0 / ``None`` for no evaluation during training."""
    eval_sample: PositiveInt = 16
    """Records per split in the fixed evaluation sample of the training curves."""
    eval_max_new_tokens: PositiveInt = 64
    save_checkpoints: bool = False
    """Save the model to ``checkpoints/epoch_N`` after every epoch."""
    save_param_snapshots_at: Union[NonNegativeInt, list[NonNegativeInt], tuple[NonNegativeInt, ...]] = ()
    """Optimiser steps after which the trainable parameters are saved to ``snapshots/step_N.safetensors``
    (0 = before the first step), for the parameter-change angle analysis."""
    reference_cache_limit_gb: PositiveFloat = 2.0
    """Full fine-tuning only: the largest reference-distribution cache that is allowed."""

    def __post_init__(self) -> None:
        def choice(name: str, value: Any, valid: Sequence[str]) -> None:
            if value not in valid:
                raise ValueError(f"{name} must be one of {list(valid)}, got {value!r}")

        choice("finetune", self.finetune, FINETUNE_MODES)
        choice("retain_sampling", self.retain_sampling, RETAIN_SAMPLING)
        choice("padding", self.padding, PADDING)
        choice("padding_side", self.padding_side, PADDING_SIDES)
        choice("scheduler", self.scheduler, SCHEDULERS)
        for name in ("per_device_batch_size", "gradient_accumulation_steps", "max_length", "epochs"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.warmup_steps and self.warmup_epochs:
            raise ValueError("give warmup_steps or warmup_epochs, not both")
        if not 0 < self.prompt_max_fraction < 1:
            raise ValueError(f"prompt_max_fraction must be in (0, 1), got {self.prompt_max_fraction!r}")
        if self.eval_every not in (None, 0, "epoch") and not (isinstance(self.eval_every, int) and self.eval_every > 0):
            raise ValueError(f"eval_every must be 'epoch', a positive number of steps, or 0, got {self.eval_every!r}")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise ValueError(f"max_steps must be a positive integer or None, got {self.max_steps!r}")
        snaps = self.save_param_snapshots_at
        if isinstance(snaps, int):
            snaps = (snaps,)
        if not all(isinstance(s, int) and s >= 0 for s in snaps):
            raise ValueError(f"save_param_snapshots_at must be a list of step numbers >= 0, got {snaps!r}")
        self.save_param_snapshots_at = tuple(sorted(set(snaps)))


def train_settings_defaults() -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(TrainSettings):
        out[f.name] = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    return out


class Objective(Protocol):
    """What the loop needs from a method (``baselines.base.LossMethod`` implements it)."""

    def loss(self, step: "TrainStep") -> tuple[Any, Mapping[str, Any]]: ...

    def reference_needs(self) -> set[tuple[str, str]]: ...

    def hidden_layer(self, model: Any) -> int | None: ...


# ------------------------------------------------------------------------------------------------
# evaluation hook
def pick_eval_sample(records: Sequence[Record], k: int, seed: int) -> list[Record]:
    """A fixed, seeded sample of ``k`` records, kept in file order."""
    if k >= len(records):
        return list(records)
    chosen = sorted(random.Random(seed).sample(range(len(records)), k))
    return [records[i] for i in chosen]


def evaluate_sample(model, tokenizer, task: Any, records: Sequence[Record], max_new_tokens: int) -> dict[str, Any]:
    """The benchmark's training-curve scores on ``records`` (:meth:`harness.tasks.base.BenchmarkTask.curves`),
    computed with the evaluation engine and the final evaluation's metric functions (on fewer records
    and shorter generations)."""
    from harness.backends.base import BackendOptions
    from harness.backends.hf import HFBackend

    # Only the main process draws the curves: no data-parallel sharding (the other processes are
    # not calling, so a sharded pass would wait for them forever).
    backend = HFBackend(model, tokenizer, BackendOptions(progress=False, data_parallel=False))
    return task.curves(backend, records, max_new_tokens)


def _lume_task(data: Benchmark):
    from harness.tasks.lume.task import LumeTask

    return LumeTask(data)


# ------------------------------------------------------------------------------------------------
# saving
def trainable_state(model) -> dict[str, Any]:
    return {n: p.detach().to("cpu").contiguous().clone() for n, p in model.named_parameters() if p.requires_grad}


def save_snapshot(model, path: Path) -> None:
    from safetensors.torch import save

    from harness.core import fileio

    with fileio.atomic_open(path, "wb", encoding=None) as fh:
        fh.write(save(trainable_state(model), metadata={"format": "pt"}))


def save_model_dir(model, tokenizer, path: Path) -> Path:
    """``save_pretrained`` (safetensors; peft models as adapters) into a temp folder, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


# ------------------------------------------------------------------------------------------------
# the loop
def _finite(value) -> bool:
    return math.isfinite(_as_float(value))


def _as_float(value) -> float:
    return float(value.detach()) if hasattr(value, "detach") else float(value)


def train(model, tokenizer, data: Benchmark, ctx: UnlearnContext, settings: TrainSettings,
          objective: Objective) -> Any:
    """Run ``objective`` through the shared loop and return the trained model.

    LoRA runs return the ``PeftModel`` (adapters not merged, so they can be saved as adapters and
    merged with other runs); full fine-tuning returns the model itself.
    """
    return _TrainingRun(tokenizer, data, ctx, settings, objective).run(model)


@dataclass
class _Schedule:
    """Optimiser steps, sized in un-sharded steps (accelerate's convention: a prepared scheduler
    advances once per process per optimiser step), and their per-process counterparts."""

    steps_per_epoch: int
    total_steps: int
    warmup: int
    steps_per_epoch_local: int = 0
    max_steps_local: int = 0


class _TrainingRun:
    """The state of one run of the shared loop (see the module docstring for what each part does)."""

    def __init__(self, tokenizer, data: Benchmark, ctx: UnlearnContext, settings: TrainSettings,
                 objective: Objective):
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration, set_seed

        s = settings
        self.tokenizer, self.data, self.ctx, self.s, self.objective = tokenizer, data, ctx, s, objective
        self.seed = int(ctx.seed if s.seed is None else s.seed)
        set_seed(self.seed)
        self.emit: Callable[[Mapping[str, Any]], None] = ctx.log_event or (lambda event: None)
        self.accelerator = Accelerator(
            gradient_accumulation_steps=s.gradient_accumulation_steps,
            cpu=str(ctx.device).startswith("cpu"),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=self.seed),
        )
        self.main = self.accelerator.is_main_process
        self.progress = ctx.progress and self.main
        self.out_dir = Path(ctx.out_dir) if ctx.out_dir is not None else None
        self.cache: ReferenceCache | None = None
        self.layer: int | None = None

    # -- setup --------------------------------------------------------------------------------------
    def _data(self):
        """Examples of both splits, the paired dataset, its collator and the seeded data loader."""
        import torch
        from torch.utils.data import DataLoader

        s = self.s
        self.examples = {
            split: [build_example(self.tokenizer, rec, i, s.max_length, s.prompt_max_fraction, s.mask_prompt)
                    for i, rec in enumerate(self.data.split(split))]
            for split in ("forget", "retain")
        }
        self.dataset = PairedDataset(self.examples["forget"], self.examples["retain"], s.retain_sampling, self.seed)
        self.collator = PairedCollator(self.tokenizer, s.padding, s.max_length, s.padding_side)
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.dataset, batch_size=s.per_device_batch_size, shuffle=True, collate_fn=self.collator,
                          generator=generator)

    def _trainable(self, model):
        """The reference-quantity cache (full fine-tuning) or LoRA adapters; the model in training mode."""
        import torch

        s = self.s
        self.layer = self.objective.hidden_layer(model)
        if s.finetune == "full":
            needs = set(self.objective.reference_needs())
            if needs:
                model.to(self.accelerator.device)
                self.cache = ReferenceCache()
                self.cache.build(model, self.collator, self.examples, needs, self.layer, self.accelerator.device,
                                 s.reference_cache_limit_gb, self.progress)
            for p in model.parameters():
                p.requires_grad_(True)
        else:
            from peft import LoraConfig, PeftModel, get_peft_model

            if isinstance(model, PeftModel):
                raise TrainingError("the model already carries peft adapters; merge them (merge_and_unload) or "
                                    "start from the base model")
            torch.manual_seed(self.seed)  # LoRA A matrices are drawn here
            targets = s.lora_target_modules
            model = get_peft_model(model, LoraConfig(
                task_type="CAUSAL_LM", r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=s.lora_dropout,
                target_modules=list(targets) if isinstance(targets, (list, tuple)) else targets, bias="none"))
        if s.gradient_checkpointing:
            model.gradient_checkpointing_enable()
            if s.finetune == "lora":
                model.enable_input_require_grads()
        self.use_cache = getattr(model.config, "use_cache", None)
        model.config.use_cache = False
        model.train()
        return model

    def _optimizer(self, model, loader):
        """AdamW with weight decay on matrices only, and the schedule (un-sharded optimiser steps)."""
        import torch
        from transformers import get_scheduler

        s = self.s
        decay, no_decay = [], []
        for _, p in model.named_parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 else no_decay).append(p)
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": s.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=s.learning_rate)
        steps_per_epoch = math.ceil(len(loader) / s.gradient_accumulation_steps)
        total_steps = steps_per_epoch * s.epochs
        if s.max_steps is not None:
            total_steps = min(total_steps, s.max_steps * self.accelerator.num_processes)
        warmup = s.warmup_steps or int(round(s.warmup_epochs * steps_per_epoch))
        scheduler = get_scheduler(s.scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
        return optimizer, scheduler, _Schedule(steps_per_epoch, total_steps, warmup)

    # -- hooks --------------------------------------------------------------------------------------
    def _curves(self, step: int, epoch: float) -> None:
        """The benchmark's scores on the fixed sample, as an ``eval`` event (main process only)."""
        s = self.s
        if not (self.main and self.eval_records and s.eval_every):
            return
        unwrapped = self.unwrapped
        unwrapped.eval()
        unwrapped.config.use_cache = True
        try:
            values = evaluate_sample(unwrapped, self.tokenizer, self.task, self.eval_records, s.eval_max_new_tokens)
        finally:
            unwrapped.config.use_cache = False
            unwrapped.train()
        self.emit({"event": "eval", "step": step, "epoch": epoch, **values})

    def _snapshot(self, step: int) -> None:
        if self.main and self.out_dir is not None and step in self.s.save_param_snapshots_at:
            save_snapshot(self.unwrapped, self.out_dir / "snapshots" / f"step_{step}.safetensors")

    # -- the loop -----------------------------------------------------------------------------------
    def run(self, model):
        s, accelerator = self.s, self.accelerator
        loader = self._data()
        model = self._trainable(model)
        optimizer, scheduler, schedule = self._optimizer(model, loader)
        model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
        self.unwrapped = accelerator.unwrap_model(model)
        schedule.steps_per_epoch_local = math.ceil(len(loader) / s.gradient_accumulation_steps)
        schedule.max_steps_local = math.ceil(schedule.total_steps / accelerator.num_processes)
        self.eval_records = (pick_eval_sample(self.data.forget, s.eval_sample, self.seed)
                             + pick_eval_sample(self.data.retain, s.eval_sample, self.seed))
        self.task = self.ctx.task if self.ctx.task is not None else _lume_task(self.data)

        self.emit({"event": "start", "seed": self.seed, "finetune": s.finetune, "forget_examples": len(self.dataset),
                   "retain_examples": len(self.examples["retain"]), "steps_per_epoch": schedule.steps_per_epoch_local,
                   "total_steps": schedule.max_steps_local, "warmup_steps": schedule.warmup,
                   "processes": accelerator.num_processes,
                   "global_batch": s.per_device_batch_size * accelerator.num_processes * s.gradient_accumulation_steps,
                   "trainable_parameters": sum(p.numel() for p in self.unwrapped.parameters() if p.requires_grad)})
        self._snapshot(0)
        self._curves(0, 0.0)
        global_step = self._epochs(model, loader, optimizer, scheduler, schedule)
        return self._finish(model, global_step)

    def _epochs(self, model, loader, optimizer, scheduler, schedule: _Schedule) -> int:
        """Every epoch's optimiser steps, with the hooks; returns the last optimiser step."""
        from tqdm.auto import tqdm

        s, accelerator = self.s, self.accelerator
        global_step = 0
        bar = tqdm(total=schedule.max_steps_local, desc="unlearning", disable=not self.progress)
        acc: dict[str, float] = {}
        n_micro = 0
        done = False
        for epoch in range(s.epochs):
            self.dataset.set_epoch(epoch)
            for batch in loader:
                with accelerator.accumulate(model):
                    loss, components = self._step(model, batch, global_step, epoch)
                    if accelerator.sync_gradients and s.max_grad_norm:
                        accelerator.clip_grad_norm_(model.parameters(), s.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
                acc["loss"] = acc.get("loss", 0.0) + _as_float(loss)
                for k, v in components.items():
                    acc[k] = acc.get(k, 0.0) + _as_float(v)
                n_micro += 1
                if not accelerator.sync_gradients:
                    continue
                global_step += 1
                bar.update(1)
                event = {"event": "train", "step": global_step,
                         "epoch": round(global_step / schedule.steps_per_epoch_local, 4),
                         "lr": scheduler.get_last_lr()[0]}
                event.update({k: v / n_micro for k, v in acc.items()})
                if self.main:
                    self.emit(event)
                bar.set_postfix(loss=f"{event['loss']:.3f}")
                acc, n_micro = {}, 0
                self._snapshot(global_step)
                if isinstance(s.eval_every, int) and s.eval_every and global_step % s.eval_every == 0:
                    self._curves(global_step, event["epoch"])
                if global_step >= schedule.max_steps_local:
                    done = True
                    break
            if s.eval_every == "epoch":
                self._curves(global_step, float(epoch + 1) if not done
                             else round(global_step / schedule.steps_per_epoch_local, 4))
            if s.save_checkpoints and self.main and self.out_dir is not None:
                save_model_dir(self.unwrapped, self.tokenizer, self.out_dir / "checkpoints" / f"epoch_{epoch + 1}")
            if done:
                break
        bar.close()
        return global_step

    def _step(self, model, batch, global_step: int, epoch: int):
        """The method's loss on one micro-batch, refused when not finite, and its backward pass."""
        step = TrainStep(model, self.unwrapped, batch, self.cache, self.layer, global_step, epoch, self.seed)
        loss, components = self.objective.loss(step)
        if not _finite(loss):
            raise TrainingError(
                f"non-finite loss {float(loss)} at optimiser step {global_step + 1} (epoch {epoch + 1}); "
                f"components: { {k: _as_float(v) for k, v in components.items()} }. "
                "Lower the learning rate or check the method's weights.")
        self.accelerator.backward(loss)
        return loss, components

    def _finish(self, model, global_step: int):
        accelerator = self.accelerator
        accelerator.wait_for_everyone()
        model = accelerator.unwrap_model(model)
        model.config.use_cache = self.use_cache
        if self.s.gradient_checkpointing:
            model.gradient_checkpointing_disable()
        model.eval()
        self.emit({"event": "end", "step": global_step})
        accelerator.free_memory()
        return model


__all__ = ["Objective", "TrainSettings", "evaluate_sample", "pick_eval_sample", "save_model_dir", "save_snapshot",
           "train", "train_settings_defaults"]
