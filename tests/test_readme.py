"""The README runs as written.

Every fenced ``bash`` and ``python`` block of README.md is run, in order, in a fresh copy of the
repository (the slow test) unless the line just before it is a marker::

    <!-- readme-test: skip (REASON) -->

which is meant for what cannot run on a CPU test machine (installing, GPUs, clusters) or is a
skeleton. The fast tests check what can be checked without running anything: the markers are few and
each says why; every ``unlearnbench`` command line in the README (skipped blocks included) parses
with the real command-line parser (commands, options, choices, required arguments); the ``make``
targets exist; every path into the repository it names exists; and the "Writing a method" example
registers a method that trains.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.cli.main import build_parser

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"

SKIP_MARKER = re.compile(r"^<!-- readme-test: skip \((?P<reason>[^)]+)\) -->$")
#: Why a block may be skipped: the reason must start with one of these.
SKIP_REASONS = ("installs", "needs the network", "needs a GPU", "needs GPUs", "needs a SLURM cluster", "skeleton")
#: At most this many skipped blocks: the README is meant to run, not to be excused.
MAX_SKIPPED = 6
#: Sections whose blocks must all run (the newcomer's path).
MUST_RUN_SECTIONS = ("Using it", "The Python API", "Writing a method")


@dataclass
class Block:
    language: str
    code: str
    line: int  # 1-based line of the opening fence
    section: str
    skip: str | None  # the marker's reason


def readme_blocks(text: str | None = None) -> list[Block]:
    lines = (README.read_text(encoding="utf-8") if text is None else text).splitlines()
    blocks: list[Block] = []
    section = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#") and not line.startswith("#!"):
            section = line.lstrip("#").strip()
        marker = SKIP_MARKER.match(line.strip())
        if line.strip().startswith("<!-- readme-test"):
            assert marker, f"README.md:{i + 1}: malformed marker {line!r}; use <!-- readme-test: skip (REASON) -->"
            assert i + 1 < len(lines) and lines[i + 1].startswith("```"), \
                f"README.md:{i + 1}: a skip marker must stand on the line just before a code block"
        if line.startswith("```"):
            start = i
            language = line[3:].strip()
            i += 1
            body = []
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            previous = SKIP_MARKER.match(lines[start - 1].strip()) if start else None
            blocks.append(Block(language, "\n".join(body) + "\n", start + 1, section,
                                previous.group("reason") if previous else None))
        i += 1
    return blocks


def runnable(blocks: list[Block]) -> list[Block]:
    return [b for b in blocks if b.language in ("bash", "python") and b.skip is None]


def command_lines(code: str) -> list[str]:
    """Shell command lines of a bash block: continuations joined, comment-only lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def unlearnbench_argv(line: str) -> list[str] | None:
    """The arguments given to unlearnbench's parser by a command line, or None for other programs."""
    tokens = shlex.split(line, comments=True)
    if tokens and tokens[0] == "unlearnbench":
        return tokens[1:]
    for module in ("harness", "unlearnbench"):
        for k in range(len(tokens) - 1):
            if tokens[k] == "-m" and tokens[k + 1] == module:
                return tokens[k + 2:]
    return None


# -- fast checks ------------------------------------------------------------------------------------
def test_the_readme_has_blocks_that_run():
    blocks = readme_blocks()
    run = runnable(blocks)
    assert any(b.section == "Using it" and b.language == "bash" for b in run)
    assert sum(len(command_lines(b.code)) for b in run if b.language == "bash") >= 7


def test_skip_markers_are_few_and_say_why():
    blocks = readme_blocks()
    skipped = [b for b in blocks if b.skip]
    assert len(skipped) <= MAX_SKIPPED, [f"README.md:{b.line} ({b.skip})" for b in skipped]
    for b in skipped:
        assert b.skip.startswith(SKIP_REASONS), f"README.md:{b.line}: skip reason {b.skip!r} is not one of {SKIP_REASONS}"
        assert b.section not in MUST_RUN_SECTIONS, f"README.md:{b.line}: a block of '{b.section}' must run"
    for section in MUST_RUN_SECTIONS:
        assert any(b.section == section for b in runnable(blocks)), f"no runnable block in '{section}'"


def test_marker_parsing():
    text = textwrap.dedent("""\
        ## Using it
        ```bash
        unlearnbench methods
        ```
        ## Scaling out
        <!-- readme-test: skip (needs GPUs) -->
        ```bash
        unlearnbench evaluate --model M --data D --device cuda --out x
        ```
        """)
    blocks = readme_blocks(text)
    assert [(b.section, b.skip) for b in blocks] == [("Using it", None), ("Scaling out", "needs GPUs")]
    with pytest.raises(AssertionError, match="just before a code block"):
        readme_blocks("<!-- readme-test: skip (needs GPUs) -->\n\n```bash\nls\n```\n")


def _parse(argv: list[str]) -> str | None:
    """None when the parser accepts ``argv``, else its error message."""
    import contextlib
    import io

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv)
    except SystemExit as exc:
        return err.getvalue().strip() or f"exit {exc.code}"
    return None


