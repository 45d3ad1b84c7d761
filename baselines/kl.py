"""KL-regularised gradient ascent (KLR): GA plus KL(reference ‖ model) on the retain batch."""

from __future__ import annotations

from harness.core.registry import register_method
from harness.training import kl_ref_to_model, mean_nll

from .base import LossMethod


@register_method("kl")
class KLRegularised(LossMethod):
    """Gradient ascent + KL(reference ‖ model) on retain data (KLR)."""

    def __init__(self, forget_weight: float = 1.0, kl_weight: float = 1.0, **training):
        super().__init__(**training)
        self.forget_weight = forget_weight
        self.kl_weight = kl_weight

    def reference_needs(self):
        return {("retain", "distribution")} if self.kl_weight else set()

    def loss(self, step):
        forget_nll = mean_nll(step.forget)
        parts = {"forget_nll": forget_nll}
        total = -self.forget_weight * forget_nll
        if self.kl_weight:
            parts["retain_kl"] = kl_ref_to_model(step.retain)
            total = total + self.kl_weight * parts["retain_kl"]
        return total, parts
