"""NPO with a KL(reference ‖ model) term on retain data (NPO-KLR)."""

from __future__ import annotations

from harness.core.registry import register_method
from harness.training import kl_ref_to_model

from .base import LossMethod
from .npo import npo_term


@register_method("npo_klr")
class NPOKL(LossMethod):
    """NPO on forget + KL(reference ‖ model) on retain (NPO-KLR)."""

    def __init__(self, beta: float = 0.1, npo_weight: float = 1.0, kl_weight: float = 1.0, **training):
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
