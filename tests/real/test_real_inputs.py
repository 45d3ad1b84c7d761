"""Inputs for real models and data, checked without the real artefacts: the hails/mmlu_no_train layout,
what makes a local MMLU ``full``, ``--model FILE.gguf`` errors, and hub ids going to from_pretrained."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.errors import DataError
from harness.tasks.mcq.data import MMLU_SUBJECT_CATEGORIES, MMLU_TEST_COUNTS, MCQItem, MCQSet, load_mcq
from harness.tasks.mcq.mmlu import MCQSpec, local_completeness

SUBJECTS = {"anatomy": 3, "virology": 2}


def _rows(subject: str, n: int, offset: int) -> dict:
    return {"question": [f"{subject} question {offset + i}?" for i in range(n)], "subject": [subject] * n,
            "choices": [[f"a{i}", f"b{i}", "None", f"d{i}"] for i in range(n)], "answer": [(offset + i) % 4 for i in range(n)]}


def write_hails_layout(root: Path, counts=SUBJECTS, empty_test: str | None = None) -> Path:
    """<subject>/{dev,validation,test}/ saved one split at a time, as hails/mmlu_no_train is."""
    import datasets

    for subject, n in counts.items():
        for split, (size, offset) in {"dev": (5, 0), "validation": (1, 50), "test": (n, 100)}.items():
            size = 0 if (subject == empty_test and split == "test") else size
            ds = datasets.Dataset.from_dict(_rows(subject, size, offset),
                                            features=datasets.Features({
                                                "question": datasets.Value("string"),
                                                "subject": datasets.Value("string"),
                                                "choices": datasets.Sequence(datasets.Value("string")),
                                                "answer": datasets.ClassLabel(names=list("ABCD"))}))
            ds.save_to_disk(str(root / subject / split))
    return root


def write_csv_layout(root: Path, counts=SUBJECTS) -> Path:
    import pandas as pd

    for subject, n in counts.items():
        for split, (size, offset) in {"dev": (5, 0), "val": (1, 50), "test": (n, 100)}.items():
            rows = _rows(subject, size, offset)
            (root / split).mkdir(parents=True, exist_ok=True)
            pd.DataFrame([[q, *c, "ABCD"[a]] for q, c, a in zip(rows["question"], rows["choices"], rows["answer"])]
                         ).to_csv(root / split / f"{subject}_{split}.csv", header=False, index=False)
    return root


def test_hails_layout_loads_the_same_items_as_the_csv_release(tmp_path):
    hails = load_mcq(write_hails_layout(tmp_path / "hails"))
    csv = load_mcq(write_csv_layout(tmp_path / "csv"))
    assert hails.layout == "arrow" and csv.layout == "csv"
    assert hails.data == csv.data  # same questions, choices ("None" kept as text), answers, order, splits
    assert set(hails.data["anatomy"]) == {"dev", "val", "test"} and len(hails.data["anatomy"]["test"]) == 3
    assert hails.content_hash() == csv.content_hash()


def test_a_subject_with_an_empty_test_split_is_an_error(tmp_path):
    root = write_hails_layout(tmp_path / "hails", empty_test="virology")
    with pytest.raises(DataError) as err:
        load_mcq(root)
    assert "virology" in str(err.value) and "no test questions" in str(err.value) and str(root) in str(err.value)


def _mcq(counts: dict[str, int]) -> MCQSet:
    item = MCQItem("q?", ("a", "b", "c", "d"), 0)
    return MCQSet(root=Path("/mmlu"), layout="arrow",
                  data={s: {"dev": [item] * 5, "test": [item] * n} for s, n in counts.items()})


def test_full_only_with_every_subject_and_every_question():
    spec = MCQSpec(source="/mmlu")
    complete = _mcq(MMLU_TEST_COUNTS)
    assert local_completeness(complete, complete.subjects, spec) == (True, [], {})
    # a subject missing
    no_virology = _mcq({s: n for s, n in MMLU_TEST_COUNTS.items() if s != "virology"})
    assert local_completeness(no_virology, no_virology.subjects, spec) == (False, ["virology"], {})
    # a subject with a question missing (or one too many)
    short = _mcq({**MMLU_TEST_COUNTS, "anatomy": 134, "virology": 167})
    full, missing, incomplete = local_completeness(short, short.subjects, spec)
    assert not full and not missing
    assert incomplete == {"anatomy": {"found": 134, "expected": 135}, "virology": {"found": 167, "expected": 166}}
    # a subject filter or a per-subject limit is never the full MMLU
    assert local_completeness(complete, ["anatomy"], MCQSpec(source="/mmlu", subjects="anatomy"))[0] is False
    assert local_completeness(complete, complete.subjects, MCQSpec(source="/mmlu", limit=100))[0] is False
    # another MCQ set (the world's utility) is full when all of it is scored
    world = _mcq({"alpha_facts": 4})
    assert local_completeness(world, world.subjects, MCQSpec(source="/w", metric_name="utility")) == (True, [], {})
    assert len(MMLU_TEST_COUNTS) == len(MMLU_SUBJECT_CATEGORIES) == 57 and sum(MMLU_TEST_COUNTS.values()) == 14042


# -- --model --------------------------------------------------------------------------------------------
def test_gguf_model_path_errors(tmp_path, monkeypatch):
    import importlib.util

    from harness.backends.loading import load_model

    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "missing.gguf")
    other = tmp_path / "weights.bin"
    other.write_bytes(b"\0" * 16)
    with pytest.raises(FileNotFoundError, match="is a file; expected a model folder .* or a .gguf file"):
        load_model(other)
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a gguf file at all")
    if importlib.util.find_spec("gguf") is not None:
        with pytest.raises(ValueError, match=f"cannot load {fake} as a GGUF model"):
            load_model(fake)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real_find_spec(name, *a))
    with pytest.raises(ValueError, match=r"needs the 'gguf' package.*unlearnbench\[real\]"):
        load_model(fake)


def test_hub_ids_go_to_from_pretrained_unchanged(monkeypatch, tiny_llama, tiny_tokenizer):
    """`--model HuggingFaceTB/SmolLM2-135M-Instruct` is passed to from_pretrained as the hub id (which
    downloads where a hub is reachable); offline and uncached, the error says what was tried."""
    import transformers

    from harness.backends.loading import load_model

    seen = []

    def fake_model(name, **kwargs):
        seen.append(("model", name, kwargs.get("dtype")))
        return tiny_llama

    def fake_tok(name, **kwargs):
        seen.append(("tokenizer", name))
        return tiny_tokenizer

    with monkeypatch.context() as m:
        m.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake_model)
        m.setattr(transformers.AutoTokenizer, "from_pretrained", fake_tok)
        model, tok = load_model("HuggingFaceTB/SmolLM2-135M-Instruct", dtype="bfloat16")
    import torch

    assert seen == [("model", "HuggingFaceTB/SmolLM2-135M-Instruct", torch.bfloat16),
                    ("tokenizer", "HuggingFaceTB/SmolLM2-135M-Instruct")]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="cannot load model 'HuggingFaceTB/SmolLM2-135M-Instruct'"):
        load_model("HuggingFaceTB/SmolLM2-135M-Instruct")
