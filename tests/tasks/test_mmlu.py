"""MMLU / utility through lm-evaluation-harness: layouts, protocol, exactness, filters, fast failures.

The reference for exactness is an independent computation with plain transformers: the prompt is
built here from the protocol's description, and each letter's score is the summed log-probability
of the continuation tokens of " A"/" B"/" C"/" D" (split off the whole-sequence tokenisation, as
lm-eval does; with the tiny byte-level BPE " A" may be one or two tokens).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytest

from harness.cli.commands.evaluate import add_mcq_arguments
from harness.cli.commands.evaluate import mcq_specs_from_args as specs_from_args
from harness.core.errors import UserError
from harness.core.errors import DataError
from harness.tasks.mcq.data import MMLU_SUBJECT_CATEGORIES, load_mcq
from harness.tasks.mcq.mmlu import (
    MCQSpec,
    check_mcq_source,
    mmlu_floor_check,
    resolve_subjects,
    run_mcq,
)

LETTERS = "ABCD"
SUBJECTS = ("alpha_facts", "beta_lore", "gamma_trivia")


def _questions(subject: str, n: int, offset: int) -> list[tuple[str, list[str], int]]:
    out = []
    for i in range(n):
        k = offset + i
        # Choices include pandas NA tokens ("None", "NA") that must survive the CSV round trip as text.
        choices = [f"{subject.split('_')[0]} {k}", "None" if k % 3 == 0 else f"river {k}", f"{k * 7} stones",
                   "NA" if k % 4 == 1 else f"the {k}th lamp"]
        out.append((f"In the tale of {subject.replace('_', ' ')}, which item is number {k}? ", choices, (k * 5 + len(subject)) % 4))
    return out


FIXTURE = {s: {"dev": _questions(s, 5, 0), "test": _questions(s, 6, 100)} for s in SUBJECTS}


def write_csv_layout(root: Path) -> Path:
    import pandas as pd

    for subject, splits in FIXTURE.items():
        for split, rows in splits.items():
            (root / split).mkdir(parents=True, exist_ok=True)
            frame = pd.DataFrame([[q, *c, LETTERS[a]] for q, c, a in rows])
            frame.to_csv(root / split / f"{subject}_{split}.csv", header=False, index=False)
    return root


def write_parquet_layout(root: Path) -> Path:
    """The cais/mmlu hub layout: <subject>/<split>-00000-of-00001.parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for subject, splits in FIXTURE.items():
        (root / subject).mkdir(parents=True, exist_ok=True)
        for split, rows in splits.items():
            table = pa.table({"question": [q for q, _, _ in rows], "subject": [subject] * len(rows),
                              "choices": [c for _, c, _ in rows], "answer": [a for _, _, a in rows]})
            pq.write_table(table, root / subject / f"{split}-00000-of-00001.parquet")
    return root


def write_arrow_layout(root: Path) -> Path:
    """datasets.save_to_disk of one DatasetDict per subject."""
    import datasets

    for subject, splits in FIXTURE.items():
        dd = datasets.DatasetDict({
            split: datasets.Dataset.from_dict({"question": [q for q, _, _ in rows], "subject": [subject] * len(rows),
                                               "choices": [c for _, c, _ in rows], "answer": [a for _, _, a in rows]})
            for split, rows in splits.items()})
        dd.save_to_disk(str(root / subject))
    return root


@pytest.fixture(scope="module")
def mcq_dirs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("mcq")
    return {"csv": write_csv_layout(base / "csv"), "parquet": write_parquet_layout(base / "parquet"),
            "arrow": write_arrow_layout(base / "arrow")}


# -- the independent reference ----------------------------------------------------------------------
def _format(question: str, choices: list[str]) -> str:
    return f"{question.strip()}\nA. {choices[0]}\nB. {choices[1]}\nC. {choices[2]}\nD. {choices[3]}\nAnswer:"


