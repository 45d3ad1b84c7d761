"""The audit corpus (tests/audit/) is complete and its oracles judge outcomes as documented.

Running the audit takes minutes (``python tests/audit/run_audit.py``); these checks take a second:
the corpus covers every command and every class of issue 14, and each oracle gives the verdict its
definition says for hand-made outcomes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

AUDIT = Path(__file__).resolve().parent / "audit"
sys.path.insert(0, str(AUDIT))

import engine  # noqa: E402
import framework as fw  # noqa: E402
import run_audit  # noqa: E402


@pytest.fixture(scope="module")
def corpus():
    return run_audit.load_corpus()


def test_corpus_covers_every_command_and_class(corpus):
    assert len(corpus) >= 180
    commands = {c.command for c in corpus.values()}
    for command in ("world", "target", "evaluate", "unlearn", "run", "merge", "score", "leaderboard", "analyze",
                    "demo", "methods", "metrics", "schema"):
        assert command in commands, command
    assert {c.cls for c in corpus.values()} == set(fw.CLASSES)
    assert all(c.doc for c in corpus.values()), [c.id for c in corpus.values() if not c.doc]
    kills = [c for c in corpus.values() if "/kill-" in c.id]
    for command in ("evaluate", "unlearn", "merge"):
        ids = {c.id for c in kills if c.command == command}
        assert any("sigkill" in i and "fresh" in i for i in ids) and any("sigint" in i and "over-old" in i for i in ids)


def _out(rc, stderr="", stdout="", argv=("evaluate",), **kw) -> engine.Outcome:
    return engine.Outcome(argv=list(argv), rc=rc, seconds=1.0, stdout=stdout, stderr=stderr, **kw)


def test_expect_error_verdicts():
    line = "unlearnbench evaluate: error: data/forget.jsonl, line 40: not valid UTF-8\n"
    assert fw.expect_error(_out(2, line), "forget.jsonl", "line 40")[0] == fw.CLEAR
    assert fw.expect_error(_out(2, line.replace("40", "22")), "line 40")[0] == fw.MISLEADING
    assert fw.expect_error(_out(1, "Traceback (most recent call last):\n  ...\nValueError: x\n"))[0] == fw.TRACEBACK
    assert fw.expect_error(_out(0, stdout="wrote run/result.json"))[0] == fw.WRONG
    assert fw.expect_error(_out(0), success_check=lambda: None)[0] == fw.CORRECT
    assert fw.expect_error(_out(1, "error: something\n"))[0] == fw.MISLEADING  # status other than 2
    assert fw.expect_error(_out(None, timed_out=True))[0] == fw.TRACEBACK
    assert fw.expect_error(_out(97, work_started=True))[0] == fw.MISLEADING
    # Under -v a traceback is what the user asked for.
    verbose = _out(2, "Traceback (most recent call last):\nX\n" + line, argv=("-v", "evaluate"))
    assert fw.expect_error(verbose, "line 40")[0] == fw.CLEAR


def test_expect_ok_verdicts():
    assert fw.expect_ok(_out(0), lambda: None)[0] == fw.CORRECT
    assert fw.expect_ok(_out(0), lambda: "numbers differ")[0] == fw.WRONG
    refused = _out(2, "unlearnbench score: error: x\n")
    assert fw.expect_ok(refused)[0] == fw.MISLEADING
    assert fw.expect_ok(refused, refusal_ok=True)[0] == fw.CLEAR


def _tiny_run(folder: Path, label: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"label": label}))
    (folder / "result.json").write_text(json.dumps({"label": label, "metrics": {}}))
    (folder / "samples.jsonl").write_text("")


def _ctx(tmp_path) -> fw.Ctx:
    return fw.Ctx(case=fw.Case("x", "evaluate", "interrupted run", lambda c: ("", "")), dir=tmp_path, fx=None)


def test_transaction_oracle(tmp_path):
    run = tmp_path / "run"
    _tiny_run(run, "OLD")
    before = engine.tree_hashes(run)
    killed = _out(-9, injected="after_write samples.jsonl")
    # Untouched old run, plus a clearly named leftover of the new one: correct.
    (tmp_path / ".run.partial-123-456").mkdir()
    assert fw.expect_transaction(_ctx(tmp_path), killed, run, before, "NEW")[0] == fw.CORRECT
    # New config beside the old result: a mixture that would be ranked.
    (run / "config.json").write_text(json.dumps({"label": "NEW"}))
    assert fw.expect_transaction(_ctx(tmp_path), killed, run, before, "NEW")[0] == fw.WRONG
    # Old result deleted, nothing complete in its place.
    (run / "result.json").unlink()
    assert fw.expect_transaction(_ctx(tmp_path), killed, run, before, "NEW")[0] == fw.LOST
    # A fresh folder: nothing left under the run's name is correct; a partial folder is not.
    fresh = tmp_path / "fresh"
    assert fw.expect_transaction(_ctx(tmp_path), killed, fresh, {}, "NEW")[0] == fw.CORRECT
    fresh.mkdir()
    (fresh / "config.json").write_text("{}")
    assert fw.expect_transaction(_ctx(tmp_path), killed, fresh, {}, "NEW")[0] == fw.MISLEADING


def test_leftover_names_match_the_transactions_own():
    from harness.core.transaction import LEFTOVER

    for name in (".run.partial-123-1733210000000000000", ".run.old-77-1"):
        assert LEFTOVER.match(name) and engine.is_leftover(name)
    assert not engine.is_leftover("run") and not engine.is_leftover("samples.jsonl")


def test_protected_files_changed_means_data_lost(tmp_path):
    c = _ctx(tmp_path)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    c.protect(model)
    (model / "run.json").write_text("{}")  # added beside: pollution, judged by the case itself
    assert fw.finish(c, (fw.WRONG, "accepted"))[0] == fw.WRONG
    (model / "config.json").write_text('{"command": "evaluate"}')
    assert fw.finish(c, (fw.CLEAR, "refused"))[0] == fw.LOST
