"""MUSE (Shi et al. 2024): VerbMem, KnowMem and PrivLeak from per-item rows.

MUSE's numbers exist in two implementations that disagree in details which move the last digits
(and sometimes more), so each is a named :class:`MuseProtocol` and every result records which one
produced it:

==========================  ======================================  =====================================
detail                      ``muse`` (the authors' code,            ``open-unlearning``
                            swj0419/muse_bench ``metrics/``)        (``src/evals/metrics``)
==========================  ======================================  =====================================
ROUGE-L F1                  ``rouge_score``, **no** stemming        ``rouge_score``, Porter stemming
KnowMem answer cut          prefix before ``"\\n\\n"``,             the same stop words plus the decoded
                            ``"\\nQuestion"``, ``"Question:"``      EOS token, then ``strip()``
set mean                    ``sum(values) / len(values)``           ``numpy.mean``
Min-K% score (k = 0.4)      ``int(n·k)`` lowest log-probs, float64  ``max(1, int(n·k))`` lowest, float32
membership AUC              ``roc_curve`` + ``auc``, forget         ``roc_auc_score`` on ``-score``, then
                            labelled 0, holdout 1                   ``1 - AUC`` in PrivLeak
PrivLeak                    ``(AUC - AUC_ret) / AUC_ret · 100``     ``(AUC - AUC_ret) / (AUC_ret + 1e-10)
                                                                    · 100``
==========================  ======================================  =====================================

Both report PrivLeak in percent and ROUGE as a fraction here (the authors' script multiplies ROUGE by
100 for display). The AUC both feed into PrivLeak — :func:`membership_auc` — is the probability
that a *holdout* text looks more like a training member than a *forget* text: about 0.5 for a model
that never saw the forget set, near 0 for one that memorised it. PrivLeak is near 0 at best,
strongly negative for under-unlearning and positive for over-unlearning.

Per-item rows, one JSON object per item (``set`` says which list it belongs to):

====================  =======================================  =====================================
``set``               fields                                   scored as
====================  =======================================  =====================================
``verbmem_forget``    ``id``, ``reference``, ``generation``    ROUGE-L F1 (reference = the ground
                                                               truth continuation)
``knowmem_forget``,   ``id``, ``reference`` (the answer),      ROUGE-L F1 of the cut generation
``knowmem_retain``    ``generation`` (the raw greedy output)   (:func:`cut_knowmem_answer`)
``privleak_forget``,  ``id``, ``min_k`` (:func:`min_k_score`:  membership AUC between the two sets
``privleak_holdout``  mean of the lowest 40 % token log-probs)
====================  =======================================  =====================================

What the rows hold is the task's business (prompts, the ground truth's truncation, which tokens'
log-probabilities, the generation length): see the evaluation task. This module only scores.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .regurgitation import lcs_length, rouge_tokens
from .rows import group_by_set, row_checker

#: The Min-K% fraction both implementations use for PrivLeak (``forget_holdout_Min-40%``; k: 0.4).
MIN_K_FRACTION = 0.4
#: Where a KnowMem answer is cut (both implementations; open-unlearning adds the EOS text).
KNOWMEM_STOP_WORDS: tuple[str, ...] = ("\n\n", "\nQuestion", "Question:")
#: The retrained models' Min-40% AUC (forget vs holdout) that the authors' code divides by
#: (swj0419/muse_bench ``constants.py``, ``AUC_RETRAIN[corpus]["forget_holdout_Min-40%"]``).
MUSE_RETRAIN_AUC: dict[str, float] = {"news": 0.47719999999999996, "books": 0.5392999999999999}

VERBMEM_FORGET = "muse/verbmem_forget"
KNOWMEM_FORGET = "muse/knowmem_forget"
KNOWMEM_RETAIN = "muse/knowmem_retain"
PRIVLEAK = "muse/privleak"
PRIVLEAK_AUC = "muse/privleak_auc"

#: Row set → metric it feeds.
ROUGE_SETS: dict[str, str] = {
    "verbmem_forget": VERBMEM_FORGET,
    "knowmem_forget": KNOWMEM_FORGET,
    "knowmem_retain": KNOWMEM_RETAIN,
}
PRIVLEAK_SETS: tuple[str, ...] = ("privleak_forget", "privleak_holdout")
MUSE_SETS: tuple[str, ...] = (*ROUGE_SETS, *PRIVLEAK_SETS)


@dataclass(frozen=True)
class MuseProtocol:
    """Which implementation's details to reproduce (see the module docstring's table)."""

    name: str
    rouge_stemmer: bool
    """Porter stemming in ``rouge_score``'s tokenizer."""
    strip_knowmem_answer: bool
    """``strip()`` the cut KnowMem answer, and also cut at the decoded EOS token."""
    numpy_mean: bool
    """Set means with ``numpy.mean`` (pairwise summation) rather than ``sum(values) / len(values)``."""
    min_k_at_least_one: bool
    """Min-K% over ``max(1, int(n·k))`` tokens; otherwise ``int(n·k)`` and fewer than 1 is refused."""
    min_k_float32: bool
    """Min-K% sorted and averaged in float32 (open-unlearning casts the log-probs to float32)."""
    auc_by_complement: bool
    """AUC as ``1 - roc_auc_score(labels, -scores)`` rather than ``auc(*roc_curve(labels, scores))``."""
    auc_epsilon: float
    """Added to the reference AUC in PrivLeak's denominator."""


