"""NPO with a retain NLL term (NPO-GDR)."""

from __future__ import annotations

from harness.core.params import NonNegativeFloat, PositiveFloat
from harness.core.registry import register_method
from harness.training import mean_nll

from .base import LossMethod
from .presets import demo_preset
from .npo import npo_term


@register_method("npo_gdr")
class NPOGradDiff(LossMethod):
    """NPO on forget + retain NLL (NPO-GDR)."""

    #: World-board final score per learning rate of the demo recipe (baselines.presets):
    #: 5e-4: 0.303, 1e-3: 0.328, 2e-3: 0.333, 3e-3: 0.339, 5e-3: 0.409.
    presets = {"demo": demo_preset(5e-3)}

    def __init__(self, beta: PositiveFloat = 0.1, npo_weight: NonNegativeFloat = 1.0,
                 retain_weight: NonNegativeFloat = 1.0, **training):
        super().__init__(**training)
        self.beta = beta
        self.npo_weight = npo_weight
        self.retain_weight = retain_weight

    def reference_needs(self):
        return {("forget", "label_logprobs")}

    def loss(self, step):
        npo, _ = npo_term(step, self.beta)
        retain_nll = mean_nll(step.retain)
        return self.npo_weight * npo + self.retain_weight * retain_nll, {"npo": npo, "retain_nll": retain_nll}
