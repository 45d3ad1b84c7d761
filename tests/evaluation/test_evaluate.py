"""``evaluate_model`` and ``unlearnbench evaluate``: the run folder's files follow docs/contracts.md, the
content cache reuses outputs of an unchanged model and never serves a changed one, LUME end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from conftest import LUME_DIR, requires_lume, write_jsonl  # noqa: E402

from harness import load_benchmark, read_result  # noqa: E402
from harness.evaluation.pipeline import EvalSettings, evaluate_model  # noqa: E402
from harness.core.fileio import read_jsonl  # noqa: E402
from harness.core.records import RunConfig  # noqa: E402



SAMPLE_FIELDS = {"split", "id", "task", "kind", "input", "reference", "generation", "answer_loss", "regurgitation",
                 "rouge1_recall", "knowledge"}
MIA_FIELDS = {"set", "id", "n_tokens", "loss", "zlib_entropy", "min_k", "min_k_pp"}
TWELVE = [f"{s}/{t}/{m}" for s in ("forget", "retain") for t in ("Task1", "Task2", "Task3")
          for m in ("regurgitation", "knowledge")]


def settings(tmp_path: Path, **kw) -> EvalSettings:
    base = dict(max_new_tokens=12, batch_size=8, progress=False, cache_dir=str(tmp_path / "cache"))
    base.update(kw)
    return EvalSettings(**base)


def test_evaluate_writes_contract_files(tiny_llama, tiny_tokenizer, mini_benchmark, tmp_path):
    bench = load_benchmark(mini_benchmark)
    out = tmp_path / "run"
    result = evaluate_model(tiny_llama, tiny_tokenizer, bench, settings(tmp_path), out, label="tiny",
                            config={"command": "test"})
    assert read_result(out) == result
    # A caller's mapping is written as a RunConfig: every config.json has the same keys.
    written = json.loads((out / "config.json").read_text())
    assert written["command"] == "test" and set(written) == set(RunConfig.model_fields)
    assert written["eval"] is None and written["method"] == "none"
    samples = read_jsonl(out / "samples.jsonl")
    assert [(s["split"], s["id"]) for s in samples] == [(r.split, r.id) for r in bench.records]
    for s in samples:
        assert set(s) == SAMPLE_FIELDS
        assert (s["regurgitation"] is None) == (s["kind"] == "qa") and (s["knowledge"] is None) == (s["kind"] == "sc")
        assert isinstance(s["answer_loss"], float)
    mia = read_jsonl(out / "mia.jsonl")
    assert [(m["set"], m["id"]) for m in mia] == [(d.set, d.id) for d in bench.members + bench.nonmembers]
    assert all(set(m) == MIA_FIELDS for m in mia)
    for name in TWELVE + ["task_aggregate", "mia_auc", "mia_score", "mia_auc/zlib", "mia_auc/min_k",
                          "mia_auc/min_k_pp", "answer_loss/forget", "answer_loss/retain"]:
        assert name in result.metrics
    assert result.metrics["mia_score"] == pytest.approx(1 - 2 * abs(result.metrics["mia_auc"] - 0.5))
    assert result.benchmark.content_hash == bench.content_hash and result.benchmark.counts["mia/member"] == 3
    assert result.model.weight_hash and result.label == "tiny" and result.files == {"samples": "samples.jsonl",
                                                                                     "mia": "mia.jsonl"}
    assert {"generation", "answer_loss", "mia", "scoring"} <= set(result.timings)
    # The metrics are exactly what the metrics package computes from the written files alone.
    from metrics.semeval import compute_metrics

    assert compute_metrics(samples, mia) == result.metrics


def test_reference_engine_gives_the_same_samples(tiny_gpt2, tiny_tokenizer, mini_benchmark, tmp_path):
    bench = load_benchmark(mini_benchmark)
    fast = evaluate_model(tiny_gpt2, tiny_tokenizer, bench, settings(tmp_path, cache=False), tmp_path / "a")
    slow = evaluate_model(tiny_gpt2, tiny_tokenizer, bench, settings(tmp_path, cache=False, engine="reference"),
                          tmp_path / "b")
    gen = lambda d: [s["generation"] for s in read_jsonl(d / "samples.jsonl")]  # noqa: E731
    assert gen(tmp_path / "a") == gen(tmp_path / "b")
    assert fast.metrics == slow.metrics


def test_cache_reuses_unchanged_model_and_never_a_changed_one(tiny_llama, tiny_tokenizer, mini_benchmark,
                                                              tmp_path, monkeypatch):
    from harness.backends import hf as engine

    bench = load_benchmark(mini_benchmark)
    first = evaluate_model(tiny_llama, tiny_tokenizer, bench, settings(tmp_path), tmp_path / "r1")
    assert first.settings["cache_hits"] == []

    def boom(*a, **k):
        raise AssertionError("the model was run although every output was cached")

    with monkeypatch.context() as m:
        for name in ("generate_detailed", "answer_losses", "sequence_losses"):
            m.setattr(engine, name, boom)
        second = evaluate_model(tiny_llama, tiny_tokenizer, bench, settings(tmp_path), tmp_path / "r2")
    assert second.settings["cache_hits"] == ["generation", "answer_loss", "mia"]
    assert second.metrics == first.metrics
    assert read_jsonl(tmp_path / "r1" / "samples.jsonl") == read_jsonl(tmp_path / "r2" / "samples.jsonl")

    # One weight changed: every phase recomputes, and the losses move.
    with torch.no_grad():
        tiny_llama.lm_head.weight[5, 7] += 0.5
    third = evaluate_model(tiny_llama, tiny_tokenizer, bench, settings(tmp_path), tmp_path / "r3")
    assert third.settings["cache_hits"] == []
    assert third.model.weight_hash != first.model.weight_hash
    assert third.metrics["answer_loss/forget"] != first.metrics["answer_loss/forget"]
    # Different settings are different entries too.
    fourth = evaluate_model(tiny_llama, tiny_tokenizer, bench, settings(tmp_path, max_new_tokens=5), None)
    assert "generation" not in fourth.settings["cache_hits"] and "mia" in fourth.settings["cache_hits"]
    # --no-cache neither reads nor writes.
    fifth = evaluate_model(tiny_llama, tiny_tokenizer, bench, settings(tmp_path, cache=False), None)
    assert fifth.settings["cache_hits"] == []


def test_cli_evaluate(tiny_model_dir, mini_benchmark, tmp_path, capsys, monkeypatch):
    from harness.cli import main

    monkeypatch.setenv("UNLEARNBENCH_CACHE", str(tmp_path / "envcache"))
    out = tmp_path / "run"
    rc = main(["evaluate", "--model", str(tiny_model_dir), "--data", str(mini_benchmark), "--out", str(out),
               "--max-new-tokens", "8", "--batch-size", "4", "--no-progress", "--label", "cli-tiny"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "task_aggregate" in printed and "result.json" in printed
    result = read_result(out)
    assert result.label == "cli-tiny" and result.settings["max_new_tokens"] == 8
    assert json.loads((out / "config.json").read_text())["model"] == str(tiny_model_dir)
    assert (out / "samples.jsonl").is_file() and (out / "mia.jsonl").is_file()
    assert any((tmp_path / "envcache").rglob("*.json"))  # the env variable chose the cache folder
    rc = main(["evaluate", "--model", str(tmp_path / "nope"), "--data", str(mini_benchmark), "--out", str(out)])
    assert rc == 2 and str(tmp_path / "nope") in capsys.readouterr().err


@requires_lume
def test_lume_sample_end_to_end(tiny_llama, tiny_tokenizer, tmp_path):
    folder = tmp_path / "lume-sample"
    for name in ("forget", "retain"):
        rows = read_jsonl(LUME_DIR / f"{name}.jsonl")[:20]
        write_jsonl(folder / f"{name}.jsonl", rows)
    members = [{"id": r["id"], "document": r["input"] + r["output"]} for r in read_jsonl(LUME_DIR / "forget.jsonl")[:8]]
    nonmembers = [{"id": r["id"], "document": r["input"] + r["output"]}
                  for r in read_jsonl(LUME_DIR / "retain.jsonl")[:8]]
    write_jsonl(folder / "mia" / "member.jsonl", members)
    write_jsonl(folder / "mia" / "nonmember.jsonl", nonmembers)
    bench = load_benchmark(folder)
    result = evaluate_model(tiny_llama, tiny_tokenizer, bench, settings(tmp_path, max_new_tokens=8), tmp_path / "run")
    samples = read_jsonl(tmp_path / "run" / "samples.jsonl")
    assert len(samples) == 40 and all(set(s) == SAMPLE_FIELDS for s in samples)
    assert len(read_jsonl(tmp_path / "run" / "mia.jsonl")) == 16
    assert result.metrics["mia_auc"] is not None and result.benchmark.counts["mia/member"] == 8
