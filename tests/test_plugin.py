"""The third-party path: a separate pip package declares `unlearnbench.methods` and
`unlearnbench.benchmarks` entry points."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = Path(__file__).parent / "plugin_pkg"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """pip-install the plugin package into its own folder (the venv itself stays untouched)."""
    site = tmp_path_factory.mktemp("plugin-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(PLUGIN)],
        check=True,
    )
    return site


def _env(site: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    return env


def _cli(site: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          env=_env(site), timeout=300)


def test_methods_lists_the_installed_plugin(plugin_site):
    out = _cli(plugin_site, "methods")
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if line.startswith("plugin_noise"))
    assert "entry point unlearnbench_testplugin:NoiseUnlearning" in line


def test_plugin_method_runs(plugin_site, tmp_path):
    script = r"""
import json, sys
from harness import METHODS, UnlearnContext, load_benchmark
from harness.synthetic.tiny import train_bpe_tokenizer, tiny_llama
import torch
bench = load_benchmark(sys.argv[1])
texts = [r.input + r.output for r in bench.records]
tok = train_bpe_tokenizer(texts * 3, vocab_size=300)
model = tiny_llama(tok, seed=0)
def forget_loss(m):
    tot = 0.0
    for r in bench.forget:
        ids = tok(r.input + r.output, return_tensors="pt").input_ids
        with torch.no_grad():
            tot += m(input_ids=ids, labels=ids).loss.item()
    return tot / len(bench.forget)
before = forget_loss(model)
cls = METHODS.get("plugin_noise")
method = cls(**cls.defaults())
events = []
out = method.unlearn(model, tok, bench, UnlearnContext(seed=1, log_event=events.append))
print(json.dumps({"before": before, "after": forget_loss(out), "events": events, "cls": type(out).__name__}))
"""
    from conftest import make_mini_benchmark

    bench = make_mini_benchmark(tmp_path / "bench")
    out = subprocess.run([sys.executable, "-c", script, str(bench)], capture_output=True, text=True,
                         env=_env(plugin_site), timeout=300)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["cls"] == "LlamaForCausalLM"
    assert res["after"] > res["before"]
    assert res["events"] and res["events"][0]["event"] == "plugin_noise"


def _qa_folder(path: Path) -> Path:
    rows = [{"id": "q1", "question": "Which city was Sherry's home?", "answer": "Madera", "split": "forget"},
            {"id": "q2", "question": "What is Ivo Marren's phone number?", "answer": "555-0134", "split": "forget"},
            {"id": "q3", "question": "What did Huw sell?", "answer": "bread", "split": "retain"}]
    path.mkdir(parents=True)
    (path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_plugin_benchmark_is_listed_detected_evaluated_rescored_and_trained_on(plugin_site, tmp_path, tiny_model_dir):
    """A benchmark from another package (entry-point group unlearnbench.benchmarks) runs through the same
    commands as LUME: listing, detection from its data folder, evaluation, rescoring, training curves."""
    out = _cli(plugin_site, "benchmarks")
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if line.startswith("plugin_qa"))
    assert "entry point unlearnbench_testplugin.benchmark:PluginQA" in line
    data = _qa_folder(tmp_path / "qa")
    common = ["--model", str(tiny_model_dir), "--data", str(data), "--max-new-tokens", "4", "--no-progress",
              "--no-cache"]
    out = _cli(plugin_site, "-q", "evaluate", *common, "--out", str(tmp_path / "eval"))
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "eval" / "result.json").read_text())
    assert result["settings"]["benchmark"] == "plugin_qa"
    assert set(result["metrics"]) == {"plugin_qa/forget_exact", "plugin_qa/forget_answer_loss",
                                      "plugin_qa/retain_exact", "plugin_qa/retain_answer_loss"}
    out = _cli(plugin_site, "-q", "score", str(tmp_path / "eval"), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == result["metrics"]
    out = _cli(plugin_site, "-q", "unlearn", "--method", "grad_ascent", *common, "--out", str(tmp_path / "run"),
               "--set", "epochs=1", "lora_r=4", "lora_alpha=4", "per_device_batch_size=2", "eval_every=1",
               "eval_max_new_tokens=4")
    assert out.returncode == 0, out.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["benchmark"] == "plugin_qa"
    log = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    curves = [e for e in log if e["event"] == "eval"]
    assert curves and all({"forget/exact", "retain/exact"} <= set(e) for e in curves)
    assert "plugin_qa/forget_exact" in json.loads((tmp_path / "run" / "result.json").read_text())["metrics"]
    # Naming another benchmark for the folder is one clear error, not a traceback.
    out = _cli(plugin_site, "-q", "evaluate", *common, "--benchmark", "lume", "--out", str(tmp_path / "bad"))
    assert out.returncode == 2 and "missing split 'forget'" in out.stderr and "Traceback" not in out.stderr
