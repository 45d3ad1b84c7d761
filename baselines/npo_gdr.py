"""NPO with a retain NLL term (NPO-GDR)."""

from __future__ import annotations

from harness.core.registry import register_method
from harness.training import mean_nll

from .base import LossMethod
from .npo import npo_term


@register_method("npo_gdr")
class NPOGradDiff(LossMethod):
    """NPO on forget + retain NLL (NPO-GDR)."""

    def __init__(self, beta: float = 0.1, npo_weight: float = 1.0, retain_weight: float = 1.0, **training):
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
