"""The audit's shared inputs, built once per audit run (about a minute on 2 cores).

Everything a case needs is copied from here into the case's own folder before the case touches it,
so no case can damage another's inputs. Built through the command line itself (``world``,
``evaluate``, ``unlearn``, ``merge``), except the tiny models, which come from the test suite's
recipe (tests/conftest.py: a byte-level BPE tokenizer and a 2-layer, 64-wide Llama).
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

import engine

TESTS = engine.REPO / "tests"

#: Evaluation options that keep every case to seconds: 4 new tokens, no cache, no progress bars.
FAST_EVAL = ["--max-new-tokens", "4", "--no-progress", "--no-cache"]
#: Unlearning settings for seconds-long runs: LoRA rank 4, two optimiser steps, no training curves.
FAST_TRAIN = ["--set", "epochs=1", "max_steps=2", "eval_every=0", "lora_r=4", "lora_alpha=8"]

UTILITY_SUBJECTS = ("geography", "rivers")


def lib(*names: str):
    """The first importable module among ``names`` (the harness's modules are moving)."""
    errors = []
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
    raise ImportError("; ".join(errors))


def conftest():
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    return importlib.import_module("conftest")


@dataclass
class Fixtures:
    root: Path

    def __getattr__(self, name: str) -> Path:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.root / name


def _build_models(root: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    tiny = lib("harness.synthetic.tiny", "harness.tiny")
    cf = conftest()
    tok = tiny.train_bpe_tokenizer(cf.all_mini_texts() * 3, vocab_size=400)
    for name, seed in (("model", 0), ("model2", 1)):
        m = tiny.tiny_llama(tok, hidden_size=64, num_layers=2, seed=seed)
        m.save_pretrained(root / name)
        tok.save_pretrained(root / name)
    # A model whose every weight is NaN (a diverged fine-tune saved anyway).
    engine.copytree(root / "model", root / "model_nan")
    weights = root / "model_nan" / "model.safetensors"
    state = load_file(str(weights))
    save_file({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()},
              str(weights), metadata={"format": "pt"})
    # A model with a short context (64 positions): prompts of the mini benchmark fit, long ones do not.
    m = tiny.tiny_llama(tok, hidden_size=64, num_layers=2, seed=0, max_positions=64)
    m.save_pretrained(root / "model_ctx64")
    tok.save_pretrained(root / "model_ctx64")


def _utility(folder: Path) -> None:
    rows = {
        "geography": [("Which river runs through Orlen?", "Oss", "Varo", "Nile", "Elm", "A")] * 5,
        "rivers": [("Which town floods each spring?", "Madera", "Orlen", "Oss", "Varo", "C")] * 5,
    }
    import csv

    for subject in UTILITY_SUBJECTS:
        for split, n in (("dev", 5), ("test", 3)):
            path = folder / split / f"{subject}_{split}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", newline="") as fh:
                csv.writer(fh).writerows(rows[subject][:n])


BOARD = """name = "audit"
title = "Audit board"
score = "task_aggregate"
rank_decimals = 4
decimals = 4
tie_rule = "competition"
components = ["task_aggregate", "mia_score"]

[reference]
method = "__no_reference__"

[[columns]]
metric = "task_aggregate"
header = "Task aggregate"

[[columns]]
metric = "mia_score"
header = "MIA score"
"""


def build(root: Path, mode: str = "fork") -> Fixtures:
    """Build every shared input under ``root`` (rebuilt from scratch each audit run)."""
    root.mkdir(parents=True, exist_ok=True)
    log = root / "build.log"
    cf = conftest()
    cf.make_mini_benchmark(root / "bench")
    _utility(root / "utility")
    (root / "board.toml").write_text(BOARD)
    engine.call_forked(_build_models, root, log=log)

    def cli(name: str, *argv: str) -> None:
        inv = engine.Invocation(argv=[str(a) for a in argv], cwd=str(root), stdout=str(root / f"{name}.out"),
                                stderr=str(root / f"{name}.err"), timeout=600)
        out = engine.run(inv, mode=mode)
        if out.rc != 0:
            raise RuntimeError(f"fixture {name} failed (rc {out.rc}): {out.stderr[-2000:]}")

    bench, model = root / "bench", root / "model"
    cli("eval_run", "evaluate", "--model", model, "--data", bench, "--out", root / "eval_run", "--label", "OLD",
        "--max-new-tokens", "6", "--no-progress", "--no-cache")
    cli("lora_a", "unlearn", "--method", "grad_ascent", "--model", model, "--data", bench, "--out", root / "lora_a",
        "--label", "A", *FAST_EVAL, *FAST_TRAIN)
    cli("lora_b", "unlearn", "--method", "grad_diff", "--model", model, "--data", bench, "--out", root / "lora_b",
        "--label", "B", *FAST_EVAL, *FAST_TRAIN)
    cli("full_run", "unlearn", "--method", "grad_ascent", "--model", model, "--data", bench, "--out",
        root / "full_run", "--label", "FULL", "--no-eval", "--no-progress", "--set", "epochs=1", "max_steps=1",
        "eval_every=0", "finetune=full")
    cli("merge_run", "merge", root / "lora_a", root / "lora_b", "--how", "ties", "--out", root / "merge_run",
        "--label", "OLD", *FAST_EVAL)
    cli("world", "world", "--out", root / "world", "--seed", "3")
    return Fixtures(root)
