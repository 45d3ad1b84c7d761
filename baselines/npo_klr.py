"""NPO with a KL(reference ‖ model) term on retain data (NPO-KLR)."""

from __future__ import annotations

from harness.core.params import NonNegativeFloat, PositiveFloat
from harness.core.registry import register_method
from harness.training import kl_ref_to_model

from .base import LossMethod
from .presets import demo_preset
from .npo import npo_term


@register_method("npo_klr")
class NPOKL(LossMethod):
    """NPO on forget + KL(reference ‖ model) on retain (NPO-KLR)."""

    #: World-board final score per learning rate of the demo recipe (baselines.presets):
    #: 5e-4: 0.303, 1e-3: 0.323, 2e-3: 0.329, 3e-3: 0.376, 5e-3: 0.426.
    presets = {"demo": demo_preset(5e-3)}

    def __init__(self, beta: PositiveFloat = 0.1, npo_weight: NonNegativeFloat = 1.0,
                 kl_weight: NonNegativeFloat = 1.0, **training):
        super().__init__(**training)
        self.beta = beta
        self.npo_weight = npo_weight
        self.kl_weight = kl_weight

    def reference_needs(self):
        return {("forget", "label_logprobs"), ("retain", "distribution")}

    def loss(self, step):
        npo, _ = npo_term(step, self.beta)
        retain_kl = kl_ref_to_model(step.retain)
        return self.npo_weight * npo + self.kl_weight * retain_kl, {"npo": npo, "retain_kl": retain_kl}
