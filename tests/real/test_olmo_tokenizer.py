"""The SemEval models' tokenizer: generations are decoded exactly as the organisers' transformers 4.45.2
run decoded them (the classic clean-up, PII placeholders kept as text).

The reference is ``tests/data/olmo_decode_445.json``, written by transformers 4.45.2 and tokenizers
0.20.3 themselves (``tests/data/make_olmo_decode_445.py``): hand-built id sequences around the
clean-up and the placeholders, and the generations of a small random OLMo-architecture model on real
LUME records. Today's transformers (5.x) decodes many of them differently: it skips the clean-up for
BPE tokenizers.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from conftest import LUME_DIR, requires_lume

pytestmark = pytest.mark.real_assets

DATA = Path(__file__).resolve().parents[1] / "data"
FIXTURE = json.loads((DATA / "olmo_decode_445.json").read_text(encoding="utf-8"))
PLACEHOLDERS = ("|||EMAIL_ADDRESS|||", "|||PHONE_NUMBER|||", "|||IP_ADDRESS|||")


def _maker():
    spec = importlib.util.spec_from_file_location("make_olmo_decode_445", DATA / "make_olmo_decode_445.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def olmo_tok(real_assets):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(real_assets / "olmo-tokenizer"))


def _name(item: dict) -> str:
    return item.get("name") or f"{item['split']} {item['record_id']}"


def test_fixture_was_made_by_transformers_445_and_can_tell_the_difference():
    assert FIXTURE["made_with"]["transformers"] == "4.45.2" and FIXTURE["made_with"]["tokenizers"] == "0.20.3"
    items = FIXTURE["constructed"] + FIXTURE["generations"]
    # The reference would catch a lost clean-up: many texts change without it...
    assert sum(i["raw_445"] != i["text_445"] for i in FIXTURE["constructed"]) >= 10
    assert sum(i["raw_445"] != i["text_445"] for i in FIXTURE["generations"]) >= 10
    # ...and lost placeholders: these texts hold them, and lose them when they are special tokens.
    with_placeholders = [i for i in items if any(p in i["text_445"] for p in PLACEHOLDERS)]
    assert len(with_placeholders) >= 10
    assert all(i["placeholders_special_445"] != i["text_445"] for i in with_placeholders)


def test_semeval_decoding_equals_transformers_445(olmo_tok):
    from harness.backends.base import decode

    items = FIXTURE["constructed"] + FIXTURE["generations"]
    wrong = {_name(i): (decode(olmo_tok, i["ids"], "semeval2025"), i["text_445"]) for i in items
             if decode(olmo_tok, i["ids"], "semeval2025") != i["text_445"]}
    assert not wrong, f"decoded differently from transformers 4.45.2: {wrong}"
    # plain mode is the tokenizer's own text, without the clean-up
    assert all(decode(olmo_tok, i["ids"], "plain") == i["raw_445"] for i in items)


def test_placeholders_are_ordinary_added_tokens(olmo_tok):
    from harness.real.assets import OLMO_PLACEHOLDERS, check_olmo_tokenizer

    check_olmo_tokenizer(olmo_tok, "olmo-tokenizer")
    for text, tid in OLMO_PLACEHOLDERS.items():
        assert olmo_tok(f"Mail {text} now")["input_ids"].count(tid) == 1
        assert text not in olmo_tok.all_special_tokens


@requires_lume
def test_lume_tokenises_as_with_transformers_445(olmo_tok):
    maker = _maker()
    assert maker.encoding_hash(olmo_tok, maker.lume_texts(LUME_DIR)) == FIXTURE["lume_encoding_sha256"]


@requires_lume
def test_random_olmo_in_semeval2025_mode_on_lume_generates_the_445_texts(olmo_tok, tmp_path):
    """A small OLMo-architecture model with the real tokenizer, evaluated like a SemEval submission on
    real LUME records: every generation in samples.jsonl is the text transformers 4.45 decoded."""
    from harness.tasks.lume.data import load_benchmark
    from harness.evaluation.pipeline import EvalSettings, evaluate_model
    from harness.synthetic.tiny import tiny_olmo

    m = FIXTURE["model"]
    model = tiny_olmo(olmo_tok, hidden_size=m["hidden_size"], num_layers=m["num_layers"], num_heads=m["num_heads"],
                      seed=m["seed"], favoured_tokens=m["favoured_ids"], favour=m["favour"])
    assert type(model).__name__ == "OlmoForCausalLM"
    wanted = {(g["split"], g["record_id"]): g for g in FIXTURE["generations"]}
    bench_dir = tmp_path / "lume-subset"
    bench_dir.mkdir()
    for split in ("forget", "retain"):
        lines = (LUME_DIR / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
        keep = [ln for ln in lines if (split, json.loads(ln)["id"]) in wanted]
        (bench_dir / f"{split}.jsonl").write_text("\n".join(keep) + "\n", encoding="utf-8")
    bench = load_benchmark(bench_dir)
    assert len(bench.records) == len(wanted) == 24
    evaluate_model(model, olmo_tok, bench, EvalSettings(mode="semeval2025", max_new_tokens=m["max_new_tokens"],
                                                        batch_size=8, cache=False, progress=False,
                                                        answer_losses=False), out_dir=tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    got = {(r["split"], r["id"]): r["generation"] for r in rows}
    differ = {k: (got[k], g["text_445"]) for k, g in wanted.items() if got[k] != g["text_445"]}
    assert not differ, ("generations differ from transformers 4.45's decoding of the organisers' loop (if the "
                        f"token ids changed, regenerate with tests/data/make_olmo_decode_445.py): {differ}")
    assert sum(any(p in t for p in PLACEHOLDERS) for t in got.values()) >= 5
