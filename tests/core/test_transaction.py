"""Run folders as transactions (harness.core.transaction): all of a run or none of it, even when
the writer is killed with SIGKILL at any point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.core import transaction as tx
from harness.core.transaction import RunFolderError, RunTransaction, check_output_path

REPO = Path(__file__).resolve().parents[2]


def _run(folder: Path, label: str, n: int = 3) -> Path:
    """A small complete run folder: config, result, samples (n rows), a manifest marker."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"label": label}))
    (folder / "result.json").write_text(json.dumps({"label": label}))
    (folder / "samples.jsonl").write_text("".join(json.dumps({"i": i, "label": label}) + "\n" for i in range(n)))
    (folder / "manifest.json").write_text(json.dumps({"label": label}))
    return folder


def _labels(folder: Path) -> set[str]:
    """Every label found in the folder's files (one label = the files belong to one run)."""
    out = set()
    for name in ("config.json", "result.json", "manifest.json"):
        if (folder / name).exists():
            out.add(json.loads((folder / name).read_text())["label"])
    if (folder / "samples.jsonl").exists():
        out |= {json.loads(l)["label"] for l in (folder / "samples.jsonl").read_text().splitlines() if l}
    return out


def _siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name != folder.name)


# -- commit and abort --------------------------------------------------------------------------
def test_fresh_run_appears_only_at_commit(tmp_path):
    final = tmp_path / "run"
    with RunTransaction(final) as t:
        assert t.path.name.startswith(".run.partial-") and t.path.is_dir()
        _run(t.path, "new")
        assert not final.exists()  # nothing under the run's name until it is complete
    assert _labels(final) == {"new"}
    assert _siblings(final) == []


def test_replacing_an_old_run_leaves_no_old_file(tmp_path):
    final = _run(tmp_path / "run", "old", n=5)
    (final / "mia.jsonl").write_text('{"old": 1}\n')  # the new run has no MIA file
    with RunTransaction(final) as t:
        _run(t.path, "new", n=2)
        assert _labels(final) == {"old"}
    assert _labels(final) == {"new"}
    assert not (final / "mia.jsonl").exists()
    assert _siblings(final) == []


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt(), OSError(28, "No space left on device")])
def test_failure_in_the_block_keeps_the_old_run(tmp_path, error):
    final = _run(tmp_path / "run", "old")
    before = {p.name: p.read_bytes() for p in final.iterdir()}
    with pytest.raises(type(error)):
        with RunTransaction(final) as t:
            _run(t.path, "new")
            raise error
    assert {p.name: p.read_bytes() for p in final.iterdir()} == before
    assert _siblings(final) == []  # the staging folder was removed


def test_failure_into_a_fresh_folder_leaves_nothing(tmp_path):
    final = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with RunTransaction(final) as t:
            _run(t.path, "new")
            raise RuntimeError("x")
    assert not final.exists() and list(tmp_path.iterdir()) == []


def test_manifest_finalizer_runs_last_before_the_swap(tmp_path):
    final = tmp_path / "run"
    seen = []
    with RunTransaction(final) as t:
        (t.path / "result.json").write_text("{}")
        t.on_commit(lambda folder: seen.append(sorted(p.name for p in folder.iterdir())))
    assert seen == [["result.json"]]


def test_update_from_base_is_a_hard_linked_copy_swapped_in(tmp_path):
    final = _run(tmp_path / "run", "old")
    with RunTransaction(final, base=final) as t:
        assert os.path.samefile(t.path / "samples.jsonl", final / "samples.jsonl")  # no data copied
        (t.path / "result.json.tmp").write_text(json.dumps({"label": "old", "rescored": True}))
        os.replace(t.path / "result.json.tmp", t.path / "result.json")
        assert "rescored" not in (final / "result.json").read_text()  # the live run is untouched
    assert json.loads((final / "result.json").read_text())["rescored"] is True
    assert _labels(final) == {"old"}


def test_swap_without_renameat2_uses_an_aside_rename(tmp_path, monkeypatch):
    monkeypatch.setattr(tx, "_exchange", lambda a, b: False)
    final = _run(tmp_path / "run", "old")
    with RunTransaction(final) as t:
        _run(t.path, "new")
    assert _labels(final) == {"new"}
    assert _siblings(final) == []


