"""world-TOFU: the synthetic world written in TOFU's format, its full and retain-only oracle targets,
the oracle's run as the Forget Quality reference on a fresh machine, and the world-tofu board."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from harness.core.errors import ConfigError, WorldError
from harness.tasks import detect_benchmark, load_task
from harness.tasks.tofu.data import load_tofu
from harness.tasks.world_tofu.world import MARKER, N_PERTURBED, generate_tofu_world


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_world_in_tofus_format(tmp_path):
    world = generate_tofu_world(tmp_path / "w", seed=5, n_authors=20, n_general=10)
    again = generate_tofu_world(tmp_path / "again", seed=5, n_authors=20, n_general=10)
    for path in sorted(world.glob("*.json")):  # deterministic for a seed
        assert path.read_bytes() == (again / path.name).read_bytes(), path.name
    full, forget, retain = (_lines(world / f"{n}.json") for n in ("full", "forget10", "retain90"))
    assert len(full) == 100 and forget == full[-10:] and retain == full[:-10]  # the last tenth: whole authors
    perturbed = _lines(world / "forget10_perturbed.json")
    assert [(r["question"], r["answer"]) for r in perturbed] == [(r["question"], r["answer"]) for r in forget]
    for row in perturbed + _lines(world / "retain_perturbed.json"):
        wrong = row["perturbed_answer"]
        assert len(wrong) == N_PERTURBED == len(set(wrong)) and row["answer"] not in wrong
        assert row["paraphrased_answer"] not in (row["answer"], *wrong)
    assert not {r["question"] for r in forget} & {r["question"] for r in retain}
    assert json.loads((world / MARKER).read_text())["benchmark"] == "world-tofu"
    # TOFU's own loader accepts it, and the marker makes it world-tofu rather than tofu
    assert detect_benchmark(world) == "world-tofu"
    assert {k: len(v) for k, v in load_tofu(world).eval_sets.items()} == {
        "forget": 10, "retain": 10, "real_authors": 10, "world_facts": 10}
    with pytest.raises(WorldError, match="multiple of 10"):
        generate_tofu_world(tmp_path / "bad", n_authors=15)
    with pytest.raises(ConfigError, match="phi layout"):
        load_task(world, options={"format": "llama2"})


def test_targets_oracle_reference_and_board_end_to_end(tmp_path):
    """A tiny recipe through the whole flow: the oracle never sees the forget authors, its run is
    the reference every later evaluation of the world uses, and the runs rank on world-tofu."""
    from harness.backends.loading import load_model
    from harness.cli import main
    from harness.core.records import read_result
    from harness.evaluation.pipeline import EvalSettings, evaluate_model
    from harness.tasks.world_tofu.build import make_tofu_world
    from harness.tasks.world_tofu.target import TOFU_TARGET_CONFIG
    from leaderboards import build_leaderboards

    tiny = replace(TOFU_TARGET_CONFIG, hidden_size=32, num_layers=1, vocab_size=512, epochs=2)
    made = make_tofu_world(tmp_path / "world", tmp_path / "models", n_authors=10, progress=False, config=tiny)
    target_info = json.loads((made.target / "target.json").read_text())
    oracle_info = json.loads((made.oracle / "target.json").read_text())
    assert target_info["trained_on"] == ["full", "real_authors", "world_facts"]
    assert oracle_info["trained_on"] == ["retain90", "real_authors", "world_facts"]
    assert oracle_info["train_sequences"] == target_info["train_sequences"] - 5  # forget10: one author, 5 QA
    assert (made.reference / "samples.jsonl").is_file()
    reference = read_result(made.reference)  # the oracle's run: no reference for itself
    assert reference.settings["benchmark"] == "world-tofu" and "tofu/forget_quality" not in reference.metrics

    # cached: the same world and recipe reuse the trained models
    stamp = (made.target / "target.json").stat().st_mtime_ns
    again = make_tofu_world(tmp_path / "world", tmp_path / "models", n_authors=10, progress=False, config=tiny)
    assert (again.target / "target.json").stat().st_mtime_ns == stamp

    runs = tmp_path / "runs"
    model, tokenizer = load_model(made.oracle)
    task = load_task(made.world, options={"max_new_tokens": "16"})  # reference: the world's oracle run
    evaluate_model(model, tokenizer, task, EvalSettings(cache=False, progress=False), runs / "oracle", label="oracle")
    # through the CLI: config.json says max_new_tokens 256 (the run's setting), the record null (the
    # benchmark's own budgets applied); the board must not take that for a folder mixing two runs
    assert main(["-q", "evaluate", "--model", str(made.target), "--data", str(made.world), "--out", str(runs / "target"),
                 "--label", "target", "--benchmark-option", "max_new_tokens=16", "--no-progress", "--no-cache"]) == 0
    oracle = read_result(runs / "oracle")
    target = read_result(runs / "target")
    assert oracle.settings["benchmark"] == target.settings["benchmark"] == "world-tofu"
    assert oracle.settings["protocol"]["reference"] == str(made.reference)
    assert oracle.metrics["tofu/forget_quality"] == 1.0  # the reference's own model: the same truth ratios
    assert 0.0 <= target.metrics["tofu/forget_quality"] <= 1.0 and "tofu/model_utility" in target.metrics
    [(_, board)] = build_leaderboards([runs], "world-tofu", bootstrap=0)
    assert sorted(e.label for e in board.ranked) == ["oracle", "target"] and not board.skipped
