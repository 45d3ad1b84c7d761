"""Which direction is better for every metric name of ``result.json`` (docs/contracts.md).

Metric names are patterns (``forget/*/regurgitation`` covers ``forget/Task1/regurgitation`` …), so
that a leaderboard can look up any column's direction with :func:`metric_spec`. The same specs are
registered in :data:`harness.core.registry.METRICS` (``unlearnbench metrics`` lists them).
"""

from __future__ import annotations

import fnmatch

from harness.core.types import MetricSpec


def _spec(name: str, direction: str, description: str, target: float | None = None,
          in_final_score: bool = False) -> MetricSpec:
    return MetricSpec(name=name, direction=direction, description=description, target=target,  # type: ignore[arg-type]
                      in_final_score=in_final_score)


_SPECS: tuple[MetricSpec, ...] = (
    _spec("forget/*/regurgitation", "min", "ROUGE-L recall on forget sentence completions (lower = forgotten)", None, True),
    _spec("forget/*/knowledge", "min", "exact match on forget QA (lower = forgotten)", None, True),
    _spec("forget/*/rouge1", "min", "ROUGE-1 recall on forget sentence completions (reported only)"),
    _spec("retain/*/regurgitation", "max", "ROUGE-L recall on retain sentence completions (higher = kept)", None, True),
    _spec("retain/*/knowledge", "max", "exact match on retain QA (higher = kept)", None, True),
    _spec("retain/*/rouge1", "max", "ROUGE-1 recall on retain sentence completions (reported only)"),
    _spec("task_aggregate", "max", "harmonic mean of the 12 SemEval terms, forget terms inverted", None, True),
    _spec("mia_auc", "target", "loss-attack membership-inference ROC AUC (0.5 = ideal)", 0.5, True),
    _spec("mia_score", "max", "1 - 2|AUC - 0.5| of the loss attack", None, True),
    _spec("mia_auc/*", "target", "membership-inference ROC AUC of another attack (zlib, min_k, min_k_pp)", 0.5),
    _spec("mmlu", "max", "MMLU accuracy", None, True),
    _spec("utility", "max", "accuracy on the synthetic world's general-knowledge MCQ set"),
    _spec("final_score", "max", "mean(task_aggregate, mmlu, mia_score): the SemEval-2025 final score"),
    _spec("final_score_utility", "max", "mean(task_aggregate, utility, mia_score)"),
    _spec("answer_loss/forget", "max", "mean answer cross-entropy on forget items (higher = forgotten)"),
    _spec("answer_loss/retain", "min", "mean answer cross-entropy on retain items (lower = kept)"),
    # metrics.robust: an attack's recovery of a forget metric, e.g. recovered/forget/Task2/knowledge
    _spec("recovered/*", "min", "share of the target-unlearned gap of a forget metric that an attack closes "
          "(0 = nothing recovered, 1 = back to the target; metrics.robust)"),
)

#: Metric-name pattern → declaration, for every metric name of docs/contracts.md.
METRIC_DIRECTIONS: dict[str, MetricSpec] = {spec.name: spec for spec in _SPECS}


def metric_spec(name: str) -> MetricSpec:
    """The declaration of a concrete metric name (``forget/Task2/knowledge`` → ``forget/*/knowledge``).

    Exact names win over patterns. Raises ``KeyError`` listing the known patterns otherwise.
    """
    if name in METRIC_DIRECTIONS:
        return METRIC_DIRECTIONS[name]
    for pattern, spec in METRIC_DIRECTIONS.items():
        if "*" in pattern and fnmatch.fnmatchcase(name, pattern):
            return spec
    raise KeyError(f"no direction declared for metric {name!r}; known: {', '.join(METRIC_DIRECTIONS)}")
