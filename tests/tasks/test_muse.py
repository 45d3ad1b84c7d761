"""The MUSE benchmark on small synthetic folders in MUSE's released layouts (no MUSE text is used or
committed): reading both layouts, detection, malformed files, options, evaluation end to end on a tiny
model, rescoring from the run folder, a PrivLeak reference run, and the `muse` board (protocols are
never ranked together)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from harness.core.errors import ConfigError, DataError
from harness.tasks import detect_benchmark, load_task
from harness.tasks.muse.task import PROTOCOL_SET, MuseTask, load_muse
from metrics.muse import KNOWMEM_FORGET, KNOWMEM_RETAIN, MUSE_RETRAIN_AUC, PRIVLEAK, PRIVLEAK_AUC, VERBMEM_FORGET

_PLACES = ("Vemra", "Kessa", "Olo", "Brin", "Marn", "Tesh", "Quill", "Dorrow")
_THINGS = ("lanterns", "ferries", "orchards", "bridges", "clocks", "looms", "kilns", "beehives")


def _sentence(rng: random.Random) -> str:
    return (f"In {rng.choice(_PLACES)} the keepers count {rng.randint(2, 90)} {rng.choice(_THINGS)} "
            f"before the {rng.choice(_THINGS)} of {rng.choice(_PLACES)} open.")


def _subsets(seed: int = 0) -> dict[tuple[str, str], list]:
    """Invented content with MUSE's fields, one entry per released subset/split."""
    rng = random.Random(seed)
    qa = lambda n: [{"question": f"How many {rng.choice(_THINGS)} does {rng.choice(_PLACES)} keep?",  # noqa: E731
                     "answer": str(rng.randint(2, 90))} for _ in range(n)]
    long_gt = " ".join(_sentence(rng) for _ in range(12))  # longer than the 128-token VerbMem cut
    return {
        ("verbmem", "forget"): [{"prompt": _sentence(rng), "gt": long_gt}] +
                               [{"prompt": _sentence(rng), "gt": _sentence(rng)} for _ in range(2)],
        ("knowmem", "forget_qa"): qa(3), ("knowmem", "forget_qa_icl"): qa(2),
        ("knowmem", "retain_qa"): qa(3), ("knowmem", "retain_qa_icl"): qa(2),
        ("privleak", "forget"): [_sentence(rng) for _ in range(4)],
        ("privleak", "holdout"): [_sentence(rng) for _ in range(4)],
        ("raw", "forget"): [_sentence(rng) for _ in range(3)], ("raw", "retain1"): [_sentence(rng) for _ in range(3)],
    }


def write_authors_layout(folder: Path, seed: int = 0) -> Path:
    """The MUSE authors' ``load_data.py`` layout: ``<subset>/<split>.json``, JSON arrays (texts as strings)."""
    for (subset, split), rows in _subsets(seed).items():
        (folder / subset).mkdir(parents=True, exist_ok=True)
        (folder / subset / f"{split}.json").write_text(json.dumps(rows, indent=2))
    return folder


