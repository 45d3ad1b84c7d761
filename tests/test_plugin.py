"""The third-party path: a separate pip package declares an `unlearnbench.methods` entry point."""

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
