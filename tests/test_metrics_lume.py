"""The SemEval scoring on the real LUME files (skipped when ../shared/lume is absent)."""

from __future__ import annotations

import json
import random
import time

import pytest

from conftest import LUME_DIR, requires_lume
from harness.core.types import kind_from_id
from metrics import compute_metrics, rouge_recalls

pytestmark = requires_lume


def _lume_samples() -> list[dict]:
    rows = []
    for split in ("forget", "retain"):
        with (LUME_DIR / f"{split}.jsonl").open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    r = json.loads(line)
                    rows.append({"split": split, "id": r["id"], "task": r["task"], "kind": kind_from_id(r["id"]),
                                 "input": r["input"], "reference": r["output"], "generation": r["output"]})
    return rows


def _synthetic_generations(rows: list[dict], seed: int = 0) -> list[dict]:
    """Generations of realistic length (~170 ROUGE tokens): a prefix of another document, the
    reference, then another document — deterministic for the seed."""
    rng = random.Random(seed)
    docs = [r["input"] + " " + r["reference"] for r in rows if r["kind"] == "sc"]
    out = []
    for r in rows:
        if r["kind"] == "sc":
            words = rng.choice(docs).split()[:40] + r["reference"].split()[: rng.randint(0, 60)] + rng.choice(docs).split()
            gen = " ".join(words)[:1100]
        else:
            gen = r["reference"] if rng.random() < 0.4 else "I do not know."
        out.append({**r, "generation": gen})
    return out


def test_verbatim_generations_score_one_everywhere():
    rows = _lume_samples()
    assert len(rows) == 2732 + 2734
    m = compute_metrics(rows)
    for split in ("forget", "retain"):
        for task in ("Task1", "Task2", "Task3"):
            for measure in ("regurgitation", "knowledge", "rouge1"):
                assert m[f"{split}/{task}/{measure}"] == 1.0
    assert m["task_aggregate"] == 0.0  # forget terms inverted to 0


def test_rouge_recalls_equal_fresh_rouge_score_on_lume_texts():
    from rouge_score import rouge_scorer

    fresh = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    rows = [r for r in _synthetic_generations(_lume_samples()) if r["kind"] == "sc"][::6]
    assert len(rows) > 250
    for r in rows:
        s = fresh.score(target=r["reference"], prediction=r["generation"])
        assert rouge_recalls(r["reference"], r["generation"]) == (s["rougeL"].recall, s["rouge1"].recall)


@pytest.mark.slow
def test_compute_metrics_on_full_lume_takes_seconds():
    rows = _synthetic_generations(_lume_samples())
    start = time.perf_counter()
    m = compute_metrics(rows, mmlu=0.5)
    elapsed = time.perf_counter() - start
    assert m["task_aggregate"] is not None
    assert elapsed < 15, f"compute_metrics on {len(rows)} rows took {elapsed:.1f}s"
