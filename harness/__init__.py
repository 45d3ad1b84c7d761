"""unlearnbench: a benchmark harness for LLM unlearning.

The public API, re-exported from the modules that implement it::

    from harness import register_method, UnlearningMethod, Benchmark, EvalResult, load_benchmark
"""

from .data import DataError, load_benchmark
from .records import EvalResult, read_result
from .registry import METHODS, METRICS, Registry, RegistryError, register_method, register_metric
from .types import Benchmark, MetricSpec, MIADocument, Record, UnlearnContext, UnlearningMethod

__all__ = [
    "Benchmark",
    "DataError",
    "EvalResult",
    "METHODS",
    "METRICS",
    "MIADocument",
    "MetricSpec",
    "Record",
    "Registry",
    "RegistryError",
    "UnlearnContext",
    "UnlearningMethod",
    "load_benchmark",
    "read_result",
    "register_method",
    "register_metric",
]
