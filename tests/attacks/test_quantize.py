"""The quantisation attack: RTN weights through torchao, usable by the evaluation engine."""

from __future__ import annotations

import copy

import pytest

pytest.importorskip("torchao", reason="the quantisation attack needs torchao (pip install 'unlearnbench[attacks]')")

import torch  # noqa: E402

from harness.backends import base, losses  # noqa: E402
from harness.backends import hf as engine  # noqa: E402
from harness.core.errors import AttackError  # noqa: E402
from harness.attacks.quantize import (  # noqa: E402
    QuantizeSettings,
    bitsandbytes_config,
    load_with_bitsandbytes,
    quantize_model,
)

from conftest import MINI_FORGET  # noqa: E402

PROMPTS = [r["input"] for r in MINI_FORGET]
ANSWERS = [r["output"] for r in MINI_FORGET]


def logits(model, tokenizer):
    ids = tokenizer(PROMPTS[:3], return_tensors="pt", padding=True).input_ids
    with torch.no_grad():
        return model(ids).logits


def library_rtn(weight: torch.Tensor, bits: int, group: int | None) -> torch.Tensor:
    """torchao's own affine primitives: choose_qparams -> quantize -> dequantize, symmetric."""
    from torchao.quantization.quant_primitives import (
        MappingType,
        choose_qparams_affine,
        dequantize_affine,
        quantize_affine,
    )

    block = (1, group or weight.shape[1])
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    scale, zero = choose_qparams_affine(weight, MappingType.SYMMETRIC, block, torch.int8, qmin, qmax,
                                        zero_point_dtype=torch.int8)
    q = quantize_affine(weight, block, scale, zero, torch.int8, qmin, qmax)
    return dequantize_affine(q, block, scale, zero, torch.int8, qmin, qmax, output_dtype=weight.dtype)


@pytest.mark.parametrize("bits,group", [(8, None), (4, 64), (4, 32)])
def test_weights_equal_library_rtn_reference(tiny_llama, bits, group):
    original = copy.deepcopy(tiny_llama)
    settings = QuantizeSettings(bits=bits, group_size=group if group else "channel")
    report = quantize_model(tiny_llama, settings)
    assert report.modules and "lm_head" in report.skipped
    import json

    record = json.loads(json.dumps(report.to_dict()))  # stored in the attacked run's record
    assert record["settings"]["bits"] == bits and record["settings"]["group_size"] == group
    assert record["library"] == "torchao" and record["weights"] == sum(
        tiny_llama.get_submodule(n).weight.numel() for n in report.modules)
    for name in report.modules:
        before = original.get_submodule(name).weight.detach()
        after = tiny_llama.get_submodule(name).weight.detach()
        assert torch.equal(after, library_rtn(before, bits, group)), name
        # and the defining property of round-to-nearest on the symmetric grid, library-independently:
        # within each block, w' = q * scale with integer q in [qmin, qmax] and |w' - w| <= scale / 2
        g = group or before.shape[1]
        blocks_w, blocks_q = before.reshape(-1, g), after.reshape(-1, g)
        scale = blocks_w.abs().amax(dim=1, keepdim=True) / ((2 ** bits - 1) / 2)
        q = blocks_q / scale
        assert torch.allclose(q, q.round(), atol=1e-3)
        assert q.round().min() >= -(2 ** (bits - 1)) and q.round().max() <= 2 ** (bits - 1) - 1
        assert bool(((blocks_q - blocks_w).abs() <= scale * (0.5 + 1e-4)).all())  # 0.50001 at the clamped max
    # the head and the embeddings are untouched
    assert torch.equal(tiny_llama.lm_head.weight, original.lm_head.weight)
    assert torch.equal(tiny_llama.model.embed_tokens.weight, original.model.embed_tokens.weight)


def test_eight_bits_moves_logits_slightly_four_bits_more(tiny_llama, tiny_tokenizer):
    base = logits(tiny_llama, tiny_tokenizer)
    scale = float(base.abs().max())
    diffs = {}
    for bits in (8, 4):
        model = copy.deepcopy(tiny_llama)
        report = quantize_model(model, QuantizeSettings(bits=bits))
        diffs[bits] = float((logits(model, tiny_tokenizer) - base).abs().max()) / scale
        assert report.relative_error > 0
    assert 0 < diffs[8] < 0.02          # measured 0.7% of the largest logit on this model
    assert diffs[4] > 4 * diffs[8]      # measured 11.5%


