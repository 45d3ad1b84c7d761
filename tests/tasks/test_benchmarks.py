"""Benchmarks register like methods: the decorator, detection from the data folder, ``--benchmark``,
``unlearnbench benchmarks``, and a second benchmark running through the same pipeline as LUME.
(The entry-point path for other packages is in tests/test_plugin.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import make_mini_benchmark, write_jsonl
from harness.cli import main
from harness.core.errors import DataError, RegistryError
from harness.core.registry import BENCHMARKS, register_benchmark
from harness.core.types import Benchmark, Record
from harness.tasks import detect_benchmark, load_task
from harness.tasks.base import BenchmarkTask, Requests, Scores
from harness.tasks.lume.task import LumeTask


class EchoQA(BenchmarkTask):
    """Test benchmark: echo.jsonl questions scored by exact match."""

    layout = "echo.jsonl"

    @classmethod
    def detect(cls, path):
        return (Path(path) / "echo.jsonl").is_file()

    @classmethod
    def load(cls, path, mia=None):
        rows = [json.loads(x) for x in (Path(path) / "echo.jsonl").read_text().splitlines()]
        records = tuple(Record(id=r["id"], input=r["q"], output=r["a"], task="Echo", kind="qa", split=r["split"])
                        for r in rows)
        return cls(Benchmark(name="echo", path=str(path), content_hash="e" * 64,
                             forget=tuple(r for r in records if r.split == "forget"),
                             retain=tuple(r for r in records if r.split == "retain")))

    def requests(self):
        return Requests(prompts=tuple(r.input for r in self.data.records),
                        answers=tuple((r.input, r.output) for r in self.data.records))

    def score(self, responses, mcq, mode):
        rows = [{"id": r.id, "split": r.split, "generation": g, "answer_loss": loss}
                for r, g, loss in zip(self.data.records, responses.generations, responses.answer_losses)]
        return Scores(rows, None, self.rescore(rows, None, mcq, mode))

    @classmethod
    def rescore(cls, samples, documents, mcq, mode, progress=True):
        losses = [s["answer_loss"] for s in samples]
        return {"echo/n": float(len(samples)), "echo/mean_answer_loss": sum(losses) / len(losses)}


@pytest.fixture
def echo_registered():
    register_benchmark("echo_qa")(EchoQA)
    yield EchoQA
    BENCHMARKS._items.pop("echo_qa", None)
    BENCHMARKS._origins.pop("echo_qa", None)


@pytest.fixture
def echo_folder(tmp_path) -> Path:
    rows = [{"id": "e1", "q": "Which city was Sherry's home?", "a": "Madera", "split": "forget"},
            {"id": "e2", "q": "What did Huw sell?", "a": "bread", "split": "retain"}]
    return write_jsonl(tmp_path / "echo" / "echo.jsonl", rows).parent


def test_lume_is_registered_and_detected(mini_benchmark):
    assert "lume" in BENCHMARKS and BENCHMARKS.get("lume") is LumeTask and LumeTask.name == "lume"
    assert detect_benchmark(mini_benchmark) == "lume"
    task = load_task(mini_benchmark)
    assert isinstance(task, LumeTask) and task.name == "lume" and len(task.data.forget) == 7
    requests = task.requests()
    assert len(requests.prompts) == len(requests.answers) == 13 and len(requests.documents) == 6


def test_detection_errors_name_the_folder_and_what_each_benchmark_reads(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        detect_benchmark(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no registered benchmark recognises this folder.*lume: forget and retain"):
        detect_benchmark(tmp_path / "empty")
    with pytest.raises(RegistryError, match="Unknown benchmark 'lum'. Did you mean 'lume'"):
        load_task(tmp_path / "empty", name="lum")


def test_register_benchmark_decorator_and_a_second_benchmark_through_the_pipeline(
        echo_registered, echo_folder, tmp_path, tiny_llama, tiny_tokenizer):
    from harness.evaluation.pipeline import EvalSettings, evaluate_model

    assert EchoQA.name == "echo_qa" and BENCHMARKS.get("echo_qa") is EchoQA
    assert detect_benchmark(echo_folder) == "echo_qa"
    task = load_task(echo_folder)
    settings = EvalSettings(max_new_tokens=4, progress=False, cache_dir=str(tmp_path / "cache"))
    result = evaluate_model(tiny_llama, tiny_tokenizer, task, settings, tmp_path / "run")
    assert result.settings["benchmark"] == "echo_qa" and result.metrics["echo/n"] == 2.0
    assert result.files == {"samples": "samples.jsonl"} and not (tmp_path / "run" / "mia.jsonl").exists()
    rows = [json.loads(x) for x in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["e1", "e2"] and all(isinstance(r["answer_loss"], float) for r in rows)
    # A folder two benchmarks recognise needs --benchmark.
    make_mini_benchmark(echo_folder)
    with pytest.raises(DataError, match=r"several benchmarks recognise this folder \(.*echo_qa.*lume"):
        detect_benchmark(echo_folder)
    assert load_task(echo_folder, name="lume").name == "lume"


def test_cli_benchmark_option_and_listing(echo_registered, echo_folder, mini_benchmark, tiny_model_dir, tmp_path,
                                          capsys):
    assert main(["benchmarks", "--layout"]) == 0
    listing = capsys.readouterr().out
    assert "lume" in listing and "echo_qa" in listing and "reads: echo.jsonl" in listing
    common = ["--model", str(tiny_model_dir), "--max-new-tokens", "4", "--no-progress", "--no-cache"]
    assert main(["evaluate", *common, "--data", str(echo_folder), "--out", str(tmp_path / "echo-run")]) == 0
    printed = capsys.readouterr().out
    assert "(echo_qa):" in printed and "echo/mean_answer_loss" in printed
    config = json.loads((tmp_path / "echo-run" / "config.json").read_text())
    assert config["benchmark"] == "echo_qa"
    # rescoring uses the benchmark the run was evaluated on
    assert main(["-q", "score", str(tmp_path / "echo-run"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["echo/n"] == 2.0
    # --benchmark names one explicitly; a wrong one is one clear error
    assert main(["evaluate", *common, "--data", str(mini_benchmark), "--benchmark", "lume",
                 "--out", str(tmp_path / "lume-run")]) == 0
    assert json.loads((tmp_path / "lume-run" / "result.json").read_text())["settings"]["benchmark"] == "lume"
    capsys.readouterr()
    assert main(["evaluate", *common, "--data", str(mini_benchmark), "--benchmark", "echo-qa",
                 "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "Unknown benchmark 'echo-qa'" in err and "Did you mean 'echo_qa'" in err and err.count("\n") == 1
