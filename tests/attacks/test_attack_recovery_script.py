"""benchmarks/attack_recovery.py: resumes finished steps, and its summary reports each attack's recovery
with its interval (or the reason there is none) from the runs' robust.json files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import attack_recovery  # noqa: E402


def _rec(t, u, a, ci=None, reason=None):
    recovered = None if reason else (a - u) / (t - u)
    return {"target": t, "unlearned": u, "attacked": a, "recovered": recovered, "ci": ci, "reason": reason}


def test_summary_reads_each_attacks_robust_json(tmp_path):
    runs = tmp_path / "runs"
    for method in attack_recovery.METHODS:
        for i, attack in enumerate(attack_recovery.ATTACKS):
            run = runs / f"{method}+{attack}"
            run.mkdir(parents=True)
            recovery = {"forget/all/regurgitation": _rec(1.0, 0.2, 0.2 + 0.08 * i, ci=[0.0, 0.9]),
                        "forget/all/knowledge": _rec(1.0, 0.98, 0.98, reason="no forgetting to recover")}
            (run / "robust.json").write_text(json.dumps({"recovery": recovery, "held_out_records":
                                                         150 if attack.startswith("relearn-forget") else None}))
            (run / "result.json").write_text(json.dumps({"metrics": {}, "timings": {"attack": 1.5 + i}}))
    for attack in attack_recovery.TARGET_ATTACKS:
        run = tmp_path / "target_prompts" / f"target+{attack}"
        run.mkdir(parents=True)
        (run / "robust.json").write_text(json.dumps({"recovery": {"forget/all/regurgitation": _rec(
            1.0, 1.0, 0.4, reason="no forgetting to recover")}}))
    steps = attack_recovery.Steps(tmp_path, ["true"], force=False)
    out = attack_recovery.summarise(tmp_path, steps)
    text = (tmp_path / "summary.md").read_text()
    # the 4-bit quantisation is the second attack: (0.28 - 0.2) / 0.8 = 0.1
    assert "| grad_ascent | quantize-4bit | +0.10 [+0.00, +0.90] | n/a | - | - | 2.5 | (not measured) |" in text
    assert "| zjuklab_merge+relearn-forget0.5 | held-out 150 |" in text
    assert "| target+prompt-qa_format | all | 1.000 / - / 0.400 |" in text
    assert out["methods"]["grad_ascent"]["quantize-4bit"]["attack_seconds"] == 2.5
    assert json.loads((tmp_path / "summary.json").read_text())["methods"]["zjuklab_merge"]["relearn-forget0.5"][
        "held_out_records"] == 150


def test_steps_skip_finished_runs_and_stop_on_a_failure(tmp_path):
    import pytest

    done = tmp_path / "done"
    done.mkdir()
    steps = attack_recovery.Steps(tmp_path, [sys.executable, "-c"], force=False)
    steps.run("finished", ["raise SystemExit(1)"], done)  # skipped: would fail if run
    assert steps.times["finished"] == {"skipped": True}
    steps.run("ok", ["print('hi')"], tmp_path / "missing")
    assert steps.times["ok"]["wall_s"] >= 0 and (tmp_path / "logs" / "ok.log").read_text().startswith("hi")
    with pytest.raises(SystemExit, match="failed"):
        steps.run("bad", ["raise SystemExit(3)"], tmp_path / "missing")


def test_wall_times_survive_a_resumed_measurement(tmp_path):
    target = tmp_path / "out"
    first = attack_recovery.Steps(tmp_path, [sys.executable, "-c"], force=False)
    first.run("step", [f"open({str(target)!r}, 'w').close()"], target)
    measured = first.times["step"]["wall_s"]
    again = attack_recovery.Steps(tmp_path, [sys.executable, "-c"], force=False)
    again.run("step", ["raise SystemExit(1)"], target)  # finished: skipped, its earlier time kept
    assert again.times["step"]["wall_s"] == measured and again.times["step"]["skipped"]


def test_real_mode_uses_the_real_demos_subset_target_and_mmlu_settings(tmp_path):
    import pytest

    demo = tmp_path / "real-demo"
    demo.mkdir()
    with pytest.raises(SystemExit, match="no real_demo.json; run `python benchmarks/real_pipeline.py"):
        attack_recovery.prepare_real(demo)
    (demo / "real_demo.json").write_text(json.dumps({"plan": {
        "assets": "/assets", "mmlu_subjects": "marketing", "mmlu_limit": 40, "max_new_tokens": 64}}))
    with pytest.raises(SystemExit, match="target/config.json: missing; the real demo in .* did not finish"):
        attack_recovery.prepare_real(demo)
    (demo / "target").mkdir()
    (demo / "target" / "config.json").write_text("{}")
    (demo / "data").mkdir()
    setup = attack_recovery.prepare_real(demo)
    assert setup.model == demo / "target"
    args = dict(zip(setup.common[:-1:2], setup.common[1::2]))
    assert args == {"--data": str(demo / "data"), "--mmlu": "/assets/mmlu", "--mmlu-protocol": "lm-eval",
                    "--mmlu-subjects": "marketing", "--mmlu-limit": "40", "--mmlu-format": "cloze",
                    "--max-new-tokens": "64"}
    assert setup.common[-1] == "--no-progress"
    assert set(setup.methods) == {"grad_ascent", "zjuklab_merge"} and setup.attacks == attack_recovery.REAL_ATTACKS
