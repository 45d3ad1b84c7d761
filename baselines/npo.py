"""Negative Preference Optimisation (NPO, Zhang et al. 2024) and its loss term.

``L_NPO = -(2/β) · E_x[ log σ(-β · log(π_θ(y|x) / π_ref(y|x))) ]`` with the log-ratio taken per
example over its labelled tokens (sequence log-probabilities). ``log π = -(sum of token NLL)``, so
``-β log(π/π_ref) = β (NLL_θ - NLL_ref)``. The reference is the frozen base (LoRA) or the precomputed
log-probabilities of the initial model (full fine-tuning) — never a second model copy.
"""

from __future__ import annotations

from harness.core.params import PositiveFloat
from harness.core.registry import register_method
from harness.training import sequence_nll

from .base import LossMethod
from .presets import demo_preset


def npo_term(step, beta: float):
    """The NPO loss of the forget batch (per-example sequence log-ratios, averaged)."""
    import torch.nn.functional as F

    nll = sequence_nll(step.forget)
    ref_nll = sequence_nll(step.forget, reference=True)
    return -F.logsigmoid(beta * (nll - ref_nll)).mean() * (2.0 / beta), (nll - ref_nll).mean()


@register_method("npo")
class NPO(LossMethod):
    """Negative Preference Optimisation on the forget data (β = 0.1)."""

    #: World-board final score per learning rate of the demo recipe (baselines.presets):
    #: 5e-4: 0.303, 1e-3: 0.344, 2e-3 and up: utility below the floor (0.34, 0.32, 0.32).
    presets = {"demo": demo_preset(1e-3)}

    def __init__(self, beta: PositiveFloat = 0.1, **training):
        super().__init__(**training)
        self.beta = beta

    def reference_needs(self):
        return {("forget", "label_logprobs")}

    def loss(self, step):
        npo, log_ratio = npo_term(step, self.beta)
        return npo, {"npo": npo, "forget_nll_minus_ref": log_ratio}
