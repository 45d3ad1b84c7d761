"""Robustness attacks on unlearned models (issue 18; docs/attacks.md).

Each attack turns a loaded unlearned model (or its benchmark) into the attacked variant that is then
evaluated like any run; ``metrics.robust`` turns the target's, the unlearned and the attacked run's
per-sample rows into "recovered" figures.

- :mod:`.quantize`: round-to-nearest weight quantisation to 8/4 bits with torchao (bitsandbytes on GPU);
- :mod:`.precision`: the same weights in float32, bfloat16 or float16;
- :mod:`.prompts`: forget prompts wrapped in paraphrase-style and role-play templates (shipped data).

No torch at import time: the modules import it inside the functions that need it.
"""

from harness.core.errors import AttackError
from .precision import PRECISIONS, PrecisionReport, cast_model
from .prompts import PromptTemplate, get_template, load_templates, wrap_benchmark, wrap_prompts
from .quantize import QuantizationReport, QuantizeSettings, quantize_model

__all__ = [
    "AttackError",
    "PRECISIONS",
    "PrecisionReport",
    "PromptTemplate",
    "QuantizationReport",
    "QuantizeSettings",
    "cast_model",
    "get_template",
    "load_templates",
    "quantize_model",
    "wrap_benchmark",
    "wrap_prompts",
]
