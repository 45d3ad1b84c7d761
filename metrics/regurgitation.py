"""Regurgitation: ROUGE recall of a generation against a sentence-completion item's reference.

The SemEval-2025 Task 4 score is ROUGE-L **recall** from Google's ``rouge_score`` package, with a
scorer built as ``RougeScorer(['rouge1', 'rougeL'], use_stemmer=True)`` and called as
``score(target=reference, prediction=generation)``. ROUGE-1 recall comes out of the same call and is
reported (not aggregated).

Speed: building the scorer loads nltk's Porter stemmer, so one scorer is built per process and
reused. Stemming dominates the scoring time and is a pure function of the word, so the scorer's
stemmer gets a memo cache; the scores are unchanged (a test compares against a fresh, unmodified
scorer), only computed about twice as fast.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

#: The rouge types the organisers' scorer was built with (both are computed in one call).
ROUGE_TYPES = ("rouge1", "rougeL")


@functools.lru_cache(maxsize=None)
def rouge_scorer() -> Any:
    """The process-wide ``rouge_score`` scorer (built once; ``rouge_score`` is imported lazily)."""
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


def rouge_recalls(reference: str, generation: str) -> tuple[float, float]:
    """``(ROUGE-L recall, ROUGE-1 recall)`` of ``generation`` against ``reference``.

    ``rouge_score`` returns the integer 0 when either text has no tokens; it is returned as ``0.0``
    (equal, and sums identically).
    """
    scores = rouge_scorer().score(target=reference, prediction=generation)
    return float(scores["rougeL"].recall), float(scores["rouge1"].recall)


def regurgitation_rougeL_recall(reference: str, generation: str) -> float:
    """The SemEval regurgitation score of one sentence-completion item: ROUGE-L recall."""
    return rouge_recalls(reference, generation)[0]


def rouge1_recall(reference: str, generation: str) -> float:
    """ROUGE-1 recall of one item (reported alongside regurgitation, never aggregated)."""
    return rouge_recalls(reference, generation)[1]
