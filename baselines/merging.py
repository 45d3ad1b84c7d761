"""Model merging: LoRA adapters through peft's ``add_weighted_adapter``, full fine-tunes through
peft's task-vector merge utilities (``peft.utils.merge_utils``).

Every combination type that peft offers for LoRA is available:

=====================  ==========================================  ==================  ===============
``how``                what it does                                LoRA ranks          full fine-tunes
=====================  ==========================================  ==================  ===============
``linear``             weighted sum of A and of B matrices         must be equal       task arithmetic
``svd``                weighted sum of ΔW, truncated SVD           may differ          + SVD per matrix
``cat``                concatenate the adapters (rank = Σ ranks)   may differ          not applicable
``ties``               TIES (trim, elect sign, disjoint merge)     must be equal       TIES
``ties_svd``           TIES on ΔW, truncated SVD                   may differ          TIES + SVD
``dare_linear``        DARE (random drop + rescale), then sum      must be equal       DARE-linear
``dare_ties``          DARE, then TIES sign election               must be equal       DARE-TIES
``dare_linear_svd``    …on ΔW, truncated SVD                       may differ          + SVD
``dare_ties_svd``      …on ΔW, truncated SVD                       may differ          + SVD
``magnitude_prune``    keep the top-density magnitudes, then sum   must be equal       magnitude prune
``magnitude_prune_svd``  …on ΔW, truncated SVD                     may differ          + SVD
=====================  ==========================================  ==================  ===============

For LoRA, peft applies the non-SVD methods to the A and B matrices separately (this is what the
ZJUKLAB system did with TIES); the ``*_svd`` methods merge the full ΔW = B·A and factor it again.
DARE drops parameters at random: merges are seeded (``seed``) so they are reproducible.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Sequence

log = logging.getLogger(__name__)

COMBINATION_TYPES: tuple[str, ...] = (
    "linear", "svd", "cat", "ties", "ties_svd", "dare_linear", "dare_ties", "dare_linear_svd",
    "dare_ties_svd", "magnitude_prune", "magnitude_prune_svd",
)
#: peft combines A and B separately for these, so all adapters need the same rank.
EQUAL_RANK_TYPES: tuple[str, ...] = ("linear", "ties", "dare_linear", "dare_ties", "magnitude_prune")
#: Methods that take a ``density`` (fraction of parameters kept).
DENSITY_TYPES: tuple[str, ...] = tuple(t for t in COMBINATION_TYPES if t.split("_svd")[0] in
                                       ("ties", "dare_linear", "dare_ties", "magnitude_prune"))
#: ``cat`` concatenates low-rank factors: it has no meaning for dense task vectors.
FULL_TYPES: tuple[str, ...] = tuple(t for t in COMBINATION_TYPES if t != "cat")


class MergeError(ValueError):
    """Runs that cannot be merged with the requested settings (the message says why and what works)."""


@dataclass(frozen=True)
class MergeSettings:
    how: str = "ties"
    weights: tuple[float, ...] | None = None
    """One weight per parent (default 1.0 each, as ZJUKLAB)."""
    density: float = 0.8
    svd_rank: int | None = None
    """Rank of the merged adapter / matrices for ``*svd`` methods (default: max parent rank; for
    full fine-tunes it is required)."""
    majority_sign_method: str = "total"
    seed: int = 0

    def validate(self, n_parents: int, finetune: str) -> tuple[float, ...]:
        allowed = COMBINATION_TYPES if finetune == "lora" else FULL_TYPES
        if self.how not in allowed:
            extra = " ('cat' concatenates LoRA factors and needs LoRA runs)" if self.how == "cat" else ""
            raise MergeError(f"unknown merge method {self.how!r} for {finetune} runs{extra}; "
                             f"choose one of: {', '.join(allowed)}")
        if n_parents < 2:
            raise MergeError(f"merging needs at least two runs, got {n_parents}")
        weights = tuple(float(w) for w in (self.weights or (1.0,) * n_parents))
        if len(weights) != n_parents:
            raise MergeError(f"got {len(weights)} weights for {n_parents} runs; give one weight per run")
        if not all(math.isfinite(w) for w in weights):
            raise MergeError(f"weights must be finite numbers, got {list(weights)}")
        if self.svd_rank is not None and (isinstance(self.svd_rank, bool) or not isinstance(self.svd_rank, int)
                                          or self.svd_rank < 1):
            raise MergeError(f"svd_rank must be an integer >= 1 (or unset for the default), got {self.svd_rank!r}")
        if self.how in DENSITY_TYPES and not (0.0 < self.density <= 1.0):
            raise MergeError(f"density must be in (0, 1], got {self.density}")
        if self.majority_sign_method not in ("total", "frequency"):
            raise MergeError("majority_sign_method must be 'total' or 'frequency'")
        if finetune == "full" and "svd" in self.how and not self.svd_rank:
            raise MergeError(f"{self.how!r} on full fine-tuned runs needs --svd-rank (the rank each merged "
                             "weight matrix is truncated to)")
        return weights


def check_lora_ranks(ranks: dict[str, int], how: str) -> None:
    if how in EQUAL_RANK_TYPES and len(set(ranks.values())) > 1:
        desc = ", ".join(f"{name}: r={r}" for name, r in ranks.items())
        ok = [t for t in COMBINATION_TYPES if t not in EQUAL_RANK_TYPES]
        raise MergeError(f"{how!r} merges LoRA A and B matrices separately and needs equal ranks, got {desc}. "
                         f"Methods that accept different ranks: {', '.join(ok)}")


def merge_lora_adapters(base_model: Any, adapter_dirs: Sequence[str], settings: MergeSettings,
                        adapter_name: str = "default"):
    """Load each adapter onto ``base_model`` and combine them with peft's ``add_weighted_adapter``.

    Returns the ``PeftModel`` with only the merged adapter left and active.
    """
    import torch
    from peft import PeftConfig, PeftModel

    weights = settings.validate(len(adapter_dirs), "lora")
    names = [f"parent{i}" for i in range(len(adapter_dirs))]
    configs = [PeftConfig.from_pretrained(str(d)) for d in adapter_dirs]
    ranks = {str(d): getattr(c, "r", None) for d, c in zip(adapter_dirs, configs)}
    if any(r is None for r in ranks.values()):
        raise MergeError(f"not LoRA adapters: {[d for d, r in ranks.items() if r is None]}")
    check_lora_ranks(ranks, settings.how)
    targets = {str(d): sorted(c.target_modules) if not isinstance(c.target_modules, str) else [c.target_modules]
               for d, c in zip(adapter_dirs, configs)}
    if len({tuple(t) for t in targets.values()}) > 1:
        raise MergeError(f"the adapters target different modules: {targets}")
    model = PeftModel.from_pretrained(base_model, str(adapter_dirs[0]), adapter_name=names[0])
    for name, path in zip(names[1:], adapter_dirs[1:]):
        model.load_adapter(str(path), adapter_name=name)
    kwargs: dict[str, Any] = {}
    if settings.how in DENSITY_TYPES:
        kwargs["density"] = settings.density
    if "ties" in settings.how:
        kwargs["majority_sign_method"] = settings.majority_sign_method
    if "svd" in settings.how:
        kwargs["svd_rank"] = settings.svd_rank
    torch.manual_seed(settings.seed)  # DARE's random pruning
    model.add_weighted_adapter(names, list(weights), adapter_name=adapter_name,
                               combination_type=settings.how, **kwargs)
    model.set_adapter(adapter_name)
    for name in names:
        model.delete_adapter(name)
    model.eval()
    return model


def _truncate_svd(delta, rank: int):
    import torch

    if delta.ndim != 2 or min(delta.shape) <= rank:
        return delta
    u, s, vh = torch.linalg.svd(delta.float(), full_matrices=False)
    return ((u[:, :rank] * s[:rank]) @ vh[:rank]).to(delta.dtype)


def merge_task_vectors(base_state: dict, parent_states: Sequence[dict], settings: MergeSettings) -> dict:
    """Merge full fine-tunes: task vectors τᵢ = θᵢ − θ_base combined with peft's merge utilities.

    Returns the merged state dict θ_base + merge(τ₁…τₙ). Parameters identical in every parent are
    copied unchanged.
    """
    import torch
    from peft.utils import merge_utils

    weights = settings.validate(len(parent_states), "full")
    wt = torch.tensor(weights)
    method = settings.how.removesuffix("_svd")
    keys = list(base_state)
    for i, st in enumerate(parent_states):
        if set(st) != set(keys):
            missing = sorted(set(keys) ^ set(st))[:5]
            raise MergeError(f"parent {i} has different parameters from the base model (e.g. {missing}): "
                             "different architectures cannot be merged")
        for k in keys:
            if st[k].shape != base_state[k].shape:
                raise MergeError(f"parent {i} parameter {k} has shape {tuple(st[k].shape)}, base has "
                                 f"{tuple(base_state[k].shape)}: different architectures cannot be merged")
    torch.manual_seed(settings.seed)
    merged = {}
    for k in keys:
        base = base_state[k]
        if not torch.is_floating_point(base):
            merged[k] = base.clone()
            continue
        taus = [(st[k].float() - base.float()) for st in parent_states]
        if all(not t.any() for t in taus):
            merged[k] = base.clone()
            continue
        if method in ("linear", "svd"):
            delta = merge_utils.task_arithmetic(taus, wt)
        elif method == "ties":
            delta = merge_utils.ties(taus, wt, settings.density, settings.majority_sign_method)
        elif method == "dare_linear":
            delta = merge_utils.dare_linear(taus, wt, settings.density)
        elif method == "dare_ties":
            delta = merge_utils.dare_ties(taus, wt, settings.density, settings.majority_sign_method)
        elif method == "magnitude_prune":
            delta = merge_utils.magnitude_prune(taus, wt, settings.density)
        else:  # pragma: no cover - validate() rejects everything else
            raise MergeError(f"unsupported merge method {settings.how!r}")
        if "svd" in settings.how:
            delta = _truncate_svd(delta, settings.svd_rank)
        merged[k] = (base.float() + delta).to(base.dtype)
    return merged
