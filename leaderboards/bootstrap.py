"""Bootstrap 95% confidence intervals and rank stability from the per-sample files.

What is resampled: the forget/retain items *within each (split, task, kind) stratum* — so every
replicate keeps each per-task mean defined and its size fixed — and the MIA members and
non-members separately, and MMLU / ``utility`` questions within each subject when the run folder has
their per-question rows (``mmlu.jsonl`` / ``utility.jsonl``, checked by :mod:`leaderboards.collect`;
a run without them keeps the record's value fixed, and the board's note says so). One set of
resampling counts is drawn per replicate and shared by every run on the board (a paired bootstrap:
all entries were evaluated on the same items, and rank stability asks how the *comparison* varies).

How: a resample is a vector of multinomial counts per stratum, so a replicate's per-task mean is
``counts @ scores / n`` (one matrix product for all replicates), the task aggregate is the
harmonic mean of the twelve terms vectorised over replicates (0 when a term is 0, as
``statistics.harmonic_mean``), and each MIA AUC is the weighted Mann–Whitney statistic (ties count
one half, as scikit-learn's ROC AUC) from one sort per run. Replicates use float64 and numpy sums;
they are not bit-exact to the sequential sums of :mod:`metrics.semeval`, which does not matter for
an interval — the point estimates shown are always the records' own exact numbers. With no
resampling (all counts 1) the vectorised metrics equal :func:`metrics.semeval.compute_metrics`
to float precision (tested).

Per-item scores are the rows the collection verified against the record
(:mod:`leaderboards.collect`): their stored ``regurgitation``/``knowledge``, or the generations
re-scored in the record's ``settings["mode"]`` when that is what reproduces the record. A run folder
whose files disagree with its record never gets this far. Deterministic for a given seed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from harness.core.records import MIA_FILE, SAMPLES_FILE
from metrics.mia import weighted_auc

from .build import Leaderboard
from .collect import LoadedRecord, per_sample_problem

log = logging.getLogger("unlearnbench.leaderboard")

MEASURE_OF_KIND = {"sc": "regurgitation", "qa": "knowledge"}
MCQ_FIXED = ("mmlu", "utility")
FINAL_FORMULAS = {"final_score": "mmlu", "final_score_utility": "utility"}


@dataclass
class RunData:
    """One run's per-item scores by stratum and MIA membership scores by attack, in file order."""

    items: dict[tuple[str, str, str], dict[str, float]] = field(default_factory=dict)
    """(split, task, kind) → {id: score}."""
    mia: dict[str, dict[tuple[str, str], float]] = field(default_factory=dict)
    """attack → {(set, id): membership score}."""
    fixed: dict[str, Optional[float]] = field(default_factory=dict)
    mcq: dict[str, dict[tuple[str, int], float]] = field(default_factory=dict)
    """``mmlu``/``utility`` → {(subject, doc_id): 1.0 if answered correctly else 0.0}, where the run has rows."""


def load_run(rec: LoadedRecord) -> tuple[Optional[RunData], str]:
    """Per-sample data of a run, or (None, why not).

    The rows are the ones the collection verified against the record
    (:func:`leaderboards.collect.per_sample_problem`: readable, the record's row counts, giving back
    its metrics), so an interval is never drawn from another run's rows; a record loaded without
    that check is checked here.
    """
    from metrics import MIA_ATTACKS, membership_score

    per_sample = rec.per_sample
    if per_sample is None:
        per_sample, problem = per_sample_problem(rec.run_dir, rec.result)
        if problem is not None:
            return None, problem
        if per_sample is None:
            return None, f"no {SAMPLES_FILE}"
    data = RunData(fixed={name: rec.result.metrics.get(name) for name in MCQ_FIXED})
    for name, mcq_rows in per_sample.mcq.items():
        data.mcq[name] = {(r["subject"], int(r["doc_id"])): float(r["correct"]) for r in mcq_rows}
    for row in per_sample.rows:
        kind = row["kind"]
        data.items.setdefault((row["split"], row["task"], kind), {})[row["id"]] = float(row[MEASURE_OF_KIND[kind]])
    if per_sample.mia is not None:
        for attack in MIA_ATTACKS:
            scores = {(r["set"], r["id"]): membership_score(r, attack) for r in per_sample.mia}
            if scores and all(v is not None for v in scores.values()):
                data.mia[attack] = {k: float(v) for k, v in scores.items()}
    return data, ""