MUSE_PROTOCOLS: dict[str, MuseProtocol] = {
    "muse": MuseProtocol("muse", rouge_stemmer=False, strip_knowmem_answer=False, numpy_mean=False,
                         min_k_at_least_one=False, min_k_float32=False, auc_by_complement=False,
                         auc_epsilon=0.0),
    "open-unlearning": MuseProtocol("open-unlearning", rouge_stemmer=True, strip_knowmem_answer=True,
                                    numpy_mean=True, min_k_at_least_one=True, min_k_float32=True,
                                    auc_by_complement=True, auc_epsilon=1e-10),
}
DEFAULT_PROTOCOL = "muse"


def muse_protocol(name: str | MuseProtocol) -> MuseProtocol:
    """The protocol named ``name`` (a :class:`MuseProtocol` passes through)."""
    if isinstance(name, MuseProtocol):
        return name
    try:
        return MUSE_PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown MUSE protocol {name!r}; expected one of {', '.join(MUSE_PROTOCOLS)}") from None


# -- per item --------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _unstemmed_tokenizer() -> Any:
    from rouge_score.tokenizers import DefaultTokenizer

    return DefaultTokenizer(use_stemmer=False)


def _rouge_tokens(text: str, stemmer: bool) -> list[str]:
    return rouge_tokens(text) if stemmer else _unstemmed_tokenizer().tokenize(text)


def rougeL_f1(reference: str, generation: str, *, stemmer: bool) -> float:
    """ROUGE-L F1 of ``generation`` against ``reference``, bit-identical to
    ``RougeScorer(['rougeL'], use_stemmer=stemmer).score(reference, generation)['rougeL'].fmeasure``.

    The LCS length comes from :func:`metrics.regurgitation.lcs_length` (exact, bit-parallel); the
    arithmetic is ``rouge_score``'s: 0 when either side has no tokens, else precision
    ``lcs / len(generation)``, recall ``lcs / len(reference)`` and ``2PR / (P + R)`` (0 when both are 0).
    """
    target = _rouge_tokens(reference, stemmer)
    prediction = _rouge_tokens(generation, stemmer)
    if not target or not prediction:
        return 0.0
    lcs = lcs_length(target, prediction)
    precision = lcs / len(prediction)
    recall = lcs / len(target)
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def cut_knowmem_answer(generation: str, protocol: str | MuseProtocol = DEFAULT_PROTOCOL, eos_text: str = "") -> str:
    """The part of a KnowMem generation that is scored: the prefix before each stop word in turn.

    ``muse``: ``"\\n\\n"``, ``"\\nQuestion"``, ``"Question:"``, nothing else. ``open-unlearning``: the
    decoded EOS token ``eos_text`` first (when given), then the same stop words, then ``strip()``.
    """
    protocol = muse_protocol(protocol)
    words = ((eos_text,) if protocol.strip_knowmem_answer else ()) + KNOWMEM_STOP_WORDS
    for word in words:
        if word and word in generation:
            generation = generation.split(word)[0]
    return generation.strip() if protocol.strip_knowmem_answer else generation


