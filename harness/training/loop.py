"""The one training loop every gradient-based unlearning method shares.

A method (a :class:`baselines.base.LossMethod`) supplies only its objective: ``loss(step)`` from the
model's outputs on a forget batch, on the retain batch sampled alongside it, and reference quantities.
Everything else lives here, once:

- **Data.** Each LUME record becomes ``input + output + EOS``; the prompt tokens are masked with
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
- **Reference model without a second copy.** With LoRA the frozen base *is* the reference: its outputs
  come from the same weights under ``model.disable_adapter()`` (no grad, eval mode). With full
  fine-tuning, what the method needs from the reference (:meth:`LossMethod.reference_needs`) is computed
  once before training and kept on the CPU: per-token log-probabilities of the labels (a few bytes per
  token), and only when asked the full next-token distributions (float16, ``tokens × vocab``, refused
  above ``reference_cache_limit_gb``) or one layer's hidden states.
- **Hooks.** Every epoch (or every N optimiser steps) a fixed sample of forget and retain records is
  evaluated with the evaluation engine (regurgitation = ROUGE-L recall on sc items, knowledge = exact
  match on qa items, mean answer loss); losses and learning rate are logged every step. Everything goes
  to ``train_log.jsonl`` through ``ctx.log_event`` (event layout: ``docs/contracts.md``). Optional trainable-parameter snapshots at given
  steps (``snapshots/step_N.safetensors``) and per-epoch checkpoints.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

from harness.core.text import prompt_and_answer_ids
from harness.core.types import Benchmark, Record, UnlearnContext

log = logging.getLogger("unlearnbench.training")

IGNORE_INDEX = -100
FINETUNE_MODES = ("lora", "full")
RETAIN_SAMPLING = ("random", "cycle")
PADDING = ("longest", "max_length")
PADDING_SIDES = ("right", "left")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial")
#: What a method can ask of the reference model: ``label_logprobs`` (log-probability of each labelled
#: token, enough for sequence or token-mean NLL), ``distribution`` (full next-token log-probabilities,
#: for KL terms), ``hidden`` (one layer's hidden states, for RMU).
REFERENCE_KINDS = ("label_logprobs", "distribution", "hidden")


class TrainingError(RuntimeError):
    """The training run cannot go on (a non-finite loss, an impossible setting)."""


@dataclass
class TrainSettings:
    """Hyperparameters of the shared loop (every gradient-based method accepts all of them)."""

    finetune: str = "lora"
    """``lora`` (peft adapters; the frozen base is the reference) or ``full`` (all weights trained)."""
    lora_r: int = 32
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: Any = "all-linear"
    """peft ``target_modules``; ``all-linear`` = every linear layer except the LM head."""
    learning_rate: float = 1e-4
    epochs: int = 5
    max_steps: Any = None
    """Stop after this many optimiser steps (``None``: run all epochs)."""
    per_device_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    weight_decay: float = 0.01
    warmup_steps: int = 0
    warmup_epochs: float = 0.0
    """Warm-up length in epochs (ZJUKLAB: one epoch); exclusive with ``warmup_steps``."""
    scheduler: str = "linear"
    max_grad_norm: Any = 1.0
    """Gradient clipping norm (``None`` or 0: no clipping)."""
    max_length: int = 256
    prompt_max_fraction: float = 0.8
    """The prompt keeps at most its last ``fraction × max_length`` tokens (ZJUKLAB: 0.8)."""
    mask_prompt: bool = True
    """Label only answer tokens + EOS (prompt tokens get -100); ``False`` labels the whole example."""
    padding: str = "longest"
    """``longest`` (pad to the batch's longest example) or ``max_length`` (ZJUKLAB pads to 256)."""
    padding_side: str = "right"
    retain_sampling: str = "random"
    """``random`` (seeded draw per forget example and epoch) or ``cycle`` (``i mod len(retain)``)."""
    seed: Any = None
    """Training seed; ``None`` uses the harness seed (``UnlearnContext.seed``)."""
    gradient_checkpointing: bool = False
    eval_every: Any = "epoch"
    """``epoch``, a number of optimiser steps, or 0 / ``None`` for no evaluation during training."""
    eval_sample: int = 16
    """Records per split in the fixed evaluation sample of the training curves."""
    eval_max_new_tokens: int = 64
    save_checkpoints: bool = False
    """Save the model to ``checkpoints/epoch_N`` after every epoch."""
    save_param_snapshots_at: Any = ()
    """Optimiser steps after which the trainable parameters are saved to ``snapshots/step_N.safetensors``
    (0 = before the first step), for the parameter-change angle analysis."""
    reference_cache_limit_gb: float = 2.0
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
# examples and batches
def build_example(tokenizer, record: Record, index: int, max_length: int, prompt_max_fraction: float,
                  mask_prompt: bool) -> dict[str, Any]:
    """``input`` (default special tokens, last tokens kept) + ``output`` + EOS, prompt masked.

    The output's tokens are those that follow the prompt in ``input + seam + output``
    (:func:`harness.core.text.prompt_and_answer_ids`)."""
    if tokenizer.eos_token_id is None:
        raise TrainingError("the tokenizer has no EOS token; training examples end with EOS")
    max_prompt = max(1, int(max_length * prompt_max_fraction))
    # The answer is what the model generates after the prompt: joined as in the document (see
    # harness.core.text), not the output tokenized on its own.
    prompt, answer = prompt_and_answer_ids(tokenizer, record.input, record.output)
    prompt = prompt[-max_prompt:]
    answer = answer + [tokenizer.eos_token_id]
    input_ids = (prompt + answer)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt) + answer) if mask_prompt else list(prompt + answer)
    labels = labels[:max_length]
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels, "index": index}