def write_hub_layout(folder: Path, seed: int = 0) -> Path:
    """Hugging Face's parquet layout: ``<subset>/<split>-00000-of-00001.parquet``, texts as ``{text}`` rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for (subset, split), rows in _subsets(seed).items():
        (folder / subset).mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist([r if isinstance(r, dict) else {"text": r} for r in rows])
        pq.write_table(table, folder / subset / f"{split}-00000-of-00001.parquet")
    return folder


# -- data ------------------------------------------------------------------------------------------
def test_both_released_layouts_read_the_same_and_are_detected(tmp_path):
    authors, hub = write_authors_layout(tmp_path / "a"), write_hub_layout(tmp_path / "h")
    a, h = load_muse(authors), load_muse(hub)
    assert (a.verbmem, a.knowmem, a.privleak, a.raw) == (h.verbmem, h.knowmem, h.privleak, h.raw)
    assert len(a.knowmem["forget"]) == 3 and len(a.privleak["holdout"]) == 4 and len(a.raw["retain1"]) == 3
    assert detect_benchmark(authors) == detect_benchmark(hub) == "muse"
    assert load_task(authors).content_hash == load_task(hub).content_hash
    # the pre-release names of the retain QA (retain2_qa) are accepted
    for split in ("retain_qa", "retain_qa_icl"):
        (authors / "knowmem" / f"{split}.json").rename(authors / "knowmem" / f"{split.replace('retain', 'retain2')}.json")
    assert load_muse(authors).knowmem == a.knowmem


@pytest.mark.parametrize("subset, split, content, message", [
    ("privleak", "holdout", None, "no privleak/holdout"),
    ("knowmem", "forget_qa", [{"question": "q", "answer": "a"}, {"question": "q"}],
     "item 2: expected an object with string fields question, answer"),
    ("privleak", "forget", ["a text", "  "], "item 2: expected a non-empty text"),
    ("verbmem", "forget", "[{\"prompt\": ", "not valid JSON"),
    ("knowmem", "retain_qa", [], "no items"),
])
def test_malformed_subsets_are_refused_naming_the_file(tmp_path, subset, split, content, message):
    folder = write_authors_layout(tmp_path / "m")
    path = folder / subset / f"{split}.json"
    if content is None:
        path.unlink()
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(DataError, match=message) as info:
        load_muse(folder)
    assert str(folder) in str(info.value)


def test_options_are_checked(tmp_path):
    folder = write_authors_layout(tmp_path / "m")
    with pytest.raises(ConfigError, match="unknown MUSE option\\(s\\) split"):
        load_task(folder, options={"split": "x"})
    with pytest.raises(ConfigError, match="give one PrivLeak reference, not corpus and retrain_auc"):
        load_task(folder, options={"corpus": "news", "retrain_auc": "0.5"})
    with pytest.raises(ConfigError, match="corpus must be one of news, books"):
        load_task(folder, options={"corpus": "poems"})
    with pytest.raises(ConfigError, match="protocol"):
        load_task(folder, options={"protocol": "mine"})
    with pytest.raises(ConfigError, match="--mia does not apply"):
        load_task(folder, mia=folder)
    # the protocol is part of the benchmark's identity (what the boards group by)
    assert load_task(folder).content_hash != load_task(folder, options={"protocol": "open-unlearning"}).content_hash


# -- evaluation ------------------------------------------------------------------------------------
def _evaluate(model, tokenizer, task, out: Path, label: str):
    from harness.evaluation.pipeline import EvalSettings, evaluate_model

    return evaluate_model(model, tokenizer, task, EvalSettings(cache=False, progress=False), out, label=label)


def test_evaluation_rescoring_reference_and_board(tmp_path, tiny_llama, tiny_tokenizer):
    from harness.core.fileio import read_jsonl
    from harness.synthetic.tiny import tiny_llama as make_llama
    from leaderboards import LeaderboardError, build_leaderboards

    folder = write_authors_layout(tmp_path / "muse")
    runs = tmp_path / "runs"
    result = _evaluate(tiny_llama, tiny_tokenizer, load_task(folder, options={"corpus": "news"}), runs / "a", "a")
    assert set(result.metrics) == {VERBMEM_FORGET, KNOWMEM_FORGET, KNOWMEM_RETAIN, PRIVLEAK_AUC, PRIVLEAK}
    auc = result.metrics[PRIVLEAK_AUC]
    assert result.metrics[PRIVLEAK] == (auc - MUSE_RETRAIN_AUC["news"]) / MUSE_RETRAIN_AUC["news"] * 100
    assert result.settings["benchmark"] == "muse" and result.settings["protocol"]["protocol"] == "muse"
    rows = read_jsonl(runs / "a" / "samples.jsonl")
    sets = [r["set"] for r in rows]
    assert [sets.count(s) for s in ("verbmem_forget", "knowmem_forget", "knowmem_retain", "privleak_forget",
                                    "privleak_holdout", PROTOCOL_SET)] == [3, 3, 3, 4, 4, 1]
    # the VerbMem reference is the ground truth cut to its first 128 tokens (the authors' code)
    long_gt = _subsets()[("verbmem", "forget")][0]["gt"]
    cut = tiny_tokenizer.decode(tiny_tokenizer(long_gt)["input_ids"][:128], skip_special_tokens=True)
    assert rows[0]["reference"] == cut and len(cut) < len(long_gt)
    assert MuseTask.rescore(rows, None, {}, "semeval2025") == result.metrics

    # the retrained model's run as the PrivLeak reference; a run against itself leaks nothing
    again = _evaluate(tiny_llama, tiny_tokenizer, load_task(folder, options={"reference": str(runs / "a")}),
                      runs / "b", "b")
    assert again.metrics[PRIVLEAK] == 0.0 and again.metrics[PRIVLEAK_AUC] == auc
    with pytest.raises(DataError, match="the reference run used protocol 'muse', this run 'open-unlearning'"):
        load_task(folder, options={"reference": str(runs / "a"), "protocol": "open-unlearning"})

    other = make_llama(tiny_tokenizer, hidden_size=64, num_layers=2, seed=1)
    _evaluate(other, tiny_tokenizer, load_task(folder, options={"corpus": "news"}), runs / "c", "c")
    [(_, board)] = build_leaderboards([runs], "muse", bootstrap=0)
    assert sorted(e.label for e in board.ranked) == ["a", "b", "c"] and not board.skipped
    ordered = [(e.rank, e.values[KNOWMEM_RETAIN]) for e in board.ranked]
    assert ordered == sorted(ordered, key=lambda x: (x[0], -x[1])) and [x[1] for x in ordered] == sorted(
        (x[1] for x in ordered), reverse=True)

    # an open-unlearning run of the same data is another quantity: never ranked with the others
    _evaluate(tiny_llama, tiny_tokenizer, load_task(folder, options={"corpus": "news", "protocol": "open-unlearning"}),
              runs / "ou", "ou")
    with pytest.raises(LeaderboardError):
        build_leaderboards([runs], "muse", bootstrap=0)
    groups = build_leaderboards([runs], "muse", bootstrap=0, split_by_benchmark=True)
    assert sorted(sorted(e.label for e in b.ranked) for _, b in groups) == [["a", "b", "c"], ["ou"]]