def reference_predictions(model, tokenizer, subjects, shots: int, limit: int | None = None,
                          cloze: bool = False) -> list[dict]:
    """Hand-written scoring. ``cloze``: lm-eval's mmlu_continuation layout ("Question: ..\nAnswer:"
    and each choice's text as the continuation) instead of MMLU's letters."""
    import torch

    rows = []
    for subject in subjects:
        kind = "questions" if cloze else "multiple choice questions"
        header = f"The following are {kind} (with answers) about {subject.replace('_', ' ')}.\n\n"
        for q, c, a in FIXTURE[subject]["dev"][:shots]:
            header += (f"Question: {q.strip()}\nAnswer: {c[a]}" if cloze else _format(q, c) + f" {LETTERS[a]}") + "\n\n"
        for doc_id, (q, c, a) in enumerate(FIXTURE[subject]["test"][:limit]):
            context = header + (f"Question: {q.strip()}\nAnswer:" if cloze else _format(q, c))
            ctx_ids = tokenizer(context)["input_ids"]
            wholes = [tokenizer(context + " " + answer)["input_ids"] for answer in (c if cloze else LETTERS)]
            assert all(w[: len(ctx_ids)] == ctx_ids for w in wholes)
            conts = [w[len(ctx_ids):] for w in wholes]
            # Scoring a continuation needs the log-probs at the positions of whole[:-1]; the four
            # sequences usually differ only in their last token, so one forward serves them all.
            forwards: dict[tuple[int, ...], torch.Tensor] = {}
            lls = []
            for whole, cont in zip(wholes, conts):
                prefix = tuple(whole[:-1])
                if prefix not in forwards:
                    with torch.no_grad():
                        forwards[prefix] = torch.log_softmax(model(torch.tensor([prefix])).logits[0].float(), dim=-1)
                logprobs = forwards[prefix]
                lls.append(sum(logprobs[len(ctx_ids) - 1 + j, tok].item() for j, tok in enumerate(cont)))
            pred = max(range(4), key=lambda i: (lls[i], -i))
            rows.append({"subject": subject, "doc_id": doc_id, "prediction": LETTERS[pred], "answer": LETTERS[a],
                         "correct": int(pred == a), "loglikelihoods": lls})
    return rows


def _assert_same_as_reference(samples_file: Path, reference: list[dict], accuracy: float) -> None:
    got = [json.loads(line) for line in samples_file.read_text().splitlines()]
    assert [(r["subject"], r["doc_id"], r["answer"]) for r in got] == \
        [(r["subject"], r["doc_id"], r["answer"]) for r in reference]
    assert [r["prediction"] for r in got] == [r["prediction"] for r in reference]
    for g, r in zip(got, reference):
        assert g["loglikelihoods"] == pytest.approx(r["loglikelihoods"], abs=1e-4)
    assert accuracy == sum(r["correct"] for r in reference) / len(reference)


# -- exactness and layouts --------------------------------------------------------------------------
def test_semeval2025_matches_independent_logits_and_layouts_agree(mcq_dirs, tiny_llama, tiny_tokenizer, tmp_path):
    reference = reference_predictions(tiny_llama, tiny_tokenizer, SUBJECTS, shots=5)
    # The test must be able to fail: a random model is neither always right nor always wrong here.
    assert 0 < sum(r["correct"] for r in reference) < len(reference)
    results = {}
    # The arrow layout loads to the same items as these two (test_csv_keeps_na_like_choices_as_text).
    for layout in ("csv", "parquet"):
        root = mcq_dirs[layout]
        samples = tmp_path / f"{layout}.jsonl"
        acc, info = run_mcq(tiny_llama, tiny_tokenizer, MCQSpec(source=str(root), metric_name="utility",
                                                                batch_size=4, samples_path=str(samples)))
        _assert_same_as_reference(samples, reference, acc)
        assert info.settings["layout"] == layout
        results[layout] = (acc, info, samples.read_text())
    infos = [r[1] for r in results.values()]
    assert len({r[0] for r in results.values()}) == 1
    assert len({r[2] for r in results.values()}) == 1, "per-question outputs differ between layouts"
    assert len({i.settings["data_hash"] for i in infos}) == 1
    info = infos[0]
    assert (info.protocol, info.metric_name, info.num_fewshot, info.n_questions) == ("semeval2025", "utility", 5, 18)
    assert info.subjects == list(SUBJECTS) and info.limit is None and info.full is True
    assert info.settings["per_subject"]["beta_lore"]["n"] == 6
    assert info.settings["lm_eval_version"]
    assert info.settings["prompt"]["fewshot_sampler"].startswith("first_n")
    # lm-eval's own size-weighted group accuracy is the same micro average.
    assert info.settings["lm_eval_group_acc"] == pytest.approx(results["csv"][0], abs=1e-12)


