"""The TOFU benchmark: local configs, detection, TOFU's loss convention, evaluation end to end on a tiny
model, Forget Quality with a reference run, rescoring from the run folder, and import-tofu."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from harness.backends.base import AnswerFormat
from harness.core.errors import ConfigError, DataError
from harness.tasks import detect_benchmark, load_task
from harness.tasks.tofu.data import load_tofu
from harness.tasks.tofu.formats import PROMPT_FORMATS
from harness.tasks.tofu.task import REFERENCE_SET, TofuTask, tofu_answer_format
from harness.tasks.world_tofu.world import MARKER, generate_tofu_world

from conftest import SHARED, make_mini_benchmark

TOFU_LOGS = SHARED / "tofu-logs"


@pytest.fixture
def tofu_folder(tmp_path: Path) -> Path:
    """A small folder in TOFU's released layout (the synthetic world's, without its marker)."""
    folder = generate_tofu_world(tmp_path / "tofu", seed=3, n_authors=10, n_general=8)
    (folder / MARKER).unlink()
    return folder


@pytest.fixture(scope="module")
def tofu_tokenizer():
    from harness.synthetic.tiny import train_bpe_tokenizer

    folder = generate_tofu_world(Path(__import__("tempfile").mkdtemp()) / "w", seed=3, n_authors=10, n_general=8)
    texts = [line for p in sorted(folder.glob("*.json")) for line in p.read_text().splitlines()]
    return train_bpe_tokenizer(texts * 2, vocab_size=600)


@pytest.fixture
def tofu_model(tofu_tokenizer):
    from harness.synthetic.tiny import tiny_llama

    return tiny_llama(tofu_tokenizer, hidden_size=32, num_layers=1, seed=0)


# -- data and detection ----------------------------------------------------------------------------
def test_detection_marker_wins_then_files(tofu_folder, tmp_path):
    assert detect_benchmark(tofu_folder) == "tofu"
    world = generate_tofu_world(tmp_path / "world", seed=3, n_authors=10, n_general=8)
    assert detect_benchmark(world) == "world-tofu"  # TOFU's files too, but the marker names it
    assert detect_benchmark(make_mini_benchmark(tmp_path / "lume")) == "lume"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="muse: MUSE's subsets.*tofu: TOFU's released configs"):
        detect_benchmark(tmp_path / "empty")
    (tmp_path / "empty" / MARKER).write_text('{"benchmark": "nope"}')
    with pytest.raises(DataError, match="names benchmark 'nope', which is not registered"):
        detect_benchmark(tmp_path / "empty")


def test_released_layout_reads_into_evaluation_sets(tofu_folder):
    data = load_tofu(tofu_folder)
    assert data.split == "forget10"
    assert {k: len(v) for k, v in data.eval_sets.items()} == {"forget": 5, "retain": 5, "real_authors": 8,
                                                             "world_facts": 8}
    assert len(data.train_forget) == 5 and len(data.train_retain) == 45
    item = data.eval_sets["forget"][0]
    assert len(item.perturbed_answers) == 5 and item.paraphrased_answer and item.paraphrased_answer != item.answer
    assert len(load_tofu(tofu_folder, ds_size=2).eval_sets["real_authors"]) == 2


def _rewrite(path: Path, change) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(r) + "\n" for r in change(rows)))


def test_malformed_configs_are_refused_naming_the_file(tofu_folder):
    (tofu_folder / "retain_perturbed.json").unlink()
    with pytest.raises(DataError, match="no retain_perturbed config"):
        load_tofu(tofu_folder)


@pytest.mark.parametrize("config, change, message", [
    ("forget10_perturbed.json", lambda rs: [dict(rs[0], perturbed_answer=rs[0]["perturbed_answer"][:4])] + rs[1:],
     "line 2: 5 perturbed answers, but line 1 has 4"),
    ("world_facts_perturbed.json", lambda rs: [dict(rs[0], answer=7)] + rs[1:],
     "line 1: field 'answer' must be a non-empty string"),
    ("forget10.json", lambda rs: rs[::-1], "forget10 and forget10_perturbed.json ask different questions"),
    ("retain90.json", lambda rs: rs + [{"question": "Where was the author {} born?", "answer": "x"}], None),
])
def test_config_problems(tofu_folder, config, change, message):
    if message is None:  # a forget question in the retain config
        forget = json.loads((tofu_folder / "forget10.json").read_text().splitlines()[0])
        _rewrite(tofu_folder / config, lambda rs: rs + [forget])
        message = "question\\(s\\) of forget10 are also in retain90.json"
    else:
        _rewrite(tofu_folder / config, change)
    with pytest.raises(DataError, match=message) as info:
        load_tofu(tofu_folder)
    assert config in str(info.value) or "forget10" in str(info.value)


def test_forget_splits_must_nest(tofu_folder):
    rows = [json.loads(line) for line in (tofu_folder / "retain_perturbed.json").read_text().splitlines()][:2]
    (tofu_folder / "forget05_perturbed.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match="forget05_perturbed is not contained in forget10_perturbed"):
        load_tofu(tofu_folder)


def test_options_are_checked(tofu_folder):
    with pytest.raises(ConfigError, match="unknown TOFU option\\(s\\) colour"):
        load_task(tofu_folder, options={"colour": "red"})
    with pytest.raises(ConfigError, match="unknown TOFU prompt format 'gpt'"):
        load_task(tofu_folder, options={"format": "gpt"})
    with pytest.raises(ConfigError, match="ds_size must be a whole number"):
        load_task(tofu_folder, options={"ds_size": "many"})
    task = load_task(tofu_folder, options={"format": "llama2", "ds_size": "3"})
    assert task.requests().prompts[0] == "[INST] " + task.tofu.eval_sets["retain"][0].question + " [/INST]"


# -- formats and the loss convention ---------------------------------------------------------------
def test_prompt_formats_are_tofus():
    phi, llama2 = PROMPT_FORMATS["phi"], PROMPT_FORMATS["llama2"]
    assert phi.loss_prompt("Q?") + phi.loss_answer("A.") == "Question: Q?\nAnswer: A."
    assert phi.generation_prompt("Q?") == "Question: Q?\n"        # TOFU's Phi prompt stops before "Answer: "
    assert llama2.loss_prompt("Q?") + llama2.loss_answer("A.") == "[INST] Q? [/INST]A."
    assert llama2.generation_prompt("Q?") == "[INST] Q? [/INST]"


def _tofu_labels(tokenizer, question_part: str, answer_part: str, max_length: int = 200):
    """TOFU's data_module.convert_raw_data_to_model_format, restated: the full text's ids (truncated),
    an EOS label after them unless truncated, the question part's token count masked."""
    full = tokenizer(question_part + answer_part, add_special_tokens=True, max_length=max_length,
                     truncation=True)["input_ids"]
    n_question = len(tokenizer.tokenize(question_part, add_special_tokens=True))
    labels = list(full) + ([tokenizer.eos_token_id] if len(full) < max_length else [])
    return full, [-100] * n_question + labels[n_question:]


