"""TOFU (Maini et al. 2024): per-item statistics, the set aggregates, Model Utility and Forget Quality.

Computed exactly as the authors' ``aggregate_eval_stat.py`` (locuslab/tofu) computes them from the
per-item logs their ``evaluate_util.py`` writes: the same numpy operations on float64 arrays in the
same order, ``scipy.stats.hmean`` and ``scipy.stats.ks_2samp``. Nothing here loads a model.

The four evaluation sets and TOFU's own log file for each:

================  ====================================  ============================================
set               TOFU log file                         the "paraphrased" loss is that of
================  ====================================  ============================================
``retain``        ``eval_log.json``                     the paraphrased answer
``forget``        ``eval_log_forget.json``              the paraphrased answer
``real_authors``  ``eval_real_author_wo_options.json``  the answer itself (TOFU's ``base_answer_key``)
``world_facts``   ``eval_real_world_wo_options.json``   the answer itself
================  ====================================  ============================================

Per-item rows (what the harness writes per sample and what :func:`read_tofu_logs` makes of TOFU's
logs), one JSON object per item of a set, items in the set's order:

=====================  =========================================================================
field                  meaning
=====================  =========================================================================
``set``                one of :data:`TOFU_SETS`
``id``                 the item's index in its config, as a string (TOFU's log keys: ``"0"``…)
``answer_loss``        TOFU ``avg_gt_loss``: mean token cross-entropy of the answer given the prompt
``paraphrased_loss``   TOFU ``avg_paraphrased_loss`` (see the table above for which answer)
``perturbed_losses``   TOFU ``average_perturb_loss``: one mean loss per perturbed (wrong) answer
``rougeL_recall``      ROUGE-L recall of the greedy answer against the answer (``rouge_score``,
                       Porter stemming, ``score(answer, generation)``)
``rouge1_recall``      optional; ROUGE-1 recall from the same call (reported, never aggregated)
``prompt``,            optional text: the formatted prompt, the greedy generation and the answer
``generation``,        it was scored against (TOFU's ``generated_text`` triple)
``reference``
=====================  =========================================================================

Aggregates per set (``aggregate_eval_stat.get_model_utility``), with ``p = exp(-loss)``:

- **Probability**: ``mean(p_answer)`` on retain/forget; on real authors and world facts the
  answer's share of the options, ``mean(p_answer / (p_answer + sum(p_perturbed)))``.
- **ROUGE**: ``mean(rougeL_recall)``.
- **Truth ratio**: per item ``r = exp(mean(perturbed_losses) - paraphrased_loss)``; the set's value
  is ``mean(min(r, 1/r))`` on the forget set, ``mean(max(0, 1 - 1/r))`` on the others.

**Model Utility** is ``scipy.stats.hmean`` of the nine non-forget values, in TOFU's order (ROUGE,
Probability, Truth ratio of real authors, then world facts, then retain — the order matters for the
last bit). **Forget Quality** is the p-value of ``scipy.stats.ks_2samp`` between the forget-set
``r`` of the evaluated model and those of a model trained on the retain split only (the reference).

Validation refuses what TOFU would silently turn into a wrong number: non-finite or negative
losses, sets whose items have different numbers of perturbed answers (numpy could not stack them),
duplicate ids, and a reference evaluated on different forget items.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from harness.core.errors import DataError

from .rows import group_by_set, row_checker

#: The evaluation sets, in the order the harness writes them.
TOFU_SETS: tuple[str, ...] = ("retain", "forget", "real_authors", "world_facts")
#: TOFU's log file for each set (``evaluate_util.py`` names them after ``eval_task``).
TOFU_LOG_FILES: dict[str, str] = {
    "retain": "eval_log.json",
    "forget": "eval_log_forget.json",
    "real_authors": "eval_real_author_wo_options.json",
    "world_facts": "eval_real_world_wo_options.json",
}
#: TOFU's single-file form of the same logs (``{file name: log}``), read when the four are absent.
TOFU_AGGREGATED_LOG = "eval_log_aggregated.json"
#: Sets whose Probability is normalised over the answer options (TOFU: files without ``eval_log``).
OPTION_SETS: tuple[str, ...] = ("real_authors", "world_facts")
#: The three per-set statistics, in TOFU's order within a set (``['ROUGE', 'Prob.', 'Truth Ratio']``).
SET_STATISTICS: tuple[str, ...] = ("rougeL_recall", "probability", "truth_ratio")
#: The nine Model Utility terms in the order ``aggregate_eval_stat.py`` hands them to ``hmean``.
MODEL_UTILITY_TERMS: tuple[tuple[str, str], ...] = tuple(
    (set_name, stat) for set_name in ("real_authors", "world_facts", "retain") for stat in SET_STATISTICS
)
#: TOFU log metric name → row field, for the fields the aggregation needs.
_LOG_FIELDS: dict[str, str] = {
    "avg_gt_loss": "answer_loss",
    "avg_paraphrased_loss": "paraphrased_loss",
    "average_perturb_loss": "perturbed_losses",
    "rougeL_recall": "rougeL_recall",
}
_LOSS_FIELDS = ("answer_loss", "paraphrased_loss")


def metric_name(set_name: str, statistic: str) -> str:
    """The ``result.json`` name of a set statistic: ``tofu/forget/probability`` …"""
    return f"tofu/{set_name}/{statistic}"


MODEL_UTILITY = "tofu/model_utility"
FORGET_QUALITY = "tofu/forget_quality"
FORGET_KS_STATISTIC = "tofu/forget_quality/ks_statistic"


# -- validation ------------------------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def _check_loss(value: Any, what: str, fail) -> float:
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise fail(f"{what} must be a finite number >= 0 (a mean cross-entropy), got {value!r}")
    return float(value)


def check_row(row: Any, *, index: int | None = None, path: str | Path | None = None) -> str:
    """Validate one TOFU per-item row; return its set.

    ``index`` is the row's 0-based position (named in errors), ``path`` the file it came from.
    """
    fail = row_checker(row, index, path, None)
    set_name = row.get("set")
    if set_name not in TOFU_SETS:
        raise fail(f"field 'set' must be one of {', '.join(TOFU_SETS)}, got {set_name!r}")
    for name in _LOSS_FIELDS:
        _check_loss(row.get(name), f"field {name!r}", fail)
    perturbed = row.get("perturbed_losses")
    if not isinstance(perturbed, (list, tuple)) or not perturbed:
        raise fail(f"field 'perturbed_losses' must be a non-empty list of losses, got {perturbed!r}")
    for position, value in enumerate(perturbed):
        _check_loss(value, f"field 'perturbed_losses'[{position}]", fail)
    for name in ("rougeL_recall", "rouge1_recall"):
        value = row.get(name)
        if value is None and name == "rouge1_recall":
            continue
        if not _is_number(value) or not 0 <= value <= 1:
            raise fail(f"field {name!r} must be a number in [0, 1], got {value!r}")
    return set_name


def rows_by_set(rows: Iterable[Mapping[str, Any]], path: str | Path | None = None) -> dict[str, list[Mapping[str, Any]]]:
    """Validate rows and group them by set (order kept, sets in :data:`TOFU_SETS` order).

    An id twice in a set, or items of one set with different numbers of perturbed answers, is an
    error naming the row.
    """
    grouped = group_by_set(rows, check_row, path)
    for set_name, set_rows in grouped.items():
        first = set_rows[0]
        for other in set_rows[1:]:
            if len(other["perturbed_losses"]) != len(first["perturbed_losses"]):
                raise DataError(f"{len(other['perturbed_losses'])} perturbed losses, but item {first['id']!r} of set "
                                f"{set_name!r} has {len(first['perturbed_losses'])}; every item of a set needs the "
                                "same number", path, None, other["id"])
    return {name: grouped[name] for name in TOFU_SETS if name in grouped}


# -- per-set statistics ----------------------------------------------------------------------------
@dataclass(frozen=True)
class SetColumns:
    """One set's per-item columns as TOFU's aggregation builds them (float64 numpy arrays)."""

    name: str
    ids: tuple[str, ...]
    answer_loss: Any
    """shape (n,)"""
    paraphrased_loss: Any
    """shape (n,)"""
    perturbed_loss: Any
    """shape (n, k): k perturbed answers per item"""
    rougeL_recall: Any
    """shape (n,)"""

    @classmethod
    def from_rows(cls, name: str, rows: Sequence[Mapping[str, Any]]) -> "SetColumns":
        """Columns of already validated rows of one set (see :func:`rows_by_set`)."""
        import numpy as np

        if not rows:
            raise ValueError(f"TOFU set {name!r} has no items")
        return cls(
            name=name,
            ids=tuple(r["id"] for r in rows),
            answer_loss=np.array([r["answer_loss"] for r in rows], dtype=np.float64),
            paraphrased_loss=np.array([r["paraphrased_loss"] for r in rows], dtype=np.float64),
            perturbed_loss=np.array([list(r["perturbed_losses"]) for r in rows], dtype=np.float64),
            rougeL_recall=np.array([r["rougeL_recall"] for r in rows], dtype=np.float64),
        )


def item_truth_ratios(columns: SetColumns):
    """Per item ``exp(mean(perturbed losses) - paraphrased loss)`` (> 1: the true answer is likelier)."""
    import numpy as np

    return np.exp(columns.perturbed_loss.mean(axis=-1) - columns.paraphrased_loss)


def item_probabilities(columns: SetColumns):
    """Per item probability: ``exp(-answer_loss)``, normalised over the options on real authors and
    world facts (``p_answer / (p_answer + sum(p_perturbed))``)."""
    import numpy as np

    true_prob = np.exp(-1 * columns.answer_loss)
    if columns.name not in OPTION_SETS:
        return true_prob
    false_prob = np.exp(-1 * columns.perturbed_loss)
    all_prob = np.concatenate([np.expand_dims(true_prob, axis=-1), false_prob], axis=1).sum(-1)
    return true_prob / all_prob


def probability(columns: SetColumns) -> float:
    """TOFU's "Prob." of a set: the mean of :func:`item_probabilities`."""
    import numpy as np

    return float(np.mean(item_probabilities(columns)))


