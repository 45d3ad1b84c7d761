"""``unlearnbench score RUN_DIR``: metrics recomputed from per-sample files alone, and written back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.core.records import BenchmarkInfo, EvalResult, MethodInfo, ModelInfo, now, provenance, read_result, write_result
from metrics import compute_metrics, read_mia_rows, read_samples
from harness.core.errors import DataError

from test_metrics import hand_mia, hand_samples


def _write_jsonl(path: Path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    _write_jsonl(run / "samples.jsonl", hand_samples())
    _write_jsonl(run / "mia.jsonl", hand_mia())
    result = EvalResult(
        run_id="run", label="target", created_at=now(),
        benchmark=BenchmarkInfo(name="mini", content_hash="0" * 64),
        model=ModelInfo(id="tiny"), method=MethodInfo(name="none"),
        metrics={"mmlu": 0.5, "task_aggregate": 0.123, "custom/extra": 7.0},
        settings={"max_new_tokens": 256},
        provenance=provenance(),
    )
    write_result(run, result)
    return run


def test_score_prints_recomputed_metrics(run_dir, capsys):
    assert main(["-q", "score", str(run_dir), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == compute_metrics(hand_samples(), hand_mia(), mmlu=0.5)
    assert printed["mmlu"] == 0.5  # taken from result.json
    assert printed["final_score"] is not None
    # nothing written without --write
    assert read_result(run_dir).metrics["task_aggregate"] == 0.123


def test_score_table_output_and_mmlu_override(run_dir, capsys):
    assert main(["-q", "score", str(run_dir), "--mmlu", "0.25"]) == 0
    out = capsys.readouterr().out
    assert "mode semeval2025; 13 samples, 4 MIA rows" in out
    line = next(l for l in out.splitlines() if l.startswith("mmlu "))
    assert line.split()[-1] == "0.250000"


def test_score_write_updates_result_atomically(run_dir, capsys):
    before = read_result(run_dir)
    assert main(["-q", "score", str(run_dir), "--write", "--mode", "plain"]) == 0
    after = read_result(run_dir)
    expected = compute_metrics(hand_samples(), hand_mia(), mmlu=0.5, mode="plain")
    for name, value in expected.items():
        assert after.metrics[name] == value
    assert after.metrics["custom/extra"] == 7.0        # metrics we do not compute are kept
    assert after.settings["rescored"]["mode"] == "plain"
    assert after.settings["max_new_tokens"] == 256
    assert after.run_id == before.run_id and after.created_at == before.created_at
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def test_score_without_mia_or_result(tmp_path, capsys):
    run = tmp_path / "bare"
    run.mkdir()
    _write_jsonl(run / "samples.jsonl", hand_samples())
    assert main(["-q", "score", str(run), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["mia_auc"] is None and printed["task_aggregate"] is not None
    assert main(["-q", "score", str(run), "--write"]) == 2
    assert "--write updates an existing result record" in capsys.readouterr().err


def test_score_reports_file_and_line_of_a_malformed_row(run_dir, capsys):
    rows = hand_samples()
    lines = [json.dumps(r) for r in rows]
    bad = dict(rows[3])
    del bad["generation"]
    lines[3] = json.dumps(bad)
    (run_dir / "samples.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["-q", "score", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "samples.jsonl" in err and "line 4" in err and "'generation' must be a string" in err and "b7c2qa0" in err


def test_score_reports_invalid_json_and_bad_mia(run_dir, capsys):
    (run_dir / "mia.jsonl").write_text(json.dumps(hand_mia()[0]) + "\n{not json\n", encoding="utf-8")
    assert main(["-q", "score", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "mia.jsonl" in err and "line 2" in err and "not valid JSON" in err


def test_score_missing_run_dir(tmp_path, capsys):
    assert main(["score", str(tmp_path / "nope")]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_readers_reject_duplicates_with_lines(tmp_path):
    rows = hand_samples()
    _write_jsonl(tmp_path / "samples.jsonl", rows + [rows[0]])
    with pytest.raises(DataError, match=r"line 14.*appears twice in split 'forget' \(first on line 1\)"):
        read_samples(tmp_path / "samples.jsonl")
    _write_jsonl(tmp_path / "mia.jsonl", hand_mia())
    assert [r["id"] for r in read_mia_rows(tmp_path / "mia.jsonl")] == ["m0", "m1", "n0", "n1"]


def test_score_rescores_in_the_mode_the_run_was_evaluated_in(run_dir, capsys):
    """Evaluation records its scoring mode as ``settings["mode"]``; ``score --write`` without ``--mode``
    must rescore in that mode, not overwrite a plain-mode run's metrics with semeval2025 numbers."""
    samples = hand_samples()
    samples[1] = {**samples[1], "reference": "NA", "generation": "None"}  # both NA cells only in semeval2025
    _write_jsonl(run_dir / "samples.jsonl", samples)
    plain = compute_metrics(samples, hand_mia(), mmlu=0.5, mode="plain")
    semeval = compute_metrics(samples, hand_mia(), mmlu=0.5, mode="semeval2025")
    assert plain["forget/Task1/knowledge"] == 0.0 and semeval["forget/Task1/knowledge"] == 1.0
    record = read_result(run_dir)
    write_result(run_dir, record.model_copy(update={"metrics": plain, "settings": {**record.settings, "mode": "plain"}}))
    assert main(["-q", "score", str(run_dir), "--write"]) == 0
    after = read_result(run_dir)
    assert {k: after.metrics[k] for k in plain} == plain
    assert after.settings["rescored"]["mode"] == "plain"
    assert main(["-q", "score", str(run_dir)]) == 0
    assert "(mode plain;" in capsys.readouterr().out
