"""Inputs checked before work, outputs checked as they come (issue 14.2, 14.3, 14.5): prompts longer
than the context by record id, a NaN model named at its first forward, disjoint forget/retain and
member/non-member sets, MCQ subjects that are plain names with questions, a bad byte on its own line,
a full disk named."""

from __future__ import annotations

import errno
import json
import time
from pathlib import Path

import pytest

from conftest import MINI_FORGET, MINI_MEMBERS, make_mini_benchmark, write_jsonl
from harness.core.errors import DataError, DiskFullError, ModelError
from harness.evaluation.checks import FiniteOutputs, check_context, check_requests


# -- context length ---------------------------------------------------------------------------------
def test_a_prompt_longer_than_the_context_is_named_by_record_id(tmp_path, tiny_tokenizer):
    from harness.synthetic.tiny import tiny_llama
    from harness.tasks import load_task

    rows = [dict(r) for r in MINI_FORGET]
    rows[3]["input"] = "the river at dawn " * 40  # ~ hundreds of tokens
    bench = make_mini_benchmark(tmp_path / "bench")
    write_jsonl(bench / "forget.jsonl", rows)
    model = tiny_llama(tiny_tokenizer, max_positions=64)
    with pytest.raises(DataError) as err:
        check_requests(model, tiny_tokenizer, load_task(bench), max_new_tokens=8)
    text = str(err.value)
    assert rows[3]["id"] in text and "longer than the model's context of 64 tokens" in text


def test_a_huge_prompt_is_refused_without_tokenising_it(tiny_tokenizer):
    class Model:
        class config:
            max_position_embeddings = 128

    class Tokenizer:
        def get_vocab(self):
            return tiny_tokenizer.get_vocab()

        def __call__(self, *a, **k):  # pragma: no cover - the point is that it is never called
            raise AssertionError("tokenised a 10 MB prompt")

    started = time.perf_counter()
    with pytest.raises(DataError, match=r"10,000,000 characters is longer than the model's context of 128"):
        check_context(Model(), Tokenizer(), ["x" * 10_000_000], ["big-1"], "prompt", reserve=4)
    assert time.perf_counter() - started < 5


def test_texts_that_fit_pass(tiny_llama, tiny_tokenizer):
    check_context(tiny_llama, tiny_tokenizer, ["a short prompt"] * 3, ["a", "b", "c"], "prompt", reserve=8)


# -- non-finite models ----------------------------------------------------------------------------
def _nan_model(tiny_llama):
    import torch

    with torch.no_grad():
        tiny_llama.model.layers[1].mlp.down_proj.weight[0, 0] = float("nan")
    return tiny_llama


def test_a_nan_model_is_named_at_its_first_forward_with_the_weight(tiny_llama, tiny_tokenizer):
    import torch

    model = _nan_model(tiny_llama)
    with pytest.raises(ModelError) as err:
        with FiniteOutputs(model, "the model m", during="evaluation"):
            model(torch.tensor([[1, 2, 3]]))
    text = str(err.value)
    assert "the model m produces NaN logits on its first forward pass (evaluation)" in text
    assert "model.layers.1.mlp.down_proj.weight (1 of" in text


def test_finite_outputs_stops_checking_and_unhooks(tiny_llama):
    import torch

    with FiniteOutputs(tiny_llama, "m", during="x", checks=1) as guard:
        tiny_llama(torch.tensor([[1, 2]]))
        assert guard.handle is None
    assert not tiny_llama._forward_hooks


def test_evaluating_a_nan_model_fails_in_seconds_naming_the_model(tmp_path, tiny_llama, tiny_tokenizer,
                                                                   mini_benchmark):
    from harness.evaluation.pipeline import EvalSettings, evaluate_model
    from harness.tasks import load_task

    model = _nan_model(tiny_llama)
    started = time.perf_counter()
    with pytest.raises(ModelError, match=r"holds non-finite weights: model.layers.1.mlp.down_proj.weight \(1 of"):
        evaluate_model(model, tiny_tokenizer, load_task(mini_benchmark), EvalSettings(max_new_tokens=4, progress=False,
                                                                                     cache=False), tmp_path / "run")
    assert time.perf_counter() - started < 30
    assert not (tmp_path / "run" / "result.json").exists()


