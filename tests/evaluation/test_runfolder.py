"""Run folders written through the transaction and the manifest (issue 14.1): evaluate, unlearn and
merge write all of a run or none of it, the records name the final folder, "finished, skip" means the
manifest matches by content, and --out may not be an input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.core.manifest import read_manifest, verify

CHEAP = ["--set", "epochs=1", "max_steps=2", "eval_every=0", "lora_r=4", "lora_alpha=4", "max_length=64"]
FAST_EVAL = ["--max-new-tokens", "4", "--no-progress", "--no-cache"]


def _cli(*args):
    import contextlib
    import io
    import types

    from harness.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in args])
    return types.SimpleNamespace(returncode=rc, stdout=out.getvalue(), stderr=err.getvalue())


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _no_staging_names(folder: Path) -> None:
    for p in folder.rglob("*.json*"):
        assert ".partial-" not in p.read_text(encoding="utf-8"), p


def _evaluate(model, data, out, label="A"):
    return _cli("evaluate", "--model", model, "--data", data, "--out", out, "--label", label, *FAST_EVAL)


def test_evaluate_writes_a_complete_run_with_a_manifest_naming_the_final_folder(tmp_path, tiny_model_dir,
                                                                                mini_benchmark):
    out = tmp_path / "runs" / "ev"
    proc = _evaluate(tiny_model_dir, mini_benchmark, out)
    assert proc.returncode == 0, proc.stderr
    assert verify(out) is None
    manifest = read_manifest(out)
    assert manifest["command"] == "evaluate" and {"model", "benchmark"} <= set(manifest["inputs"])
    assert json.loads((out / "result.json").read_text())["run_id"] == "ev"
    _no_staging_names(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["ev"]  # no leftover


def test_an_interrupted_evaluate_leaves_the_old_run_untouched(tmp_path, tiny_model_dir, mini_benchmark, monkeypatch):
    out = tmp_path / "ev"
    assert _evaluate(tiny_model_dir, mini_benchmark, out, label="OLD").returncode == 0
    before = _tree(out)
    from harness.core import records

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(records, "write_result", interrupted)
    import harness.evaluation.pipeline as pipeline

    monkeypatch.setattr(pipeline, "write_result", interrupted)
    assert _evaluate(tiny_model_dir, mini_benchmark, out, label="NEW").returncode == 130  # the CLI's SIGINT status
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("command", ["evaluate", "unlearn"])
def test_out_equal_to_the_model_is_refused_before_work(tmp_path, tiny_model_dir, mini_benchmark, command):
    before = _tree(tiny_model_dir)
    if command == "evaluate":
        proc = _evaluate(tiny_model_dir, mini_benchmark, tiny_model_dir)
    else:
        proc = _cli("unlearn", "--method", "grad_ascent", "--model", tiny_model_dir, "--data", mini_benchmark,
                    "--out", tiny_model_dir, "--no-eval", *CHEAP)
    assert proc.returncode == 2 and "--out" in proc.stderr and "model" in proc.stderr
    assert _tree(tiny_model_dir) == before


def test_unlearn_skips_only_a_run_whose_manifest_matches(tmp_path, tiny_model_dir, mini_benchmark, caplog):
    out = tmp_path / "ga"
    argv = ["unlearn", "--method", "grad_ascent", "--model", tiny_model_dir, "--data", mini_benchmark,
            "--out", out, "--no-eval", *CHEAP]
    assert _cli(*argv).returncode == 0
    assert verify(out) is None and read_manifest(out)["command"] == "unlearn"
    first = (out / "manifest.json").read_bytes()
    caplog.clear()
    with caplog.at_level("INFO"):
        assert _cli(*argv).returncode == 0
    assert "already holds this finished run; skipped" in caplog.text
    assert (out / "manifest.json").read_bytes() == first

    # The forget split changed by content (same path): the run is made again, not skipped.
    forget = mini_benchmark / "forget.jsonl"
    rows = [json.loads(line) for line in forget.read_text().splitlines()]
    rows[0]["output"] = " She painted the sea instead."
    forget.write_text("".join(json.dumps(r) + "\n" for r in rows))
    caplog.clear()
    with caplog.at_level("INFO"):
        assert _cli(*argv).returncode == 0
    assert "skipped" not in caplog.text and "other inputs" in caplog.text
    assert (out / "manifest.json").read_bytes() != first and verify(out) is None

    # Other settings into the same folder: refused unless --force.
    proc = _cli(*argv, "--set", "learning_rate=0.001")
    assert proc.returncode == 2 and "different settings" in proc.stderr and "--force" in proc.stderr


def test_unlearn_rerun_when_the_saved_model_lost_its_weights(tmp_path, tiny_model_dir, mini_benchmark, caplog):
    out = tmp_path / "ga"
    argv = ["unlearn", "--method", "grad_ascent", "--model", tiny_model_dir, "--data", mini_benchmark,
            "--out", out, "--no-eval", *CHEAP]
    assert _cli(*argv).returncode == 0
    for weights in (out / "model").glob("*.safetensors"):
        weights.unlink()
    caplog.clear()
    with caplog.at_level("INFO"):
        assert _cli(*argv).returncode == 0
    assert "not a complete run" in caplog.text and verify(out) is None
    assert list((out / "model").glob("*.safetensors"))


def test_merge_writes_a_manifest_and_refuses_out_equal_to_a_parent(tmp_path, tiny_model_dir, mini_benchmark):
    runs = []
    for name, seed in (("a", 1), ("b", 2)):
        proc = _cli("unlearn", "--method", "grad_ascent", "--model", tiny_model_dir, "--data", mini_benchmark,
                    "--out", tmp_path / name, "--no-eval", *CHEAP, f"seed={seed}")
        assert proc.returncode == 0, proc.stderr
        runs.append(tmp_path / name)
    before = _tree(runs[0])
    proc = _cli("merge", *runs, "--out", runs[0], "--no-eval")
    assert proc.returncode == 2 and "--out" in proc.stderr and "parent run" in proc.stderr
    assert _tree(runs[0]) == before
    proc = _cli("merge", *runs, "--out", tmp_path / "m", *FAST_EVAL)
    assert proc.returncode == 0, proc.stderr
    assert verify(tmp_path / "m") is None and read_manifest(tmp_path / "m")["command"] == "merge"
    _no_staging_names(tmp_path / "m")


# -- consumers verify the manifest ----------------------------------------------------------------
@pytest.fixture
def evaluated(tmp_path, tiny_model_dir, mini_benchmark):
    out = tmp_path / "ev"
    proc = _evaluate(tiny_model_dir, mini_benchmark, out)
    assert proc.returncode == 0, proc.stderr
    return out


def test_score_write_updates_the_record_and_keeps_the_manifest_true(evaluated):
    before = json.loads((evaluated / "result.json").read_text())
    proc = _cli("-q", "score", evaluated, "--mmlu", "0.5", "--write")
    assert proc.returncode == 0, proc.stderr
    after = json.loads((evaluated / "result.json").read_text())
    assert after["metrics"]["mmlu"] == 0.5 and after["metrics"]["task_aggregate"] == before["metrics"]["task_aggregate"]
    assert verify(evaluated) is None and read_manifest(evaluated)["command"] == "evaluate"
    assert not [p for p in evaluated.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("damage", ["empty", "truncated", "mia-deleted"])
def test_score_write_refuses_files_that_are_not_the_runs_own(evaluated, damage):
    samples, mia = evaluated / "samples.jsonl", evaluated / "mia.jsonl"
    if damage == "empty":
        samples.write_text("")
    elif damage == "truncated":
        samples.write_text("".join(samples.read_text().splitlines(keepends=True)[:5]))
    else:
        mia.unlink()
    record = (evaluated / "result.json").read_bytes()
    proc = _cli("-q", "score", evaluated, "--write")
    assert proc.returncode == 2 and "do not belong together" in proc.stderr
    assert ("mia.jsonl" if damage == "mia-deleted" else "samples.jsonl") in proc.stderr
    assert (evaluated / "result.json").read_bytes() == record


def test_score_write_never_replaces_a_number_by_null_in_a_run_without_manifest(evaluated):
    (evaluated / "manifest.json").unlink()
    (evaluated / "mia.jsonl").unlink()
    record = (evaluated / "result.json").read_bytes()
    proc = _cli("-q", "score", evaluated, "--write")
    assert proc.returncode == 2 and "by null" in proc.stderr and "mia_" in proc.stderr
    assert (evaluated / "result.json").read_bytes() == record


def test_the_leaderboard_refuses_a_run_whose_record_was_edited(evaluated):
    from harness.core.records import read_result
    from leaderboards.collect import manifest_problem

    assert manifest_problem(evaluated, read_result(evaluated)) is None
    text = (evaluated / "result.json").read_text()
    data = json.loads(text)
    data["label"] = "BETTER"
    (evaluated / "result.json").write_text(json.dumps(data))
    problem = manifest_problem(evaluated, read_result(evaluated))
    assert problem is not None and "result.json" in problem and "do not belong together" in problem


def test_zjuklab_parent_records_name_the_final_folder(tmp_path, tiny_model_dir, mini_benchmark):
    """The parents are trained and evaluated inside the run's staging folder; their records (and the
    merge's) must name the folder the run becomes."""
    from baselines.zjuklab import ZJUKLABMerge

    sets = [f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in ZJUKLABMerge.conformance_params.items()]
    out = tmp_path / "zj"
    proc = _cli("unlearn", "--method", "zjuklab_merge", "--model", tiny_model_dir, "--data", mini_benchmark,
                "--out", out, *FAST_EVAL, "--set", *sets)
    assert proc.returncode == 0, proc.stderr
    assert verify(out) is None
    _no_staging_names(out)
    over = json.loads((out / "parents" / "over" / "result.json").read_text())
    assert over["run_id"] == "over" and over["model"]["id"] == str(out.resolve() / "parents" / "over" / "model")
