"""``import unlearnbench``: every public name imports, is the object its implementing module defines,
and is the list the README documents."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import unlearnbench

ROOT = Path(__file__).resolve().parents[1]

#: Where each public name is implemented (the source of truth the re-export must be identical to).
ORIGIN = {
    "baselines.base": ["LossMethod"],
    "baselines.merging": ["MergeSettings"],
    "harness.backends.loading": ["load_model"],
    "harness.core.errors": ["ConfigError", "DataError", "RegistryError", "UnlearnbenchError", "UserError"],
    "harness.core.records": ["EvalResult", "RunConfig", "read_result"],
    "harness.core.registry": ["BENCHMARKS", "METHODS", "METRICS", "Registry", "register_benchmark",
                              "register_method", "register_metric"],
    "harness.core.types": ["Benchmark", "MetricSpec", "MIADocument", "Record", "UnlearnContext", "UnlearningMethod"],
    "harness.evaluation.pipeline": ["EvalSettings", "RunInfo", "evaluate_model"],
    "harness.synthetic.demo": ["DemoPlan", "run_demo"],
    "harness.synthetic.target": ["train_target"],
    "harness.synthetic.world": ["generate_world"],
    "harness.tasks.base": ["BenchmarkTask", "Requests", "Responses", "Scores"],
    "harness.tasks": ["load_task"],
    "harness.tasks.lume.data": ["load_benchmark"],
    "harness.tasks.mcq.mmlu": ["MCQSpec"],
    "harness.training.loop": ["TrainSettings", "train"],
    "harness.training.step": ["TrainStep", "kl_ref_to_model", "mean_nll", "sequence_nll"],
    "harness.training.merge": ["merge_runs"],
    "harness.training.runner": ["RunOptions", "RunOutcome", "run_unlearning"],
    "leaderboards": ["build_leaderboards", "write_outputs"],
    "leaderboards.board": ["Board", "available_boards", "get_board"],
    "leaderboards.build": ["BuildOptions", "Leaderboard", "LeaderboardError"],
    "leaderboards.render": ["to_csv", "to_html", "to_latex", "to_markdown"],
    "metrics.semeval": ["compute_metrics", "final_score", "score_rows", "task_aggregate"],
    "metrics.mia": ["mia_score"],
    "metrics.specs": ["METRIC_DIRECTIONS", "metric_spec"],
}


def test_every_public_name_is_the_implementing_modules_object():
    expected = {name: module for module, names in ORIGIN.items() for name in names}
    assert sorted(unlearnbench.__all__) == sorted(expected), "unlearnbench.__all__ and the origin table differ"
    assert len(unlearnbench.__all__) == len(set(unlearnbench.__all__)), "a name is listed twice in __all__"
    for name, module in expected.items():
        assert getattr(unlearnbench, name) is getattr(importlib.import_module(module), name), name


def test_star_import_gives_exactly_the_public_names():
    namespace: dict = {}
    exec("from unlearnbench import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(unlearnbench.__all__)


def _readme_api_names() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^### The Python API\n(.*?)(?=^#)", text, re.S | re.M)
    assert section, "README.md has no '### The Python API' section"
    block = re.search(r"```text\n(.*?)```", section.group(1), re.S)
    assert block, "the README's Python API section has no ```text block listing the names"
    return re.findall(r"`?\b([A-Za-z_][A-Za-z0-9_]*)\b`?(?=[,\s]|$)",
                      "\n".join(line.split(":", 1)[1] for line in block.group(1).splitlines() if ":" in line))


def test_readme_lists_exactly_the_public_names():
    names = _readme_api_names()
    assert sorted(names) == sorted(unlearnbench.__all__)


def test_every_unlearnbench_import_in_the_docs_names_a_public_name():
    """``from unlearnbench import X`` or ``ub.X`` in README.md / docs/ must exist."""
    public = set(unlearnbench.__all__)
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        for match in re.finditer(r"from unlearnbench import ([\w, ()\n]+)", text):
            for name in re.findall(r"\w+", match.group(1)):
                assert name in public, f"{doc.name}: 'from unlearnbench import {name}' is not a public name"
        for name in re.findall(r"\bub\.(\w+)", text):
            assert name in public, f"{doc.name}: 'ub.{name}' is not a public name"


def test_import_loads_neither_torch_nor_transformers():
    code = ("import sys, unlearnbench; heavy = [m for m in ('torch', 'transformers', 'lm_eval') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_packaged_by_pyproject():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    include = re.search(r"\[tool\.setuptools\.packages\.find\]\s*include = \[([^\]]*)\]", text)
    assert include and '"unlearnbench*"' in include.group(1)


def test_python_dash_m_unlearnbench_is_the_cli():
    proc = subprocess.run([sys.executable, "-m", "unlearnbench", "methods"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "npo" in proc.stdout
