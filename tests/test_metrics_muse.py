"""MUSE scoring against the reference implementations (``rouge_score``, scikit-learn, numpy) and
hand-computed cases, for both protocols (the authors' code and open-unlearning's)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.core.errors import DataError
from metrics import metric_spec
from metrics.muse import (
    KNOWMEM_FORGET,
    KNOWMEM_RETAIN,
    MUSE_PROTOCOLS,
    MUSE_RETRAIN_AUC,
    PRIVLEAK,
    PRIVLEAK_AUC,
    VERBMEM_FORGET,
    PrivLeakReference,
    cut_knowmem_answer,
    membership_auc,
    min_k_score,
    muse_metrics,
    muse_protocol,
    privleak,
    rougeL_f1,
    set_mean,
)

MUSE, OU = MUSE_PROTOCOLS["muse"], MUSE_PROTOCOLS["open-unlearning"]


def reference_scorer(stemmer: bool):
    from rouge_score import rouge_scorer

    # the authors' scorer is built with four rouge types; rougeL does not depend on the others
    types = ["rouge1", "rouge2", "rougeL", "rougeLsum"] if not stemmer else ["rouge1", "rougeL"]
    return rouge_scorer.RougeScorer(types, use_stemmer=stemmer)


# -- ROUGE-L F1 ------------------------------------------------------------------------------------
TEXTS = [
    ("The cats were running home", "cat runs home"),
    ("£55,000", "The prize was £55,000."),
    ("10 women and 10 men", "There are 10 women and 10 men in the cabinet"),
    ("16 October 2020", "He was killed on 16 October 2020."),
    ("", "anything"),
    ("...", "!!!"),
    ("a a a b", "b a a"),
    ("Ünïcode wörds café", "cafe words"),
]


@pytest.mark.parametrize("stemmer", [False, True])
@pytest.mark.parametrize("reference, generation", TEXTS)
def test_rougeL_f1_equals_rouge_score_bit_for_bit(stemmer, reference, generation):
    expected = reference_scorer(stemmer).score(reference, generation)["rougeL"].fmeasure
    assert rougeL_f1(reference, generation, stemmer=stemmer) == expected


def test_stemming_is_what_separates_the_protocols():
    # "cats"/"cat", "running"/"runs" only match after Porter stemming
    plain = rougeL_f1("The cats were running home", "cat runs home", stemmer=False)
    stemmed = rougeL_f1("The cats were running home", "cat runs home", stemmer=True)
    assert plain == pytest.approx(2 * (1 / 3) * (1 / 5) / (1 / 3 + 1 / 5))   # only "home" in common
    assert stemmed == pytest.approx(2 * 1 * (3 / 5) / (1 + 3 / 5))          # cat, run, home
    rows = [{"set": "verbmem_forget", "id": "0", "reference": "The cats were running home",
             "generation": "cat runs home"}]
    assert muse_metrics(rows, protocol="muse")[VERBMEM_FORGET] == plain
    assert muse_metrics(rows, protocol="open-unlearning")[VERBMEM_FORGET] == stemmed


words = st.sampled_from(["the", "cat", "cats", "running", "ran", "home", "a", "1", "10", ",", ".", "é", "Question"])


@settings(max_examples=150, deadline=None)
@given(st.lists(words, max_size=25), st.lists(words, max_size=25), st.booleans())
def test_rougeL_f1_matches_rouge_score_on_random_texts(reference, generation, stemmer):
    reference, generation = " ".join(reference), " ".join(generation)
    expected = reference_scorer(stemmer).score(reference, generation)["rougeL"].fmeasure
    assert rougeL_f1(reference, generation, stemmer=stemmer) == expected


# -- KnowMem answers -------------------------------------------------------------------------------
@pytest.mark.parametrize("generation, muse_cut, ou_cut", [
    (" 1472\n\nQuestion: When did", " 1472", "1472"),
    (" 2005\nQuestion: What", " 2005", "2005"),
    (" 19% Question: next", " 19% ", "19%"),
    ("16 October 2020", "16 October 2020", "16 October 2020"),
    ("\n\nempty first", "", ""),
    (" answer</s> trailing", " answer</s> trailing", "answer"),   # only open-unlearning cuts at the EOS text
])
def test_knowmem_answers_are_cut_at_the_stop_words(generation, muse_cut, ou_cut):
    assert cut_knowmem_answer(generation, "muse", eos_text="</s>") == muse_cut
    assert cut_knowmem_answer(generation, "open-unlearning", eos_text="</s>") == ou_cut


# -- Min-K% ----------------------------------------------------------------------------------------
def test_min_k_is_the_mean_of_the_lowest_fraction_of_log_probs():
    logprobs = [-1.0, -5.0, -2.0, -4.0, -3.0]          # int(5 * 0.4) = 2 lowest: -5, -4
    assert min_k_score(logprobs, 0.4, "muse") == -4.5
    assert min_k_score(logprobs, 0.4, "open-unlearning") == -4.5
    assert min_k_score(logprobs, 1.0, "muse") == -3.0


def test_min_k_on_a_too_short_text():
    # int(2 * 0.4) = 0 tokens: the authors' code would average nothing (NaN); open-unlearning takes one
    with pytest.raises(ValueError, match="averages no token"):
        min_k_score([-1.0, -2.0], 0.4, "muse")
    assert min_k_score([-1.0, -2.0], 0.4, "open-unlearning") == -2.0


def test_open_unlearning_min_k_is_computed_in_float32():
    logprobs = [-0.1, -0.7, -1.3, -2.9, -0.2, -3.3, -1.1, -0.4, -2.2, -0.9]
    lowest = sorted(logprobs)[:4]
    assert min_k_score(logprobs, 0.4, "muse") == float(np.mean(np.array(lowest, dtype=np.float64)))
    assert min_k_score(logprobs, 0.4, "open-unlearning") == float(np.mean(np.array(lowest, dtype=np.float32)))
    assert min_k_score(logprobs, 0.4, "muse") != min_k_score(logprobs, 0.4, "open-unlearning")


@pytest.mark.parametrize("bad, message", [([], "non-empty"), ([-1.0, math.nan, -2.0], "finite"),
                                          ([[-1.0]], "non-empty list")])
def test_min_k_refuses_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        min_k_score(bad, 0.4, "muse")
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        min_k_score([-1.0], 0.0)


# -- AUC and PrivLeak ------------------------------------------------------------------------------
def test_membership_auc_hand_cases():
    for protocol in ("muse", "open-unlearning"):
        # forget texts far more member-like (memorised) than holdout: AUC 0
        assert membership_auc([-1.0, -1.5], [-4.0, -5.0], protocol) == 0.0
        # holdout more member-like: AUC 1
        assert membership_auc([-4.0, -5.0], [-1.0, -1.5], protocol) == 1.0
        # all tied: one half
        assert membership_auc([-2.0, -2.0], [-2.0, -2.0], protocol) == 0.5
        # of the 4 (holdout, forget) pairs none has holdout above and one is tied: 0.5 / 4
        assert membership_auc([-1.0, -3.0], [-3.0, -4.0], protocol) == 0.125


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-8, 0), min_size=1, max_size=30), st.lists(st.floats(-8, 0), min_size=1, max_size=30))
def test_membership_auc_matches_scikit_learn(forget, holdout):
    from sklearn.metrics import roc_auc_score

    labels = [0] * len(forget) + [1] * len(holdout)
    expected = roc_auc_score(labels, forget + holdout)
    assert membership_auc(forget, holdout, "muse") == pytest.approx(expected, abs=1e-12)
    # open-unlearning: exactly its own expression
    assert membership_auc(forget, holdout, "open-unlearning") == 1 - roc_auc_score(labels, [-s for s in forget + holdout])


def test_privleak_is_the_relative_auc_difference_in_percent():
    assert privleak(0.25, 0.5, "muse") == -50.0
    assert privleak(0.5, 0.5, "muse") == 0.0
    assert privleak(0.0, MUSE_RETRAIN_AUC["news"], "muse") == -100.0
    assert privleak(0.75, 0.5, "muse") == 50.0
    assert privleak(0.25, 0.5, "open-unlearning") == (0.25 - 0.5) / (0.5 + 1e-10) * 100
    assert privleak(0.25, 0.5, "open-unlearning") != -50.0
    with pytest.raises(ValueError, match="undefined when the retrained model's AUC is 0"):
        privleak(0.3, 0.0, "muse")
    with pytest.raises(ValueError, match=r"evaluated model's AUC must be in \[0, 1\]"):
        privleak(1.5, 0.5)


# -- set means and whole rows ----------------------------------------------------------------------
def test_set_means_sum_as_each_code_does():
    values = [0.1] * 10
    assert set_mean(values, "muse") == 0.09999999999999999        # sum(values) / len(values)
    assert set_mean(values, "open-unlearning") == 0.1              # numpy's pairwise mean
    with pytest.raises(ValueError, match="empty"):
        set_mean([], "muse")


def _rows():
    return [
        {"set": "verbmem_forget", "id": "0", "reference": "the quick brown fox", "generation": "the quick brown fox"},
        {"set": "verbmem_forget", "id": "1", "reference": "jumps over the dog", "generation": "nothing alike"},
        {"set": "knowmem_forget", "id": "0", "reference": "1472", "generation": " 1472\n\nQuestion: next"},
        {"set": "knowmem_retain", "id": "0", "reference": "10 women and 10 men",
         "generation": " 10 women and 10 men\nQuestion: x"},
        {"set": "knowmem_retain", "id": "1", "reference": "2005", "generation": " 2004"},
        {"set": "privleak_forget", "id": "0", "min_k": -1.0},
        {"set": "privleak_forget", "id": "1", "min_k": -3.0},
        {"set": "privleak_holdout", "id": "0", "min_k": -3.0},
        {"set": "privleak_holdout", "id": "1", "min_k": -4.0},
    ]


def test_muse_metrics_from_rows():
    result = muse_metrics(_rows(), reference=PrivLeakReference(auc=0.5, source="hand"))
    assert result == {VERBMEM_FORGET: 0.5, KNOWMEM_FORGET: 1.0, KNOWMEM_RETAIN: 0.5, PRIVLEAK_AUC: 0.125,
                      PRIVLEAK: -75.0}
    for name, value in result.items():
        assert metric_spec(name).value_problem(value) is None, name
    assert metric_spec(PRIVLEAK).value_problem(-100.5) is not None
    assert metric_spec(PRIVLEAK).target == 0.0 and metric_spec(KNOWMEM_RETAIN).direction == "max"
    # without a reference, no PrivLeak; without holdout rows, no AUC either
    assert PRIVLEAK not in muse_metrics(_rows())
    assert PRIVLEAK_AUC not in muse_metrics([r for r in _rows() if r["set"] != "privleak_holdout"])


@pytest.mark.parametrize("change, message", [
    ({"set": "verbmem_retain"}, "field 'set' must be one of verbmem_forget"),
    ({"generation": None}, "field 'generation' must be a string"),
    ({"id": ""}, "field 'id' must be a non-empty string"),
])
def test_malformed_rows_are_refused(change, message):
    rows = _rows()
    rows[1] = dict(rows[1], **change)
    with pytest.raises(DataError, match=message) as info:
        muse_metrics(rows, path="samples.jsonl")
    assert "row 1" in str(info.value) and "samples.jsonl" in str(info.value)
    rows = _rows()
    rows[6] = dict(rows[6], min_k=math.inf)
    with pytest.raises(DataError, match="field 'min_k' must be a finite number"):
        muse_metrics(rows)
    with pytest.raises(DataError, match="appears twice in set 'knowmem_retain'"):
        muse_metrics(_rows() + [_rows()[4]])


def test_unknown_protocol():
    with pytest.raises(ValueError, match="unknown MUSE protocol 'tofu'; expected one of muse, open-unlearning"):
        muse_protocol("tofu")
    assert muse_protocol(OU) is OU and muse_protocol("muse") is MUSE
