"""The fast ROUGE recalls equal ``rouge_score`` bit for bit; ``compute_metrics(rescore=False)``.

Every comparison is against an unmodified ``rouge_score.rouge_scorer.RougeScorer(['rouge1',
'rougeL'], use_stemmer=True)`` (or its own ``_lcs_table`` / ``_score_ngrams``), with ``==`` on the
floats: the speed-up must not move any SemEval number by even one ulp.
"""

from __future__ import annotations

import json
import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import LUME_DIR, requires_lume
from harness.core.errors import DataError
from harness.core.types import kind_from_id
from metrics import compute_metrics, rouge_recalls, score_rows, trusted_rows
from metrics.regurgitation import lcs_length, recalls_from_tokens, rouge_tokens


@pytest.fixture(scope="module")
def fresh():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)


def _reference(scorer, ref: str, gen: str) -> tuple[float, float]:
    s = scorer.score(target=ref, prediction=gen)
    return s["rougeL"].recall, s["rouge1"].recall


def _assert_same(scorer, ref: str, gen: str) -> None:
    expected = _reference(scorer, ref, gen)
    got = rouge_recalls(ref, gen)
    assert got == expected, (ref, gen, got, expected)
    assert all(type(x) is float for x in got)


# -- the LCS length itself -------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=90), st.lists(st.integers(0, 5), max_size=90))
def test_lcs_length_equals_rouge_score_dp_table(a, b):
    from rouge_score.rouge_scorer import _lcs_table

    expected = _lcs_table(a, b)[-1][-1]
    assert lcs_length(a, b) == expected == lcs_length(b, a)


def test_lcs_length_hand_cases_and_long_inputs():
    assert lcs_length([], [1, 2]) == lcs_length([1], []) == 0
    assert lcs_length("ABCBDAB", "BDCABA") == 4  # the textbook example
    assert lcs_length(list(range(500)), list(range(500))) == 500
    assert lcs_length(list(range(500)), list(reversed(range(500)))) == 1
    rng = random.Random(3)
    a = [rng.randrange(40) for _ in range(700)]  # masks of 700 bits: many machine words
    b = [rng.randrange(40) for _ in range(450)]
    from rouge_score.rouge_scorer import _lcs_table

    assert lcs_length(a, b) == _lcs_table(a, b)[-1][-1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from("abcdefg"), max_size=40), st.lists(st.sampled_from("abcdefg"), max_size=40))
def test_recalls_from_tokens_equal_rouge_score_internals(target, prediction):
    from rouge_score.rouge_scorer import _create_ngrams, _score_lcs, _score_ngrams

    lcs = _score_lcs(target, prediction)
    uni = _score_ngrams(_create_ngrams(target, 1), _create_ngrams(prediction, 1))
    assert recalls_from_tokens(target, prediction) == (lcs.recall, uni.recall)


# -- whole texts against a fresh RougeScorer -------------------------------------------------------
@pytest.mark.parametrize("ref, gen", [
    ("", ""), ("", "words here"), ("words here", ""), ("...", "!!!"), ("?! -- ;", "a b c"),
    ("the the the the", "the"), ("the", "the the the the"), ("a a b b a a", "b a b a b a"),
    ("Ünïcödé wörds, naïve cafés — 東京 2024", "naive cafe 2024 words"),
    ("İstanbul ǅemal ﬁnance straße", "istanbul finance strasse"),
    ("running runners ran; generously generalized", "run runner generous general"),
    ("x" * 5000, "x" * 5000), ("1 2 3 4 5", "5 4 3 2 1"),
])
def test_edge_texts_equal_rouge_score(fresh, ref, gen):
    _assert_same(fresh, ref, gen)


_WORDS = ["the", "The", "cats", "cat", "running", "ran", "runs", "generously", "general", "a", "is", "bridges",
          "bridge", "1931", "x", "happiness", "happy", "studies", "studying", "connection", "connected", "naïve",
          "café", "東京", "don't", "e-mail", "555-0134", "", "ß", "İ"]
_SEPS = [" ", ", ", ". ", "\n", "\t", " -- ", "...", "'", " (", ") "]


def _texts(max_words: int):
    return st.lists(st.tuples(st.sampled_from(_WORDS), st.sampled_from(_SEPS)), max_size=max_words).map(
        lambda pairs: "".join(w + s for w, s in pairs))


@settings(max_examples=250, deadline=None)
@given(_texts(30), _texts(45))
def test_word_texts_equal_rouge_score(fresh, ref, gen):
    _assert_same(fresh, ref, gen)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60), st.text(max_size=80))
def test_arbitrary_unicode_equals_rouge_score(fresh, ref, gen):
    _assert_same(fresh, ref, gen)


