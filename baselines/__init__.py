"""Unlearning methods, one module each, registered by name; model merging; the ZJUKLAB merge system.

Importing this package registers every built-in method (the registry imports it on first lookup).
"""

from . import grad_ascent, grad_diff, kl, npo, npo_gdr, npo_gdr_klr, npo_klr, rmu, simnpo  # noqa: F401
from .base import LossMethod

__all__ = ["LossMethod"]

# The lead's modules (model merging, the ZJUKLAB merge system) register too when present.
import importlib as _importlib
import importlib.util as _importlib_util

for _name in ("merging", "zjuklab"):
    if _importlib_util.find_spec(f"{__name__}.{_name}") is not None:
        _importlib.import_module(f"{__name__}.{_name}")