# -- disjoint sets ----------------------------------------------------------------------------------
def test_identical_member_and_nonmember_sets_are_refused(tmp_path):
    from harness.tasks.lume.data import load_benchmark

    bench = make_mini_benchmark(tmp_path / "bench")
    write_jsonl(bench / "mia" / "nonmember.jsonl", [{"id": f"n{i}", "document": d["document"]}
                                                     for i, d in enumerate(MINI_MEMBERS)])
    with pytest.raises(DataError, match=r"the same document is a member \('m0'\) and a nonmember \('n0'\)"):
        load_benchmark(bench, bench / "mia")


def test_shared_member_and_nonmember_ids_are_refused(tmp_path):
    from harness.tasks.lume.data import load_benchmark

    bench = make_mini_benchmark(tmp_path / "bench")
    write_jsonl(bench / "mia" / "nonmember.jsonl", [{"id": "m0", "document": "something else entirely"}])
    with pytest.raises(DataError, match="id appears in both member and nonmember"):
        load_benchmark(bench, bench / "mia")


def test_a_record_in_both_forget_and_retain_is_refused(tmp_path):
    from harness.tasks.lume.data import load_benchmark

    bench = make_mini_benchmark(tmp_path / "bench")
    retain = [json.loads(line) for line in (bench / "retain.jsonl").read_text().splitlines()]
    write_jsonl(bench / "retain.jsonl", retain + [{**MINI_FORGET[1], "id": "zz9qa0"}])
    with pytest.raises(DataError, match="the same record .* is in forget as"):
        load_benchmark(bench)


# -- MCQ subjects ----------------------------------------------------------------------------------
def _mcq(root: Path, subjects: dict[str, int]) -> Path:
    for subject, n in subjects.items():
        rows = "".join(f"q{i}?,a,b,c,d,A\n" for i in range(n))
        (root / "test").mkdir(parents=True, exist_ok=True)
        (root / "test" / f"{subject}_test.csv").write_text(rows)
    return root


def test_a_subject_without_test_questions_is_an_error(tmp_path):
    from harness.tasks.mcq.data import load_mcq

    root = _mcq(tmp_path / "mcq", {"geography": 3, "rivers": 0})
    with pytest.raises(DataError, match=r"subject\(s\) rivers have no test questions"):
        load_mcq(root)


def test_a_template_in_a_subject_name_is_refused(tmp_path):
    from harness.tasks.mcq.data import load_mcq

    root = _mcq(tmp_path / "mcq", {"geography": 3, "{{ cycler.__init__ }}": 2})
    with pytest.raises(DataError, match="is not a plain name"):
        load_mcq(root)


def test_the_subject_reaches_lm_eval_as_raw_text():
    from harness.tasks.mcq import mmlu

    source = Path(mmlu.__file__).read_text()
    assert '"{% raw %}" + layout["description"]' in source


# -- bytes and disks --------------------------------------------------------------------------------
def test_a_bad_byte_is_reported_on_its_own_line(tmp_path):
    from harness.tasks.lume.data import load_split

    rows = [dict(MINI_FORGET[i % len(MINI_FORGET)], id=f"r{i:03d}sc1") for i in range(60)]
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    lines = data.split(b"\n")
    lines[39] = lines[39].replace(b'"input": "', b'"input": "\xff')
    path = tmp_path / "forget.jsonl"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError) as err:
        load_split(tmp_path, "forget")
    assert "line 40" in str(err.value) and "not valid UTF-8 (byte 0xff" in str(err.value)


def test_a_full_disk_is_named_with_device_and_file(tmp_path, monkeypatch):
    from harness.core import fileio

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.os, "fsync", no_space)
    with pytest.raises(DiskFullError) as err:
        fileio.write_json(tmp_path / "result.json", {"a": 1})
    text = str(err.value)
    assert text.startswith("no space left on ") and f"while writing {tmp_path / 'result.json'}" in text
    assert not list(tmp_path.iterdir())  # no half-written file, no temporary


def test_a_full_disk_inside_a_transaction_leaves_nothing(tmp_path, monkeypatch):
    from harness.core import fileio
    from harness.core.transaction import RunTransaction

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFullError, match=r"while writing .*run/samples.jsonl; nothing was written to"):
        with RunTransaction(tmp_path / "run") as tx:
            monkeypatch.setattr(fileio.os, "fsync", no_space)
            fileio.write_jsonl(tx.path / "samples.jsonl", [{"a": 1}])
    assert not list(tmp_path.iterdir())
