"""unlearnbench: a benchmark harness for LLM unlearning.

The public API, re-exported from the modules that implement it::

    from harness import register_method, UnlearningMethod, Benchmark, EvalResult, load_benchmark
    from harness import load_model, evaluate_model, EvalSettings
"""

from harness.tasks.lume.data import load_benchmark
from harness.evaluation.pipeline import EvalSettings, evaluate_model
from harness.backends.loading import load_model
from harness.core.records import EvalResult, read_result
from harness.core.errors import DataError, RegistryError, UnlearnbenchError, UserError
from harness.core.registry import METHODS, METRICS, Registry, register_method, register_metric
from harness.core.types import Benchmark, MetricSpec, MIADocument, Record, UnlearnContext, UnlearningMethod

__all__ = [
    "Benchmark",
    "DataError",
    "EvalResult",
    "EvalSettings",
    "METHODS",
    "METRICS",
    "MIADocument",
    "MetricSpec",
    "Record",
    "Registry",
    "RegistryError",
    "UnlearnContext",
    "UnlearnbenchError",
    "UnlearningMethod",
    "UserError",
    "evaluate_model",
    "load_benchmark",
    "load_model",
    "read_result",
    "register_method",
    "register_metric",
]
