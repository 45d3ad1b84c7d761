"""Membership inference (MIA): membership scores per attack, ROC AUC, and the SemEval MIA score.

Each row of ``mia.jsonl`` holds one document's statistics (see docs/contracts.md). An *attack*
turns a row into a membership score, higher meaning "more likely a member":

=============  =============================  ==========================================
attack         membership score               notes
=============  =============================  ==========================================
``loss``       ``-loss``                      the organisers' attack (SemEval ``mia_auc``)
``zlib``       ``-loss / zlib_entropy``       loss relative to zlib-compressed size
``min_k``      ``min_k``                      Min-K% Prob
``min_k_pp``   ``min_k_pp``                   Min-K%++
=============  =============================  ==========================================

AUC is computed exactly as the organisers did: scikit-learn ``roc_curve`` (members labelled 1)
then ``auc`` — ties count one half. The SemEval MIA score is ``1 - 2 * |AUC - 0.5|``: 1 at the ideal
AUC of 0.5 (members indistinguishable from non-members), 0 at AUC 1 (under-unlearning) or 0
(over-unlearning).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

MIA_ATTACKS: tuple[str, ...] = ("loss", "zlib", "min_k", "min_k_pp")
#: The row fields each attack needs.
ATTACK_FIELDS: dict[str, tuple[str, ...]] = {
    "loss": ("loss",),
    "zlib": ("loss", "zlib_entropy"),
    "min_k": ("min_k",),
    "min_k_pp": ("min_k_pp",),
}
MIA_SETS = ("member", "nonmember")


def membership_score(row: Mapping[str, Any], attack: str) -> float | None:
    """The row's membership score under ``attack`` (higher = member); None if a field is missing."""
    if attack not in ATTACK_FIELDS:
        raise ValueError(f"unknown MIA attack {attack!r}; expected one of {', '.join(MIA_ATTACKS)}")
    values = [row.get(name) for name in ATTACK_FIELDS[attack]]
    if any(v is None for v in values):
        return None
    if attack == "loss":
        return -values[0]
    if attack == "zlib":
        return -values[0] / values[1]
    return float(values[0])


def auc(member_scores: Sequence[float], nonmember_scores: Sequence[float]) -> float:
    """ROC AUC of separating members (label 1) from non-members (label 0) by score.

    ``sklearn.metrics.roc_curve`` then ``sklearn.metrics.auc``, as the organisers computed it (equal
    to ``roc_auc_score``; a member and a non-member with the same score count one half).
    """
    if not member_scores or not nonmember_scores:
        raise ValueError(f"AUC needs at least one member and one non-member score "
                         f"(got {len(member_scores)} member(s), {len(nonmember_scores)} non-member(s))")
    scores = [float(s) for s in member_scores] + [float(s) for s in nonmember_scores]
    bad = next((i for i, s in enumerate(scores) if not math.isfinite(s)), None)
    if bad is not None:
        which = "member" if bad < len(member_scores) else "non-member"
        index = bad if bad < len(member_scores) else bad - len(member_scores)
        raise ValueError(f"AUC: {which} score #{index} is {scores[bad]!r}; scores must be finite numbers")
    from sklearn.metrics import auc as _auc
    from sklearn.metrics import roc_curve

    labels = [1] * len(member_scores) + [0] * len(nonmember_scores)
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(_auc(fpr, tpr))


def weighted_auc(member, nonmember, member_weights, nonmember_weights):
    """ROC AUC with every document weighted, for many weightings at once (bootstrap replicates).

    ``member``/``nonmember``: 1-d score arrays; ``*_weights``: ``[replicates, n]`` arrays (resampling
    counts). Returns one AUC per replicate: sum_i sum_j w_i v_j ([m_i > n_j] + 1/2 [m_i = n_j]) /
    (sum w sum v) -- what ``sklearn.metrics.roc_auc_score(..., sample_weight=...)`` gives one weighting
    at a time (tested against it), from one sort: weights are summed per distinct score and each
    member score counts the non-member weight strictly below it plus half the ties."""
    import numpy as np

    member, nonmember = np.asarray(member, dtype=np.float64), np.asarray(nonmember, dtype=np.float64)
    cm, cn = np.atleast_2d(member_weights), np.atleast_2d(nonmember_weights)
    scores = np.concatenate([member, nonmember])
    is_member = np.concatenate([np.ones(len(member)), np.zeros(len(nonmember))])
    order = np.argsort(scores, kind="stable")
    starts = np.concatenate([[0], np.flatnonzero(np.diff(scores[order])) + 1])
    weights = np.concatenate([cm, cn], axis=1)[:, order].astype(np.float64)
    wm = np.add.reduceat(weights * is_member[order], starts, axis=1)
    wn = np.add.reduceat(weights * (1 - is_member[order]), starts, axis=1)
    below = np.cumsum(wn, axis=1) - wn
    return (wm * (below + 0.5 * wn)).sum(axis=1) / (cm.sum(axis=1) * cn.sum(axis=1))


def mia_score(auc_value: float) -> float:
    """SemEval-2025's MIA score: ``1 - 2 * |AUC - 0.5|`` (1 is ideal)."""
    return 1 - 2 * abs(auc_value - 0.5)


def attack_scores(rows: Iterable[Mapping[str, Any]], attack: str) -> tuple[list[float], list[float]] | None:
    """(member scores, non-member scores) in row order; None if any row lacks the attack's fields."""
    members: list[float] = []
    nonmembers: list[float] = []
    for row in rows:
        score = membership_score(row, attack)
        if score is None:
            return None
        (members if row["set"] == "member" else nonmembers).append(score)
    return members, nonmembers


def attack_aucs(rows: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """AUC per attack over ``mia.jsonl`` rows.

    None for an attack when a row lacks its fields (e.g. Min-K% not computed) or when members or
    non-members are missing altogether.
    """
    out: dict[str, float | None] = {}
    for attack in MIA_ATTACKS:
        split = attack_scores(rows, attack)
        if split is None or not split[0] or not split[1]:
            out[attack] = None
        else:
            out[attack] = auc(*split)
    return out