def min_k_score(token_logprobs: Sequence[float], k: float = MIN_K_FRACTION,
                protocol: str | MuseProtocol = DEFAULT_PROTOCOL) -> float:
    """Min-K% Prob of one text: the mean of its ``k`` fraction of lowest token log-probabilities.

    Higher = more likely a training member (the negative of MUSE's ``Min-40%`` "perplexity"). ``muse``
    averages ``int(n·k)`` values in float64 and refuses a text too short to have one (the authors'
    code would produce NaN); ``open-unlearning`` averages ``max(1, int(n·k))`` values in float32.
    """
    import numpy as np

    protocol = muse_protocol(protocol)
    if not 0 < k <= 1:
        raise ValueError(f"Min-K% fraction must be in (0, 1], got {k}")
    values = np.array(token_logprobs, dtype=np.float32 if protocol.min_k_float32 else np.float64)
    if values.ndim != 1 or not values.size:
        raise ValueError("Min-K% needs a non-empty list of token log-probabilities")
    if not np.isfinite(values).all():
        raise ValueError("Min-K%: token log-probabilities must be finite")
    count = int(len(values) * k)
    if protocol.min_k_at_least_one:
        count = max(1, count)
    if count < 1:
        raise ValueError(f"Min-K% with k={k} over {len(values)} token(s) averages no token; the text is too short")
    return float(np.mean(np.sort(values)[:count]))


# -- aggregates ------------------------------------------------------------------------------------
def set_mean(values: Sequence[float], protocol: str | MuseProtocol = DEFAULT_PROTOCOL) -> float:
    """The mean of a set's per-item scores, summed as the protocol's code sums them."""
    import numpy as np

    protocol = muse_protocol(protocol)
    if not values:
        raise ValueError("the mean of an empty set is undefined")
    if protocol.numpy_mean:
        return float(np.mean(np.array(values, dtype=np.float64)))
    return sum(values) / len(values)


def membership_auc(forget_scores: Sequence[float], holdout_scores: Sequence[float],
                   protocol: str | MuseProtocol = DEFAULT_PROTOCOL) -> float:
    """PrivLeak's AUC: the probability that a holdout text scores as more member-like than a forget
    text (Min-K% scores, higher = member; ties count one half).

    ``muse``: ``roc_curve`` then ``auc`` with forget labelled 0 and holdout 1. ``open-unlearning``:
    ``1 - roc_auc_score`` of the same labels against the negated scores, as its PrivLeak does.
    """
    import numpy as np
    from sklearn.metrics import auc as area
    from sklearn.metrics import roc_auc_score, roc_curve

    protocol = muse_protocol(protocol)
    if not forget_scores or not holdout_scores:
        raise ValueError(f"membership AUC needs forget and holdout scores (got {len(forget_scores)} forget, "
                         f"{len(holdout_scores)} holdout)")
    scores = np.array(list(forget_scores) + list(holdout_scores), dtype=np.float64)
    if not np.isfinite(scores).all():
        raise ValueError("membership AUC: scores must be finite")
    labels = np.array([0] * len(forget_scores) + [1] * len(holdout_scores))
    if protocol.auc_by_complement:
        return float(1 - roc_auc_score(labels, -scores))
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(area(fpr, tpr))


