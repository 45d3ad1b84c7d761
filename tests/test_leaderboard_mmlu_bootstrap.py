"""Bootstrap intervals cover MMLU when the run folders have per-question rows (mmlu.jsonl)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from harness.core import fileio
from harness.core.records import MMLUInfo, read_result, write_result
from test_leaderboard_bootstrap import write_run

SUBJECTS = ("anatomy", "virology", "astronomy")


def mmlu_rows(accuracy: float, seed: int, per_subject: int = 40) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for subject in SUBJECTS:
        for doc_id in range(per_subject):
            answer = rng.randrange(4)
            pred = answer if rng.random() < accuracy else (answer + 1 + rng.randrange(3)) % 4
            lls = [-3.0 - rng.random() for _ in range(4)]
            lls[pred] = -1.0
            rows.append({"subject": subject, "doc_id": doc_id, "answer": "ABCD"[answer], "prediction": "ABCD"[pred],
                         "correct": int(pred == answer), "loglikelihoods": lls})
    return rows


def add_mmlu_rows(folder: Path, rows: list[dict]) -> None:
    """Give a run folder its mmlu.jsonl, with the record's MMLU (and final score) made to match it."""
    from metrics import final_score

    rec = read_result(folder)
    acc = sum(r["correct"] for r in rows) / len(rows)
    metrics = dict(rec.metrics, mmlu=acc)
    metrics["final_score"] = final_score(metrics["task_aggregate"], acc, metrics["mia_score"])
    info = MMLUInfo(protocol="semeval2025", source="local", num_fewshot=5, n_questions=len(rows), full=True)
    fileio.write_jsonl(folder / "mmlu.jsonl", rows)
    write_result(folder, rec.model_copy(update={"metrics": metrics, "mmlu": info, "files": {
        "samples": "samples.jsonl", "mia": "mia.jsonl", "mmlu": "mmlu.jsonl"}}))


def _build(folder: Path, replicates: int = 300):
    import leaderboards

    [(_, lb)] = leaderboards.build_leaderboards([folder], "semeval2025", bootstrap=replicates, seed=0, progress=False)
    return lb


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    write_run(tmp_path / "runs" / "good", "good", "npo", 0.1, 0.9, 0.0, 0.5)
    write_run(tmp_path / "runs" / "forgets-all", "forgets_all", "grad_ascent", 0.05, 0.5, 0.0, 0.5)
    return tmp_path / "runs"


def test_mmlu_gets_an_interval_and_moves_the_final_score(runs, tmp_path):
    add_mmlu_rows(runs / "good", mmlu_rows(0.55, seed=1))
    add_mmlu_rows(runs / "forgets-all", mmlu_rows(0.30, seed=2))
    lb = _build(runs)
    # the same records with the rows withheld: MMLU held fixed, everything else resampled identically
    for run in ("good", "forgets-all"):
        rec = read_result(runs / run)
        write_result(tmp_path / "fixed" / run, rec.model_copy(update={"files": {"samples": "samples.jsonl",
                                                                                 "mia": "mia.jsonl"}}))
        for name in ("samples.jsonl", "mia.jsonl"):
            (tmp_path / "fixed" / run / name).write_bytes((runs / run / name).read_bytes())
    fixed = _build(tmp_path / "fixed")
    for entry in lb.entries:
        low, high = entry.ci["mmlu"]
        assert low < entry.values["mmlu"] < high
        # 120 questions: a binomial interval about +-2 sd = +-0.09 wide, far from a point
        assert 0.05 < high - low < 0.25
        before = next(e for e in fixed.entries if e.label == entry.label)
        assert "mmlu" not in before.ci and before.values == entry.values
        assert entry.ci["task_aggregate"] == before.ci["task_aggregate"]  # the same LUME resamples
        assert entry.ci["final_score"] != before.ci["final_score"]  # MMLU's resampling enters the final score
    assert any("mmlu questions within each subject" in note for note in lb.notes)
    assert not any("held fixed" in note for note in lb.notes)
    assert [(e.ci, e.rank_stability) for e in _build(runs).entries] == [(e.ci, e.rank_stability) for e in lb.entries]


def test_unresampled_mmlu_replicate_is_the_records_accuracy(runs):
    from leaderboards.bootstrap import _layout, identity_counts, load_run, replicate_metrics
    from leaderboards.collect import LoadedRecord

    add_mmlu_rows(runs / "good", mmlu_rows(0.55, seed=1))
    rec = LoadedRecord(path=runs / "good" / "result.json", result=read_result(runs / "good"))
    data, why = load_run(rec)
    assert data is not None, why
    layout = _layout(data)
    ones = {name: {s: np.ones((1, len(ids))) for s, ids in by.items()} for name, by in layout.mcq.items()}
    reps = replicate_metrics(data, layout, *identity_counts(layout), ones)
    assert reps["mmlu"][0] == pytest.approx(rec.result.metrics["mmlu"], abs=1e-12)
    assert reps["final_score"][0] == pytest.approx(rec.result.metrics["final_score"], abs=1e-12)


def test_a_run_without_rows_keeps_its_mmlu_fixed_and_the_note_names_it(runs):
    add_mmlu_rows(runs / "good", mmlu_rows(0.55, seed=1))
    lb = _build(runs, replicates=100)
    by = {e.label: e for e in lb.entries}
    assert "mmlu" in by["good"].ci and "mmlu" not in by["forgets_all"].ci
    assert any("held fixed (no per-question records): mmlu of forgets-all" in note for note in lb.notes)
