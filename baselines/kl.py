"""KL-regularised gradient ascent (KLR): GA plus KL(reference ‖ model) on the retain batch."""

from __future__ import annotations

from harness.core.params import NonNegativeFloat
from harness.core.registry import register_method
from harness.training import kl_ref_to_model, mean_nll

from .base import LossMethod
from .presets import demo_preset


@register_method("kl")
class KLRegularised(LossMethod):
    """Gradient ascent + KL(reference ‖ model) on retain data (KLR)."""

    #: World-board final score per learning rate of the demo recipe (baselines.presets):
    #: 5e-4: 0.298, 1e-3: 0.303, 2e-3: 0.344, 3e-3 and 5e-3: utility below the floor (0.46, 0.41).
    presets = {"demo": demo_preset(2e-3)}

    def __init__(self, forget_weight: NonNegativeFloat = 1.0, kl_weight: NonNegativeFloat = 1.0, **training):
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