@dataclass
class Layout:
    """The shared item order: strata ids and MIA ids every run is aligned to."""

    strata: dict[tuple[str, str, str], list[str]]
    members: list[str]
    nonmembers: list[str]
    mcq: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    """``mmlu``/``utility`` → subject → question ids (from the first run that has per-question rows)."""


def _layout(first: RunData, runs: Sequence[RunData] = ()) -> Layout:
    mia_keys = next(iter(first.mia.values()), {})
    mcq: dict[str, dict[str, list[int]]] = {}
    for data in (first, *runs):
        for name, answers in data.mcq.items():
            if name not in mcq:
                by_subject: dict[str, list[int]] = {}
                for subject, doc_id in sorted(answers):
                    by_subject.setdefault(subject, []).append(doc_id)
                mcq[name] = by_subject
    return Layout(strata={k: list(v) for k, v in sorted(first.items.items())},
                  members=[i for s, i in mia_keys if s == "member"],
                  nonmembers=[i for s, i in mia_keys if s == "nonmember"], mcq=mcq)


def _mcq_aligned(data: RunData, layout: Layout, name: str) -> bool:
    """Whether the run's per-question rows of ``name`` are the layout's questions."""
    wanted = layout.mcq.get(name)
    have = data.mcq.get(name)
    return (wanted is not None and have is not None
            and set(have) == {(s, d) for s, ids in wanted.items() for d in ids})


def _aligned(data: RunData, layout: Layout) -> bool:
    if set(data.items) != set(layout.strata):
        return False
    return all(set(data.items[k]) == set(ids) for k, ids in layout.strata.items())


def mia_aucs(mia_rows: Sequence[dict]) -> dict[str, Optional[float]]:
    """Every attack's MIA AUC (under its ``result.json`` name) from ``mia.jsonl`` rows: the
    Mann–Whitney statistic of :func:`metrics.mia.weighted_auc` with unit weights, equal to scikit-learn's
    ROC AUC
    to float precision (tested) without importing scikit-learn (seconds, on a loaded machine, for a
    board that only checks records). None where an attack's fields or a set are missing."""
    from metrics.mia import attack_scores
    from metrics.semeval import MIA_METRIC_NAMES

    out: dict[str, Optional[float]] = {}
    for attack, name in MIA_METRIC_NAMES.items():
        split = attack_scores(mia_rows, attack)
        if split is None or not split[0] or not split[1]:
            out[name] = None
            continue
        members, nonmembers = np.asarray(split[0], dtype=np.float64), np.asarray(split[1], dtype=np.float64)
        out[name] = float(weighted_auc(members, nonmembers, np.ones((1, len(members))),
                                        np.ones((1, len(nonmembers))))[0])
    return out


def _harmonic_mean(terms: np.ndarray) -> np.ndarray:
    """Row-wise harmonic mean; 0 where a term is 0 (``statistics.harmonic_mean``'s convention)."""
    with np.errstate(divide="ignore"):
        hm = terms.shape[1] / np.sum(1.0 / terms, axis=1)
    return np.where(np.any(terms <= 0, axis=1), 0.0, hm)


