"""Interrupted runs: evaluate, unlearn and merge killed (SIGKILL) or interrupted (SIGINT) at each
phase, into a fresh folder and over an older finished run. Afterwards the folder must be the old
complete run, the new complete run, or nothing -- plus at most clearly named leftovers. Then the
consumers (score, leaderboard, merge) must refuse whatever is left that does not belong together."""

from __future__ import annotations

import signal

import engine
import framework as fw
from fixtures import FAST_EVAL, FAST_TRAIN
from framework import case, expect_error, expect_transaction

SIGNALS = (("sigkill", signal.SIGKILL), ("sigint", signal.SIGINT))

EVALUATE_POINTS = {
    "config-written": ("after_write", "config.json"),
    "generation": ("forward", 1),
    "samples-written": ("after_write", "samples.jsonl"),
    "mia-written": ("after_write", "mia.jsonl"),
    "result-written": ("after_write", "result.json"),
}
UNLEARN_POINTS = {
    "config-written": ("after_write", "config.json"),
    "training": ("step", 1),
    "model-save": ("save", 1),
    "eval-generation": ("forward_after_save", 1),
    "samples-written": ("after_write", "samples.jsonl"),
    "mia-written": ("after_write", "mia.jsonl"),
    "result-written": ("after_write", "result.json"),
}
MERGE_POINTS = {
    "model-save": ("save", 1),
    "eval-generation": ("forward_after_save", 1),
    "config-written": ("after_write", "config.json"),
    "samples-written": ("after_write", "samples.jsonl"),
    "mia-written": ("after_write", "mia.jsonl"),
    "result-written": ("after_write", "result.json"),
}


def _evaluate_argv(c, out):
    return ["evaluate", "--model", c.fx.model, "--data", c.fx.bench, "--out", out, "--label", "NEW", *FAST_EVAL]


def _unlearn_argv(c, out):
    return ["unlearn", "--method", "grad_ascent", "--model", c.fx.model, "--data", c.fx.bench, "--out", out,
            "--label", "NEW", "--force", *FAST_EVAL, *FAST_TRAIN]


def _merge_argv(c, out):
    return ["merge", c.fx.lora_a, c.fx.lora_b, "--how", "ties", "--out", out, "--label", "NEW", *FAST_EVAL]


COMMANDS = {
    "evaluate": (_evaluate_argv, EVALUATE_POINTS, "eval_run", False),
    "unlearn": (_unlearn_argv, UNLEARN_POINTS, "lora_a", True),
    "merge": (_merge_argv, MERGE_POINTS, "merge_run", True),
}


def _make(command: str, point: str, sig_name: str, sig: int, over_old: bool) -> None:
    argv_fn, points, old_fixture, need_model = COMMANDS[command]
    where = "over-old" if over_old else "fresh"
    cid = f"{command}/kill-{sig_name}-{point}-{where}"

    @case(cid, command, "interrupted run", fast=(sig_name == "sigkill" and point == "samples-written"))
    def _(c):
        target = c.copy(old_fixture, "run") if over_old else c.path("run")
        before = engine.tree_hashes(target)
        out = c.cli(*argv_fn(c, target), kill=points[point], sig=sig)
        rerun = (lambda: c.cli(*argv_fn(c, target))) if not over_old else None
        return expect_transaction(c, out, target, before, "NEW", rerun=rerun, need_model=need_model)

    fw.CASES[cid].doc = (f"{sig_name.upper()} at '{point}' of `{command}` into "
                         f"{'a folder holding an older finished run' if over_old else 'a fresh folder'}.")


for _command, (_, _points, _, _) in COMMANDS.items():
    for _point in _points:
        for _sig_name, _sig in SIGNALS:
            for _over_old in (False, True):
                _make(_command, _point, _sig_name, _sig, _over_old)


# -- what a consumer does with an interrupted folder -----------------------------------------------------
def _mixed_eval_run(c):
    """A finished evaluation rerun killed after its new samples.jsonl landed (old result.json kept)."""
    r = c.copy("eval_run", "run")
    c.cli("evaluate", "--model", c.fx.model2, "--data", c.fx.bench, "--out", r, "--label", "OLD", *FAST_EVAL,
          kill=("after_write", "samples.jsonl"))
    return r


@case("score/after-interrupted-rerun", "score", "interrupted run", fast=True)
def _(c):
    """score on a folder left by an interrupted rerun: must refuse (files do not belong together)."""
    r = _mixed_eval_run(c)
    if fw.run_problem(r) is None:
        return fw.CORRECT, "the interrupted rerun left a consistent folder"
    out = c.cli("score", r)
    return expect_error(out, ("manifest", "belong", "match", "partial", "interrupted"),
                        why="scores a mixture without a word")


@case("leaderboard/after-interrupted-rerun", "leaderboard", "interrupted run")
def _(c):
    """leaderboard over a folder left by an interrupted rerun."""
    r = _mixed_eval_run(c)
    if fw.run_problem(r) is None:
        return fw.CORRECT, "the interrupted rerun left a consistent folder"
    out = c.cli("-q", "leaderboard", c.dir, "--board", c.fx.root / "board.toml", "--out", c.path("board"),
                "--bootstrap", "50", "--format", "csv")
    ranked = (c.path("board") / "leaderboard.csv").exists() and "OLD" in (c.path("board") / "leaderboard.csv").read_text()
    return expect_error(out, "run", success_check=lambda: "mixed run ranked" if ranked else None)


@case("merge/after-interrupted-parent", "merge", "interrupted run")
def _(c):
    """merge with a parent whose rerun was killed while saving its model."""
    a = c.copy("lora_a")
    c.cli(*_unlearn_argv(c, a), kill=("save", 1))
    out = c.cli("merge", a, c.fx.lora_b, "--out", c.path("m"), *FAST_EVAL)
    return expect_error(out, "lora_a")