def rouge(columns: SetColumns) -> float:
    """TOFU's "ROUGE" of a set: the mean ROUGE-L recall."""
    return float(columns.rougeL_recall.mean())


def truth_ratio(columns: SetColumns) -> float:
    """TOFU's "Truth Ratio" of a set: ``mean(min(r, 1/r))`` on the forget set (1 = the model cannot
    tell true from false), ``mean(max(0, 1 - 1/r))`` elsewhere (higher = prefers the truth)."""
    import numpy as np

    ratios = item_truth_ratios(columns)
    if columns.name == "forget":
        return float(np.mean(np.minimum(ratios, 1 / ratios)))
    return float(np.mean(np.maximum(0, 1 - 1 / ratios)))


def set_statistics(columns: SetColumns) -> dict[str, float]:
    """The three statistics of one set, keyed by :data:`SET_STATISTICS` names."""
    return {"rougeL_recall": rouge(columns), "probability": probability(columns), "truth_ratio": truth_ratio(columns)}


def model_utility(values: Mapping[tuple[str, str], float]) -> float:
    """``scipy.stats.hmean`` of the nine :data:`MODEL_UTILITY_TERMS` (``{(set, statistic): value}``).

    A term that is 0 makes the harmonic mean 0 (scipy's rule); a negative one is impossible for these
    statistics and refused.
    """
    from scipy.stats import hmean

    missing = [f"{s}/{stat}" for s, stat in MODEL_UTILITY_TERMS if (s, stat) not in values]
    if missing:
        raise ValueError(f"Model Utility needs all nine terms; missing: {', '.join(missing)}")
    terms = [values[key] for key in MODEL_UTILITY_TERMS]
    bad = [f"{s}/{stat}={v!r}" for (s, stat), v in zip(MODEL_UTILITY_TERMS, terms) if not (math.isfinite(v) and v >= 0)]
    if bad:
        raise ValueError(f"Model Utility terms must be finite and >= 0; got {', '.join(bad)}")
    return float(hmean(terms))


