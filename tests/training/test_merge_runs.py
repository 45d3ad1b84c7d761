"""Merging finished runs (`unlearnbench merge`), the ZJUKLAB system, and the paper's analyses."""

import json
from pathlib import Path

import pytest

from harness.core.records import read_result

CHEAP = {"lora_r": 4, "lora_alpha": 4, "max_steps": 3, "epochs": 1, "per_device_batch_size": 2,
         "eval_every": 0, "max_length": 64, "learning_rate": 5e-3}


def _cli(*args):
    """Run the CLI in this process (a subprocess would pay torch's import each time)."""
    import contextlib
    import io
    import types

    from harness.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in args])
    return types.SimpleNamespace(returncode=rc, stdout=out.getvalue(), stderr=err.getvalue())


def _run(method, model, data, out, **params):
    from harness.training.runner import run_unlearning

    return run_unlearning(method, model, data, out, params={**CHEAP, **params}, evaluate=False, progress=False)


@pytest.fixture
def two_lora_runs(tmp_path, tiny_model_dir, mini_benchmark):
    a = _run("grad_ascent", tiny_model_dir, mini_benchmark, tmp_path / "a", seed=1,
             save_param_snapshots_at=[0, 1, 3])
    b = _run("grad_diff", tiny_model_dir, mini_benchmark, tmp_path / "b", seed=2)
    return a.run_dir, b.run_dir


def test_merge_cli_writes_an_evaluated_run_with_parents(two_lora_runs, tmp_path):
    a, b = two_lora_runs
    out = tmp_path / "merged"
    proc = _cli("merge", a, b, "--how", "ties", "--density", "0.8", "--weights", "1", "1", "--out", out,
                "--max-new-tokens", "8", "--no-progress", "--no-cache")
    assert proc.returncode == 0, proc.stderr
    res = read_result(out)
    assert res.method.name == "merge"
    assert res.method.params["how"] == "ties" and res.method.params["density"] == 0.8
    assert res.parents == [str(a.resolve()), str(b.resolve())]
    assert res.metrics["mia_auc"] is not None and (out / "samples.jsonl").is_file()
    assert (out / "model" / "adapter_config.json").is_file()  # a LoRA merge stays an adapter: mergeable again
    config = json.loads((out / "config.json").read_text())
    assert config["finetune"] == "lora" and config["base_model"] == json.loads((a / "config.json").read_text())["base_model"]


def test_merge_refuses_runs_of_different_base_models(two_lora_runs, tmp_path):
    a, b = two_lora_runs
    config = json.loads((b / "config.json").read_text())
    config["base_model"] = "/elsewhere/other-model"
    (b / "config.json").write_text(json.dumps(config))
    proc = _cli("merge", a, b, "--out", tmp_path / "m", "--no-eval")
    # The edited config.json no longer belongs to the run: its manifest says so.
    assert proc.returncode == 2 and "cannot merge this run" in proc.stderr and "config.json" in proc.stderr
    assert not (tmp_path / "m").exists()
    (b / "manifest.json").unlink()  # a run made before manifests: the configs are compared
    proc = _cli("merge", a, b, "--out", tmp_path / "m", "--no-eval")
    assert proc.returncode == 2
    assert "different base models" in proc.stderr and "/elsewhere/other-model" in proc.stderr


def test_merge_refuses_unequal_ranks_for_ties_but_not_for_svd(tmp_path, tiny_model_dir, mini_benchmark):
    a = _run("grad_ascent", tiny_model_dir, mini_benchmark, tmp_path / "a", lora_r=4, lora_alpha=4).run_dir
    b = _run("grad_ascent", tiny_model_dir, mini_benchmark, tmp_path / "b", lora_r=8, lora_alpha=8).run_dir
    proc = _cli("merge", a, b, "--how", "ties", "--out", tmp_path / "m", "--no-eval")
    assert proc.returncode == 2 and "needs equal ranks" in proc.stderr and "ties_svd" in proc.stderr
    proc = _cli("merge", a, b, "--how", "ties_svd", "--out", tmp_path / "m2", "--no-eval")
    assert proc.returncode == 0, proc.stderr


