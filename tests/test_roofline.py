"""benchmarks/roofline.py: the work it counts for the speed floor, checked by hand on a tiny Llama."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import roofline  # noqa: E402


def test_floor_counts_prefill_decode_kv_and_mia_work(tiny_tokenizer, monkeypatch):
    from harness.synthetic.tiny import tiny_llama

    model = tiny_llama(tiny_tokenizer, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64)
    vocab = model.config.vocab_size
    head = 32 * vocab
    body = 2 * (4 * 32 * 32 + 3 * 32 * 64)
    gemm, gemm_long, stream, weights = 1e9, 2e9, 1e8, 4.0 * (body + head)
    monkeypatch.setattr(roofline, "machine_rates",
                        lambda m, rows: {"gemm_flops": gemm, "gemm_flops_long": gemm_long, "stream_bytes": stream,
                                         "weight_bytes": weights})
    prompts, new, docs = [3, 5], [2, 4], [7, 9, 10]
    f = roofline.engine_floor(model, prompts, new, docs, batch_rows=2)
    # prefill and MIA run as long products: the long-product rate; decoding at the batch's rate
    assert f["prefill"] == pytest.approx(2 * (body * 8 + head * 2) / gemm_long)
    assert f["decode_compute"] == pytest.approx(2 * (body + head) * 6 / gemm)
    # KV bytes per position: keys and values, 2 layers, width 32, float32; row 0 reads 3 then 4
    # positions, row 1 reads 5, 6, 7, 8; 6 tokens would fill 3 steps of 2 rows, but row 1's 4 tokens
    # take 4 steps one after another, each reading the weights.
    kv = 2 * 2 * 32 * 4 * (3 + 4 + 5 + 6 + 7 + 8)
    assert f["decode_memory"] == pytest.approx((kv + 4 * weights) / stream)
    # with short rows only, full batches are the bound again: 12 tokens of at most 2 each, 2 rows a step
    g = roofline.engine_floor(model, [3] * 6, [2] * 6, [], batch_rows=2)
    assert g["decode_memory"] == pytest.approx((2 * 2 * 32 * 4 * 6 * (3 + 4) + 6 * weights) / stream)
    assert f["mia"] == pytest.approx(2 * (body + head) * 26 / gemm_long)
    assert f["total"] == pytest.approx(f["prefill"] + f["decode_compute"] + f["decode_memory"] + f["mia"])
    assert f["overlapped"] == pytest.approx(f["prefill"] + max(f["decode_compute"], f["decode_memory"]) + f["mia"])
    assert "best possible speed-up" in roofline.format_floor(f, reference_seconds=10 * f["total"])


def test_machine_rates_are_measured_on_the_models_linears(tiny_tokenizer):
    from harness.synthetic.tiny import tiny_llama

    model = tiny_llama(tiny_tokenizer, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64)
    r = roofline.machine_rates(model, 8)
    n = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert r["weight_bytes"] == 4 * n
    assert r["gemm_flops"] > 0 and r["stream_bytes"] > 0
    assert r["gemm_flops_long"] >= r["gemm_flops"]