class PairedDataset:
    """Forget example ``i`` paired with retain example ``retain_for[i]`` (re-drawn every epoch)."""

    def __init__(self, forget: list[dict], retain: list[dict], sampling: str, seed: int):
        self.forget, self.retain, self.sampling, self.seed = forget, retain, sampling, seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        import torch

        n_f, n_r = len(self.forget), len(self.retain)
        if self.sampling == "cycle":
            self.retain_for = [i % n_r for i in range(n_f)]
        else:
            gen = torch.Generator().manual_seed(self.seed * 1000003 + epoch)
            self.retain_for = torch.randint(n_r, (n_f,), generator=gen).tolist()

    def __len__(self) -> int:
        return len(self.forget)

    def __getitem__(self, i: int) -> dict:
        return {"forget": self.forget[i], "retain": self.retain[self.retain_for[i]]}


class PairedCollator:
    """Token-level padding of both sides with ``DataCollatorForSeq2Seq`` (labels padded with -100)."""

    def __init__(self, tokenizer, padding: str, max_length: int, padding_side: str):
        import copy

        from transformers import DataCollatorForSeq2Seq

        tok = copy.copy(tokenizer)  # padding side is tokenizer state; do not change the caller's
        tok.padding_side = padding_side
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        self._collate = DataCollatorForSeq2Seq(tok, padding=padding, max_length=max_length,
                                               label_pad_token_id=IGNORE_INDEX, return_tensors="pt")

    def one(self, features: list[dict]) -> dict:
        import torch

        index = torch.tensor([f["index"] for f in features], dtype=torch.long)
        batch = dict(self._collate([{k: v for k, v in f.items() if k != "index"} for f in features]))
        batch["index"] = index
        return batch

    def __call__(self, pairs: list[dict]) -> dict:
        return {"forget": self.one([p["forget"] for p in pairs]), "retain": self.one([p["retain"] for p in pairs])}


# ------------------------------------------------------------------------------------------------
# reference quantities
def label_token_logprobs(logits, labels):
    """Log-probability of each label token under ``logits`` → ``([B, T-1] values, [B, T-1] mask)``.

    Position ``t`` scores ``labels[t+1]`` (the usual shift); masked positions hold 0.
    """
    import torch.nn.functional as F

    shift_logits = logits[:, :-1, :]
    shift_labels = labels[:, 1:]
    mask = shift_labels != IGNORE_INDEX
    nll = F.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)).float(),
                          shift_labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none")
    return -nll.view(shift_labels.shape), mask


