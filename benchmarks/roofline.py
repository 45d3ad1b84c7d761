"""The fastest any exact evaluation could be on this machine: a roofline for ``eval_speed.py``.

Batched decoding turns the organisers' memory-bound loop (every generated token streams all weights
from memory at batch size one) into compute-bound matrix products. What batching cannot remove:

* the prompt prefill and the MIA forward passes: the same floating-point work as the organisers'
  (they already run one whole prompt or document per matrix product), bounded by matrix throughput;
* per generated token: ``2 x (linear-layer parameters)`` floating-point operations, and reading that
  row's own KV cache (``2 x layers x kv width x context length`` floats), bounded by memory bandwidth;
* per decoding step: the weights, read once for the whole batch.

Both machine rates are measured here, in this process, with the model's own weights: matrix
throughput as ``linear`` over the model's linear layers at the engine's batch size (decoding) and at
1,024 rows (prefill and MIA, which the engine runs as products of about that many rows or more),
and streaming
bandwidth as ``linear`` at batch size one over all of them (their total size exceeds the caches for
the larger model; for a model whose weights fit in cache the figure is the cache bandwidth). The
measured reference time divided by the floor is an upper bound on the speed-up this engine (which
runs attention and matrix products one after another) can reach for the case on this machine; with
the KV-cache reads fully overlapped with the products it bounds any batched engine that computes
every float32 logit as the organisers do. eval_speed prints both beside the measured ratio.

    python benchmarks/roofline.py --target T --world W      # the embedded target's floor, standalone
"""

from __future__ import annotations

import time
from typing import Sequence


def _linears(model):
    import torch

    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)]


def _best_of(fn, repeat: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


#: Rows of the matrix products that measure the prefill/MIA rate: those run one whole prompt or
#: document (or a batch of them) per product, i.e. hundreds to thousands of rows.
LONG_ROWS = 1024


def machine_rates(model, batch_rows: int) -> dict[str, float]:
    """``gemm_flops``: floating-point operations per second of ``linear`` over the model's linear
    layers with ``batch_rows`` rows (decoding); ``gemm_flops_long``: the same with
    :data:`LONG_ROWS` rows, or ``batch_rows`` when that is faster (prefill and MIA);
    ``stream_bytes``: bytes per second of the same at one row."""
    import torch

    lin = _linears(model)
    weight_bytes = sum(m.weight.numel() * m.weight.element_size() for m in lin)
    dtype = lin[0].weight.dtype
    macs = sum(m.weight.numel() for m in lin)

    def seconds(rows: int) -> float:
        xs = {m.in_features: torch.randn(rows, m.in_features, dtype=dtype) for m in lin}
        with torch.no_grad():
            return _best_of(lambda: [torch.nn.functional.linear(xs[m.in_features], m.weight) for m in lin])

    gemm = 2 * macs * batch_rows / seconds(batch_rows)
    return {"gemm_flops": gemm, "gemm_flops_long": max(gemm, 2 * macs * LONG_ROWS / seconds(LONG_ROWS)),
            "stream_bytes": weight_bytes / seconds(1), "weight_bytes": float(weight_bytes)}


def engine_floor(model, prompt_lengths: Sequence[int], new_tokens: Sequence[int], doc_lengths: Sequence[int],
                 batch_rows: int) -> dict[str, float]:
    """Lower bound (seconds) on an exact batched evaluation: prefill, decode and MIA work at the
    measured matrix throughput, KV-cache and per-step weight reads at the measured bandwidth."""
    from harness.backends.batching import kv_bytes_per_token

    rates = machine_rates(model, min(batch_rows, max(1, len(prompt_lengths))))
    lin = _linears(model)
    head = model.get_output_embeddings()
    head_macs = head.weight.numel() if head is not None else 0
    all_macs = sum(m.weight.numel() for m in lin)
    body_macs = all_macs - head_macs
    kv_bytes_per_position = kv_bytes_per_token(model)  # what the engine sizes its CPU batches by
    prefill_flops = 2 * (body_macs * sum(prompt_lengths) + head_macs * len(prompt_lengths))
    decode_flops = 2 * all_macs * sum(new_tokens)
    mia_flops = 2 * all_macs * sum(doc_lengths)
    # Row i's step t reads the KV cache of its prompt and its t earlier tokens.
    kv_bytes = kv_bytes_per_position * sum(n * p + n * (n - 1) / 2 for p, n in zip(prompt_lengths, new_tokens))
    # At best every step decodes a full batch -- but the longest row needs its own number of steps
    # one after another, each reading the weights, however few rows are left by then.
    steps = max(-(-sum(new_tokens) // max(1, batch_rows)), max(new_tokens, default=0))
    out = {
        "prefill": prefill_flops / rates["gemm_flops_long"],
        "decode_compute": decode_flops / rates["gemm_flops"],
        "decode_memory": (kv_bytes + steps * rates["weight_bytes"]) / rates["stream_bytes"],
        "mia": mia_flops / rates["gemm_flops_long"],
        "gemm_gflops": rates["gemm_flops"] / 1e9,
        "gemm_gflops_long": rates["gemm_flops_long"] / 1e9,
        "stream_gb_s": rates["stream_bytes"] / 1e9,
    }
    out["total"] = out["prefill"] + out["decode_compute"] + out["decode_memory"] + out["mia"]
    # A fused decoding kernel could stream the KV cache while it multiplies: then only the larger of
    # the two decode terms counts. Eager PyTorch runs attention and the matrix products one after
    # another, so ``total`` is the floor for this engine and ``overlapped`` the floor for any engine.
    out["overlapped"] = out["prefill"] + max(out["decode_compute"], out["decode_memory"]) + out["mia"]
    return out


def format_floor(floor: dict[str, float], reference_seconds: float | None = None) -> str:
    text = (f"floor {floor['total']:.2f}s = prefill {floor['prefill']:.2f} + decode compute "
            f"{floor['decode_compute']:.2f} + decode memory {floor['decode_memory']:.2f} + mia {floor['mia']:.2f} "
            f"(matrix throughput {floor['gemm_gflops']:.1f} GFLOP/s decoding, "
            f"{floor.get('gemm_gflops_long', floor['gemm_gflops']):.1f} prefill/MIA; streaming "
            f"{floor['stream_gb_s']:.1f} GB/s)")
    if reference_seconds:
        text += (f"; best possible speed-up {reference_seconds / floor['total']:.1f}x "
                 f"({reference_seconds / floor['overlapped']:.1f}x with KV reads fully overlapped)")
    return text


def main() -> None:
    import argparse

    import torch

    from harness import load_benchmark
    from harness.backends import hf as engine
    from harness.backends.loading import load_model

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    bench = load_benchmark(args.world)
    model, tok = load_model(args.target)
    prompts = [r.input for r in bench.records]
    gen = engine.generate_detailed(model, tok, prompts, progress=False)
    floor = engine_floor(model, [len(tok(x)["input_ids"]) for x in prompts], [len(t) for t in gen.token_ids],
                         [len(tok(d.document)["input_ids"]) for d in list(bench.members) + list(bench.nonmembers)],
                         engine.default_batch_size(model, "generation"))
    print(format_floor(floor))


if __name__ == "__main__":
    main()
