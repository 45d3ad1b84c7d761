"""SimNPO (Fan et al. 2024): reference-free, length-normalised NPO with a margin.

``L = -(2/β) E[ log σ(β · NLL_θ(y|x)/|y| - γ) ] + λ · retain NLL`` — NPO with the reference model
replaced by a length-normalised reward and a margin γ, so no reference quantities are needed at all.
"""

from __future__ import annotations

from harness.core.params import NonNegativeFloat, PositiveFloat
from harness.core.registry import register_method
from harness.training import label_counts, mean_nll, sequence_nll

from .base import LossMethod
from .presets import demo_preset


@register_method("simnpo")
class SimNPO(LossMethod):
    """Reference-free, length-normalised NPO with margin γ (+ λ · retain NLL)."""

    #: World-board final score per learning rate of the demo recipe (baselines.presets):
    #: 5e-4: 0.303, 1e-3: 0.413, 2e-3: 0.423, 3e-3: 0.427, 5e-3: 0.494 (7e-3, off the grid: 0.469).
    presets = {"demo": demo_preset(5e-3)}

    def __init__(self, beta: PositiveFloat = 2.5, gamma: NonNegativeFloat = 0.0,
                 retain_weight: NonNegativeFloat = 0.1375, **training):
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
