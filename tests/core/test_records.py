import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from harness.core import fileio
from harness.core.records import (
    SCHEMA_VERSION, BenchmarkInfo, EvalResult, MethodInfo, ModelInfo, RecordError, now, provenance,
    read_result, result_json_schema, write_result,
)


def make_result(**metrics) -> EvalResult:
    return EvalResult(
        run_id="r1", label="npo", created_at=now(),
        benchmark=BenchmarkInfo(name="mini", content_hash="ab" * 32, counts={"forget/Task1/sc": 1}),
        model=ModelInfo(id="tiny", weight_hash="cd" * 32),
        method=MethodInfo(name="npo", params={"beta": 0.1}),
        metrics={"task_aggregate": 0.5, "mia_auc": None, **metrics},
        provenance=provenance(seed=42),
    )


def test_round_trip_and_provenance(tmp_path):
    res = make_result(final_score=0.4)
    write_result(tmp_path, res)
    back = read_result(tmp_path)
    assert back == res
    assert back.schema_version == SCHEMA_VERSION
    assert back.provenance.torch and back.provenance.transformers and back.provenance.python
    assert back.provenance.seed == 42


def test_result_is_frozen():
    res = make_result()
    with pytest.raises(Exception):
        res.label = "other"


def test_corrupt_partial_and_foreign_records_are_reported(tmp_path):
    write_result(tmp_path, make_result())
    path = tmp_path / "result.json"
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(RecordError, match="not valid JSON"):
        read_result(path)
    raw = json.loads(text)
    raw["schema_version"] = "0.1"
    path.write_text(json.dumps(raw))
    with pytest.raises(RecordError, match="schema_version '0.1'"):
        read_result(path)
    raw["schema_version"] = SCHEMA_VERSION
    raw["metrics"] = {"task_aggregate": "high"}
    path.write_text(json.dumps(raw))
    with pytest.raises(RecordError, match="metrics.task_aggregate"):
        read_result(path)


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "result.json"
    fileio.write_json(path, {"ok": 1})
    with pytest.raises(RuntimeError):
        with fileio.atomic_open(path) as fh:
            fh.write('{"ok": ')
            raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temp file left behind


def test_killed_writer_never_leaves_truncated_file(tmp_path):
    path = tmp_path / "result.json"
    fileio.write_json(path, {"version": "old"})
    script = textwrap.dedent(f"""
        import os, signal
        from harness.core import fileio
        with fileio.atomic_open({str(path)!r}) as fh:
            fh.write('{{"version": "new", "half": ')
            fh.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script])
    assert proc.returncode == -signal.SIGKILL
    assert json.loads(path.read_text()) == {"version": "old"}


def test_nan_is_refused_rather_than_written(tmp_path):
    with pytest.raises(ValueError):
        fileio.write_json(tmp_path / "x.json", {"score": float("nan")})
    assert not (tmp_path / "x.json").exists()


def test_schema_export_validates_a_record(tmp_path):
    schema = result_json_schema()
    assert schema["properties"]["schema_version"]["default"] == SCHEMA_VERSION
    assert "metrics" in schema["required"]
    assert schema["$defs"]["Provenance"]["properties"]["git_sha"]["description"]
    out = subprocess.run([sys.executable, "-m", "harness", "schema", "--out", str(tmp_path / "s.json")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "s.json").read_text()) == schema


def test_cli_help_everywhere():
    from harness.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"methods", "metrics", "schema"} <= set(sub.choices)
    for name, p in sub.choices.items():
        assert "examples:" in (p.epilog or ""), f"`unlearnbench {name} --help` has no examples"


def test_a_non_finite_number_is_refused_by_name_and_nothing_is_written(tmp_path):
    import pytest

    from harness.core import fileio
    from harness.core.errors import RecordError

    target = tmp_path / "robust.json"
    with pytest.raises(RecordError, match=r"robust.json: refusing to write a non-finite number \(nan\) at "
                                          r"recovery\.mia_auc\.ci\[0\]"):
        fileio.write_json(target, {"kind": "relearn", "recovery": {"mia_auc": {"ci": [float("nan"), 0.5]}}})
    assert not target.exists() and list(tmp_path.iterdir()) == []
    rows = tmp_path / "samples.jsonl"
    with pytest.raises(RecordError, match=r"non-finite number \(inf\) at line 2, answer_loss"):
        fileio.write_jsonl(rows, [{"answer_loss": 1.0}, {"answer_loss": float("inf")}])
    assert list(tmp_path.iterdir()) == []