def test_answer_loss_follows_tofus_convention_exactly(tofu_tokenizer, tofu_model):
    """The backend's TOFU answer loss = TOFU's: summed cross-entropy over the labels (answer tag,
    answer and EOS) divided by their count, from the same forward pass."""
    import torch

    from harness.backends import make_backend

    fmt = PROMPT_FORMATS["phi"]
    question, answer = "Where was the author Tobi Lars born?", "Tobi Lars was born in the town of Vemra."
    backend = make_backend("hf", tofu_model, tofu_tokenizer)
    got = backend.answer_losses([fmt.loss_prompt(question)], [fmt.loss_answer(answer)], tofu_answer_format(fmt))[0]
    full, labels = _tofu_labels(tofu_tokenizer, fmt.loss_prompt(question), fmt.loss_answer(answer))
    ids = torch.tensor([full + [tofu_tokenizer.eos_token_id]])
    with torch.no_grad():
        logits = tofu_model(input_ids=ids).logits[0, :-1].float()
    targets = torch.tensor(labels[1:])
    ce = torch.nn.functional.cross_entropy(logits, targets, ignore_index=-100, reduction="sum")
    expected = float(ce / (targets != -100).sum())
    assert got == pytest.approx(expected, rel=1e-5)
    # the LUME convention (seam, no EOS) is another number
    assert backend.answer_losses([fmt.loss_prompt(question)], [fmt.loss_answer(answer)])[0] != pytest.approx(got)


def test_truncation_drops_the_eos_label(tofu_tokenizer):
    from harness.backends.losses import _formatted_answer_ids

    fmt = AnswerFormat(separator="", eos_label=True, max_length=12, split_by_prompt_length=True)
    prompt, answer = "Question: Who?\n", "Answer: " + "a long answer " * 10
    p, a = _formatted_answer_ids(tofu_tokenizer, prompt, answer, fmt)
    full, labels = _tofu_labels(tofu_tokenizer, prompt, answer, max_length=12)
    assert p + a == full and len(p) + len(a) == 12 and a[-1] != tofu_tokenizer.eos_token_id
    assert len(a) == sum(1 for x in labels if x != -100)


# -- evaluation end to end -------------------------------------------------------------------------
def _evaluate(model, tokenizer, task, out: Path):
    from harness.evaluation.pipeline import EvalSettings, evaluate_model

    return evaluate_model(model, tokenizer, task, EvalSettings(cache=False, progress=False), out)