def test_exchange_is_used_on_linux(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    if not tx._exchange(a, b):
        pytest.skip("renameat2(RENAME_EXCHANGE) not available here")
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"


# -- leftovers ---------------------------------------------------------------------------------
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_dead_writers_are_removed_by_the_next_transaction(tmp_path):
    final = _run(tmp_path / "run", "old")
    pid = _dead_pid()
    stale = _run(tmp_path / f".run.partial-{pid}-123", "half")
    with RunTransaction(final) as t:
        assert not stale.exists()
        _run(t.path, "new")
    assert _siblings(final) == []


def test_leftovers_of_live_writers_are_left_alone(tmp_path):
    final = tmp_path / "run"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live = _run(tmp_path / f".run.partial-{sleeper.pid}-123", "other")
        with RunTransaction(final) as t:
            _run(t.path, "new")
        assert live.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_recover_rolls_forward_a_complete_staged_run(tmp_path):
    """A crash between 'old run aside' and 'new run in': the new run is complete (manifest) -> in."""
    final = tmp_path / "run"
    pid = _dead_pid()
    _run(tmp_path / f".run.old-{pid}-1", "old")
    _run(tmp_path / f".run.partial-{pid}-1", "new")
    done = tx.recover(final)
    assert _labels(final) == {"new"} and _siblings(final) == [], done


def test_recover_restores_the_old_run_when_nothing_complete_was_staged(tmp_path):
    final = tmp_path / "run"
    pid = _dead_pid()
    _run(tmp_path / f".run.old-{pid}-1", "old")
    half = tmp_path / f".run.partial-{pid}-1"
    half.mkdir()
    (half / "samples.jsonl").write_text("{}\n")  # no manifest: never finished
    tx.recover(final)
    assert _labels(final) == {"old"} and _siblings(final) == []


# -- SIGKILL at any point --------------------------------------------------------------------------
CHILD = textwrap.dedent("""
    import json, os, signal, sys, time
    sys.path.insert(0, {repo!r})
    from harness.core import transaction as tx

    final, point, fallback = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    if fallback:
        tx._exchange = lambda a, b: False

    def die(where):
        if point == where:
            os.kill(os.getpid(), signal.SIGKILL)

    real_rename = os.rename
    def rename(a, b):
        real_rename(a, b)
        die("after-rename-" + os.path.basename(os.fspath(b)).split("-")[0])
    os.rename = rename

    with tx.RunTransaction(final) as t:
        die("entered")
        for name in ("config.json", "samples.jsonl", "result.json"):
            with open(t.path / name, "w") as fh:
                fh.write(json.dumps({{"label": "new"}}))
                die("mid-" + name)
            die("after-" + name)
        (t.path / "manifest.json").write_text(json.dumps({{"label": "new"}}))
        die("before-commit")
    die("after-commit")
""")

POINTS = ["entered", "mid-config.json", "after-samples.jsonl", "mid-result.json", "before-commit",
          "after-rename-.run.old", "after-commit"]


@pytest.mark.parametrize("fallback", [False, True], ids=["exchange", "aside-rename"])
@pytest.mark.parametrize("old", [False, True], ids=["fresh", "over-old"])
@pytest.mark.parametrize("point", POINTS)
def test_sigkill_leaves_the_old_run_or_the_new_one(tmp_path, point, old, fallback):
    final = tmp_path / "run"
    if old:
        _run(final, "old")
    before = {p.name: p.read_bytes() for p in final.iterdir()} if old else None
    child = subprocess.run([sys.executable, "-c", CHILD.format(repo=str(REPO)), str(final), point,
                            "1" if fallback else "0"], capture_output=True, text=True, timeout=60)
    killed = child.returncode == -signal.SIGKILL
    assert killed or point in ("after-rename-.run.old",) or child.returncode == 0, child.stderr
    # Before anyone cleans up: a reader sees the old run, the new one, or (fresh) nothing ...
    if final.exists():
        labels = _labels(final)
        assert labels in ({"old"}, {"new"}), labels
        if labels == {"old"}:
            assert {p.name: p.read_bytes() for p in final.iterdir()} == before
    else:
        # ... except in the window of the non-atomic fallback, where the old run is aside.
        assert not old or (fallback and point == "after-rename-.run.old"), _siblings(final)
    for name in _siblings(final):
        assert tx.LEFTOVER.match(name), name  # every leftover is clearly named
    # The next transaction (or recover) finishes the job: a complete run, no leftovers.
    tx.recover(final)
    assert _siblings(final) == []
    if final.exists():
        assert _labels(final) in ({"old"}, {"new"})
    if old:
        assert final.exists()


# -- the output path ----------------------------------------------------------------------------
def test_output_path_checks(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    data = tmp_path / "data"
    data.mkdir()
    note = tmp_path / "notes.txt"
    note.write_text("x")
    inputs = {"model": model, "benchmark": data, "parent run": [None, tmp_path / "missing"]}

    assert check_output_path(tmp_path / "runs" / "x", inputs) == (tmp_path / "runs" / "x").resolve()
    cases = {
        note: "is an existing file",
        note / "run": "is a file, not a folder",
        model: "is the model",
        model / "run": "is inside the model",
        tmp_path: "contains the model",
        data: "is the benchmark",
        data / "sub" / "run": "is inside the benchmark",
    }
    for out, expected in cases.items():
        with pytest.raises(RunFolderError, match=expected):
            check_output_path(out, inputs)
    link = tmp_path / "link"
    link.symlink_to(model, target_is_directory=True)
    with pytest.raises(RunFolderError, match="is the model"):
        check_output_path(link, inputs)


def test_transaction_refuses_to_replace_a_folder_that_is_not_a_run(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "thesis.tex").write_text("x")
    with pytest.raises(RunFolderError, match="not a run folder"):
        with RunTransaction(docs):
            pass
    assert (docs / "thesis.tex").read_text() == "x"
    empty = tmp_path / "empty"
    empty.mkdir()
    with RunTransaction(empty) as t:
        (t.path / "result.json").write_text("{}")
    assert (empty / "result.json").exists()


def test_transaction_checks_inputs_before_anything_is_created(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    with pytest.raises(RunFolderError, match="is inside the model"):
        RunTransaction(model / "run", inputs={"model": model})
    assert list(model.iterdir()) == []
