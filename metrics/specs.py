"""Which direction is better for every metric name of ``result.json`` (docs/contracts.md).

Metric names are patterns (``forget/*/regurgitation`` covers ``forget/Task1/regurgitation`` …), so
that a leaderboard can look up any column's direction with :func:`metric_spec`. Each declaration also
gives the metric's valid range (``low``/``high``); :func:`value_problem` checks a value against it (an
undeclared metric must at least be finite). The same specs are registered in :data:`harness.core.registry.METRICS` (``unlearnbench metrics`` lists them).
"""

from __future__ import annotations

import fnmatch
import math

from harness.core.types import MetricSpec


#: Valid ranges (inclusive): proportions, recalls, accuracies, AUCs and the aggregates built from them
#: are in [0, 1]; answer losses (mean cross-entropies) are >= 0.
UNIT = (0.0, 1.0)
NON_NEGATIVE = (0.0, math.inf)


def _spec(name: str, direction: str, description: str, target: float | None = None,
          in_final_score: bool = False, valid: tuple[float, float] = UNIT) -> MetricSpec:
    return MetricSpec(name=name, direction=direction, description=description, target=target,  # type: ignore[arg-type]
                      in_final_score=in_final_score, low=valid[0], high=valid[1])


_TOFU_SET_NAMES = {"retain": "retain set", "forget": "forget set", "real_authors": "real authors",
                   "world_facts": "world facts"}


def _tofu_set_specs(set_name: str) -> tuple[MetricSpec, ...]:
    """TOFU's three statistics of one evaluation set: lower is better on the forget set (forgotten),
    higher elsewhere (kept)."""
    where = _TOFU_SET_NAMES[set_name]
    forget = set_name == "forget"
    direction = "min" if forget else "max"
    why = "lower = forgotten" if forget else "higher = kept"
    probability = ("mean exp(-answer loss)" if set_name in ("retain", "forget")
                   else "mean share of the answer's probability among the answer and its perturbed options")
    truth = ("mean min(r, 1/r) of the truth ratio r (higher = true and false answers equally likely: forgotten)"
             if forget else "mean max(0, 1 - 1/r) of the truth ratio r (higher = prefers the true answer)")
    return (
        _spec(f"tofu/{set_name}/probability", direction, f"TOFU Probability on the {where}: {probability} ({why})"),
        _spec(f"tofu/{set_name}/rougeL_recall", direction,
              f"TOFU ROUGE on the {where}: mean ROUGE-L recall of the greedy answer ({why})"),
        _spec(f"tofu/{set_name}/truth_ratio", "max", f"TOFU Truth Ratio on the {where}: {truth}"),
    )


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
    _spec("answer_loss/forget", "max", "mean answer cross-entropy on forget items (higher = forgotten)",
          valid=NON_NEGATIVE),
    _spec("answer_loss/retain", "min", "mean answer cross-entropy on retain items (lower = kept)", valid=NON_NEGATIVE),
    # TOFU (metrics/tofu.py)
    _spec("tofu/model_utility", "max", "TOFU Model Utility: harmonic mean of Probability, ROUGE and Truth Ratio on "
          "retain, real authors and world facts"),
    _spec("tofu/forget_quality", "max", "TOFU Forget Quality: KS-test p-value of forget-set truth ratios against a "
          "retain-only model's (higher = indistinguishable from never having seen the forget set)"),
    _spec("tofu/forget_quality/ks_statistic", "min", "KS distance behind Forget Quality (0 = same distribution as "
          "the retain-only model)"),
    *(spec for set_name in _TOFU_SET_NAMES for spec in _tofu_set_specs(set_name)),
    # MUSE (metrics/muse.py)
    _spec("muse/verbmem_forget", "min", "MUSE VerbMem: mean ROUGE-L F1 of the greedy continuation of forget text "
          "(lower = forgotten)"),
    _spec("muse/knowmem_forget", "min", "MUSE KnowMem on forget QA: mean ROUGE-L F1 of few-shot answers "
          "(lower = forgotten)"),
    _spec("muse/knowmem_retain", "max", "MUSE KnowMem on retain QA: mean ROUGE-L F1 of few-shot answers "
          "(higher = kept)"),
    # (AUC - AUC_retrained) / AUC_retrained in percent: -100 at AUC 0, unbounded above as AUC_retrained -> 0.
    _spec("muse/privleak", "target", "MUSE PrivLeak: Min-40% membership AUC relative to a retrained model's, in "
          "percent (0 = ideal; negative = under-unlearned, positive = over-unlearned)", 0.0,
          valid=(-100.0, math.inf)),
    _spec("muse/privleak_auc", "target", "Min-40% AUC that a holdout text looks more member-like than a forget "
          "text (about 0.5 for a model that never saw the forget set)", 0.5),
    # lm-eval tasks as columns (harness/tasks/lm_eval_tasks.py keeps only the metrics lm-eval marks
    # higher-is-better; their scales vary: accuracies in [0, 1], BLEU in [0, 100])
    _spec("lm_eval/*", "max", "an lm-evaluation-harness task's metric (lm_eval/<task>/<metric>[/<filter>]), "
          "higher is better; its protocol is in the record's settings.lm_eval_tasks", valid=(-math.inf, math.inf)),
    # metrics.robust: an attack's recovery of a forget metric, e.g. recovered/forget/Task2/knowledge
    _spec("recovered/*", "min", "share of the target-unlearned gap of a forget metric that an attack closes "
          "(0 = nothing recovered, 1 = back to the target; not clipped; metrics.robust)",
          valid=(-math.inf, math.inf)),
    # leaderboards/robust.py: the robust board's per-run summary over attacks
    _spec("robust/worst", "min", "the largest recovery of any attack on the run (see recovered/*)",
          valid=(-math.inf, math.inf)),
    _spec("robust/score", "max", "1 - robust/worst: the share of the forgetting kept under the worst attack",
          valid=(-math.inf, math.inf)),
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


def value_problem(name: str, value: float) -> str | None:
    """Why ``value`` cannot be metric ``name``'s value, or None: every value must be finite, and a
    declared metric's value must lie in its declared range (``[0, 1]`` for AUCs, ROUGE, exact match,
    accuracies and the aggregates; ``>= 0`` for answer losses)."""
    try:
        spec = metric_spec(name)
    except KeyError:
        spec = None
    if spec is not None:
        return spec.value_problem(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"{value!r} is not a finite number (an undeclared metric may be any finite number)"
    return None