@settings(max_examples=25, deadline=None)
@given(_texts(250), _texts(400), st.randoms(use_true_random=False))
def test_long_texts_with_shared_spans_equal_rouge_score(fresh, ref, noise, rnd):
    words = ref.split()
    start = rnd.randrange(len(words) + 1)
    gen = noise[: len(noise) // 2] + " " + " ".join(words[start:]) + " " + noise[len(noise) // 2:]
    _assert_same(fresh, ref, gen)
    _assert_same(fresh, gen, ref)


def test_rouge_tokens_are_rouge_scores_tokens(fresh):
    text = "Running dogs ran, and the generously-generalized Ünïcödé 1931 e-mails!"
    assert rouge_tokens(text) == fresh._tokenizer.tokenize(text)


def test_faster_than_rouge_score_on_long_texts(fresh):
    """The point of the exercise (loose bound: the CI machine's cores are shared)."""
    import functools

    from rouge_score import rouge_scorer

    cached = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    cached._tokenizer._stemmer.stem = functools.lru_cache(maxsize=None)(cached._tokenizer._stemmer.stem)
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(400)]
    pairs = [(" ".join(rng.choices(vocab, k=80)), " ".join(rng.choices(vocab, k=170))) for _ in range(60)]
    for ref, gen in pairs:  # warm both stem caches
        cached.score(ref, gen), rouge_recalls(ref, gen)
    start = time.perf_counter()
    expected = [_reference(cached, ref, gen) for ref, gen in pairs]
    t_rouge_score = time.perf_counter() - start
    start = time.perf_counter()
    got = [rouge_recalls(ref, gen) for ref, gen in pairs]
    t_ours = time.perf_counter() - start
    assert got == expected
    assert t_rouge_score / t_ours > 3, f"rouge_score {t_rouge_score:.3f}s vs ours {t_ours:.3f}s"


@requires_lume
def test_lume_texts_equal_rouge_score(fresh):
    rng = random.Random(1)
    sc = []
    for split in ("forget", "retain"):
        with (LUME_DIR / f"{split}.jsonl").open(encoding="utf-8") as fh:
            sc += [r for r in map(json.loads, filter(str.strip, fh)) if kind_from_id(r["id"]) == "sc"]
    assert len(sc) == 1733
    docs = [r["input"] + " " + r["output"] for r in sc]
    for r in sc[1::4]:
        gen = " ".join(rng.choice(docs).split()[:40] + r["output"].split()[: rng.randint(0, 60)]
                       + rng.choice(docs).split())[:1100]
        _assert_same(fresh, r["output"], gen)
        _assert_same(fresh, r["output"], r["input"])
        _assert_same(fresh, r["output"], r["output"])


# -- compute_metrics(rescore=False) ----------------------------------------------------------------
def _rows() -> list[dict]:
    from test_metrics import hand_samples

    return hand_samples()


def test_rescore_false_on_scored_rows_equals_rescoring():
    rows = _rows()
    scored = score_rows(rows)
    assert compute_metrics(scored, rescore=False, mmlu=0.5) == compute_metrics(rows, mmlu=0.5)
    plain = score_rows(rows, mode="plain")
    assert compute_metrics(plain, rescore=False) == compute_metrics(rows, mode="plain")


def test_rescore_false_trusts_stored_scores_and_default_rescores():
    scored = score_rows(_rows())
    scored[0] = {**scored[0], "regurgitation": 0.25}  # forget/Task1 has one sc item
    assert compute_metrics(scored, rescore=False)["forget/Task1/regurgitation"] == 0.25
    assert compute_metrics(scored)["forget/Task1/regurgitation"] == 0.5  # the default re-scores


@pytest.mark.parametrize("index, change, message", [
    (0, {"regurgitation": None}, "field 'regurgitation' of a 'sc' item must be a number in \\[0, 1\\]"),
    (0, {"rouge1_recall": 1.5}, "field 'rouge1_recall'"),
    (0, {"rouge1_recall": float("nan")}, "field 'rouge1_recall'"),
    (1, {"knowledge": None}, "field 'knowledge' of a 'qa' item must be 0 or 1"),
    (1, {"knowledge": True}, "field 'knowledge'"),
    (1, {"knowledge": 0.5}, "field 'knowledge'"),
])
def test_rescore_false_rejects_missing_or_bad_scores(index, change, message):
    scored = score_rows(_rows())
    scored[index] = {**scored[index], **change}
    with pytest.raises(DataError, match=message) as info:
        compute_metrics(scored, rescore=False)
    assert f"row {index}" in str(info.value) and scored[index]["id"] in str(info.value)


def test_rescore_false_rejects_a_row_without_the_field_and_still_validates_rows():
    scored = score_rows(_rows())
    del scored[3]["knowledge"]
    with pytest.raises(DataError, match="row 3: field 'knowledge'.*score the rows first"):
        trusted_rows(scored)
    scored = score_rows(_rows())
    with pytest.raises(DataError, match="appears twice"):
        compute_metrics(scored + [scored[0]], rescore=False)
    bad = [{**scored[0], "split": "train"}] + scored[1:]
    with pytest.raises(DataError, match="field 'split'"):
        compute_metrics(bad, rescore=False)
