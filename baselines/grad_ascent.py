"""Gradient ascent (GA): maximise the forget data's negative log-likelihood."""

from __future__ import annotations

from harness.core.registry import register_method
from harness.training import mean_nll

from .base import LossMethod


@register_method("grad_ascent")
class GradAscent(LossMethod):
    """Gradient ascent on the forget answers' token NLL (GA)."""

    def __init__(self, **training):
        super().__init__(**training)

    def loss(self, step):
        forget_nll = mean_nll(step.forget)
        return -forget_nll, {"forget_nll": forget_nll}
