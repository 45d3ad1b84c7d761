"""unlearnbench: a benchmark harness for LLM unlearning.

The public API, re-exported from the modules that implement it::

    from harness import register_method, UnlearningMethod, Benchmark, EvalResult, load_benchmark
    from harness import load_model, evaluate_model, EvalSettings
    from harness import register_benchmark, BenchmarkTask, load_task

Where things live: ``harness.core`` (types, registries, result records, file I/O, the evaluation
cache, errors), ``harness.backends`` (model loading and the model backends), ``harness.tasks``
(benchmarks: LUME, the MCQ sets), ``harness.evaluation`` (the pipeline, analyses),
``harness.training`` (the training loop, run folders, run merging), ``harness.synthetic`` (the
embedded world and target model), ``harness.cli`` (the command line).
"""

from harness.backends.loading import load_model
from harness.core.errors import DataError, RegistryError, UnlearnbenchError, UserError
from harness.core.records import EvalResult, RunConfig, read_result
from harness.core.registry import (BENCHMARKS, METHODS, METRICS, Registry, register_benchmark, register_method,
                                   register_metric)
from harness.core.types import Benchmark, MetricSpec, MIADocument, Record, UnlearnContext, UnlearningMethod
from harness.evaluation.pipeline import EvalSettings, RunInfo, evaluate_model
from harness.tasks import BenchmarkTask, load_task
from harness.tasks.lume.data import load_benchmark

__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "BenchmarkTask",
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
    "RunConfig",
    "RunInfo",
    "UnlearnContext",
    "UnlearnbenchError",
    "UnlearningMethod",
    "UserError",
    "evaluate_model",
    "load_benchmark",
    "load_model",
    "load_task",
    "read_result",
    "register_benchmark",
    "register_method",
    "register_metric",
]