def privleak(auc_unlearned: float, auc_retrained: float, protocol: str | MuseProtocol = DEFAULT_PROTOCOL) -> float:
    """PrivLeak in percent: the relative difference of the evaluated model's :func:`membership_auc`
    from the retrained model's (0 = leaks as much as a model that never saw the forget set)."""
    protocol = muse_protocol(protocol)
    for name, value in (("evaluated", auc_unlearned), ("retrained", auc_retrained)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 1):
            raise ValueError(f"PrivLeak: the {name} model's AUC must be in [0, 1], got {value!r}")
    denominator = auc_retrained + protocol.auc_epsilon
    if denominator == 0:
        raise ValueError("PrivLeak is undefined when the retrained model's AUC is 0")
    return (auc_unlearned - auc_retrained) / denominator * 100


# -- rows ------------------------------------------------------------------------------------------
def check_row(row: Any, *, index: int | None = None, path: str | Path | None = None) -> str:
    """Validate one MUSE per-item row; return its set."""
    fail = row_checker(row, index, path, None)
    set_name = row.get("set")
    if set_name not in MUSE_SETS:
        raise fail(f"field 'set' must be one of {', '.join(MUSE_SETS)}, got {set_name!r}")
    if set_name in ROUGE_SETS:
        for name in ("reference", "generation"):
            if not isinstance(row.get(name), str):
                raise fail(f"field {name!r} must be a string, got {row.get(name)!r}")
    else:
        value = row.get("min_k")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise fail(f"field 'min_k' must be a finite number, got {value!r}")
    return set_name


def item_score(row: Mapping[str, Any], protocol: str | MuseProtocol = DEFAULT_PROTOCOL, eos_text: str = "") -> float:
    """ROUGE-L F1 of one VerbMem or KnowMem row (KnowMem generations are cut first)."""
    protocol = muse_protocol(protocol)
    generation = row["generation"]
    if row["set"] != "verbmem_forget":
        generation = cut_knowmem_answer(generation, protocol, eos_text)
    return rougeL_f1(row["reference"], generation, stemmer=protocol.rouge_stemmer)


@dataclass(frozen=True)
class PrivLeakReference:
    """Where PrivLeak's denominator comes from: a retrained model's AUC and what it is."""

    auc: float
    source: str
    """e.g. ``run runs/retrain`` or ``MUSE constants (news)``."""


def muse_metrics(rows: Iterable[Mapping[str, Any]], *, protocol: str | MuseProtocol = DEFAULT_PROTOCOL,
                 reference: PrivLeakReference | None = None, eos_text: str = "",
                 path: str | Path | None = None) -> dict[str, float]:
    """Every MUSE metric computable from the rows (``result.json`` names).

    ``muse/verbmem_forget``, ``muse/knowmem_forget``, ``muse/knowmem_retain`` for the sets present;
    ``muse/privleak_auc`` when both PrivLeak sets are present, and ``muse/privleak`` when a
    ``reference`` (the retrained model's AUC) is given too.
    """
    protocol = muse_protocol(protocol)
    grouped = group_by_set(rows, check_row, path)
    out: dict[str, float] = {}
    for set_name, metric in ROUGE_SETS.items():
        if set_name in grouped:
            out[metric] = set_mean([item_score(r, protocol, eos_text) for r in grouped[set_name]], protocol)
    if all(s in grouped for s in PRIVLEAK_SETS):
        auc_value = membership_auc([r["min_k"] for r in grouped["privleak_forget"]],
                                   [r["min_k"] for r in grouped["privleak_holdout"]], protocol)
        out[PRIVLEAK_AUC] = auc_value
        if reference is not None:
            out[PRIVLEAK] = privleak(auc_value, reference.auc, protocol)
    return out
