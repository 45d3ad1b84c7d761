"""Unlearning methods, one module each, registered by name; model merging; the ZJUKLAB merge system.

Importing this package registers every built-in method (the registry imports it on first lookup).
"""

from . import grad_ascent, grad_diff, kl, npo, npo_gdr, npo_gdr_klr, npo_klr, rmu, simnpo, zjuklab  # noqa: F401
from .base import LossMethod

__all__ = ["LossMethod"]
