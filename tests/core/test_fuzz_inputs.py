"""Hypothesis fuzzing of what users hand the harness (issue 14.6): benchmark data files, MIA files,
per-sample files and result records. Whatever the content, the readers either accept it or raise the
harness's own one-line user error -- never a bare traceback (KeyError, TypeError, AttributeError …).
(--set values and run configs are fuzzed in tests/core/test_params.py.) 500 examples each."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.core.errors import UnlearnbenchError

FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.function_scoped_fixture])

_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                     st.text(max_size=20), st.sampled_from(["Task1", "Task2", "Task3", "abcsc1", "abcqa0", "", " "]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                          st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                       max_leaves=6)


def _row(keys):
    return st.dictionaries(st.sampled_from(keys), _VALUES, max_size=len(keys))


def _good_record(i: int, task: str = "Task1") -> dict:
    return {"id": f"r{i}sc1", "input": f"prompt {i}", "output": f" answer {i}", "task": task}


def _line():
    """A line of a JSON-lines file: a row of plausible keys, a valid record, or raw text/bytes."""
    return st.one_of(
        _row(["id", "input", "output", "task", "document", "split", "extra"]).map(lambda r: json.dumps(r).encode()),
        st.integers(0, 50).map(lambda i: json.dumps(_good_record(i)).encode()),
        st.text(max_size=30).map(lambda t: t.encode("utf-8", "replace")),
        st.binary(max_size=20),
        _VALUES.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    )


def _write(path: Path, lines: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines) + b"\n")


def _accepted_or_user_error(fn) -> None:
    try:
        fn()
    except UnlearnbenchError as exc:
        assert str(exc) and "\n" not in str(exc), repr(exc)


@FUZZ
@given(forget=st.lists(_line(), max_size=6), retain=st.lists(_line(), max_size=6),
       member=st.lists(_row(["id", "document", "x"]).map(lambda r: json.dumps(r).encode()), max_size=4),
       nonmember=st.lists(_line(), max_size=4))
def test_fuzz_benchmark_data_files(forget, retain, member, nonmember):
    from harness.tasks.lume.data import load_benchmark

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write(root / "forget.jsonl", forget)
        _write(root / "retain.jsonl", retain)
        _write(root / "mia" / "member.jsonl", member)
        _write(root / "mia" / "nonmember.jsonl", nonmember)
        _accepted_or_user_error(lambda: load_benchmark(root, root / "mia"))


_SAMPLE_KEYS = ["split", "id", "task", "kind", "input", "output", "generation", "regurgitation", "rouge1_recall",
                "knowledge", "answer_loss", "set", "n_tokens", "loss", "zlib_entropy", "min_k", "min_k_pp"]


@FUZZ
@given(lines=st.lists(st.one_of(_line(), _row(_SAMPLE_KEYS).map(lambda r: json.dumps(r).encode())), max_size=6))
def test_fuzz_per_sample_files(lines):
    from metrics import read_mia_rows, read_samples

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.jsonl"
        _write(path, lines)
        _accepted_or_user_error(lambda: read_samples(path))
        _accepted_or_user_error(lambda: read_mia_rows(path))


# -- result records -------------------------------------------------------------------------------------
def _valid_result() -> dict:
    from harness.core.records import (BenchmarkInfo, EvalResult, MethodInfo, ModelInfo, now, provenance)

    result = EvalResult(run_id="r", label="L", created_at=now(),
                        benchmark=BenchmarkInfo(name="b", content_hash="0" * 64, counts={"forget/Task1/sc": 1}),
                        model=ModelInfo(id="m"), method=MethodInfo(name="npo"),
                        metrics={"task_aggregate": 0.5, "mia_auc": 0.6, "mia_score": 0.8, "mmlu": 0.5,
                                 "final_score": 0.6}, settings={"mode": "semeval2025"}, provenance=provenance())
    return result.model_dump(mode="json")


_BASE = None

_PATHS = ["metrics.task_aggregate", "metrics.mia_auc", "metrics.mia_score", "metrics.mmlu", "metrics.final_score",
          "metrics.forget/Task1/regurgitation", "metrics.extra", "label", "run_id", "schema_version", "benchmark",
          "benchmark.counts", "model", "model.id", "method.name", "method.params", "settings", "settings.mode",
          "parents", "files", "provenance", "mmlu", "flags", "timings"]


def _mutate(record: dict, path: str, value) -> dict:
    out = json.loads(json.dumps(record))
    *parents, last = path.split(".")
    node = out
    for key in parents:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    if value is _DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return out


_DELETE = object()


@FUZZ
@given(edits=st.lists(st.tuples(st.sampled_from(_PATHS), st.one_of(st.just(_DELETE), _VALUES,
                                                                     st.sampled_from([math.nan, math.inf, -3.0, 7.5,
                                                                                      1e308, "0.9"]))),
                      min_size=1, max_size=4))
def test_fuzz_result_records(edits):
    """read_result accepts or refuses (RecordError); an accepted record's values are checked by the
    leaderboard (a reason or None) and by the writer's check, never by a traceback."""
    from harness.core.records import read_result
    from harness.evaluation.checks import check_metrics
    from leaderboards.collect import formula_problem, value_problem

    global _BASE
    _BASE = _BASE or _valid_result()
    record = _BASE
    for path, value in edits:
        record = _mutate(record, path, value)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "result.json"
        path.write_text(json.dumps(record, allow_nan=True))
        try:
            result = read_result(path)
        except UnlearnbenchError as exc:
            assert "\n" not in str(exc)
            return
        problem = value_problem(result)
        assert problem is None or isinstance(problem, str)
        formula_problem(result)
        bad = [v for v in result.metrics.values() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            assert problem is not None  # a non-finite value is never ranked
        _accepted_or_user_error(lambda: check_metrics(result.metrics, path))
