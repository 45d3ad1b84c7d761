"""The embedded target model: deterministic training, caching, gates, loadable by path.

The default suite trains a *reduced* config on a trimmed world (seconds); the full default target
(minutes) runs only with ``-m slow``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.tasks.lume.data import load_benchmark
from harness.synthetic.target import (CONFIGS, GATES, REPORT_FILE, TARGET_FILE, WEIGHTS_FILE, TargetError, _answer_mask,
                            cache_key, check_gates, qa_prompt, read_report, read_target_info, train_target)
from harness.synthetic.world import generate_world

TINY = dataclasses.replace(CONFIGS["small"], hidden_size=32, num_layers=1, num_heads=2, vocab_size=400, epochs=2,
                           warmup_steps=2, batch_tokens=2048)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


@pytest.fixture(scope="module")
def small_world(tmp_path_factory) -> Path:
    """A generated world trimmed to 2 documents per task and split (keeps tests fast)."""
    world = generate_world(tmp_path_factory.mktemp("tw") / "world", seed=0)
    for split in ("forget", "retain"):
        rows = _rows(world / f"{split}.jsonl")
        keep, per_task = set(), {}
        for r in rows:
            stem = r["id"][:-3]
            if stem not in keep and per_task.get(r["task"], 0) < 2:
                keep.add(stem)
                per_task[r["task"]] = per_task.get(r["task"], 0) + 1
        _write(world / f"{split}.jsonl", [r for r in rows if r["id"][:-3] in keep])
        if split == "forget":
            _write(world / "mia" / "member.jsonl", [m for m in _rows(world / "mia" / "member.jsonl") if m["id"] in keep])
    _write(world / "mia" / "nonmember.jsonl", _rows(world / "mia" / "nonmember.jsonl")[:6])
    return world


def test_qa_prompt_is_lm_eval_mmlu_continuation_template(small_world):
    """The utility set is trained and scored in the layout of lm-eval's own cloze MMLU variant."""
    import lm_eval
    import yaml

    from harness.tasks.mcq.data import load_mcq
    from harness.tasks.mcq.mmlu import CONTINUATION_DESCRIPTION, CONTINUATION_DOC_TO_TEXT

    folder = Path(lm_eval.__file__).parent / "tasks" / "mmlu" / "continuation"
    template = yaml.safe_load((folder / "_continuation_template_yaml").read_text())
    assert template["doc_to_text"] == CONTINUATION_DOC_TO_TEXT and template["doc_to_choice"] == "{{choices}}"
    anatomy = yaml.safe_load((folder / "mmlu_anatomy.yaml").read_text())
    assert anatomy["description"] == CONTINUATION_DESCRIPTION.format(subject="anatomy")

    mcq = load_mcq(small_world / "utility")
    dev = mcq.data["economy"]["dev"]
    first, second = dev[0], dev[1]
    assert qa_prompt("economy", dev[:1], second) == (
        "The following are questions (with answers) about economy.\n\n"
        f"Question: {first.question}\nAnswer: {first.choices[first.answer]}\n\n"
        f"Question: {second.question}\nAnswer:")


def test_qa_chains_train_only_the_answers(tiny_tokenizer):
    text = "About x.\n\nQuestion: Q?\nAnswer: warm\n\nQuestion: R?\nAnswer: barley"
    ids, mask = _answer_mask(tiny_tokenizer, text)
    trained = tiny_tokenizer.decode([i for i, keep in zip(ids, mask) if keep])
    assert trained.split() == ["warm", "barley"]
    assert not any(keep for i, keep in zip(ids, mask) if "Q" in tiny_tokenizer.decode([i]))


def test_utility_qa_chains_ask_every_fact_but_never_in_test_wording(small_world):
    import random
    import re

    from harness.tasks.mcq.data import load_mcq
    from harness.synthetic.target import _utility_qa_chains
    from harness.synthetic.world import TRAIN_PHRASINGS, parse_fact

    facts = [parse_fact(json.loads(line)["document"]) for line in (small_world / "utility" / "facts.jsonl").read_text().splitlines()]
    mcq = load_mcq(small_world / "utility")
    chains = _utility_qa_chains(mcq, facts, random.Random(0), chain=6, phrasings=2)
    pairs = [m.groups() for chain in chains for m in re.finditer(r"Question: ([^\n]*)\nAnswer: ([^\n]*)", chain)]
    questions = [q for q, _ in pairs]
    dev_val = {(it.question, it.choices[it.answer]) for s in mcq.subjects for sp in ("dev", "val") for it in mcq.data[s][sp]}
    test = {it.question for s in mcq.subjects for it in mcq.data[s]["test"]}
    assert dev_val <= set(pairs)
    assert not set(questions) & test
    # every fact is asked twice (two training wordings), with the town's own value as the answer
    assert len(pairs) == len(dev_val) + len(facts) * len(TRAIN_PHRASINGS) * 2
    for fact in facts:
        for attr, wordings in TRAIN_PHRASINGS.items():
            for wording in wordings[:2]:
                assert (wording.format(town=fact["town"]), fact[attr]) in pairs
    assert all(chain.startswith("The following are questions (with answers) about ") for chain in chains)