@dataclass(frozen=True)
class ForgetQuality:
    """The two-sample Kolmogorov–Smirnov test of the forget-set truth ratios against the reference's."""

    pvalue: float
    """Forget Quality: high = the evaluated model is indistinguishable from the retain-only model."""
    statistic: float
    """The KS distance between the two empirical distributions (0 = identical)."""


def forget_quality(forget: SetColumns, reference_forget: SetColumns) -> ForgetQuality:
    """Forget Quality of ``forget`` (the evaluated model's forget-set columns) against
    ``reference_forget`` (the retain-only model's), as ``aggregate_eval_stat.get_forget_quality``.

    Both must cover the same forget items (same ids, any order): a reference evaluated on another
    forget split or size is a different test, not a comparable number.
    """
    from scipy.stats import ks_2samp

    if set(forget.ids) != set(reference_forget.ids):
        only_here = sorted(set(forget.ids) - set(reference_forget.ids), key=_id_order)
        only_there = sorted(set(reference_forget.ids) - set(forget.ids), key=_id_order)
        raise ValueError(
            f"the reference's forget set has other items than the evaluated model's ({len(reference_forget.ids)} vs "
            f"{len(forget.ids)} items; only in the evaluated run: {_preview(only_here)}; only in the reference: "
            f"{_preview(only_there)}); Forget Quality compares the same forget questions")
    result = ks_2samp(item_truth_ratios(forget), item_truth_ratios(reference_forget))
    return ForgetQuality(pvalue=float(result.pvalue), statistic=float(result.statistic))