class ReferenceCache:
    """Full fine-tuning: the reference quantities of every example, computed once before training.

    Values are stored per example over its real tokens only (``attention_mask == 1``) and scattered
    back into whatever padded layout a batch has, so padding side and batch composition do not matter.
    """

    def __init__(self) -> None:
        self.store: dict[tuple[str, str], list] = {}

    @staticmethod
    def estimate_bytes(examples: list[dict], vocab: int) -> int:
        return sum(len(e["input_ids"]) for e in examples) * vocab * 2

    def build(self, model, collator: PairedCollator, examples: dict[str, list[dict]], needs: set[tuple[str, str]],
              layer: int | None, device, limit_gb: float, progress: bool) -> None:
        import torch
        from tqdm.auto import tqdm

        for split, kind in needs:
            if kind not in REFERENCE_KINDS:
                raise TrainingError(f"unknown reference quantity {kind!r}; expected one of {list(REFERENCE_KINDS)}")
            if kind == "distribution":
                size = self.estimate_bytes(examples[split], model.config.vocab_size)
                if size > limit_gb * 2**30:
                    raise TrainingError(
                        f"full fine-tuning with a KL term needs the reference model's next-token distribution "
                        f"on every {split} token: {size / 2**30:.1f} GiB in float16, above "
                        f"reference_cache_limit_gb={limit_gb}. Use finetune='lora' (the frozen base is the "
                        f"reference, nothing is cached) or raise reference_cache_limit_gb.")
            if kind == "hidden" and layer is None:
                raise TrainingError("the method asked for reference hidden states but names no layer")
        was_training = model.training
        model.eval()
        splits = sorted({s for s, _ in needs})
        for split in splits:
            kinds = {k for s, k in needs if s == split}
            for kind in kinds:
                self.store[(split, kind)] = [None] * len(examples[split])
            exs = examples[split]
            bar = tqdm(range(0, len(exs), 8), desc=f"reference {split}", disable=not progress, leave=False)
            for start in bar:
                batch = collator.one(exs[start:start + 8])
                batch = {k: v.to(device) for k, v in batch.items()}
                with torch.no_grad():
                    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                output_hidden_states="hidden" in kinds)
                mask = batch["attention_mask"].bool()
                if "label_logprobs" in kinds:
                    values, _ = label_token_logprobs(out.logits, batch["labels"])
                    values = torch.nn.functional.pad(values, (0, 1))  # align to [B, T]: position t scores t+1
                if "distribution" in kinds:
                    dist = torch.log_softmax(out.logits.float(), dim=-1)
                for row, idx in enumerate(batch["index"].tolist()):
                    m = mask[row]
                    if "label_logprobs" in kinds:
                        self.store[(split, "label_logprobs")][idx] = values[row][m].float().cpu()
                    if "distribution" in kinds:
                        self.store[(split, "distribution")][idx] = dist[row][m].to(torch.float16).cpu()
                    if "hidden" in kinds:
                        self.store[(split, "hidden")][idx] = out.hidden_states[layer][row][m].float().cpu()
        model.train(was_training)

    def gather(self, split: str, kind: str, batch: Mapping[str, Any]):
        """The cached values of a batch, in its padded layout (zeros at padding positions)."""
        import torch

        if (split, kind) not in self.store:
            raise TrainingError(
                f"the method used the reference {kind!r} on {split} data but did not declare it in "
                f"reference_needs(); with full fine-tuning only declared quantities are precomputed")
        rows = [self.store[(split, kind)][i] for i in batch["index"].tolist()]
        mask = batch["attention_mask"].bool()
        shape = tuple(mask.shape) + tuple(rows[0].shape[1:])
        out = torch.zeros(shape, dtype=torch.float32, device=mask.device)
        for r, values in enumerate(rows):
            out[r][mask[r]] = values.to(device=mask.device, dtype=torch.float32)
        return out


