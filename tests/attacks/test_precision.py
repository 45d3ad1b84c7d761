"""The precision attack: the same weights cast to float32, bfloat16 or float16."""

from __future__ import annotations

import copy

import pytest
import torch

from harness.backends import base
from harness.backends import hf as engine
from harness.core.errors import AttackError
from harness.attacks.precision import cast_model

from conftest import MINI_FORGET  # noqa: E402

PROMPTS = [r["input"] for r in MINI_FORGET]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_cast_equals_loading_in_that_dtype(tiny_model_dir, tiny_tokenizer, dtype):
    """Casting an in-memory float32 model gives the model from_pretrained(dtype=...) loads: same
    parameters, float32 rotary buffers, identical logits."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    report = cast_model(model, dtype)
    loaded = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=getattr(torch, dtype))
    for (name, a), (_, b) in zip(model.named_parameters(), loaded.named_parameters()):
        assert a.dtype == b.dtype == getattr(torch, dtype) and torch.equal(a, b), name
    assert {str(b.dtype) for _, b in model.named_buffers()} == {str(b.dtype) for _, b in loaded.named_buffers()}
    ids = tiny_tokenizer(PROMPTS[:2], return_tensors="pt", padding=True).input_ids
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)
    assert report.dtype == dtype and report.from_dtypes == ("float32",)
    import json

    assert json.loads(json.dumps(report.to_dict()))["from_dtypes"] == ["float32"]
    assert 0 < report.changed <= report.parameters
    assert report.verify_margin == engine.default_margin(model) == engine.DEFAULT_MARGINS[dtype]


def test_report_counts_rounding(tiny_llama):
    p = tiny_llama.model.layers[0].mlp.up_proj.weight
    with torch.no_grad():
        p[0, 0] = 1.0           # exact in every format
        p[0, 1] = 1.0 + 2 ** -20  # lost in bfloat16 and float16
        p[0, 2] = 1e-9          # below float16's smallest subnormal: flushed to zero there
    bf = cast_model(copy.deepcopy(tiny_llama), "bfloat16")
    half = cast_model(copy.deepcopy(tiny_llama), "float16")
    assert half.flushed_to_zero >= 1 and bf.flushed_to_zero == 0  # bfloat16 has float32's exponent range
    assert bf.max_relative_change <= 2 ** -8 + 1e-12      # round-to-nearest with 8 significant bits
    assert half.max_relative_change == 1.0                 # the flushed value lost everything
    same = cast_model(copy.deepcopy(tiny_llama), "float32")
    assert same.changed == 0 and same.max_relative_change == 0.0


def test_sixteen_bit_generation_runs_with_the_heuristic_margin(tiny_llama, tiny_tokenizer):
    cast_model(tiny_llama, "bfloat16")
    stats: dict = {}
    out = engine.generate_detailed(tiny_llama, tiny_tokenizer, PROMPTS, max_new_tokens=8, progress=False,
                                   stats=stats)
    assert len(out.texts) == len(PROMPTS)
    assert stats["verify_margin"] == engine.DEFAULT_MARGINS["bfloat16"]


def test_overflow_is_refused_and_model_left_unchanged(tiny_llama):
    with torch.no_grad():
        tiny_llama.model.layers[1].self_attn.o_proj.weight[0, 0] = 1e5
    before = {n: p.detach().clone() for n, p in tiny_llama.named_parameters()}
    with pytest.raises(AttackError, match="model.layers.1.self_attn.o_proj.weight has values up to 1e\\+05"):
        cast_model(tiny_llama, "float16")
    assert all(torch.equal(p, before[n]) and p.dtype == torch.float32 for n, p in tiny_llama.named_parameters())
    cast_model(tiny_llama, "bfloat16")  # bfloat16 has the range


def test_unknown_dtype(tiny_llama):
    with pytest.raises(AttackError, match="dtype must be one of float32, bfloat16, float16"):
        cast_model(tiny_llama, "int8")
