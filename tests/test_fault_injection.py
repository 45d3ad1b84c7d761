"""Fault injection (issue 14.6): ``evaluate``, ``unlearn`` and ``merge`` killed (SIGKILL) or
interrupted (SIGINT) at each phase -- config written, generation, training, model save, the
evaluation of the new model, each per-sample file and the result written -- into a fresh folder and
over an older finished run. Afterwards the folder must be the old complete run (byte-identical), the
new complete run (its metrics recomputed from its own per-sample files), or nothing, plus at most a
clearly named leftover; then the consumers (score, leaderboard, merge) must refuse a folder whose
files do not belong together.

The cases and their oracle are the audit's (tests/audit/corpus_interrupts.py, framework.py); each
runs in a forked child of this process with library-level fault injection (tests/audit/engine.py).
The default suite runs one case per command (both signals); ``-m slow`` runs all 75.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

AUDIT = Path(__file__).resolve().parent / "audit"
if str(AUDIT) not in sys.path:
    sys.path.insert(0, str(AUDIT))

import corpus_interrupts  # noqa: E402,F401  (registers the cases)
import fixtures  # noqa: E402
import framework as fw  # noqa: E402

ALL = sorted(i for i, c in fw.CASES.items() if c.cls == "interrupted run")
DEFAULT = ["evaluate/kill-sigkill-samples-written-over-old", "unlearn/kill-sigint-model-save-over-old",
           "merge/kill-sigkill-eval-generation-over-old"]


@pytest.fixture(scope="module")
def shared_inputs(tmp_path_factory):
    return fixtures.build(tmp_path_factory.mktemp("fault-fixtures"), skip=fixtures.OPTIONAL)


def _run(case_id: str, fx, folder: Path) -> None:
    case = fw.CASES[case_id]
    folder.mkdir(parents=True)
    ctx = fw.Ctx(case=case, dir=folder, fx=fx, mode="fork")
    verdict, note = fw.finish(ctx, case.fn(ctx))
    assert verdict in (fw.CORRECT, fw.CLEAR), f"{case_id}: {verdict}: {note}"
    if case_id.split("/")[1].startswith("kill-"):
        assert "kill point not reached" not in note, note  # the fault was really injected


def test_the_default_cases_exist():
    # 3 commands x their phases x {SIGKILL, SIGINT} x {fresh, over an old run}, and the consumers
    assert set(DEFAULT) <= set(ALL) and len(ALL) == 75


@pytest.mark.parametrize("case_id", DEFAULT)
def test_interrupted_command_leaves_old_or_new_complete_run(case_id, shared_inputs, tmp_path):
    _run(case_id, shared_inputs, tmp_path / "case")


@pytest.mark.slow
@pytest.mark.parametrize("case_id", [i for i in ALL if i not in DEFAULT])
def test_every_interruption_point(case_id, shared_inputs, tmp_path):
    _run(case_id, shared_inputs, tmp_path / "case")
