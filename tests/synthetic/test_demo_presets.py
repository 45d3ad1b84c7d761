"""The demo's presets, the no-op check of unlearning runs, and RMU's layer handling.

The slow tests run on the embedded target itself (minutes): RMU with its demo preset does something
there, and with WMDP's retain weight it is flagged as a no-op.
"""

from __future__ import annotations

import json
import logging

import pytest

torch = pytest.importorskip("torch")


def _cli(*argv):
    from harness.cli import main

    return main(list(argv))


# ------------------------------------------------------------------------------------------------
# presets
def test_every_builtin_method_has_a_demo_preset_and_keeps_its_papers_defaults():
    from baselines.presets import DEMO_TRAINING
    from harness.synthetic.demo import builtin_methods, method_params
    from harness.core.registry import METHODS
    from harness.training.runner import build_method, resolve_params

    names = builtin_methods()
    assert {"grad_ascent", "npo", "rmu", "zjuklab_merge"} <= set(names)
    for name in names:
        assert "demo" in METHODS.get(name).presets, name
        assert method_params(name) == {"preset": "demo"}  # the demo runs exactly the preset
        params = resolve_params(name, {"preset": "demo"})
        build_method(name, params)
        assert params["preset"] == "demo"
        recipe = params["common_params"] if name == "zjuklab_merge" else params
        for key, value in DEMO_TRAINING.items():
            if key != "per_device_batch_size" or name != "zjuklab_merge":
                assert recipe[key] == value, (name, key)
    # the defaults are still the papers' (the preset applies only when asked for)
    npo = resolve_params("npo")
    assert (npo["learning_rate"], npo["epochs"], npo["lora_r"], npo["mask_prompt"]) == (1e-4, 5, 32, True)
    rmu = resolve_params("rmu")
    assert (rmu["steering_coeff"], rmu["retain_weight"], rmu["layer"]) == (6.5, 100.0, None)


def test_zjuklab_demo_parents_keep_the_papers_over_under_recipe():
    from harness.training.runner import build_method, resolve_params

    merge = build_method("zjuklab_merge", resolve_params("zjuklab_merge", {"preset": "demo"}))
    over, under = merge.parent_params("over"), merge.parent_params("under")
    assert (over["npo_weight"], over["kl_weight"], over["retain_weight"]) == (0.4, 0.4, 0.2)
    assert (under["npo_weight"], under["kl_weight"], under["retain_weight"]) == (0.3, 0.3, 0.4)
    # the over-forgetting parent takes twice the optimiser steps (half the batch), as in the paper
    assert over["per_device_batch_size"] * 2 == under["per_device_batch_size"]
    assert over["formulation"] == under["formulation"] == "zjuklab" and over["warmup_epochs"] == 1.0
    assert over["learning_rate"] == under["learning_rate"] and over["epochs"] == under["epochs"] == 2


def test_unlearn_preset_option(tmp_path, tiny_model_dir, mini_benchmark, capsys):
    from baselines.npo import NPO

    out = tmp_path / "run"
    rc = _cli("unlearn", "--method", "npo", "--preset", "demo", "--model", str(tiny_model_dir), "--data",
              str(mini_benchmark), "--out", str(out), "--set", "max_steps=1", "--no-eval", "--no-progress")
    assert rc == 0
    params = json.loads((out / "config.json").read_text())["params"]
    assert params["preset"] == "demo" and params["max_steps"] == 1  # --set still wins over the preset
    assert params["learning_rate"] == NPO.presets["demo"]["learning_rate"] and params["mask_prompt"] is False
    capsys.readouterr()
    assert _cli("unlearn", "--method", "npo", "--preset", "nope", "--model", str(tiny_model_dir), "--data",
                str(mini_benchmark), "--out", str(tmp_path / "x"), "--no-eval") == 2
    assert "unknown preset 'nope' for method 'npo'; valid: ['demo']" in capsys.readouterr().err