# ------------------------------------------------------------------------------------------------
# one training step as seen by a method
class SplitBatch:
    """One side (forget or retain) of a training step; model and reference quantities on demand.

    Nothing is computed until asked for, so a method that never looks at the retain batch pays no
    forward pass for it.
    """

    def __init__(self, name: str, batch: Mapping[str, Any], step: "TrainStep"):
        self.name = name
        self.batch = batch
        self._step = step
        self._cache: dict[str, Any] = {}

    # the batch
    @property
    def input_ids(self):
        return self.batch["input_ids"]

    @property
    def attention_mask(self):
        return self.batch["attention_mask"]

    @property
    def labels(self):
        return self.batch["labels"]

    # the model being trained
    def outputs(self):
        if "out" not in self._cache:
            self._cache["out"] = self._step.model(input_ids=self.input_ids, attention_mask=self.attention_mask,
                                                  output_hidden_states=self._step.layer is not None)
        return self._cache["out"]

    @property
    def logits(self):
        return self.outputs().logits

    def label_logprobs(self):
        """``([B, T-1] log-probabilities of the labels, [B, T-1] label mask)`` under the model."""
        return label_token_logprobs(self.logits, self.labels)

    def hidden(self):
        """Hidden states at the method's layer, ``[B, T, H]``."""
        return self.outputs().hidden_states[self._step.layer]

    # the reference model
    def ref_label_logprobs(self):
        """Like :meth:`label_logprobs` under the reference model (no gradient)."""
        if self._step.cache is not None:
            values = self._step.cache.gather(self.name, "label_logprobs", self.batch)[:, :-1]
            return values, self.labels[:, 1:] != IGNORE_INDEX
        return label_token_logprobs(self._ref_outputs().logits, self.labels)

    def ref_logprobs(self):
        """Reference next-token log-probabilities ``[B, T, V]`` (zeros at padding with full fine-tuning)."""
        import torch

        if self._step.cache is not None:
            return self._step.cache.gather(self.name, "distribution", self.batch)
        return torch.log_softmax(self._ref_outputs().logits.float(), dim=-1)

    def ref_hidden(self):
        if self._step.cache is not None:
            return self._step.cache.gather(self.name, "hidden", self.batch)
        return self._ref_outputs().hidden_states[self._step.layer]

    def _ref_outputs(self):
        import torch

        if "ref" not in self._cache:
            base = self._step.unwrapped
            was_training = base.training
            base.eval()  # the reference is the frozen model as evaluated: no dropout
            try:
                with torch.no_grad(), base.disable_adapter():
                    self._cache["ref"] = base(input_ids=self.input_ids, attention_mask=self.attention_mask,
                                              output_hidden_states=self._step.layer is not None)
            finally:
                base.train(was_training)
        return self._cache["ref"]


class TrainStep:
    """What ``loss(step)`` receives: ``step.forget`` and ``step.retain`` (:class:`SplitBatch`)."""

    def __init__(self, model, unwrapped, batch: Mapping[str, Any], cache: ReferenceCache | None,
                 layer: int | None, global_step: int, epoch: int, seed: int = 0):
        self.model = model
        self.seed = seed
        """The run's effective training seed (for methods that draw fixed random quantities)."""
        self.unwrapped = unwrapped
        self.cache = cache
        self.layer = layer
        self.global_step = global_step
        self.epoch = epoch
        self.forget = SplitBatch("forget", batch["forget"], self)
        self.retain = SplitBatch("retain", batch["retain"], self)


# ------------------------------------------------------------------------------------------------
# loss building blocks shared by the methods
def mean_nll(split: SplitBatch, reference: bool = False):
    """Mean token NLL over every labelled token of the batch (transformers' ``outputs.loss``)."""
    values, mask = split.ref_label_logprobs() if reference else split.label_logprobs()
    return -(values * mask).sum() / mask.sum().clamp(min=1)


def sequence_nll(split: SplitBatch, reference: bool = False):
    """Per-example sum of label-token NLL, ``[B]`` (= ``-log π(y|x)``)."""
    values, mask = split.ref_label_logprobs() if reference else split.label_logprobs()
    return -(values * mask).sum(dim=1)


