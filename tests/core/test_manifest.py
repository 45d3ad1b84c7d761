"""Run manifests (harness.core.manifest): content hashes of inputs and outputs, verification with a
reason, and the cheap-but-robust hash cache."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from harness.core import manifest as mf


@pytest.fixture(autouse=True)
def _private_hash_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNBENCH_HASH_CACHE", str(tmp_path / "hashes.sqlite"))
    monkeypatch.setattr(mf, "_CACHE", mf._HashCache())


def _run(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"label": "a", "lr": 1e-4}))
    (folder / "result.json").write_text(json.dumps({"metrics": {"task_aggregate": 0.5}}))
    (folder / "samples.jsonl").write_text("".join(json.dumps({"id": f"r{i}", "x": i}) + "\n" for i in range(4)))
    (folder / "mia.jsonl").write_text('{"set": "member"}\n{"set": "nonmember"}\n')
    (folder / "model").mkdir()
    (folder / "model" / "adapter_model.safetensors").write_bytes(os.urandom(256))
    return folder


def _manifested(folder: Path) -> Path:
    _run(folder)
    mf.write_manifest(folder, mf.build_manifest(folder, command="unlearn", inputs={"model": {"sha256": "m"}},
                                                settings={"lr": 1e-4}))
    return folder


def test_manifest_records_every_file_with_hash_size_and_rows(tmp_path):
    run = _manifested(tmp_path / "run")
    m = mf.read_manifest(run)
    assert sorted(m["files"]) == ["config.json", "mia.jsonl", "model/adapter_model.safetensors", "result.json",
                                  "samples.jsonl"]
    assert m["files"]["samples.jsonl"]["rows"] == 4 and m["files"]["mia.jsonl"]["rows"] == 2
    assert m["files"]["result.json"]["bytes"] == (run / "result.json").stat().st_size
    assert set(m["code"]) == {"unlearnbench", "git_sha", "source_sha256"}
    assert mf.verify(run) is None


@pytest.mark.parametrize("damage, reason", [
    (lambda r: (r / "samples.jsonl").write_text((r / "samples.jsonl").read_text().splitlines()[0] + "\n"),
     "samples.jsonl has"),
    (lambda r: (r / "samples.jsonl").write_text((r / "samples.jsonl").read_text().replace('"x": 1', '"x": 7')),
     "samples.jsonl does not match the manifest"),
    (lambda r: (r / "mia.jsonl").unlink(), "mia.jsonl is missing"),
    (lambda r: (r / "result.json").write_text(""), "result.json has 0 bytes"),
    (lambda r: (r / "model" / "adapter_model.safetensors").write_bytes(os.urandom(256)),
     "model/adapter_model.safetensors does not match"),
    (lambda r: (r / "train_log.jsonl").write_text("{}\n"), "train_log.jsonl is not part of this run"),
    (lambda r: (r / "model" / "extra.safetensors").write_bytes(b"x"), "model/extra.safetensors is not part"),
    (lambda r: (r / "manifest.json").write_text("{"), "manifest.json is unreadable"),
    (lambda r: (r / "manifest.json").unlink(), "no manifest.json"),
])
def test_verify_names_what_does_not_belong(tmp_path, damage, reason):
    run = _manifested(tmp_path / "run")
    damage(run)
    problem = mf.verify(run)
    assert problem is not None and reason in problem, problem


def test_a_same_size_rewrite_right_after_hashing_is_detected(tmp_path):
    """File times tick coarsely: the cache must not serve the old hash for a rewrite in the same tick."""
    run = _manifested(tmp_path / "run")
    assert mf.verify(run) is None
    p = run / "samples.jsonl"
    p.write_text(p.read_text().replace('"x": 2', '"x": 9'))  # same size, same inode, immediately
    assert "samples.jsonl does not match" in mf.verify(run)


def test_extra_analysis_files_are_allowed_and_only_restricts(tmp_path):
    run = _manifested(tmp_path / "run")
    (run / "curves.png").write_bytes(b"png")
    assert mf.verify(run) is None
    (run / "model" / "adapter_model.safetensors").write_bytes(b"changed")
    assert mf.verify(run, only=("result.json", "samples.jsonl", "mia.jsonl")) is None
    assert "model/adapter_model.safetensors" in mf.verify(run, only=("model",))


def test_hash_cache_reuses_unchanged_files_and_rehashes_changed_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(mf, "_RACY_NS", 0)  # cache even files written a moment ago (tested apart)
    p = tmp_path / "w.bin"
    p.write_bytes(os.urandom(1000))
    old = time.time() - 60
    first = mf.file_sha256(p)
    reads = []
    real_open = open

    def counting_open(path, *a, **kw):
        reads.append(path)
        return real_open(path, *a, **kw)

    monkeypatch.setattr("builtins.open", counting_open)
    assert mf.file_sha256(p) == first and reads == []  # served from the cache
    monkeypatch.setattr(mf, "_CACHE", mf._HashCache())  # a new process: the SQLite file serves it
    assert mf.file_sha256(p) == first and reads == []
    monkeypatch.setattr("builtins.open", real_open)
    p.write_bytes(os.urandom(1000))
    os.utime(p, (old, old))  # the user restores the old mtime: the ctime still moved
    assert mf.file_sha256(p) != first


def test_model_fingerprint_is_content_based_and_covers_the_base_of_an_adapter(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    (base / "model.safetensors").write_bytes(b"weights-1")
    copy = tmp_path / "copy"
    shutil.copytree(base, copy)
    assert mf.model_fingerprint(base)["sha256"] == mf.model_fingerprint(copy)["sha256"]
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    (adapter / "adapter_model.safetensors").write_bytes(b"lora")
    before = mf.model_fingerprint(adapter)
    assert before["base"]["sha256"] == mf.model_fingerprint(base)["sha256"]
    (base / "model.safetensors").write_bytes(b"weights-2")  # base replaced: the adapter's run is stale
    assert mf.model_fingerprint(adapter)["sha256"] != before["sha256"]
    assert mf.model_fingerprint("org/some-hub-model")["sha256"] is None


def test_compare_inputs_says_what_changed(tmp_path):
    run = _manifested(tmp_path / "run")
    m = mf.read_manifest(run)
    assert mf.compare_inputs(m, {"model": {"sha256": "m"}}, {"lr": 1e-4}) == []
    diffs = mf.compare_inputs(m, {"model": {"sha256": "other"}}, {"lr": 1e-3},
                              code={"unlearnbench": "9.9", "source_sha256": "x"})
    assert diffs[0].startswith("model changed") and "settings differ" in diffs and "other code" in diffs[2]


def test_code_version_hashes_the_source(tmp_path):
    v = mf.code_version()
    assert len(v["source_sha256"]) == 64 and v["unlearnbench"]
