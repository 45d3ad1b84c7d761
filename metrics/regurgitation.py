"""Regurgitation: ROUGE recall of a generation against a sentence-completion item's reference.

The SemEval-2025 Task 4 score is ROUGE-L **recall** from Google's ``rouge_score`` package, with a
scorer built as ``RougeScorer(['rouge1', 'rougeL'], use_stemmer=True)`` and called as
``score(target=reference, prediction=generation)``. ROUGE-1 recall comes out of the same call and is
reported (not aggregated).

Why the LCS is not ``rouge_score``'s own: its ROUGE-L builds the full ``len(ref) × len(gen)``
dynamic-programming table in pure Python (``_lcs_table``), ~70 % of the scoring time of a whole
evaluation on a small model, and the evaluation engine's speed target depends on scoring. Only
the *length* of the LCS enters the recall, and that length is computed here exactly with the
bit-parallel LCS-length algorithm (Allison & Dix 1986; Hyyrö 2004) over Python big ints: one
bitmask per distinct reference token, then a constant number of big-int operations per token of
the other text. Everything else is still ``rouge_score``'s: the tokens come from the scorer's own
tokenizer (``rouge_score.tokenize`` with nltk's Porter stemmer), the zero-token rules and the
formulas ``lcs / len(target_tokens)`` and ``overlap / max(len(target_tokens), 1)`` are those of
``rouge_scorer._score_lcs`` / ``_score_ngrams``; being integer-over-integer divisions, the floats
are bit-identical. ``tests/test_metrics_rouge_fast.py`` proves the equality against an unmodified
``RougeScorer`` with property tests (empty, punctuation-only, repeated words, unicode, long texts)
and on the LUME texts; ``benchmarks/rouge_speed.py`` measures the speed-up.

Stemming is a pure function of the word, so the scorer's stemmer gets a memo cache, and reference
tokenizations are memoised (bounded) too: the same references are scored in every evaluation.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from typing import Any, Sequence

#: The rouge types the organisers' scorer was built with (both are computed in one call).
ROUGE_TYPES = ("rouge1", "rougeL")


@functools.lru_cache(maxsize=None)
def rouge_scorer() -> Any:
    """The process-wide ``rouge_score`` scorer (built once; ``rouge_score`` is imported lazily).

    Its tokenizer (with a memoised stemmer) is what :func:`rouge_tokens` uses.
    """
    from rouge_score import rouge_scorer as _rouge_scorer

    # The constructor logs "Using default tokenizer." at INFO through absl: noise in every CLI run.
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(max(level, logging.WARNING))
    try:
        scorer = _rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    finally:
        absl_logger.setLevel(level)
    stemmer = getattr(getattr(scorer, "_tokenizer", None), "_stemmer", None)
    if stemmer is not None and hasattr(stemmer, "stem"):
        # Instance attribute shadows the method: same results, each distinct word stemmed once.
        stemmer.stem = functools.lru_cache(maxsize=1 << 18)(stemmer.stem)
    return scorer


def rouge_tokens(text: str) -> list[str]:
    """The tokens ``rouge_score`` scores ``text`` by (its DefaultTokenizer, Porter stemming on)."""
    return rouge_scorer()._tokenizer.tokenize(text)


@functools.lru_cache(maxsize=1 << 13)
def _reference_tokens(text: str) -> tuple[str, ...]:
    # Bounded memo for references only (they recur across evaluations; generations do not).
    return tuple(rouge_tokens(text))


def lcs_length(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Length of a longest common subsequence of ``a`` and ``b`` (exact, bit-parallel).

    Bit ``i`` of ``masks[x]`` is set where ``a[i] == x``. The state ``v`` has a 0 bit for every
    row of the DP table's current column where the LCS length steps up, so after consuming all of
    ``b`` the LCS length is the number of zero bits among the low ``len(a)`` bits. Per element of
    ``b``: ``u = v & masks[x]; v = ((v + u) | (v - u)) & all_ones`` (Hyyrö's formulation of
    Allison–Dix), i.e. O(len(b) · len(a)/64) word operations instead of a Python-level table.
    Elements of ``b`` absent from ``a`` leave ``v`` unchanged and are skipped.
    """
    if len(a) < len(b):
        a, b = b, a  # bits over the longer sequence, Python-level loop over the shorter one
    if not b:
        return 0
    masks: dict[Any, int] = {}
    bit = 1
    for x in a:
        masks[x] = masks.get(x, 0) | bit
        bit <<= 1
    all_ones = bit - 1
    v = all_ones
    get = masks.get
    for x in b:
        m = get(x)
        if m is not None:
            u = v & m
            v = ((v + u) | (v - u)) & all_ones
    return len(a) - v.bit_count()


def recalls_from_tokens(target: Sequence[str], prediction: Sequence[str]) -> tuple[float, float]:
    """``(ROUGE-L recall, ROUGE-1 recall)`` from token sequences, with ``rouge_score``'s arithmetic.

    ROUGE-L (``_score_lcs``): 0 when either side has no tokens, else ``lcs / len(target)``.
    ROUGE-1 (``_score_ngrams`` with n=1): ``sum over target unigrams of min(count_t, count_p)``
    divided by ``max(len(target), 1)``. Integer numerators and denominators, so the floats are
    bit-identical to ``rouge_score``'s (whose zero is the int 0; returned here as 0.0, equal).
    """
    if not target or not prediction:
        rouge_l = 0.0
    else:
        rouge_l = lcs_length(target, prediction) / len(target)
    pred_counts = Counter(prediction)
    overlap = 0
    for token, count in Counter(target).items():
        other = pred_counts.get(token)
        if other:
            overlap += count if count < other else other
    return rouge_l, overlap / max(len(target), 1)


def rouge_recalls(reference: str, generation: str) -> tuple[float, float]:
    """``(ROUGE-L recall, ROUGE-1 recall)`` of ``generation`` against ``reference``.

    Equal, bit for bit, to ``RougeScorer(['rouge1', 'rougeL'], use_stemmer=True).score(
    target=reference, prediction=generation)``'s ``rougeL.recall`` and ``rouge1.recall`` (see the
    module docstring for why it is not that call). Where ``rouge_score`` returns the integer 0 (a
    text with no tokens) this returns ``0.0``: equal, and sums identically.
    """
    return recalls_from_tokens(_reference_tokens(reference), rouge_tokens(generation))


def regurgitation_rougeL_recall(reference: str, generation: str) -> float:
    """The SemEval regurgitation score of one sentence-completion item: ROUGE-L recall."""
    return rouge_recalls(reference, generation)[0]


def rouge1_recall(reference: str, generation: str) -> float:
    """ROUGE-1 recall of one item (reported alongside regurgitation, never aggregated)."""
    return rouge_recalls(reference, generation)[1]