def _id_order(item_id: str) -> tuple[int, Any]:
    return (0, int(item_id)) if item_id.isdigit() else (1, item_id)


def _preview(ids: Sequence[str], limit: int = 5) -> str:
    if not ids:
        return "none"
    shown = ", ".join(repr(i) for i in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def tofu_metrics(rows: Iterable[Mapping[str, Any]], reference_rows: Iterable[Mapping[str, Any]] | None = None,
                 *, path: str | Path | None = None, reference_path: str | Path | None = None) -> dict[str, float]:
    """Every TOFU metric computable from per-item rows (``result.json`` names).

    ``tofu/<set>/<statistic>`` for each set present; ``tofu/model_utility`` when retain, real authors
    and world facts are all present; ``tofu/forget_quality`` (and its KS statistic) when
    ``reference_rows`` — the retain-only model's rows, of which only the forget set is used — are
    given and both have a forget set. ``path``/``reference_path`` name the rows' files in errors.
    """
    grouped = rows_by_set(rows, path)
    columns = {name: SetColumns.from_rows(name, set_rows) for name, set_rows in grouped.items()}
    out: dict[str, float] = {}
    values: dict[tuple[str, str], float] = {}
    for name, cols in columns.items():
        for stat, value in set_statistics(cols).items():
            values[(name, stat)] = value
            out[metric_name(name, stat)] = value
    if all(key in values for key in MODEL_UTILITY_TERMS):
        out[MODEL_UTILITY] = model_utility(values)
    if reference_rows is not None:
        reference = rows_by_set(reference_rows, reference_path)
        if "forget" not in columns:
            raise ValueError(f"Forget Quality needs the evaluated model's forget set; {path or 'the rows'} have "
                             f"only {', '.join(columns) or 'no sets'}")
        if "forget" not in reference:
            raise ValueError(f"Forget Quality needs the reference model's forget set; {reference_path or 'its rows'} "
                             f"have only {', '.join(reference) or 'no sets'}")
        fq = forget_quality(columns["forget"], SetColumns.from_rows("forget", reference["forget"]))
        out[FORGET_QUALITY] = fq.pvalue
        out[FORGET_KS_STATISTIC] = fq.statistic
    return out


# -- TOFU's own evaluation logs --------------------------------------------------------------------
def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _load_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError("no such file", path) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not valid UTF-8 ({exc.reason})", path) from exc
    except OSError as exc:
        raise DataError(f"cannot read file ({exc.strerror})", path) from exc
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except _DuplicateKey as exc:
        raise DataError(f"key {exc.key!r} appears twice in one JSON object; expected each key once", path) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})", path) from exc


