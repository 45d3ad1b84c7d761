"""``evaluate --limit N`` (first N records per split x task x kind, recorded, refused by the SemEval boards)
and the per-question MCQ rows (``mmlu.jsonl``) a run folder gets, checked by the board's collection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import MINI_FORGET, MINI_NONMEMBERS, MINI_RETAIN, make_mini_benchmark
from harness.tasks.limit import limit_benchmark, limited_hash
from harness.tasks.lume.data import load_benchmark


def test_limit_keeps_the_first_records_of_every_stratum_in_file_order(tmp_path):
    bench = load_benchmark(make_mini_benchmark(tmp_path / "mini"))
    one = limit_benchmark(bench, 1)
    # every (split, task, kind) keeps its first record; Task2's second forget question goes
    assert [r.id for r in one.forget] == [r["id"] for r in MINI_FORGET if r["id"] != "b7c2qa1"]
    assert [r.id for r in one.retain] == [r["id"] for r in MINI_RETAIN]
    assert [d.id for d in one.members] == ["m0"] and [d.id for d in one.nonmembers] == [MINI_NONMEMBERS[0]["id"]]
    assert one.content_hash == limited_hash(bench.content_hash, 1) != bench.content_hash
    assert limit_benchmark(bench, 1) == one  # deterministic
    big = limit_benchmark(bench, 100)
    assert big.records == bench.records and big.content_hash != bench.content_hash  # still recorded as limited
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="limit must be a positive number"):
            limit_benchmark(bench, bad)


def _semeval_board(complete: bool = True):
    import tomllib

    from leaderboards.board import parse_board

    raw = tomllib.loads((Path(__file__).resolve().parents[2] / "leaderboards" / "boards" / "semeval2025.toml")
                        .read_text(encoding="utf-8"))
    assert raw["complete_benchmark"] is True
    raw["complete_benchmark"] = complete
    return parse_board(raw, "semeval2025.toml")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_tokenizer):
    """The tiny model evaluated on the mini benchmark with a small MMLU, once whole and once with --limit 1."""
    from harness.evaluation.pipeline import EvalSettings, evaluate_model
    from harness.synthetic.tiny import tiny_llama
    from harness.tasks.mcq.mmlu import MCQSpec
    from tasks.test_mmlu import write_csv_layout

    model = tiny_llama(tiny_tokenizer, hidden_size=64, num_layers=2, seed=0)

    base = tmp_path_factory.mktemp("limit")
    data = make_mini_benchmark(base / "mini")
    mmlu = MCQSpec(source=str(write_csv_layout(base / "mmlu")), limit=3, batch_size=8)
    runs = {}
    for name, limit in (("full", None), ("limited", 1)):
        settings = EvalSettings(max_new_tokens=4, batch_size=4, mmlu=mmlu, limit=limit, cache=False, progress=False)
        runs[name] = (evaluate_model(model, tiny_tokenizer, load_benchmark(data), settings, base / name),
                      base / name)
    return runs


def test_limit_is_recorded_and_evaluates_only_the_subset(two_runs):
    full, full_dir = two_runs["full"]
    limited, limited_dir = two_runs["limited"]
    assert full.settings["limit"] is None and limited.settings["limit"] == 1
    rows = [json.loads(line) for line in (limited_dir / "samples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in MINI_FORGET + MINI_RETAIN if r["id"] != "b7c2qa1"]
    assert limited.benchmark.counts["forget/Task2/qa"] == 1 and full.benchmark.counts["forget/Task2/qa"] == 2
    assert limited.benchmark.content_hash == limited_hash(full.benchmark.content_hash, 1)
    assert len((limited_dir / "mia.jsonl").read_text().splitlines()) == 2


def test_semeval_boards_refuse_limited_runs(two_runs, tmp_path):
    from leaderboards.collect import collect

    board = _semeval_board()
    found = collect([two_runs["full"][1], two_runs["limited"][1]], board)
    assert [r.path.parent.name for r in found.records] == ["full"]
    [skipped] = found.skipped
    assert skipped.path.endswith("limited/result.json")
    assert "--limit 1" in skipped.reason and "not comparable" in skipped.reason
    lax = collect([two_runs["limited"][1]], _semeval_board(complete=False))
    assert [r.path.parent.name for r in lax.records] == ["limited"] and not lax.skipped


def test_mmlu_rows_are_written_and_checked_against_the_record(two_runs, tmp_path):
    import shutil

    from leaderboards.collect import collect

    result, run_dir = two_runs["full"]
    assert result.files["mmlu"] == "mmlu.jsonl"
    rows = [json.loads(line) for line in (run_dir / "mmlu.jsonl").read_text().splitlines()]
    assert len(rows) == result.mmlu.n_questions == 9
    assert {"subject", "doc_id", "answer", "prediction", "correct", "loglikelihoods"} <= set(rows[0])
    assert sum(r["correct"] for r in rows) / len(rows) == result.metrics["mmlu"]
    board = _semeval_board()
    [loaded] = collect([run_dir], board).records
    assert loaded.per_sample.mcq["mmlu"] == rows

    # a row from another run (one answer flipped) no longer gives the record's accuracy: refused
    copy = tmp_path / "mixed"
    shutil.copytree(run_dir, copy)
    flipped = dict(rows[0])
    other = ("ABCD".index(flipped["answer"]) if not flipped["correct"]
             else next(i for i in range(4) if "ABCD"[i] != flipped["answer"]))
    flipped["loglikelihoods"] = [5.0 if i == other else -5.0 for i in range(len(flipped["loglikelihoods"]))]
    flipped["prediction"] = "ABCD"[other]
    flipped["correct"] = 1 - flipped["correct"]
    (copy / "mmlu.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [flipped] + rows[1:]))
    found = collect([copy], board)
    assert not found.records
    assert "mmlu.jsonl gives mmlu" in found.skipped[0].reason

    # a malformed row is named by file and line
    (copy / "mmlu.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:3] + [{"subject": 1}] + rows[4:]))
    assert "mmlu.jsonl line 4: expected subject" in collect([copy], board).skipped[0].reason
