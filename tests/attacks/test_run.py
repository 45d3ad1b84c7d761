"""``run_attack`` / ``unlearnbench attack``: an attacked run is an ordinary run folder naming its parent,
evaluated with the parent's settings, with recovery against the target's run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.core.errors import AttackError
from harness.core.records import read_config, read_result


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_tokenizer):
    """A saved tiny Llama, its evaluation (the target run) and a gradient-ascent run of it."""
    from conftest import make_mini_benchmark

    from harness.backends.loading import load_model, model_info
    from harness.core.records import MethodInfo, RunConfig
    from harness.evaluation.pipeline import EvalSettings, evaluate_model
    from harness.synthetic.tiny import tiny_llama
    from harness.tasks import load_task
    from harness.training.runner import run_unlearning

    root = tmp_path_factory.mktemp("attack-runs")
    bench = make_mini_benchmark(root / "bench")
    model_dir = root / "tiny"
    tiny_llama(tiny_tokenizer, hidden_size=64, num_layers=2, seed=0).save_pretrained(model_dir)
    tiny_tokenizer.save_pretrained(model_dir)
    settings = EvalSettings(max_new_tokens=8, progress=False, cache=False)
    model, tok = load_model(model_dir)
    target = root / "target"
    evaluate_model(model, tok, load_task(bench), settings, target, model_info=model_info(model, id=str(model_dir)),
                   method_info=MethodInfo(name="none"), config=RunConfig(command="evaluate", model=str(model_dir),
                                                                         data=str(bench), eval=settings.to_dict()))
    ga = root / "ga"
    run_unlearning("grad_ascent", model_dir, bench, ga, params={"epochs": 2, "learning_rate": 5e-3, "lora_r": 8,
                                                                  "eval_every": 0, "per_device_batch_size": 4},
                   eval_settings=settings, progress=False)
    return {"root": root, "bench": bench, "target": target, "ga": ga, "model": model_dir}


def test_quantize_attack_is_an_ordinary_run_naming_its_parent(runs):
    from harness.attacks.run import ROBUST_FILE, run_attack

    out = runs["root"] / "ga+q4"
    outcome = run_attack(runs["ga"], "quantize", out, params={"bits": 4}, target=runs["target"], replicates=50,
                         progress=False)
    config, result, parent = read_config(out), read_result(out), read_result(runs["ga"])
    assert config["command"] == "attack" and config["method"] == "attack:quantize"
    assert config["parents"] == [str(runs["ga"].resolve())] == result.parents
    assert config["params"]["bits"] == 4 and config["params"]["target"] == str(runs["target"].resolve())
    # evaluated with the parent's settings
    parent_eval = read_config(runs["ga"])["eval"]
    assert {k: config["eval"][k] for k in ("max_new_tokens", "mode", "min_k")} == \
           {k: parent_eval[k] for k in ("max_new_tokens", "mode", "min_k")}
    assert result.benchmark.content_hash == parent.benchmark.content_hash
    assert result.label == "grad_ascent+quantize-4bit" and result.timings["attack"] >= 0
    assert (out / "model" / "config.json").is_file() and (out / "samples.jsonl").is_file()
    # recovery: in the record and, with intervals and reasons, in robust.json
    robust = json.loads((out / ROBUST_FILE).read_text())
    assert robust["parent"] == str(runs["ga"].resolve()) and "forget/Task1/knowledge" in robust["recovery"]
    for name, rec in robust["recovery"].items():
        assert result.metrics[f"recovered/{name}"] == rec["recovered"]
        assert (rec["recovered"] is None) == (rec["reason"] is not None and rec["reason"].startswith("no forgetting"))
    assert outcome.report["settings"]["group_size"] == 64
    # the recorded recovery is (attacked - unlearned) / (target - unlearned) of the records' own metrics
    t, u, a = read_result(runs["target"]).metrics, parent.metrics, result.metrics
    r = robust["recovery"]["answer_loss/forget"]
    assert r["recovered"] == pytest.approx((a["answer_loss/forget"] - u["answer_loss/forget"]) /
                                           (t["answer_loss/forget"] - u["answer_loss/forget"]))
    with pytest.raises(AttackError, match="already holds a finished run"):
        run_attack(runs["ga"], "quantize", out, params={"bits": 4}, progress=False)


def test_precision_and_prompt_attacks(runs):
    from harness.attacks.run import run_attack

    bf = runs["root"] / "ga+bf16"
    run_attack(runs["ga"], "precision", bf, params={"dtype": "bfloat16"}, target=runs["target"], replicates=0,
               progress=False)
    result = read_result(bf)
    assert result.provenance.dtype == "bfloat16" and result.settings["dtype"] == "bfloat16"
    assert not (bf / "model").exists()  # the parent's weights, cast: nothing new to save
    pr = runs["root"] / "ga+prompt"
    run_attack(runs["ga"], "prompt", pr, params={"template": "qa_format"}, target=runs["target"], replicates=0,
               progress=False)
    samples = [json.loads(line) for line in (pr / "samples.jsonl").read_text().splitlines()]
    qa_forget = [s for s in samples if s["split"] == "forget" and s["kind"] == "qa"]
    assert qa_forget and all(s["input"].startswith("Question: ") for s in qa_forget)
    assert all(not s["input"].startswith("Question: ") for s in samples if s["kind"] == "sc" or s["split"] == "retain")
    robust = json.loads((pr / "robust.json").read_text())
    assert not any(k.startswith("mia_auc") for k in robust["recovery"])  # the MIA documents are not prompts
    assert robust["notes"]


def test_relearn_attack_measures_held_out_records(runs):
    from harness.attacks.run import run_attack

    out = runs["root"] / "ga+relearn"
    outcome = run_attack(runs["ga"], "relearn", out, params={"fraction": 0.5, "training": {"epochs": 1}},
                         target=runs["target"], replicates=0, progress=False)
    report = outcome.report
    assert report["records"] == 4 and len(report["relearned_ids"]) == 4  # half of the 7 forget records
    assert report["training"]["lora_r"] == 128 and report["training"]["epochs"] == 1
    robust = json.loads((out / "robust.json").read_text())
    assert robust["held_out_records"] == 3
    assert not any(k.startswith("mia_auc") for k in robust["recovery"])
    events = [json.loads(line)["event"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert events[0] == "start" and "train" in events
    # the attacked model was trained: its saved weights differ from the parent's
    from harness.backends.loading import load_model, weight_hash

    assert weight_hash(load_model(out / "model")[0]) != weight_hash(load_model(runs["ga"] / "model")[0])


def test_cli_attack_and_refusals(runs, capsys):
    from harness.cli.main import main

    out = runs["root"] / "cli-q8"
    assert main(["-q", "attack", str(runs["ga"]), "--kind", "quantize", "--bits", "8", "--target",
                 str(runs["target"]), "--bootstrap", "20", "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "recovered" in printed and "forget/all/regurgitation" in printed
    assert read_result(out).method.name == "attack:quantize"
    # one-line refusals (exit 2) naming the problem
    for argv, message in [
        (["--kind", "prompt", "--template", "nope"], "unknown prompt template 'nope'"),
        (["--kind", "precision"], "dtype must be one of"),
        (["--kind", "quantize", "--set", "epochs=1"], "--set sets the relearning loop"),
        (["--kind", "relearn", "--set", "bogus=1"], "unknown training setting"),
    ]:
        assert main(["attack", str(runs["ga"]), "--out", str(runs["root"] / "x"), *argv]) == 2
        assert message in capsys.readouterr().err
    assert main(["attack", str(runs["root"] / "missing"), "--kind", "quantize", "--out", str(runs["root"] / "y")]) == 2
    assert "no such run folder" in capsys.readouterr().err


def test_standard_boards_leave_attack_runs_out(runs):
    """Attack runs (other weights, other prompts: other content hashes) are ranked on the robust board only;
    a standard board's collection leaves them out, neither ranked nor listed as refused, and so their
    parents stay ordinary entries instead of being listed as parents."""
    from harness.attacks.run import run_attack
    from leaderboards.board import get_board
    from leaderboards.collect import collect

    out = runs["root"] / "collect-q8"
    if not (out / "result.json").exists():
        run_attack(runs["ga"], "quantize", out, params={"bits": 8}, progress=False)
    found = collect([runs["root"]], get_board("world"))
    seen = [str(r.path) for r in found.records] + [s.path for s in found.skipped]
    assert any("ga" in Path(p).parent.name for p in seen)  # the parent is considered
    assert not any(Path(p).parent.name.startswith(("ga+", "cli-", "collect-")) for p in seen)


def _fake_attack(root: Path, parent: Path, name: str, kind: str, recovered: dict) -> None:
    """An attacked run folder with a chosen robust.json (the builder reads only the records)."""
    from harness.core.records import write_result

    run = root / name
    run.mkdir(parents=True, exist_ok=True)
    result = read_result(parent)
    write_result(run, result.model_copy(update={"label": name, "method": result.method.model_copy(
        update={"name": f"attack:{kind}"})}))
    (run / "robust.json").write_text(json.dumps({"kind": kind, "parent": str(parent.resolve()), "recovery": {
        m: {"recovered": v, "ci": None if v is None else [v - 0.1, v + 0.1], "reason": None}
        for m, v in recovered.items()}}))


def test_robust_board_ranks_by_the_worst_attack(runs, tmp_path):
    """Hand-computed: A's attacks recover at most 0.6 (its 4-bit quantisation's knowledge), B's 0.2;
    B ranks first with score 0.8, A second with 0.4; per kind the largest of that kind's runs."""
    import shutil

    from harness.cli.main import main
    from leaderboards import get_board
    from leaderboards.robust import build_robust_board

    root = tmp_path / "board"
    a, b = root / "A", root / "B"
    for parent, label in ((a, "method-A"), (b, "method-B")):
        shutil.copytree(runs["ga"], parent, ignore=shutil.ignore_patterns("model"))
        from harness.core.records import write_result

        write_result(parent, read_result(parent).model_copy(update={"label": label}))
    _fake_attack(root, a, "A+q8", "quantize", {"forget/all/regurgitation": 0.1, "forget/all/knowledge": -0.2})
    _fake_attack(root, a, "A+q4", "quantize", {"forget/all/regurgitation": 0.3, "forget/all/knowledge": 0.6})
    _fake_attack(root, a, "A+bf16", "precision", {"forget/all/regurgitation": 0.05, "forget/all/knowledge": None})
    _fake_attack(root, b, "B+q4", "quantize", {"forget/all/regurgitation": 0.2, "forget/all/knowledge": None,
                                               "answer_loss/forget": 0.9})  # not a summary metric
    _fake_attack(root, b, "B+prompt", "prompt", {"forget/all/regurgitation": None})
    lb = build_robust_board([root], get_board("robust"))
    by_label = {e.label: e for e in lb.entries}
    A, B = by_label["method-A"], by_label["method-B"]
    assert (A.values["robust/worst"], A.values["robust/score"]) == pytest.approx((0.6, 0.4))
    assert (A.values["recovered/quantize"], A.values["recovered/precision"]) == pytest.approx((0.6, 0.05))
    assert (B.values["robust/worst"], B.values["robust/score"]) == pytest.approx((0.2, 0.8))
    assert B.values["recovered/prompt"] is None
    assert (B.rank, A.rank) == (1, 2)
    assert A.ci["robust/worst"] == pytest.approx((0.5, 0.7)) and A.ci["robust/score"] == pytest.approx((0.3, 0.5))
    assert A.values["final_score_utility"] == read_result(runs["ga"]).metrics.get("final_score_utility")
    # through the CLI, into files
    out = tmp_path / "out"
    assert main(["-q", "leaderboard", str(root), "--board", "robust", "--format", "csv,md", "--out", str(out)]) == 0
    text = "".join(p.read_text() for p in out.iterdir() if p.suffix in (".csv", ".md"))
    assert "method-A" in text and "method-B" in text and "0.400" in text


