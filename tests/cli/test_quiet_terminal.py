"""A quiet terminal: by default the harness's own lines and labelled progress bars, no third-party
warnings, per-split chatter or unlabelled bars; all of it again with ``-v``."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from harness.core import console

REPO = Path(__file__).resolve().parents[2]

#: Lines a user should never see at the default level (each was in the terminal before this fix).
THIRD_PARTY = {
    "Python warning": re.compile(r"(Future|Deprecation|User|Runtime)Warning|^\s+return forward_call|warnings\.warn"),
    "library log line": re.compile(r"\b(WARNING|INFO)\b.*\b(lm_eval|lm-eval|transformers|torchao|datasets|torch)\b"),
    "torch's own warning": re.compile(r"^W\d{4} "),
    "datasets per-split line": re.compile(r"Generating \w+ split"),
    "git from lm-eval": re.compile(r"fatal: not a git repository"),
    "transformers notice": re.compile(r"^\[transformers\]"),
    "unlabelled progress bar": re.compile(r"^\s*\d+%\|"),
}


def _lines(text: str) -> list[str]:
    """What a terminal shows, one entry per drawn line (progress bars redraw with carriage returns)."""
    return [part for line in text.splitlines() for part in line.split("\r") if part.strip()]


def _offenders(text: str) -> dict[str, list[str]]:
    found = {}
    for what, pattern in THIRD_PARTY.items():
        hits = [line for line in _lines(text) if pattern.search(line)]
        if hits:
            found[what] = hits[:3]
    return found


@pytest.fixture
def utility_fixture(tmp_path, tiny_model_dir, mini_benchmark):
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from tasks.test_mmlu import write_csv_layout
    finally:
        sys.path.remove(str(REPO / "tests"))
    return tiny_model_dir, mini_benchmark, write_csv_layout(tmp_path / "mcq")


def _evaluate(tmp_path: Path, model: Path, data: Path, mcq: Path, *flags: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "UNLEARNBENCH_CACHE": str(tmp_path / "cache")}
    for key in console.QUIET_ENVIRONMENT:  # the user's own settings would win; the test starts from none
        env.pop(key, None)
    out = tmp_path / f"run{len(flags)}"
    # cwd outside any git repository: lm-eval's `git describe` prints "fatal: ..." there.
    return subprocess.run([sys.executable, "-m", "harness", *flags, "evaluate", "--model", str(model), "--data",
                           str(data), "--utility", str(mcq), "--out", str(out)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)


def test_evaluate_prints_no_third_party_output_by_default(tmp_path, utility_fixture):
    model, data, mcq = utility_fixture
    quiet = _evaluate(tmp_path, model, data, mcq)
    assert quiet.returncode == 0, quiet.stderr
    text = quiet.stdout + quiet.stderr
    assert _offenders(text) == {}
    assert re.search(r"^utility \(semeval2025, cloze, 5-shot\): [\d.]+ over 18 questions", text, re.M)
    bars = {m.group(1) for m in re.finditer(r"^(\w[\w ()-]*?):\s+\d+%\|", "\n".join(_lines(text)), re.M)}
    assert {"generate", "answer losses", "mia losses"} <= bars
    assert len(_lines(quiet.stdout)) <= 8, quiet.stdout


@pytest.mark.slow
def test_v_brings_the_third_party_output_back(tmp_path, utility_fixture):
    model, data, mcq = utility_fixture
    loud = _evaluate(tmp_path, model, data, mcq, "-v")
    assert loud.returncode == 0, loud.stderr
    found = _offenders(loud.stdout + loud.stderr)
    # lm-eval's own warnings, its per-split datasets bars and its unlabelled bars are back.
    assert {"library log line", "datasets per-split line", "unlabelled progress bar"} <= set(found), found


# -- the pieces, in process -------------------------------------------------------------------------
@pytest.fixture
def console_state():
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, dict(os.environ), console._settings["verbosity"],
             logging.getLogger("torch").level)
    yield
    for handler in list(root.handlers):
        if handler not in saved[0]:
            root.removeHandler(handler)
    root.setLevel(saved[1])
    os.environ.clear()
    os.environ.update(saved[2])
    console._settings["verbosity"] = saved[3]
    logging.getLogger("torch").setLevel(saved[4])
    logging.captureWarnings(False)


def test_default_level_passes_own_lines_and_hides_other_libraries(console_state, capsys):
    with warnings.catch_warnings():
        console.configure(0)
        logging.getLogger("unlearnbench.runner").info("run runs/npo: method npo")
        logging.getLogger("harness.tasks.mcq.mmlu").warning("own warning")
        logging.getLogger("lm_eval.models.huggingface").warning("`pretrained` model kwarg is not of type `str`")
        logging.getLogger("datasets.builder").info("Generating test split")
        logging.getLogger("lm_eval").error("a real lm-eval error")
        warnings.warn_explicit("deprecated thing", FutureWarning, "x.py", 1, module="transformers.modeling_utils")
    err = capsys.readouterr().err
    assert err.splitlines() == ["run runs/npo: method npo", "warning: own warning",
                                "error (lm_eval): a real lm-eval error"]


def test_verbose_level_shows_library_warnings(console_state, capsys):
    with warnings.catch_warnings():
        console.configure(1)
        logging.getLogger("lm_eval.models.huggingface").warning("kwarg is not of type")
        warnings.warn_explicit("deprecated thing", FutureWarning, "x.py", 1, module="transformers.modeling_utils")
    err = capsys.readouterr().err
    assert "kwarg is not of type" in err and "FutureWarning: deprecated thing" in err
    assert not console.third_party_quiet()


def test_default_level_sets_the_libraries_quiet_switches_but_never_overrides_the_users(console_state, monkeypatch):
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")
    monkeypatch.delenv("HF_DATASETS_DISABLE_PROGRESS_BARS", raising=False)
    with warnings.catch_warnings():
        console.configure(0)
    assert os.environ["TRANSFORMERS_VERBOSITY"] == "info"
    assert os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] == "1"


def test_held_back_output_is_shown_when_the_call_fails(console_state, capfd):
    with warnings.catch_warnings():
        console.configure(0)
    with console.third_party_output("lm-eval"):
        os.write(2, b"fatal: not a git repository\n")
        print("unlabelled bar", file=sys.stderr)
    assert capfd.readouterr().err == ""
    with pytest.raises(ValueError):
        with console.third_party_output("lm-eval"):
            os.write(2, b"the reason it failed\n")
            raise ValueError("boom")
    err = capfd.readouterr().err
    assert "the reason it failed" in err and "output of lm-eval" in err
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_without_configure_nothing_is_held_back(console_state, capfd):
    console._settings["verbosity"] = None
    with console.third_party_output("lm-eval"):
        os.write(2, b"visible\n")
    assert capfd.readouterr().err == "visible\n"


def test_every_progress_bar_of_the_harness_has_a_label():
    """Each ``tqdm(...)`` in the harness's packages passes ``desc`` (an unlabelled bar says nothing)."""
    import ast

    unlabelled = []
    for package in console.OWN_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")) if (REPO / package).is_dir() else []:
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "tqdm":
                    if not any(k.arg == "desc" for k in node.keywords):
                        unlabelled.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert unlabelled == []
