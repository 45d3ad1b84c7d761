"""Metric families: pure scoring functions over per-sample records, and the SemEval-2025 aggregation.

Nothing here loads a model or imports torch; ``rouge_score``, scikit-learn and scipy are imported on
first use. Besides SemEval-2025 (LUME): TOFU (:mod:`metrics.tofu`) and MUSE (:mod:`metrics.muse`).
Every metric name of ``result.json`` has a declared direction (:data:`METRIC_DIRECTIONS`,
:func:`metric_spec`), registered in :data:`harness.core.registry.METRICS` on import.

    from metrics import compute_metrics
    metrics = compute_metrics(samples, mia_rows, mmlu=0.49)   # every result.json metric
"""

from harness.core.registry import register_metric

from .knowledge import knowledge_exact_match
from .mia import MIA_ATTACKS, attack_aucs, auc, membership_score, mia_score
from .regurgitation import regurgitation_rougeL_recall, rouge1_recall, rouge_recalls
from .rows import read_mia_rows, read_samples
from .semeval import (
    AGGREGATE_TERMS,
    MODES,
    aggregate_terms,
    compute_metrics,
    final_score,
    score_rows,
    score_sample,
    sequential_mean,
    split_task_means,
    task_aggregate,
    trusted_rows,
)
from .muse import MUSE_PROTOCOLS, muse_metrics
from .specs import METRIC_DIRECTIONS, metric_spec
from .text import PANDAS_DEFAULT_NA_VALUES, classic_cleanup, semeval_na_quirk
from .tofu import read_tofu_logs, tofu_metrics

for _spec in METRIC_DIRECTIONS.values():
    register_metric(_spec.name)(_spec)
del _spec

__all__ = [
    "AGGREGATE_TERMS",
    "METRIC_DIRECTIONS",
    "MIA_ATTACKS",
    "MODES",
    "MUSE_PROTOCOLS",
    "PANDAS_DEFAULT_NA_VALUES",
    "aggregate_terms",
    "attack_aucs",
    "auc",
    "classic_cleanup",
    "compute_metrics",
    "final_score",
    "knowledge_exact_match",
    "membership_score",
    "metric_spec",
    "mia_score",
    "muse_metrics",
    "read_mia_rows",
    "read_samples",
    "read_tofu_logs",
    "regurgitation_rougeL_recall",
    "rouge1_recall",
    "rouge_recalls",
    "score_rows",
    "score_sample",
    "semeval_na_quirk",
    "sequential_mean",
    "split_task_means",
    "task_aggregate",
    "tofu_metrics",
    "trusted_rows",
]