def test_a_method_without_presets_says_so():
    from harness.core.errors import ConfigError
    from harness.training.runner import resolve_params
    from harness.core.types import UnlearningMethod

    class Bare(UnlearningMethod):
        def __init__(self, steps: int = 1):
            self.steps = steps

    with pytest.raises(ConfigError, match="has no presets"):
        resolve_params(Bare, {"preset": "demo"})
    # a preset that is not a name (``--set preset=[]``) is refused the same way, not a TypeError
    with pytest.raises(ConfigError, match=r"unknown preset \[\] for method 'zjuklab_merge'; valid: \['demo'\]"):
        resolve_params("zjuklab_merge", {"preset": []})


# ------------------------------------------------------------------------------------------------
# the no-op check
def test_no_op_flags_threshold():
    from harness.training.noop import NO_OP_ABSOLUTE, NO_OP_RELATIVE, no_op_flags

    assert no_op_flags(0.0316, 0.0319)["no_op_suspected"]  # RMU with WMDP's retain weight, measured
    assert not no_op_flags(0.0316, 0.0407)["no_op_suspected"]  # the weakest run that changed scores
    assert no_op_flags(2.0, 2.0 + 0.99 * NO_OP_RELATIVE * 2.0)["no_op_suspected"]
    assert not no_op_flags(2.0, 2.0 - 1.01 * NO_OP_RELATIVE * 2.0)["no_op_suspected"]  # either direction
    assert no_op_flags(0.0, 0.5 * NO_OP_ABSOLUTE)["no_op_suspected"]
    assert not no_op_flags(None, 1.0)["no_op_suspected"] and not no_op_flags(1.0, None)["no_op_suspected"]


def test_a_run_that_changes_nothing_is_flagged_and_warned(tmp_path, tiny_model_dir, mini_benchmark, caplog):
    from harness.evaluation.pipeline import EvalSettings
    from harness.core.records import read_result
    from harness.training.runner import run_unlearning

    settings = EvalSettings(max_new_tokens=4, cache=False, progress=False)
    base = dict(epochs=1, max_steps=2, per_device_batch_size=4, eval_every=0)
    with caplog.at_level(logging.WARNING, logger="unlearnbench.runner"):
        idle = run_unlearning("grad_ascent", tiny_model_dir, mini_benchmark, tmp_path / "idle",
                              params={**base, "learning_rate": 1e-12}, eval_settings=settings, progress=False)
    flags = read_result(tmp_path / "idle").flags
    assert flags["no_op_suspected"] is True and idle.result.flags == flags
    assert abs(flags["forget_answer_loss_after"] - flags["forget_answer_loss_before"]) < 1e-3
    assert "barely moved" in caplog.text and "barely moved" in (tmp_path / "idle" / "log.txt").read_text()
    assert json.loads((tmp_path / "idle" / "config.json").read_text())["flags"]["no_op_suspected"] is True

    run_unlearning("grad_ascent", tiny_model_dir, mini_benchmark, tmp_path / "busy",
                   params={**base, "learning_rate": 1e-2, "finetune": "full"}, eval_settings=settings, progress=False)
    flags = read_result(tmp_path / "busy").flags
    assert flags["no_op_suspected"] is False
    assert flags["forget_answer_loss_after"] > flags["forget_answer_loss_before"]


# ------------------------------------------------------------------------------------------------
# RMU
def test_rmu_layer_indexes_hidden_states_and_refuses_the_embeddings(tiny_llama):
    from baselines.rmu import RMU

    with pytest.raises(ValueError, match="0 is the token embeddings"):
        RMU(layer=0)
    assert RMU().hidden_layer(tiny_llama) == 1  # the middle of 2 blocks
    assert RMU(layer=2).hidden_layer(tiny_llama) == 2
    from harness.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[1, 2\].*after the final norm"):  # one line, exit 2 on the CLI
        RMU(layer=3).hidden_layer(tiny_llama)


