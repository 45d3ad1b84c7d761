"""Gradient difference (GDR): ascend the forget NLL while descending the retain NLL."""

from __future__ import annotations

from harness.core.params import NonNegativeFloat
from harness.core.registry import register_method
from harness.training import mean_nll

from .base import LossMethod
from .presets import demo_preset


@register_method("grad_diff")
class GradDiff(LossMethod):
    """Gradient difference: -forget NLL + retain NLL (GDR)."""

    #: World-board final score per learning rate of the demo recipe (baselines.presets):
    #: 5e-4: 0.298, 1e-3: 0.298, 2e-3: 0.432, 3e-3 and 5e-3: utility below the floor (0.49, 0.47).
    presets = {"demo": demo_preset(2e-3)}

    def __init__(self, forget_weight: NonNegativeFloat = 1.0, retain_weight: NonNegativeFloat = 1.0, **training):
        super().__init__(**training)
        self.forget_weight = forget_weight
        self.retain_weight = retain_weight

    def loss(self, step):
        forget_nll = mean_nll(step.forget)
        retain_nll = mean_nll(step.retain)
        total = -self.forget_weight * forget_nll + self.retain_weight * retain_nll
        return total, {"forget_nll": forget_nll, "retain_nll": retain_nll}