def replicate_metrics(data: RunData, layout: Layout, counts: dict[tuple[str, str, str], np.ndarray],
                      member_counts: Optional[np.ndarray], nonmember_counts: Optional[np.ndarray],
                      mcq_counts: Optional[dict[str, dict[str, np.ndarray]]] = None) -> dict[str, np.ndarray]:
    """Every recomputable metric of one run, one value per replicate (rows of the count matrices);
    ``mcq_counts``: ``mmlu``/``utility`` → subject → counts over that subject's questions."""
    from metrics.semeval import AGGREGATE_TERMS, MIA_METRIC_NAMES

    out: dict[str, np.ndarray] = {}
    for key, ids in layout.strata.items():
        split, task, kind = key
        scores = np.array([data.items[key][i] for i in ids], dtype=np.float64)
        out[f"{split}/{task}/{MEASURE_OF_KIND[kind]}"] = counts[key] @ scores / len(ids)
    if all(f"{s}/{t}/{m}" in out for s, t, m in AGGREGATE_TERMS):
        terms = np.stack([1 - out[f"{s}/{t}/{m}"] if s == "forget" else out[f"{s}/{t}/{m}"]
                          for s, t, m in AGGREGATE_TERMS], axis=1)
        out["task_aggregate"] = _harmonic_mean(terms)
    if member_counts is not None and layout.members and layout.nonmembers:
        for attack, scores in data.mia.items():
            if not all(("member", i) in scores for i in layout.members) or \
                    not all(("nonmember", i) in scores for i in layout.nonmembers):
                continue
            m = np.array([scores[("member", i)] for i in layout.members])
            n = np.array([scores[("nonmember", i)] for i in layout.nonmembers])
            out[MIA_METRIC_NAMES[attack]] = weighted_auc(m, n, member_counts, nonmember_counts)
        if "mia_auc" in out:
            out["mia_score"] = 1 - 2 * np.abs(out["mia_auc"] - 0.5)
    for name, by_subject in (mcq_counts or {}).items():
        if not _mcq_aligned(data, layout, name):
            continue  # no per-question rows (or other questions): the record's value stays fixed
        correct = sum(by_subject[subject] @ np.array([data.mcq[name][(subject, d)] for d in ids])
                      for subject, ids in layout.mcq[name].items())
        out[name] = correct / sum(len(ids) for ids in layout.mcq[name].values())
    for final, mcq in FINAL_FORMULAS.items():
        value = out.get(mcq, data.fixed.get(mcq))
        if value is not None and "task_aggregate" in out and "mia_score" in out:
            out[final] = (out["task_aggregate"] + value + out["mia_score"]) / 3
    return out


def identity_counts(layout: Layout) -> tuple[dict, Optional[np.ndarray], Optional[np.ndarray]]:
    """Counts of the un-resampled data (one replicate, every item once): for checking the formulas."""
    counts = {k: np.ones((1, len(ids))) for k, ids in layout.strata.items()}
    return counts, np.ones((1, len(layout.members))), np.ones((1, len(layout.nonmembers)))


def _draw(rng: np.random.Generator, n: int, replicates: int) -> np.ndarray:
    return rng.multinomial(n, np.full(n, 1.0 / n), size=replicates)


def _ranks(scores: np.ndarray, decimals: int, tie_rule: str) -> np.ndarray:
    rounded = np.round(scores, decimals)
    if tie_rule == "dense":
        out = np.empty_like(rounded, dtype=np.int64)
        for b in range(rounded.shape[0]):
            distinct = np.unique(rounded[b])[::-1]
            out[b] = np.searchsorted(-distinct, -rounded[b]) + 1
        return out
    return 1 + (rounded[:, None, :] > rounded[:, :, None]).sum(axis=2)


