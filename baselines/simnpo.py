"""SimNPO (Fan et al. 2024): reference-free, length-normalised NPO with a margin.

``L = -(2/β) E[ log σ(β · NLL_θ(y|x)/|y| - γ) ] + λ · retain NLL`` — NPO with the reference model
replaced by a length-normalised reward and a margin γ, so no reference quantities are needed at all.
"""

from __future__ import annotations

from harness.core.registry import register_method
from harness.training import label_counts, mean_nll, sequence_nll

from .base import LossMethod


@register_method("simnpo")
class SimNPO(LossMethod):
    """Reference-free, length-normalised NPO with margin γ (+ λ · retain NLL)."""

    def __init__(self, beta: float = 2.5, gamma: float = 0.0, retain_weight: float = 0.1375, **training):
        super().__init__(**training)
        self.beta = beta
        self.gamma = gamma
        self.retain_weight = retain_weight

    def loss(self, step):
        import torch.nn.functional as F

        avg_nll = sequence_nll(step.forget) / label_counts(step.forget).clamp(min=1)
        simnpo = -F.logsigmoid(self.beta * avg_nll - self.gamma).mean() * (2.0 / self.beta)
        parts = {"simnpo": simnpo, "forget_nll": avg_nll.mean()}
        total = simnpo
        if self.retain_weight:
            parts["retain_nll"] = mean_nll(step.retain)
            total = total + self.retain_weight * parts["retain_nll"]
        return total, parts