def test_attack_run_folder_as_an_unlearning_runs(runs):
    """The folder is handled as `unlearn` handles its own: log.txt, and --force clears what the earlier
    run left (a precision attack over a quantised one keeps neither its model/ nor its robust.json);
    an output that would overwrite or sit inside an input is refused before any work."""
    from harness.attacks.run import ROBUST_FILE, run_attack

    out = runs["root"] / "redo"
    run_attack(runs["ga"], "quantize", out, params={"bits": 8}, target=runs["target"], replicates=0, progress=False)
    assert (out / "model").is_dir() and (out / ROBUST_FILE).is_file()
    assert "attack quantize on" in (out / "log.txt").read_text()
    run_attack(runs["ga"], "precision", out, params={"dtype": "bfloat16"}, force=True, progress=False)
    assert not (out / "model").exists() and not (out / ROBUST_FILE).exists()
    assert read_config(out)["method"] == "attack:precision" and read_result(out).method.name == "attack:precision"
    before = sorted(p.name for p in runs["ga"].iterdir())
    for bad, what in [(runs["ga"], "is the attacked run"), (runs["ga"] / "sub", "overlaps the attacked run"),
                      (runs["target"], "is the target run"), (runs["bench"] / "x", "overlaps the benchmark"),
                      (runs["root"], "overlaps the attacked run")]:
        with pytest.raises(AttackError, match=what):
            run_attack(runs["ga"], "quantize", bad, params={"bits": 8}, target=runs["target"], force=True,
                       progress=False)
    assert sorted(p.name for p in runs["ga"].iterdir()) == before and not (runs["ga"] / "sub").exists()