def label_counts(split: SplitBatch):
    return (split.labels[:, 1:] != IGNORE_INDEX).sum(dim=1)


def kl_ref_to_model(split: SplitBatch, all_positions: bool = False):
    """KL(reference ‖ model) of the next-token distributions.

    Default: the mean over the batch's real (attended) positions. ``all_positions=True`` is the
    ZJUKLAB/TOFU form ``F.kl_div(..., reduction="batchmean")`` on the flattened ``[B·T, V]`` logits:
    the sum over every position, padding included, divided by ``B·T``. With full fine-tuning the
    reference is unknown at padding positions, which then contribute nothing (documented deviation).
    """
    import torch

    logp = torch.log_softmax(split.logits.float(), dim=-1)
    ref = split.ref_logprobs()
    per_position = (ref.exp() * (ref - logp)).sum(dim=-1)  # [B, T]
    mask = split.attention_mask.bool()
    if split._step.cache is not None:
        per_position = per_position * mask
    if all_positions:
        return per_position.sum() / per_position.numel()
    return (per_position * mask).sum() / mask.sum().clamp(min=1)


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
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, set_seed
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    s = settings
    seed = int(ctx.seed if s.seed is None else s.seed)
    set_seed(seed)
    emit: Callable[[Mapping[str, Any]], None] = ctx.log_event or (lambda event: None)
    accelerator = Accelerator(
        gradient_accumulation_steps=s.gradient_accumulation_steps,
        cpu=str(ctx.device).startswith("cpu"),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=seed),
    )
    main = accelerator.is_main_process
    progress = ctx.progress and main

    # data
    examples = {
        split: [build_example(tokenizer, rec, i, s.max_length, s.prompt_max_fraction, s.mask_prompt)
                for i, rec in enumerate(data.split(split))]
        for split in ("forget", "retain")
    }
    dataset = PairedDataset(examples["forget"], examples["retain"], s.retain_sampling, seed)
    collator = PairedCollator(tokenizer, s.padding, s.max_length, s.padding_side)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=s.per_device_batch_size, shuffle=True, collate_fn=collator,
                        generator=generator)

    # model: reference cache (full) or adapters (LoRA)
    layer = objective.hidden_layer(model)
    cache: ReferenceCache | None = None
    if s.finetune == "full":
        needs = set(objective.reference_needs())
        if needs:
            model.to(accelerator.device)
            cache = ReferenceCache()
            cache.build(model, collator, examples, needs, layer, accelerator.device, s.reference_cache_limit_gb,
                        progress)
        for p in model.parameters():
            p.requires_grad_(True)
    else:
        from peft import LoraConfig, PeftModel, get_peft_model

        if isinstance(model, PeftModel):
            raise TrainingError("the model already carries peft adapters; merge them (merge_and_unload) or "
                                "start from the base model")
        torch.manual_seed(seed)  # LoRA A matrices are drawn here
        targets = s.lora_target_modules
        model = get_peft_model(model, LoraConfig(
            task_type="CAUSAL_LM", r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=s.lora_dropout,
            target_modules=list(targets) if isinstance(targets, (list, tuple)) else targets, bias="none"))
    if s.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        if s.finetune == "lora":
            model.enable_input_require_grads()
    use_cache = getattr(model.config, "use_cache", None)
    model.config.use_cache = False
    model.train()

    # optimiser and schedule (sized in un-sharded optimiser steps, see the module docstring)
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": s.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=s.learning_rate)
    steps_per_epoch = math.ceil(len(loader) / s.gradient_accumulation_steps)
    total_steps = steps_per_epoch * s.epochs
    if s.max_steps is not None:
        total_steps = min(total_steps, s.max_steps * accelerator.num_processes)
    warmup = s.warmup_steps or int(round(s.warmup_epochs * steps_per_epoch))
    scheduler = get_scheduler(s.scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    unwrapped = accelerator.unwrap_model(model)
    steps_per_epoch_local = math.ceil(len(loader) / s.gradient_accumulation_steps)
    max_steps_local = math.ceil(total_steps / accelerator.num_processes)

    # hooks
    eval_records = (pick_eval_sample(data.forget, s.eval_sample, seed)
                    + pick_eval_sample(data.retain, s.eval_sample, seed))
    out_dir = Path(ctx.out_dir) if ctx.out_dir is not None else None
    task = ctx.task if ctx.task is not None else _lume_task(data)

    def run_eval(step: int, epoch: float) -> None:
        if not (main and eval_records and s.eval_every):
            return
        unwrapped.eval()
        unwrapped.config.use_cache = True
        try:
            values = evaluate_sample(unwrapped, tokenizer, task, eval_records, s.eval_max_new_tokens)
        finally:
            unwrapped.config.use_cache = False
            unwrapped.train()
        emit({"event": "eval", "step": step, "epoch": epoch, **values})

    def snapshot(step: int) -> None:
        if main and out_dir is not None and step in s.save_param_snapshots_at:
            save_snapshot(unwrapped, out_dir / "snapshots" / f"step_{step}.safetensors")

    emit({"event": "start", "seed": seed, "finetune": s.finetune, "forget_examples": len(dataset),
          "retain_examples": len(examples["retain"]), "steps_per_epoch": steps_per_epoch_local,
          "total_steps": max_steps_local, "warmup_steps": warmup, "processes": accelerator.num_processes,
          "global_batch": s.per_device_batch_size * accelerator.num_processes * s.gradient_accumulation_steps,
          "trainable_parameters": sum(p.numel() for p in unwrapped.parameters() if p.requires_grad)})
    snapshot(0)
    run_eval(0, 0.0)

    global_step = 0
    bar = tqdm(total=max_steps_local, desc="unlearning", disable=not progress)
    acc: dict[str, float] = {}
    n_micro = 0
    done = False
    for epoch in range(s.epochs):
        dataset.set_epoch(epoch)
        for batch in loader:
            with accelerator.accumulate(model):
                step = TrainStep(model, unwrapped, batch, cache, layer, global_step, epoch, seed)
                loss, components = objective.loss(step)
                if not _finite(loss):
                    raise TrainingError(
                        f"non-finite loss {float(loss)} at optimiser step {global_step + 1} (epoch {epoch + 1}); "
                        f"components: { {k: _as_float(v) for k, v in components.items()} }. "
                        "Lower the learning rate or check the method's weights.")
                accelerator.backward(loss)
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
                     "epoch": round(global_step / steps_per_epoch_local, 4),
                     "lr": scheduler.get_last_lr()[0]}
            event.update({k: v / n_micro for k, v in acc.items()})
            if main:
                emit(event)
            bar.set_postfix(loss=f"{event['loss']:.3f}")
            acc, n_micro = {}, 0
            snapshot(global_step)
            if isinstance(s.eval_every, int) and s.eval_every and global_step % s.eval_every == 0:
                run_eval(global_step, event["epoch"])
            if global_step >= max_steps_local:
                done = True
                break
        if s.eval_every == "epoch":
            run_eval(global_step, float(epoch + 1) if not done else round(global_step / steps_per_epoch_local, 4))
        if s.save_checkpoints and main and out_dir is not None:
            save_model_dir(unwrapped, tokenizer, out_dir / "checkpoints" / f"epoch_{epoch + 1}")
        if done:
            break
    bar.close()
    accelerator.wait_for_everyone()
    model = accelerator.unwrap_model(model)
    model.config.use_cache = use_cache
    if s.gradient_checkpointing:
        model.gradient_checkpointing_disable()
    model.eval()
    emit({"event": "end", "step": global_step})
    accelerator.free_memory()
    return model


__all__ = [
    "TrainSettings", "TrainStep", "SplitBatch", "TrainingError", "train", "train_settings_defaults",
    "build_example", "mean_nll", "sequence_nll", "label_counts", "kl_ref_to_model", "evaluate_sample",
    "save_model_dir", "save_snapshot", "IGNORE_INDEX",
]