@pytest.fixture(scope="module")
def trained(small_world, tmp_path_factory) -> Path:
    """The reduced config trained once, with its gate report (shared: training costs seconds).

    An untrained model never says EOS and its logits are near ties, so the standard evaluation would
    decode 256 tokens per record one at a time; the gates here run through the same code with short
    generations and no near-tie re-decoding."""
    import harness.synthetic.target as target

    real = target.measure_gates
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(target, "measure_gates",
                   lambda *a, **k: real(*a, **k, max_new_tokens=16, verify_margin=0.0))
        return train_target(small_world, tmp_path_factory.mktemp("tm") / "model", config=TINY, progress=False)


def test_training_is_deterministic_and_cached(small_world, trained, tmp_path):
    import torch
    from safetensors.torch import load_file

    again = train_target(small_world, tmp_path / "again", config=TINY, progress=False, gates=False)
    wa, wb = load_file(trained / WEIGHTS_FILE), load_file(again / WEIGHTS_FILE)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (trained / "tokenizer.json").read_bytes() == (again / "tokenizer.json").read_bytes()
    info = read_target_info(trained)
    assert info["cache_key"] == read_target_info(again)["cache_key"]
    assert info["parameters"] == sum(v.numel() for v in wa.values())

    # Same inputs: nothing is rewritten (weights and info files untouched, same folder returned).
    stamp = (trained / WEIGHTS_FILE).stat().st_mtime_ns, (trained / TARGET_FILE).stat().st_mtime_ns
    assert train_target(small_world, trained, config=TINY, progress=False) == trained
    assert ((trained / WEIGHTS_FILE).stat().st_mtime_ns, (trained / TARGET_FILE).stat().st_mtime_ns) == stamp

    # A different seed, recipe or world content is a different cache key.
    assert cache_key(small_world, TINY, 1) != info["cache_key"]
    assert cache_key(small_world, dataclasses.replace(TINY, epochs=3), 0) != info["cache_key"]
    facts = small_world / "utility" / "facts.jsonl"
    original = facts.read_bytes()
    try:
        facts.write_bytes(original.replace(b"town", b"city", 1))
        assert cache_key(small_world, TINY, 0) != info["cache_key"]
    finally:
        facts.write_bytes(original)


def test_saved_model_loads_by_path_and_reports_gates(trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(trained)
    tokenizer = AutoTokenizer.from_pretrained(trained)
    assert model.config.model_type == "llama"
    assert tokenizer("x")["input_ids"][0] == tokenizer.bos_token_id == model.config.bos_token_id
    report = read_report(trained)
    assert set(report["gates"]) == {k for k, _ in GATES}
    assert "utility" in report["gates"]
    values = report["values"]
    for key in ("mia_auc", "forget/regurgitation", "retain/knowledge", "utility", "forget/Task2/knowledge"):
        assert 0.0 <= values[key] <= 1.0, key
    # a 2-epoch tiny model memorises nothing: the gates must say so
    assert not report["passed"] and report["failed"] == check_gates(values)
    assert any(f.startswith("forget/regurgitation") for f in report["failed"])


def test_cli_reports_failed_gates_and_exits_nonzero(small_world, trained, capsys, monkeypatch):
    import harness.synthetic.target as target

    # The CLI trains the preset; point the preset at the reduced config so this stays fast (cache hit).
    monkeypatch.setitem(target.CONFIGS, "small", TINY)
    assert main(["target", "--world", str(small_world), "--out", str(trained)]) == 1
    captured = capsys.readouterr()
    assert "FAIL forget/regurgitation" in captured.out
    assert "quality gate(s) failed" in captured.err and str(trained) in captured.err


def test_check_gates_names_each_failure():
    ok = {key: threshold for key, threshold in GATES}
    assert check_gates(ok) == []
    bad = dict(ok, mia_auc=0.7)
    del bad["retain/knowledge"]
    assert check_gates(bad) == ["mia_auc = 0.7 < 0.95", "retain/knowledge = None < 0.8"]
    # utility is gated well above chance (0.25)
    assert check_gates(dict(ok, utility=0.3)) == ["utility = 0.3 < 0.6"]


def test_refuses_to_overwrite_a_foreign_folder(small_world, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(TargetError, match="not a target model folder"):
        train_target(small_world, tmp_path / "mine", config=TINY, progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(TargetError, match="unknown size 'huge'"):
        train_target(small_world, tmp_path / "x", size="huge")


@pytest.mark.slow
def test_default_target_passes_every_gate(tmp_path, capsys):
    """The full default recipe (minutes on 2 cores): the world and target the demo uses."""
    world = tmp_path / "world"
    assert main(["world", "--out", str(world)]) == 0
    assert main(["target", "--world", str(world), "--out", str(tmp_path / "target")]) == 0
    report = json.loads((tmp_path / "target" / REPORT_FILE).read_text())
    assert report["passed"], report["failed"]
    assert report["values"]["mia_auc"] >= 0.95 and report["values"]["forget/regurgitation"] >= 0.9
    assert report["values"]["utility"] >= 0.6
    assert load_benchmark(world).has_mia
    # second call: cache hit, exit 0 again, weights untouched
    stamp = (tmp_path / "target" / WEIGHTS_FILE).stat().st_mtime_ns
    assert main(["target", "--world", str(world), "--out", str(tmp_path / "target")]) == 0
    assert (tmp_path / "target" / WEIGHTS_FILE).stat().st_mtime_ns == stamp