def add_intervals(lb: Leaderboard, replicates: int, seed: int = 0, progress: bool = True) -> Leaderboard:
    """Fill ``ci`` and ``rank_stability`` of the board's entries from the per-sample files, in place."""
    if replicates <= 0:
        return lb
    entries = lb.entries
    runs = [(e, r) for e in entries for r in e.runs]
    iterator: Sequence = runs
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(runs, desc="bootstrap: reading per-sample files", unit="run", leave=False)
    loaded: dict[int, RunData] = {}
    problems: list[str] = []
    for entry, rec in iterator:
        data, why = load_run(rec)
        if data is None:
            problems.append(f"{rec.path.parent.name}: {why}")
        else:
            loaded[id(rec)] = data
    if not loaded:
        lb.notes.append(f"No bootstrap intervals: no run has its per-sample files ({SAMPLES_FILE}, {MIA_FILE}).")
        return lb
    layout = _layout(next(iter(loaded.values())), list(loaded.values()))
    for entry, rec in runs:
        if id(rec) in loaded and not _aligned(loaded[id(rec)], layout):
            problems.append(f"{rec.path.parent.name}: its {SAMPLES_FILE} items differ from the other runs'")
            del loaded[id(rec)]

    rng = np.random.default_rng(seed)
    counts = {k: _draw(rng, len(ids), replicates) for k, ids in layout.strata.items()}
    member_counts = _draw(rng, len(layout.members), replicates) if layout.members else None
    nonmember_counts = _draw(rng, len(layout.nonmembers), replicates) if layout.nonmembers else None
    mcq_counts = {name: {subject: _draw(rng, len(ids), replicates) for subject, ids in by_subject.items()}
                  for name, by_subject in layout.mcq.items()}

    wanted = {c.metric for c in lb.board.columns} | {lb.board.score}
    score_reps: dict[int, np.ndarray] = {}
    for entry in entries:
        if not all(id(r) in loaded for r in entry.runs):
            continue
        per_run = [replicate_metrics(loaded[id(r)], layout, counts, member_counts, nonmember_counts, mcq_counts)
                   for r in entry.runs]
        common = set.intersection(*(set(m) for m in per_run))
        for name in common:
            if name not in wanted and name not in lb.board.components:
                continue
            reps = np.mean([m[name] for m in per_run], axis=0)
            low, high = np.percentile(reps, [2.5, 97.5])
            entry.ci[name] = (float(low), float(high))
            if name == lb.board.score:
                score_reps[id(entry)] = reps

    ranked = [e for e in lb.ranked if e.status == "ranked"]
    if ranked and score_reps:
        matrix = np.stack([score_reps.get(id(e), np.full(replicates, e.score)) for e in ranked], axis=1)
        ranks = _ranks(matrix, lb.board.rank_decimals, lb.board.tie_rule)
        for j, entry in enumerate(ranked):
            if id(entry) in score_reps:
                entry.rank_stability = float(np.mean(ranks[:, j] == entry.rank))

    lb.bootstrap = replicates
    lb.seed = seed
    shown = {c.metric for c in lb.board.columns} | set(lb.board.components) | {lb.board.score}
    used = [m for m in MCQ_FIXED if m in shown or any(f in shown for f, src in FINAL_FORMULAS.items() if src == m)]
    resampled = [m for m in used if m in layout.mcq]
    fixed_runs = {m: sorted(rec.path.parent.name for _, rec in runs
                            if id(rec) in loaded and not _mcq_aligned(loaded[id(rec)], layout, m)) for m in used}
    fixed = [m for m in used if m not in resampled]
    partly = [f"{m} of {', '.join(fixed_runs[m])}" for m in resampled if fixed_runs[m]]
    lb.notes.append(
        f"95% bootstrap intervals from {replicates} replicates (seed {seed}): items resampled within each "
        f"split/task/kind, MIA members and non-members separately"
        + (f", {' and '.join(resampled)} questions within each subject" if resampled else "")
        + ", the same resample for every entry"
        + (f"; {' and '.join(fixed)} held fixed (no per-question records)" if fixed else "")
        + (f"; held fixed (no per-question records): {'; '.join(partly)}" if partly else "")
        + ". Rank stability: the fraction of replicates in which a ranked entry keeps its rank.")
    if problems:
        log.warning("bootstrap: no intervals for %d run(s): %s", len(set(problems)), "; ".join(sorted(set(problems))))
        lb.notes.append("No intervals for: " + "; ".join(sorted(set(problems))) + ".")
    return lb