def test_cloze_format_matches_independent_logits(mcq_dirs, tiny_llama, tiny_tokenizer, tmp_path):
    reference = reference_predictions(tiny_llama, tiny_tokenizer, SUBJECTS, shots=5, cloze=True)
    assert 0 < sum(r["correct"] for r in reference) < len(reference)
    assert reference != reference_predictions(tiny_llama, tiny_tokenizer, SUBJECTS, shots=5)  # a different prompt
    samples = tmp_path / "cloze.jsonl"
    acc, info = run_mcq(tiny_llama, tiny_tokenizer, MCQSpec(source=str(mcq_dirs["csv"]), metric_name="utility",
                                                            batch_size=4, samples_path=str(samples),
                                                            prompt_format="cloze"))
    _assert_same_as_reference(samples, reference, acc)
    assert info.prompt_format == "cloze" and info.settings["prompt"]["format"] == "cloze"
    assert "mmlu_continuation" in info.settings["task_configs"]
    with pytest.raises(UserError, match="unknown MCQ prompt format 'letter'"):
        MCQSpec(source="x", prompt_format="letter")


def test_lm_eval_protocol_filter_and_limit(mcq_dirs, tiny_llama, tiny_tokenizer, tmp_path):
    samples = tmp_path / "s.jsonl"
    spec = MCQSpec(source=str(mcq_dirs["csv"]), protocol="lm-eval", subjects="gamma_trivia,alpha_facts", limit=4,
                   samples_path=str(samples))
    acc, info = run_mcq(tiny_llama, tiny_tokenizer, spec)
    reference = reference_predictions(tiny_llama, tiny_tokenizer, ["alpha_facts", "gamma_trivia"], shots=0, limit=4)
    _assert_same_as_reference(samples, reference, acc)
    assert info.protocol == "lm-eval" and info.num_fewshot == 0
    assert info.subjects == ["alpha_facts", "gamma_trivia"] and info.limit == 4 and info.n_questions == 8
    assert info.full is False
    assert info.settings["subjects_filter"] == ["gamma_trivia", "alpha_facts"]
    # Invented subjects are not MMLU: recorded as missing, so this can never pass for the full MMLU.
    assert len(info.settings["missing_mmlu_subjects"]) == len(MMLU_SUBJECT_CATEGORIES)


# -- fast, clear failures -----------------------------------------------------------------------------
def test_missing_local_copy_fails_fast_with_placement_help(tmp_path, tiny_llama, tiny_tokenizer):
    start = time.monotonic()
    with pytest.raises(DataError) as err:
        run_mcq(tiny_llama, tiny_tokenizer, MCQSpec(source=str(tmp_path / "no-mmlu-here")))
    assert time.monotonic() - start < 5
    message = str(err.value)
    assert "no-mmlu-here" in message and "dev/<subject>_dev.csv" in message and "cais/mmlu" in message


def test_preflight_check_catches_problems_without_a_model(mcq_dirs, tmp_path, monkeypatch):
    check_mcq_source(MCQSpec(source=str(mcq_dirs["parquet"]), subjects="beta_lore"))  # fine: no error
    with pytest.raises(DataError, match="no such folder"):
        check_mcq_source(MCQSpec(source=str(tmp_path / "missing")))
    with pytest.raises(UserError, match="did you mean beta_lore"):
        check_mcq_source(MCQSpec(source=str(mcq_dirs["csv"]), subjects="beta_lor"))
    with pytest.raises(DataError, match="5 dev question\(s\) but 6-shot"):
        check_mcq_source(MCQSpec(source=str(mcq_dirs["csv"]), num_fewshot=6))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="offline"):
        check_mcq_source(MCQSpec(source="hub"))


def test_empty_folder_says_what_was_expected(tmp_path):
    with pytest.raises(DataError, match="no MCQ files found"):
        load_mcq(tmp_path)


