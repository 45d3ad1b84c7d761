"""How far apart are batched and one-at-a-time logits? The measurement behind the near-tie margin.

The engine (``harness.backends.hf``) decodes many records together; the organisers decode one at a time.
The two computations differ only by floating-point rounding (other matrix shapes, padding), and a
greedy step can only come out differently when its top-2 logit gap is smaller than that rounding
difference. The engine therefore checks one at a time (up to its last near tie) every row whose
smallest relative gap, ``(l1 - l2) / max(1, |l1|)``, is below ``verify_margin``
(``harness.backends.hf.default_margin``).

This script measures the rounding difference itself: it decodes rows with the engine's batched loop
and with ``model.generate`` (batch of one, raw logits kept), and over every step where both have the
same prefix reports the largest relative logit difference ``max_v |a_v - b_v| / max(1, |a_top1|)``.
The margin must exceed twice the largest difference ever seen (the gap is a difference of two
logits, each of which can move by that much), with headroom for models and inputs not measured.

    python benchmarks/logit_noise.py --world W --target T          # tiny target + random models
    python benchmarks/logit_noise.py --world W --target T --hidden 512,1024 --rows 48 --steps 128
"""

from __future__ import annotations

import argparse
import time


def measure(model, tok, prompts: list[str], steps: int, batch_size: int) -> dict:
    import torch
    from harness.backends import batching
    from harness.backends import hf as engine

    model.eval()
    prompt_ids = [tok(p)["input_ids"] for p in prompts]
    eos = set(engine.eos_token_ids(model, tok))
    trace: dict[int, list] = {}
    got: dict[int, list[int]] = {}
    order = sorted(range(len(prompts)), key=lambda i: (len(prompt_ids[i]), i))
    batching.greedy_pool(model, prompt_ids, order, steps, eos, tok.eos_token_id, batch_size,
                        lambda i, t, g: got.__setitem__(i, t), trace=trace)
    diffs, gaps = [], []
    for i, ids in enumerate(prompt_ids):
        with torch.no_grad():
            out = model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 max_new_tokens=steps, do_sample=False, pad_token_id=tok.eos_token_id,
                                 output_logits=True, return_dict_in_generate=True)
        ref_tokens = out.sequences[0, len(ids):].tolist()
        for t, (a, b) in enumerate(zip(trace[i], out.logits)):
            b = b[0].float()
            scale = max(1.0, float(a.max().abs()))
            d = float((a - b).abs().max()) / scale
            diffs.append(d)
            top2 = torch.topk(a, 2).values
            gaps.append(float(top2[0] - top2[1]) / scale)
            if t >= len(ref_tokens) or t >= len(got[i]) or ref_tokens[t] != got[i][t]:
                break  # prefixes differ from here on: the logits are no longer comparable
    diffs.sort()
    q = lambda f: diffs[min(len(diffs) - 1, int(f * len(diffs)))]  # noqa: E731
    small = {m: sum(g < m for g in gaps) / max(1, len(gaps)) for m in (1e-4, 1e-5, 2e-6)}
    return {"steps_compared": len(diffs), "max": diffs[-1] if diffs else 0.0, "p50": q(0.5), "p99": q(0.99), "p999": q(0.999),
            "share_of_steps_with_gap_below": small}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", required=True, help="a world folder (unlearnbench world)")
    p.add_argument("--target", required=True, help="its trained target (unlearnbench target)")
    p.add_argument("--hidden", default="512", help="hidden sizes of the random-weight Llamas (comma-separated)")
    p.add_argument("--layers", type=int, default=4, help="layers of the random-weight Llamas")
    p.add_argument("--rows", type=int, default=32, help="records per model")
    p.add_argument("--steps", type=int, default=128, help="new tokens per record")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--no-target", dest="with_target", action="store_false", help="random models only")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    import torch

    from harness import load_benchmark
    from harness.backends import hf as engine
    from harness.backends.loading import load_model
    from harness.synthetic.tiny import tiny_llama

    torch.set_num_threads(args.threads)
    bench = load_benchmark(args.world)
    records = bench.records
    # records evenly spaced over the whole benchmark: all tasks, both kinds, many prompt lengths
    prompts = [r.input for r in records[:: max(1, len(records) // args.rows)]][: args.rows]
    target, tok = load_model(args.target)
    models = [("embedded target", target)] if args.with_target else []
    for h in (int(x) for x in args.hidden.split(",") if x):
        m = tiny_llama(tok, hidden_size=h, num_layers=args.layers, num_heads=8, max_positions=2048, seed=0)
        m.generation_config.eos_token_id = tok.eos_token_id
        models.append((f"random Llama, hidden {h}, {args.layers} layers", m))
    print(f"{len(prompts)} prompts, {args.steps} new tokens, batch {args.batch_size}, float32, "
          f"{args.threads} thread(s); relative difference = max|batched - single| / max(1, |top-1 logit|)")
    for name, model in models:
        t0 = time.perf_counter()
        r = measure(model, tok, prompts, args.steps, args.batch_size)
        share = "  ".join(f"gap<{m:g}: {100 * v:.3f}%" for m, v in r["share_of_steps_with_gap_below"].items())
        print(f"  {name:<34} steps {r['steps_compared']:>6}  max {r['max']:.2e}  p99.9 {r['p999']:.2e}  "
              f"p99 {r['p99']:.2e}  median {r['p50']:.2e}  | steps with {share}  ({time.perf_counter() - t0:.0f} s)")
        if r["max"] > 0:
            margin = engine.default_margin(model)
            print(f"  {'':<34} the engine's default margin {margin:.2e} is {margin / r['max']:.1f}x the largest "
                  f"difference (exactness needs 2x)")


if __name__ == "__main__":
    main()