def test_every_unlearnbench_command_in_the_readme_parses():
    checked = 0
    for block in readme_blocks():
        if block.language != "bash":
            continue
        for line in command_lines(block.code):
            argv = unlearnbench_argv(line)
            if argv is None:
                continue
            problem = _parse(argv)
            assert problem is None, f"README.md:{block.line}: `{line}` does not parse: {problem}"
            checked += 1
    assert checked >= 12


def test_the_parse_check_catches_a_wrong_option():
    assert _parse(["merge", "a", "b", "--how", "ties", "--out", "m"]) is None
    assert "unrecognized arguments: --utilty" in _parse(["evaluate", "--model", "m", "--data", "d", "--out", "o",
                                                          "--utilty", "u"])
    assert "invalid choice" in _parse(["merge", "a", "--how", "tie", "--out", "m"])


def test_make_targets_named_in_the_readme_exist():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    named = set(re.findall(r"`make (\w[\w-]*)", README.read_text(encoding="utf-8")))
    for block in readme_blocks():
        for line in command_lines(block.code) if block.language == "bash" else []:
            tokens = shlex.split(line, comments=True)
            if tokens and tokens[0] == "make":
                named.update(t for t in tokens[1:] if "=" not in t and not t.startswith("-"))
    assert named and named <= targets, named - targets


#: Folders of this repository; a README path starting with one of them must exist.
REPO_FOLDERS = ("harness", "metrics", "baselines", "leaderboards", "unlearnbench", "tests", "benchmarks", "docs")


def test_every_repository_path_the_readme_names_exists():
    text = README.read_text(encoding="utf-8")
    candidates = set(re.findall(r"`([\w./-]+)`", text)) | set(re.findall(r"\]\(([\w./-]+)\)", text))
    candidates |= {m for block in readme_blocks() for m in re.findall(r"[\w./-]+", block.code)}
    paths = {c.rstrip("/.") for c in candidates if c.split("/", 1)[0] in REPO_FOLDERS and "/" in c}
    missing = sorted(p for p in paths if not (REPO / p).exists())
    assert not missing, f"README.md names paths that do not exist: {missing}"
    assert len(paths) >= 8


def _method_block() -> Block:
    [block] = [b for b in runnable(readme_blocks()) if b.section == "Writing a method" and b.language == "python"]
    return block


def test_the_writing_a_method_example_registers_a_method_that_trains(tmp_path, tiny_model_dir, mini_benchmark):
    """The README's method, as written, plus a short training run through the shared loop."""
    block = _method_block()
    name = re.search(r'@register_method\("(\w+)"\)', block.code).group(1)
    script = block.code + textwrap.dedent(f"""
        import json, sys
        from unlearnbench import METHODS, run_unlearning
        cls = METHODS.get({name!r})
        assert issubclass(cls, __import__("unlearnbench").LossMethod)
        outcome = run_unlearning({name!r}, sys.argv[1], sys.argv[2], sys.argv[3], evaluate=False, progress=False,
                                 params={{"epochs": 3, "learning_rate": 1e-2, "per_device_batch_size": 8,
                                          "scheduler": "constant",
                                          "lora_r": 4, "lora_alpha": 8, "max_length": 64, "eval_every": 0,
                                          "ceiling": 100.0}})
        print(json.dumps(sorted(cls.defaults())))
        """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "UNLEARNBENCH_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", script, str(tiny_model_dir), str(mini_benchmark), str(tmp_path / "run")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    defaults = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"ceiling", "retain_weight", "learning_rate", "epochs", "finetune"} <= set(defaults)
    events = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    train = [e for e in events if e["event"] == "train"]
    assert train and all("forget_nll" in e and "retain_nll" in e for e in train)
    # Ascent on the forget set (one batch holds all of it, so every step sees the same batch): its loss rose.
    assert train[-1]["forget_nll"] > train[0]["forget_nll"]
    assert (tmp_path / "run" / "model" / "adapter_config.json").is_file()


# -- the whole README, as written -------------------------------------------------------------------
def _fresh_copy(dest: Path) -> Path:
    """The repository's files as a clone would have them (tracked and not ignored), without outputs."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


@pytest.mark.slow
def test_the_readme_runs_as_written(tmp_path):
    copy = _fresh_copy(tmp_path / "clone")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # `unlearnbench` as the install provides it, running this copy's code.
    shim = bin_dir / "unlearnbench"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m harness "$@"\n')
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(copy), "UNLEARNBENCH_CACHE": str(tmp_path / "cache")}
    for block in runnable(readme_blocks((copy / "README.md").read_text(encoding="utf-8"))):
        if block.language == "bash":
            cmd = ["bash", "-euo", "pipefail", "-c", block.code]
        else:
            cmd = [sys.executable, "-c", block.code]
        proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=3600)
        assert proc.returncode == 0, (f"README.md:{block.line} ({block.section}) failed:\n"
                                      f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    board = (copy / "board" / "leaderboard.md").read_text(encoding="utf-8")
    for label in ("npo", "zjuklab_merge", "merge:ties"):
        assert label in board, f"{label} missing from the world board:\n{board}"
