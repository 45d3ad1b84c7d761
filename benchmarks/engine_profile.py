"""Where the evaluation engine's generation time goes, on a real pretrained model (SmolLM2-135M).

Runs ``harness.backends.hf.generate_detailed`` on real LUME prompts twice: once under ``cProfile`` (time
per Python function: the engine's prefill, decoding steps, cache compaction and refills, and inside
the model attention masks, rotary embeddings, attention and the linear layers), once under
``torch.profiler`` (self time per tensor operation). Prints both tables and the wall time of an
unprofiled run, so the profilers' own overhead can be judged.

    python benchmarks/engine_profile.py --assets ASSETS --lume ../shared/lume --prompts 48 --max-new-tokens 64
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--assets", type=Path, required=True, help="the folder `unlearnbench assets` wrote")
    p.add_argument("--lume", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "lume")
    p.add_argument("--prompts", type=int, default=48, help="LUME prompts (half from each file, every k-th)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-size", default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rows", type=int, default=30, help="rows of each table")
    args = p.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    from harness import load_benchmark
    from harness.backends import hf as engine
    from harness.backends.loading import load_model

    torch.set_num_threads(args.threads)
    bench = load_benchmark(args.lume)
    half = max(1, args.prompts // 2)
    prompts = [r.input for rows in (bench.forget, bench.retain) for r in rows[:: max(1, len(rows) // half)][:half]]
    model, tok = load_model(args.assets / "smollm2-135m-instruct")
    batch = args.batch_size if args.batch_size == "auto" else int(args.batch_size)

    def run(stats=None):
        return engine.generate_detailed(model, tok, prompts, max_new_tokens=args.max_new_tokens, batch_size=batch,
                                        progress=False, stats=stats if stats is not None else {})

    run_small = engine.generate_detailed(model, tok, prompts[:2], max_new_tokens=2, progress=False)  # warm-up
    del run_small
    stats: dict = {}
    t0 = time.perf_counter()
    out = run(stats)
    wall = time.perf_counter() - t0
    lengths = [len(x) for x in tok(prompts)["input_ids"]]
    print(f"{len(prompts)} prompts ({sum(lengths)} prompt tokens, longest {max(lengths)}), "
          f"{sum(len(t) for t in out.token_ids)} new tokens, batch {stats['batch_size']['generation']}: "
          f"{wall:.2f}s unprofiled ({stats['generation_seconds']})")

    prof = cProfile.Profile()
    prof.enable()
    run()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(args.rows)
    print("\n== cProfile, cumulative time per function\n" + buf.getvalue())

    with profile(activities=[ProfilerActivity.CPU]) as torch_prof:
        run()
    print("== torch.profiler, self CPU time per operation\n"
          + torch_prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