def test_the_top_hidden_state_is_after_the_final_norm(tiny_llama, tiny_tokenizer):
    """What RMU's docstring says of ``layer = n``: transformers returns the normed output there."""
    captured = {}
    handle = tiny_llama.model.layers[-1].register_forward_hook(
        lambda module, args, output: captured.setdefault("block", output[0] if isinstance(output, tuple) else output))
    try:
        out = tiny_llama(**tiny_tokenizer(["Madera, a bustling city"], return_tensors="pt"), output_hidden_states=True)
    finally:
        handle.remove()
    top = out.hidden_states[len(tiny_llama.model.layers)]
    assert torch.allclose(top, tiny_llama.model.norm(captured["block"]), atol=1e-6)
    assert not torch.allclose(top, captured["block"], atol=1e-3)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """The demo's world and target (trains the target: minutes)."""
    from harness.synthetic.target import train_target
    from harness.synthetic.world import generate_world

    root = tmp_path_factory.mktemp("embedded")
    world = generate_world(root / "world", seed=0)
    return world, train_target(world, root / "target", progress=False)


@pytest.mark.slow
def test_rmu_demo_preset_unlearns_the_embedded_target_and_wmdps_retain_weight_does_not(embedded, tmp_path):
    from harness.training.runner import run_unlearning

    world, target = embedded
    works = run_unlearning("rmu", target, world, tmp_path / "demo", params={"preset": "demo"}, evaluate=False,
                           progress=False)
    flags = json.loads((works.run_dir / "config.json").read_text())["flags"]
    assert not flags["no_op_suspected"]
    assert flags["forget_answer_loss_after"] > 10 * flags["forget_answer_loss_before"]
    idle = run_unlearning("rmu", target, world, tmp_path / "wmdp", params={"preset": "demo", "retain_weight": 100.0},
                          evaluate=False, progress=False)
    assert json.loads((idle.run_dir / "config.json").read_text())["flags"]["no_op_suspected"]


@pytest.mark.slow
def test_the_demo_shows_the_zjuklab_story(tmp_path):
    """The full demo (about ten minutes on 2 idle cores) and a density sweep of its parents."""
    from harness.cli import main
    from harness.core.records import read_result
    from harness.evaluation.analysis import density_optimum
    from harness.synthetic.demo import DEMO_MAX_NEW_TOKENS, STORY_FILE, DemoPlan, builtin_methods, run_demo

    import pandas as pd

    out = tmp_path / "demo"
    board = run_demo(DemoPlan(out=out, bootstrap=20))
    story = json.loads((board / STORY_FILE).read_text())
    assert story["holds"], story["findings"]
    runs = out / "runs"
    target = read_result(runs / "target").metrics
    parents = runs / "zjuklab_merge" / "parents"
    over, under = read_result(parents / "over").metrics, read_result(parents / "under").metrics
    # the parents are what their names say, on both sides of the target's utility floor
    assert over["mia_auc"] < 0.5 < under["mia_auc"]
    assert over["answer_loss/forget"] > under["answer_loss/forget"] and over["utility"] < under["utility"]
    for name in builtin_methods():
        result = read_result(runs / name)
        assert not result.flags.get("no_op_suspected"), name
        assert result.metrics["answer_loss/forget"] != target["answer_loss/forget"], name
    # the density sweep of the paper's Figure 5 peaks inside the sweep
    assert main(["-q", "analyze", "density", "--parents", str(parents / "over"), str(parents / "under"),
                 "--how", "ties", "--densities", "0.2,0.4,0.6,0.8,1.0", "--out", str(tmp_path / "density"),
                 "--utility", str(out / "world" / "utility"), "--max-new-tokens", str(DEMO_MAX_NEW_TOKENS),
                 "--no-progress"]) == 0
    sweep = pd.read_csv(tmp_path / "density" / "density_ties.csv")
    assert density_optimum(sweep)["interior"], sweep.to_string()