def test_full_finetune_runs_merge_on_task_vectors(tmp_path, tiny_model_dir, mini_benchmark):
    from baselines.merging import MergeSettings
    from harness.training.merge import merge_runs

    a = _run("grad_ascent", tiny_model_dir, mini_benchmark, tmp_path / "a", finetune="full").run_dir
    b = _run("grad_diff", tiny_model_dir, mini_benchmark, tmp_path / "b", finetune="full").run_dir
    model, _, result = merge_runs([a, b], MergeSettings(how="dare_ties", density=0.5), tmp_path / "m", evaluate=False)
    assert result is None and type(model).__name__ == "LlamaForCausalLM"
    assert (tmp_path / "m" / "model" / "model.safetensors").is_file()
    lora = _run("grad_ascent", tiny_model_dir, mini_benchmark, tmp_path / "lora").run_dir
    proc = _cli("merge", a, lora, "--out", tmp_path / "mixed", "--no-eval")
    assert proc.returncode == 2 and "cannot merge LoRA runs with full fine-tuned runs" in proc.stderr


def test_analyze_curves_and_angles(two_lora_runs, tmp_path):
    a, _ = two_lora_runs
    proc = _cli("analyze", "angles", a, "--out", tmp_path / "angles")
    assert proc.returncode == 0, proc.stderr
    import pandas as pd

    df = pd.read_csv(tmp_path / "angles" / "angles.csv")
    assert "overall" in set(df["group"])
    overall = df[df["group"] == "overall"].iloc[0]
    assert 0 <= overall["angle_start_mid__start_end"] <= 180
    assert (tmp_path / "angles" / "angles.png").stat().st_size > 1000
    proc = _cli("analyze", "curves", a, "--out", tmp_path / "curves")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "curves" / "curves.png").is_file()
    loss = pd.read_csv(tmp_path / "curves" / "curves_loss.csv")
    assert len(loss) >= 3 and "step" in loss


def test_zjuklab_merge_keeps_and_evaluates_both_parents(tmp_path, tiny_model_dir, mini_benchmark):
    from harness.evaluation.pipeline import EvalSettings
    from harness.training.runner import run_unlearning

    cheap = {k: v for k, v in CHEAP.items()}
    outcome = run_unlearning(
        "zjuklab_merge", tiny_model_dir, mini_benchmark, tmp_path / "zj",
        params={"common_params": cheap}, evaluate=True, progress=False,
        eval_settings=EvalSettings(max_new_tokens=8, progress=False, cache=False),
    )
    res = outcome.result
    assert res.method.name == "zjuklab_merge" and res.method.params["how"] == "ties"
    for which in ("over", "under"):
        parent = read_result(tmp_path / "zj" / "parents" / which)
        assert parent.label == f"zjuklab:{which}"
        assert parent.method.params["preset"] == f"zjuklab_{which}"
        assert (tmp_path / "zj" / "parents" / which / "model" / "adapter_config.json").is_file()
    over = read_result(tmp_path / "zj" / "parents" / "over").method.params
    under = read_result(tmp_path / "zj" / "parents" / "under").method.params
    assert (over["npo_weight"], over["kl_weight"], over["retain_weight"]) == (0.4, 0.4, 0.2)
    assert (under["npo_weight"], under["kl_weight"], under["retain_weight"]) == (0.3, 0.3, 0.4)
    # the parents are ordinary runs: they can be merged again with other settings
    proc = _cli("merge", tmp_path / "zj" / "parents" / "over", tmp_path / "zj" / "parents" / "under",
                "--how", "linear", "--out", tmp_path / "relinear", "--no-eval")
    assert proc.returncode == 0, proc.stderr