def test_structure_dtype_and_evaluation_survive(tiny_llama, tiny_tokenizer, tmp_path):
    reference = copy.deepcopy(tiny_llama)
    quantize_model(tiny_llama, QuantizeSettings(bits=4))
    # same classes, parameter names, shapes and dtypes: an ordinary transformers model
    assert [type(m) for m in tiny_llama.modules()] == [type(m) for m in reference.modules()]
    assert [(n, p.shape, p.dtype, type(p)) for n, p in tiny_llama.named_parameters()] == \
           [(n, p.shape, p.dtype, type(p)) for n, p in reference.named_parameters()]
    assert base.model_dtype_name(tiny_llama) == "float32"
    # the evaluation engine's generation (verified against one-at-a-time decoding) and losses run
    out = engine.generate_detailed(tiny_llama, tiny_tokenizer, PROMPTS, max_new_tokens=12, progress=False)
    assert len(out.texts) == len(PROMPTS)
    for i, p in enumerate(PROMPTS):  # batched greedy == the organisers' one-at-a-time loop
        ids = tiny_tokenizer(p, return_tensors="pt").input_ids
        ref = tiny_llama.generate(ids, max_new_tokens=12, do_sample=False,
                                  pad_token_id=tiny_tokenizer.eos_token_id)[0, ids.shape[1]:].tolist()
        assert out.token_ids[i] == ref
    answer_losses = losses.answer_losses(tiny_llama, tiny_tokenizer, PROMPTS, ANSWERS, progress=False)
    assert all(isinstance(v, float) for v in answer_losses)
    # it saves and reloads like any model, with the rounded weights
    tiny_llama.save_pretrained(tmp_path / "q")
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "q")
    assert torch.equal(reloaded.model.layers[0].mlp.up_proj.weight, tiny_llama.model.layers[0].mlp.up_proj.weight)


def test_kept_quantized_modules_decode_the_same(tiny_llama, tiny_tokenizer):
    """torchao's own quantised tensors give bit-identical logits and greedy texts to the dequantised
    weights written back (why the default writes them back)."""
    kept = copy.deepcopy(tiny_llama)
    quantize_model(tiny_llama, QuantizeSettings(bits=4))
    quantize_model(kept, QuantizeSettings(bits=4, keep_quantized=True))
    assert type(kept.model.layers[0].self_attn.q_proj.weight).__name__ == "IntxUnpackedToInt8Tensor"
    assert torch.equal(logits(kept, tiny_tokenizer), logits(tiny_llama, tiny_tokenizer))
    a = engine.generate(kept, tiny_tokenizer, PROMPTS, max_new_tokens=10, progress=False)
    b = engine.generate(tiny_llama, tiny_tokenizer, PROMPTS, max_new_tokens=10, progress=False)
    assert a == b
    assert losses.answer_losses(kept, tiny_tokenizer, PROMPTS, ANSWERS, progress=False) == \
           losses.answer_losses(tiny_llama, tiny_tokenizer, PROMPTS, ANSWERS, progress=False)


def test_bfloat16_model_stays_bfloat16(tiny_llama):
    tiny_llama.to(torch.bfloat16)
    quantize_model(tiny_llama, QuantizeSettings(bits=8))
    assert {p.dtype for p in tiny_llama.parameters()} == {torch.bfloat16}


def test_asymmetric_uses_zero_points(tiny_llama):
    sym, asym = copy.deepcopy(tiny_llama), copy.deepcopy(tiny_llama)
    quantize_model(sym, QuantizeSettings(bits=4))
    report = quantize_model(asym, QuantizeSettings(bits=4, symmetric=False))
    assert report.settings["symmetric"] is False
    assert not torch.equal(sym.model.layers[0].mlp.up_proj.weight, asym.model.layers[0].mlp.up_proj.weight)


def test_refusals_name_the_problem(tiny_llama):
    with pytest.raises(AttackError, match="group size 48 does not divide the input width 64 of layer model.layers.0"):
        quantize_model(tiny_llama, QuantizeSettings(bits=4, group_size=48))
    with pytest.raises(AttackError, match="bits must be one of"):
        QuantizeSettings(bits=16)
    with pytest.raises(AttackError, match="group_size must be"):
        QuantizeSettings(group_size=0)
    with pytest.raises(AttackError, match="backend must be"):
        QuantizeSettings(backend="gptq")
    tied = copy.deepcopy(tiny_llama)
    tied.lm_head.weight = tied.model.embed_tokens.weight
    with pytest.raises(AttackError, match="shares its storage"):
        quantize_model(tied, QuantizeSettings(bits=8, skip=()))
    with pytest.raises(AttackError, match="no linear layer"):
        quantize_model(tiny_llama, QuantizeSettings(skip=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                          "up_proj", "down_proj", "lm_head")))


def test_unmerged_lora_is_refused(tiny_llama):
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(tiny_llama, LoraConfig(r=2, target_modules=["q_proj"]))
    with pytest.raises(AttackError, match="merge_and_unload"):
        quantize_model(peft_model, QuantizeSettings())


def test_bitsandbytes_config_and_cpu_refusal(tiny_model_dir):
    cfg8 = bitsandbytes_config(QuantizeSettings(bits=8))
    assert cfg8.load_in_8bit and cfg8.llm_int8_skip_modules == ["lm_head"]
    cfg4 = bitsandbytes_config(QuantizeSettings(bits=4))
    assert cfg4.load_in_4bit and cfg4.bnb_4bit_quant_type == "fp4"
    with pytest.raises(AttackError, match="64 weights"):
        bitsandbytes_config(QuantizeSettings(bits=4, group_size=128))
    with pytest.raises(AttackError, match="8 or 4 bits"):
        bitsandbytes_config(QuantizeSettings(bits=3))
    with pytest.raises(AttackError, match="quantises at load time"):
        quantize_model(None, QuantizeSettings(backend="bitsandbytes"))
    if not torch.cuda.is_available():
        with pytest.raises(AttackError, match="needs a CUDA device"):
            load_with_bitsandbytes(tiny_model_dir, QuantizeSettings(bits=8), device="cpu")