def test_hub_offline_fails_fast(tiny_llama, tiny_tokenizer, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(UserError) as err:
        run_mcq(tiny_llama, tiny_tokenizer, MCQSpec(source="hub"))
    assert time.monotonic() - start < 5
    assert "offline" in str(err.value) and "--mmlu PATH" in str(err.value)


def test_too_few_dev_questions_for_the_shots(tmp_path, tiny_llama, tiny_tokenizer):
    root = write_csv_layout(tmp_path / "m")
    (root / "dev" / "beta_lore_dev.csv").write_text("Q?,a,b,c,d,A\n")
    with pytest.raises(DataError, match=r"beta_lore.*1 dev question\(s\) but 5-shot"):
        run_mcq(tiny_llama, tiny_tokenizer, MCQSpec(source=str(root)))


# -- loading ------------------------------------------------------------------------------------------
def test_csv_keeps_na_like_choices_as_text(mcq_dirs):
    mcq = load_mcq(mcq_dirs["csv"])
    assert mcq.subjects == list(SUBJECTS)
    first = mcq.data["alpha_facts"]["dev"][0]
    assert first.choices[1] == "None"
    assert mcq.data["alpha_facts"]["dev"][1].choices[3] == "NA"
    assert load_mcq(mcq_dirs["parquet"]).data == mcq.data == load_mcq(mcq_dirs["arrow"]).data


def test_malformed_csv_names_file_and_row(tmp_path):
    root = write_csv_layout(tmp_path / "m")
    bad = root / "test" / "beta_lore_test.csv"
    bad.write_text("Q1?,a,b,c,d,B\nQ2?,a,b,c,d,E\n")
    with pytest.raises(DataError) as err:
        load_mcq(root)
    assert str(bad) in str(err.value) and "line 2" in str(err.value) and "A, B, C, D" in str(err.value)
    bad.write_text("Q1?,a,b,c,B\n")
    with pytest.raises(DataError, match="expected 6 columns"):
        load_mcq(root)


def test_hub_all_config_is_split_by_subject(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "mmlu" / "all"
    folder.mkdir(parents=True)
    for split in ("dev", "test"):
        rows = [(s, q, c, a) for s in SUBJECTS for q, c, a in FIXTURE[s][split]]
        pq.write_table(pa.table({"question": [r[1] for r in rows], "subject": [r[0] for r in rows],
                                 "choices": [r[2] for r in rows], "answer": [r[3] for r in rows]}),
                       folder / f"{split}-00000-of-00001.parquet")
    assert load_mcq(tmp_path / "mmlu").data == load_mcq(write_csv_layout(tmp_path / "csv")).data


def test_hub_route_maps_filters_to_lm_eval_builtin_tasks(tiny_llama, tiny_tokenizer, monkeypatch):
    """The online route, with the network and lm-eval replaced by a recorder (no hub in tests)."""
    import harness.tasks.mcq.mmlu as mmlu

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(mmlu, "_hub_reachable", lambda timeout=3.0: (True, "https://huggingface.co"))
    calls = []

    def fake_evaluate(model, tokenizer, spec, tasks, task_manager, num_fewshot, limit):
        calls.append((tasks, num_fewshot, limit))
        sfx = "_continuation" if tasks[0].endswith("_continuation") else ""
        sample = lambda i, target, best: {"doc_id": i, "target": target, "acc": float(target == best),  # noqa: E731
                                          "filtered_resps": [(-1.0 if k == best else -2.0, False) for k in range(4)]}
        return {"samples": {f"mmlu_anatomy{sfx}": [sample(0, 1, 1), sample(1, 2, 0)],
                            f"mmlu_virology{sfx}": [sample(0, 3, 3)]},
                "n-shot": {f"mmlu_anatomy{sfx}": num_fewshot, f"mmlu_virology{sfx}": num_fewshot},
                "n-samples": {f"mmlu_anatomy{sfx}": {"original": 135, "effective": 2},
                              f"mmlu_virology{sfx}": {"original": 166, "effective": 1}},
                "results": {}}

    monkeypatch.setattr(mmlu, "_evaluate", fake_evaluate)
    acc, info = run_mcq(tiny_llama, tiny_tokenizer, MCQSpec(source="hub"))
    assert calls[-1] == (["mmlu"], 5, None)
    assert acc == 2 / 3 and info.n_questions == 3 and info.subjects == ["anatomy", "virology"] and info.full
    run_mcq(tiny_llama, tiny_tokenizer, MCQSpec(source="hub", protocol="lm-eval", subjects="stem", limit=2))
    assert calls[-1] == (["mmlu_stem"], 0, 2)
    _, info = run_mcq(tiny_llama, tiny_tokenizer, MCQSpec(source="hub", subjects="virology,anatomy", limit=2))
    assert calls[-1] == (["mmlu_anatomy", "mmlu_virology"], 5, 2) and info.full is False
    # the cloze format runs lm-eval's own mmlu_continuation tasks
    acc, info = run_mcq(tiny_llama, tiny_tokenizer, MCQSpec(source="hub", prompt_format="cloze"))
    assert calls[-1] == (["mmlu_continuation"], 5, None)
    assert acc == 2 / 3 and info.subjects == ["anatomy", "virology"] and info.prompt_format == "cloze"
    run_mcq(tiny_llama, tiny_tokenizer, MCQSpec(source="hub", subjects="stem", prompt_format="cloze"))
    assert calls[-1] == (["mmlu_stem_continuation"], 5, None)


def test_subject_categories_match_lm_eval():
    from lm_eval.tasks.mmlu._generate_configs import SUBJECTS

    assert MMLU_SUBJECT_CATEGORIES == SUBJECTS


# -- subject selection --------------------------------------------------------------------------------
def test_resolve_subjects_groups_and_typos():
    mmlu = list(MMLU_SUBJECT_CATEGORIES)
    stem = resolve_subjects(mmlu, "stem")
    assert "anatomy" in stem and "philosophy" not in stem and len(stem) == 19
    assert resolve_subjects(mmlu, ["philosophy", "humanities"]) == resolve_subjects(mmlu, "humanities")
    assert resolve_subjects(SUBJECTS, None) == list(SUBJECTS)
    with pytest.raises(UserError, match="did you mean anatomy"):
        resolve_subjects(mmlu, "anatomyy")
    with pytest.raises(UserError, match="groups apply to the 57 MMLU subjects"):
        resolve_subjects(SUBJECTS, "stem")


# -- floor and CLI helpers ----------------------------------------------------------------------------
def test_mmlu_floor_check():
    assert mmlu_floor_check(0.40, absolute=0.371) == {"mmlu_floor": 0.371, "mmlu_floor_rule": "absolute",
                                                      "mmlu_floor_passed": True}
    assert mmlu_floor_check(0.3709, absolute=0.371)["mmlu_floor_passed"] is False
    assert mmlu_floor_check(0.371, absolute=0.371)["mmlu_floor_passed"] is True
    rel = mmlu_floor_check(0.37, reference=0.4947)
    assert rel["mmlu_floor"] == pytest.approx(0.371025) and rel["mmlu_floor_passed"] is False
    assert mmlu_floor_check(0.30, relative=0.5, reference=0.5)["mmlu_floor_passed"] is True
    assert mmlu_floor_check(None, absolute=0.371)["mmlu_floor_passed"] is None
    with pytest.raises(ValueError):
        mmlu_floor_check(0.5)


def test_specs_from_args():
    parser = argparse.ArgumentParser()
    add_mcq_arguments(parser)
    mmlu, utility = specs_from_args(parser.parse_args(
        ["--mmlu", "/data/mmlu", "--utility", "/w/utility", "--mmlu-protocol", "lm-eval",
         "--mmlu-subjects", "stem", "--mmlu-limit", "20"]))
    assert mmlu == MCQSpec(source="/data/mmlu", protocol="lm-eval", subjects="stem", limit=20)
    assert utility == MCQSpec(source="/w/utility", protocol="lm-eval", metric_name="utility", prompt_format="cloze")
    mmlu, utility = specs_from_args(parser.parse_args(["--mmlu", "m", "--utility", "u", "--mmlu-format", "cloze",
                                                       "--utility-format", "letters"]))
    assert (mmlu.prompt_format, utility.prompt_format) == ("cloze", "letters")
    assert specs_from_args(parser.parse_args([])) == (None, None)
    with pytest.raises(UserError, match="positive"):
        specs_from_args(parser.parse_args(["--mmlu", "x", "--mmlu-limit", "0"]))