def test_evaluation_writes_tofu_rows_and_every_metric(tofu_folder, tofu_model, tofu_tokenizer, tmp_path):
    from harness.core.fileio import read_jsonl

    task = load_task(tofu_folder, options={"max_new_tokens": "8"})
    result = _evaluate(tofu_model, tofu_tokenizer, task, tmp_path / "run")
    rows = read_jsonl(tmp_path / "run" / "samples.jsonl")
    assert [r["set"] for r in rows].count("world_facts") == 8 and len(rows) == 26
    assert all(len(r["perturbed_losses"]) == (5 if r["set"] in ("retain", "forget") else 3) for r in rows)
    ra = next(r for r in rows if r["set"] == "real_authors")
    assert ra["paraphrased_loss"] == ra["answer_loss"]  # TOFU re-scores the answer there
    assert "tofu/model_utility" in result.metrics and "tofu/forget_quality" not in result.metrics
    assert result.settings["protocol"]["format"] == "phi" and result.settings["max_new_tokens"] is None
    assert result.settings["benchmark"] == "tofu" and result.benchmark.name == "tofu-forget10"

    # with itself as the reference: indistinguishable
    task = load_task(tofu_folder, options={"max_new_tokens": "8", "reference": str(tmp_path / "run")})
    again = _evaluate(tofu_model, tofu_tokenizer, task, tmp_path / "again")
    assert again.metrics["tofu/forget_quality"] == 1.0
    assert again.metrics["tofu/model_utility"] == result.metrics["tofu/model_utility"]
    refs = [r for r in read_jsonl(tmp_path / "again" / "samples.jsonl") if r["set"] == REFERENCE_SET]
    assert len(refs) == 5
    # every metric again from the run folder alone
    assert TofuTask.rescore(read_jsonl(tmp_path / "again" / "samples.jsonl"), None, {}, "semeval2025") == again.metrics


def test_a_reference_of_another_protocol_or_questions_is_refused(tofu_folder, tofu_model, tofu_tokenizer, tmp_path):
    task = load_task(tofu_folder, options={"max_new_tokens": "4", "ds_size": "3"})
    _evaluate(tofu_model, tofu_tokenizer, task, tmp_path / "small")
    with pytest.raises(DataError, match="evaluated with ds_size=3, this run with ds_size=300"):
        load_task(tofu_folder, options={"reference": str(tmp_path / "small")})
    with pytest.raises(DataError, match="not a run folder"):
        load_task(tofu_folder, options={"reference": str(tmp_path)})


# -- import-tofu -----------------------------------------------------------------------------------
requires_tofu_logs = pytest.mark.skipif(not (TOFU_LOGS / "phi-full").is_dir(), reason="../shared/tofu-logs is absent")


@requires_tofu_logs
def test_import_tofu_reproduces_the_published_values_and_ranks_on_the_tofu_board(tmp_path, capsys):
    from harness.cli import main
    from harness.core.records import read_result
    from leaderboards import build_leaderboards

    for model in ("phi-full", "phi-retain90"):
        rc = main(["-q", "import-tofu", "--logs", str(TOFU_LOGS / model), "--retain-logs",
                   str(TOFU_LOGS / "phi-retain90"), "--out", str(tmp_path / "runs" / model)])
        assert rc == 0
    full = read_result(tmp_path / "runs" / "phi-full")
    assert full.metrics["tofu/model_utility"] == 0.5220737132035151
    assert full.metrics["tofu/forget_quality"] == 2.1942743021891237e-16
    assert read_result(tmp_path / "runs" / "phi-retain90").metrics["tofu/model_utility"] == 0.5319909117798325
    assert full.settings["protocol"]["format"] == "phi" and full.benchmark.counts == {
        "retain": 300, "forget": 300, "real_authors": 100, "world_facts": 117}
    # score recomputes every metric from the run folder alone, to the bit
    capsys.readouterr()
    assert main(["-q", "score", str(tmp_path / "runs" / "phi-full"), "--json"]) == 0
    rescored = json.loads(capsys.readouterr().out)
    assert rescored == full.metrics
    [(_, board)] = build_leaderboards([tmp_path / "runs"], "tofu", bootstrap=0)
    assert [(e.label, e.rank) for e in board.ranked] == [("phi-retain90", 1), ("phi-full", 2)]
    assert not board.skipped
    # the board's record check rescores TOFU rows through the tofu benchmark, still without torch
    import subprocess
    import sys

    code = ("import sys; from leaderboards import build_leaderboards; "
            f"[(_, b)] = build_leaderboards([{str(tmp_path / 'runs')!r}], 'tofu', bootstrap=0, progress=False); "
            "assert len(b.ranked) == 2 and not b.skipped, b.skipped; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
    # a record whose metrics its own rows do not give is refused, not ranked
    record = tmp_path / "runs" / "phi-full" / "result.json"
    record.write_text(record.read_text().replace("0.5220737132035151", "0.6220737132035151"))
    [(_, board)] = build_leaderboards([tmp_path / "runs"], "tofu", bootstrap=0)
    assert [e.label for e in board.ranked] == ["phi-retain90"]
    assert "tofu/model_utility recomputed from samples.jsonl is 0.522074" in board.skipped[0][1]


def test_import_tofu_errors_name_the_file(tmp_path, capsys):
    from harness.cli import main

    (tmp_path / "logs").mkdir()
    rc = main(["import-tofu", "--logs", str(tmp_path / "logs"), "--retain-logs", str(tmp_path / "logs"),
               "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "missing eval_log.json" in err
    assert not (tmp_path / "out").exists()
