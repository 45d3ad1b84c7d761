import json
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import LUME_DIR, MINI_FORGET, MINI_RETAIN, make_mini_benchmark, requires_lume, write_jsonl
from harness.core.errors import DataError
from harness.core.types import kind_from_id
from harness.tasks.lume.data import load_benchmark


def test_kind_from_id_follows_the_organisers_rule():
    assert kind_from_id('"8f24c511"sc1') == "sc"
    assert kind_from_id("6bd4qa4") == "qa"
    assert kind_from_id("12345qa0") == "qa"
    assert kind_from_id("abcsc") is None  # 'abcs' does not end in sc
    assert kind_from_id("x") is None


def test_mini_benchmark_loads(mini_benchmark):
    bench = load_benchmark(mini_benchmark)
    assert [r.id for r in bench.forget] == [r["id"] for r in MINI_FORGET]
    assert [r.id for r in bench.retain] == [r["id"] for r in MINI_RETAIN]
    assert bench.forget[0].kind == "sc" and bench.forget[1].kind == "qa"
    assert bench.has_mia and len(bench.members) == 3 and len(bench.nonmembers) == 3
    assert bench.counts()["forget/Task2/qa"] == 2
    assert len(bench.content_hash) == 64


def test_hash_is_order_sensitive_and_content_sensitive(tmp_path):
    a = load_benchmark(make_mini_benchmark(tmp_path / "a"))
    b_dir = make_mini_benchmark(tmp_path / "b")
    write_jsonl(b_dir / "forget.jsonl", list(reversed(MINI_FORGET)))
    b = load_benchmark(b_dir)
    c_dir = make_mini_benchmark(tmp_path / "c")
    changed = [dict(r) for r in MINI_FORGET]
    changed[0]["output"] += "!"
    write_jsonl(c_dir / "forget.jsonl", changed)
    c = load_benchmark(c_dir)
    assert len({a.content_hash, b.content_hash, c.content_hash}) == 3
    assert load_benchmark(tmp_path / "a").content_hash == a.content_hash


def test_parquet_and_hf_dataset_layouts_load_identically(tmp_path):
    import datasets
    import pandas as pd

    ref = load_benchmark(make_mini_benchmark(tmp_path / "jsonl", with_mia=False))
    pq_dir = tmp_path / "parquet"
    pq_dir.mkdir()
    pd.DataFrame(MINI_FORGET).to_parquet(pq_dir / "forget.parquet")
    pd.DataFrame(MINI_RETAIN).to_parquet(pq_dir / "retain.parquet")
    hf_dir = tmp_path / "hf"
    datasets.DatasetDict({"forget": datasets.Dataset.from_list(MINI_FORGET),
                          "retain": datasets.Dataset.from_list(MINI_RETAIN)}).save_to_disk(str(hf_dir))
    for other in (load_benchmark(pq_dir), load_benchmark(hf_dir)):
        assert other.forget == ref.forget and other.retain == ref.retain
        assert other.content_hash == ref.content_hash


@pytest.mark.parametrize(
    "mutate, line, rid, fragment",
    [
        (lambda rows: rows[2].pop("output"), 3, "b7c2sc1", "missing field(s) ['output']"),
        (lambda rows: rows[1].update(split="forget"), 2, '"0a1"qa0', "unexpected field(s) ['split']"),
        (lambda rows: rows[3].update(input=7), 4, "b7c2qa0", "field 'input' must be a string, got int"),
        (lambda rows: rows[4].update(id=rows[3]["id"]), 5, "b7c2qa0", "duplicate id (first seen at line 4)"),
        (lambda rows: rows[0].update(id="b7c2xx1"), 1, "b7c2xx1", "no recognisable kind"),
        (lambda rows: rows[5].update(task="Task9"), 6, "4411sc1", "unknown task 'Task9'"),
    ],
)
def test_malformed_records_name_file_line_and_id(tmp_path, mutate, line, rid, fragment):
    bench = make_mini_benchmark(tmp_path / "bench")
    rows = [dict(r) for r in MINI_FORGET]
    mutate(rows)
    write_jsonl(bench / "forget.jsonl", rows)
    with pytest.raises(DataError) as err:
        load_benchmark(bench)
    e = err.value
    assert e.path == str(bench / "forget.jsonl") and e.line == line and e.record_id == rid
    assert fragment in str(e)
    assert str(bench / "forget.jsonl") in str(e) and f"line {line}" in str(e)


def test_missing_file_empty_split_and_bad_json(tmp_path):
    bench = make_mini_benchmark(tmp_path / "bench")
    (bench / "retain.jsonl").unlink()
    with pytest.raises(DataError, match="missing split 'retain'"):
        load_benchmark(bench)
    (bench / "retain.jsonl").write_text("\n")
    with pytest.raises(DataError, match="split 'retain' is empty"):
        load_benchmark(bench)
    (bench / "retain.jsonl").write_text('{"id": "x"\n')
    with pytest.raises(DataError, match=r"line 1: not valid JSON"):
        load_benchmark(bench)
    with pytest.raises(DataError, match="does not exist"):
        load_benchmark(tmp_path / "nowhere")


def test_mia_errors(tmp_path):
    bench = make_mini_benchmark(tmp_path / "bench")
    write_jsonl(bench / "mia" / "nonmember.jsonl", [{"id": "n0", "text": "no document field"}])
    with pytest.raises(DataError) as err:
        load_benchmark(bench)
    assert err.value.record_id == "n0" and "document" in str(err.value)


# -- property-based: any malformed file gives a clean DataError, never another exception ----------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)
record_like = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(alphabet=string.ascii_letters + string.digits + '"', max_size=10),
                        st.sampled_from(["a1sc1", "a1qa0", "b2qa3"]), json_values),
        "input": st.one_of(st.text(max_size=10), json_values),
        "output": st.one_of(st.text(max_size=10), json_values),
        "task": st.one_of(st.sampled_from(["Task1", "Task2", "Task3"]), json_values),
        "extra": json_values,
    },
)
line_strategy = st.one_of(
    record_like.map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=20),
    st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(line_strategy, max_size=6), raw=st.binary(max_size=30), use_raw=st.booleans())
def test_fuzzed_files_raise_only_data_error(tmp_path_factory, lines, raw, use_raw):
    bench = make_mini_benchmark(tmp_path_factory.mktemp("fuzz"), with_mia=False)
    target = bench / "forget.jsonl"
    if use_raw:
        target.write_bytes(raw)
    else:
        target.write_text("\n".join(line.replace("\n", " ") for line in lines), encoding="utf-8")
    try:
        bench_obj = load_benchmark(bench)
    except DataError as err:
        assert err.path and str(bench) in err.path
    else:  # whatever was accepted must be well-formed
        assert all(isinstance(r.input, str) and r.kind in ("sc", "qa") for r in bench_obj.forget)


@requires_lume
def test_loads_shared_lume_with_exact_counts():
    bench = load_benchmark(LUME_DIR)
    assert len(bench.forget) == 2732 and len(bench.retain) == 2734
    counts = bench.counts()
    assert counts["forget/Task1/sc"] == 243 and counts["forget/Task1/qa"] == 243
    assert counts["forget/Task2/sc"] == 250 and counts["forget/Task2/qa"] == 1250
    assert counts["forget/Task3/sc"] == 373 and counts["forget/Task3/qa"] == 373
    assert sum(v for k, v in counts.items() if k.startswith("retain/")) == 2734
    assert bench.forget[0].id.startswith('"8f24c511')
    assert not bench.has_mia
