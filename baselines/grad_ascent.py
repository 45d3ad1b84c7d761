"""Gradient ascent (GA): maximise the forget data's negative log-likelihood."""

from __future__ import annotations

from harness.core.registry import register_method
from harness.training import mean_nll

from .base import LossMethod
from .presets import demo_preset


@register_method("grad_ascent")
class GradAscent(LossMethod):
    """Gradient ascent on the forget answers' token NLL (GA)."""

    #: World-board final score per learning rate of the demo recipe (baselines.presets):
    #: 5e-4: 0.307 (utility 0.92); 1e-3 and up: utility below the floor (0.49, 0.42, 0.42, 0.30).
    presets = {"demo": demo_preset(5e-4)}

    def __init__(self, **training):
        super().__init__(**training)

    def loss(self, step):
        forget_nll = mean_nll(step.forget)
        return -forget_nll, {"forget_nll": forget_nll}