def log_rows(log: Any, set_name: str, path: str | Path) -> list[dict[str, Any]]:
    """Rows of one TOFU evaluation log (``{metric: {item: value}}``), items in the log's order.

    Needs ``avg_gt_loss``, ``avg_paraphrased_loss``, ``average_perturb_loss`` and ``rougeL_recall``;
    uses ``rouge1_recall`` and ``generated_text`` when present. Every needed metric must list the
    same items in the same order — TOFU pairs them by position, so a log whose metrics disagree has
    no meaningful aggregate. Errors name ``path``, the metric and the item.
    """
    if not isinstance(log, Mapping):
        raise DataError(f"expected a JSON object mapping metric names to {{item: value}}, got {type(log).__name__}",
                        path)
    for metric in (*_LOG_FIELDS, "rouge1_recall", "generated_text"):
        if metric in log and not isinstance(log[metric], Mapping):
            raise DataError(f"metric {metric!r}: expected an object mapping item indices to values, got "
                            f"{type(log[metric]).__name__}", path)
    missing = [metric for metric in _LOG_FIELDS if metric not in log]
    if missing:
        raise DataError(f"missing metric(s) {', '.join(repr(m) for m in missing)}; a TOFU evaluation log needs "
                        f"{', '.join(_LOG_FIELDS)}", path)
    items = list(log["avg_gt_loss"])
    if not items:
        raise DataError("metric 'avg_gt_loss' lists no items", path)
    for metric in (*_LOG_FIELDS, "rouge1_recall", "generated_text"):
        if metric not in log:
            continue
        keys = list(log[metric])
        if keys != items:
            position = next((i for i, (a, b) in enumerate(zip(keys, items)) if a != b), min(len(keys), len(items)))
            got = repr(keys[position]) if position < len(keys) else "nothing"
            want = repr(items[position]) if position < len(items) else "nothing"
            raise DataError(f"metric {metric!r} lists other items than 'avg_gt_loss' ({len(keys)} vs {len(items)}; "
                            f"at position {position}: {got} where 'avg_gt_loss' has {want}); TOFU pairs metrics by "
                            "position, so they must list the same items in the same order", path)
    rows: list[dict[str, Any]] = []
    for item in items:
        def fail(message: str, metric: str) -> DataError:
            return DataError(f"metric {metric!r}, item {item!r}: {message}", path)

        row: dict[str, Any] = {"set": set_name, "id": item}
        for metric, field in _LOG_FIELDS.items():
            value = log[metric][item]
            if field == "perturbed_losses":
                if not isinstance(value, list) or not value:
                    raise fail(f"expected a non-empty list of losses (one per perturbed answer), got {value!r}", metric)
                for position, loss in enumerate(value):
                    _check_loss(loss, f"entry {position}", lambda m, metric=metric: fail(m, metric))
                row[field] = [float(loss) for loss in value]
            elif field == "rougeL_recall":
                if not _is_number(value) or not 0 <= value <= 1:
                    raise fail(f"expected a recall in [0, 1], got {value!r}", metric)
                row[field] = float(value)
            else:
                row[field] = _check_loss(value, "the value", lambda m, metric=metric: fail(m, metric))
        if "rouge1_recall" in log:
            value = log["rouge1_recall"][item]
            if not _is_number(value) or not 0 <= value <= 1:
                raise fail(f"expected a recall in [0, 1], got {value!r}", "rouge1_recall")
            row["rouge1_recall"] = float(value)
        if "generated_text" in log:
            triple = log["generated_text"][item]
            if not (isinstance(triple, list) and len(triple) == 3 and all(isinstance(t, str) for t in triple)):
                raise fail("expected [prompt, generation, ground truth] (three strings)", "generated_text")
            row["prompt"], row["generation"], row["reference"] = triple
        rows.append(row)
    widths = {len(r["perturbed_losses"]) for r in rows}
    if len(widths) > 1:
        first = rows[0]
        odd = next(r for r in rows if len(r["perturbed_losses"]) != len(first["perturbed_losses"]))
        raise DataError(f"metric 'average_perturb_loss', item {odd['id']!r}: {len(odd['perturbed_losses'])} losses, "
                        f"but item {first['id']!r} has {len(first['perturbed_losses'])}; every item needs the same "
                        "number", path)
    return rows


def read_tofu_logs(folder: str | Path) -> list[dict[str, Any]]:
    """Rows (retain, forget, real authors, world facts) from a folder of TOFU evaluation logs.

    The folder holds the four ``eval_*.json`` files TOFU's ``evaluate_util.py`` writes
    (:data:`TOFU_LOG_FILES`), or else their single-file form ``eval_log_aggregated.json``. Every
    problem is a :class:`~harness.core.errors.DataError` naming the file, the metric and the item.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("not a folder of TOFU evaluation logs (expected the four eval_*.json files "
                        f"{', '.join(TOFU_LOG_FILES.values())})", folder)
    present = {name: (folder / file).is_file() for name, file in TOFU_LOG_FILES.items()}
    aggregated = folder / TOFU_AGGREGATED_LOG
    rows: list[dict[str, Any]] = []
    if not any(present.values()) and aggregated.is_file():
        logs = _load_json(aggregated)
        if not isinstance(logs, Mapping):
            raise DataError(f"expected a JSON object keyed by {', '.join(TOFU_LOG_FILES.values())}", aggregated)
        for name, file in TOFU_LOG_FILES.items():
            if file not in logs:
                raise DataError(f"no key {file!r}; expected the four logs {', '.join(TOFU_LOG_FILES.values())}",
                                aggregated)
            rows.extend(log_rows(logs[file], name, f"{aggregated} [{file}]"))
        return rows
    missing = [file for name, file in TOFU_LOG_FILES.items() if not present[name]]
    if missing:
        raise DataError(f"missing {', '.join(missing)}; a TOFU evaluation folder holds "
                        f"{', '.join(TOFU_LOG_FILES.values())} (or {TOFU_AGGREGATED_LOG})", folder)
    for name, file in TOFU_LOG_FILES.items():
        path = folder / file
        rows.extend(log_rows(_load_json(path), name, path))
    return rows
