"""Gradient difference (GDR): ascend the forget NLL while descending the retain NLL."""

from __future__ import annotations

from harness.core.registry import register_method
from harness.training import mean_nll

from .base import LossMethod


@register_method("grad_diff")
class GradDiff(LossMethod):
    """Gradient difference: -forget NLL + retain NLL (GDR)."""

    def __init__(self, forget_weight: float = 1.0, retain_weight: float = 1.0, **training):
        super().__init__(**training)
        self.forget_weight = forget_weight
        self.retain_weight = retain_weight

    def loss(self, step):
        forget_nll = mean_nll(step.forget)
        retain_nll = mean_nll(step.retain)
        total = -self.forget_weight * forget_nll + self.retain_weight * retain_nll
        return total, {"forget_nll": forget_nll, "retain_nll": retain_nll}
