"""End-to-end evaluation speed: this engine vs the organisers' one-record-at-a-time loop.

Two cases, each run in a fresh subprocess per variant so peak memory (RSS) is measured separately:

(a) the embedded target model (``harness.synthetic.target.train_target`` on ``harness.synthetic.world.generate_world``,
    size ``small``) over the full world benchmark (forget + retain + MIA);
(b) a larger random-weight Llama (hidden 512) with the same tokenizer, on the first ``--limit-large``
    records of each split (random weights never emit EOS, so every record costs the full
    ``--max-new-tokens`` steps one at a time).

The reference variant is a faithful re-implementation of the organisers' procedure: for each record,
``model.generate`` on the raw prompt (batch of one, greedy, ``max_new_tokens``, pad = EOS), decode the
new tokens with special tokens skipped (+ the classic clean-up, as transformers 4.45 did); for each MIA
document one forward pass with ``labels=input_ids``. Both variants are scored by the same
``metrics.semeval.compute_metrics``; the script prints the speed ratio, peak RSS, whether every
generation is identical, the largest MIA loss difference and whether every metric is identical.

    python benchmarks/eval_speed.py                 # both cases (several minutes on 2 CPU cores)
    python benchmarks/eval_speed.py --limit 40 --limit-large 8 --max-new-tokens 64   # quick look
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from roofline import engine_floor, format_floor  # beside this script, which is on sys.path when run


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _load_case(args):
    from harness import load_benchmark
    from harness.backends.loading import load_model
    from harness.core.types import Benchmark

    bench = load_benchmark(args.world)
    lim = args.limit
    if lim:
        bench = Benchmark(name=bench.name, path=bench.path, forget=bench.forget[:lim], retain=bench.retain[:lim],
                          members=bench.members[:lim], nonmembers=bench.nonmembers[:lim],
                          content_hash=f"{bench.content_hash}-limit{lim}")
    model, tok = load_model(args.target, dtype=args.dtype)
    if args.case == "large":
        from harness.synthetic.tiny import tiny_llama

        model = tiny_llama(tok, hidden_size=args.hidden, num_layers=4, num_heads=8, max_positions=2048, seed=0)
        model.generation_config.eos_token_id = tok.eos_token_id
    return model, tok, bench


def _warm_up(model, tok, records, docs) -> None:
    """Identical for both variants, before the clock starts: import the scoring libraries (sklearn,
    rouge_score, nltk: ~1.5 s on first use) and run the model once (one-off kernel set-up), so that
    the timings compare evaluation work, not process start-up."""
    import torch
    from metrics.semeval import compute_metrics

    r = records[0]
    with torch.no_grad():
        enc = tok(r.input, return_tensors="pt")
        model.generate(**enc, max_new_tokens=2, do_sample=False, pad_token_id=tok.eos_token_id)
    compute_metrics([{"split": x.split, "id": x.id, "task": x.task, "kind": x.kind, "input": x.input,
                      "reference": x.output, "generation": x.output} for x in records],
                    [{"set": d.set, "id": d.id, "loss": float(i)} for i, d in enumerate(docs)], mode="semeval2025")


def _floor(model, tok, records, docs, gen, stats) -> dict:
    """The roofline (``benchmarks/roofline.py``) for this case: computed after the clock stops."""
    return engine_floor(model, [len(tok(r.input)["input_ids"]) for r in records], [len(t) for t in gen.token_ids],
                        [len(tok(d.document)["input_ids"]) for d in docs], stats["batch_size"]["generation"])


def run_variant(args) -> dict:
    """Child process: run one variant, write outputs, timings and peak RSS as JSON."""
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, tok, bench = _load_case(args)
    from metrics.semeval import compute_metrics

    records = bench.records
    docs = list(bench.members) + list(bench.nonmembers)
    _warm_up(model, tok, records, docs)
    t0 = time.perf_counter()
    if args.variant == "engine":
        from harness.backends import hf as engine

        stats: dict = {}
        gen = engine.generate_detailed(model, tok, [r.input for r in records], max_new_tokens=args.max_new_tokens,
                                       batch_size=args.batch_size, progress=False, stats=stats,
                                       verify_margin=args.verify_margin)
        t_gen = time.perf_counter() - t0
        mia = engine.sequence_losses(model, tok, [d.document for d in docs], batch_size=args.batch_size,
                                     progress=False, stats=stats)
        generations, losses = gen.texts, [m["loss"] for m in mia]
        extra = {"fallback_rows": len(gen.fallback), "batch_sizes": stats.get("batch_size"),
                 "generation_seconds": stats.get("generation_seconds"),
                 "fallback_tokens": stats.get("generation_fallback_tokens")}
    else:
        from metrics.text import classic_cleanup

        generations = []
        with torch.no_grad():
            for r in records:
                enc = tok(r.input, return_tensors="pt")
                out = model.generate(**enc, max_new_tokens=args.max_new_tokens, do_sample=False, use_cache=True,
                                     pad_token_id=tok.eos_token_id)
                text = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True,
                                  clean_up_tokenization_spaces=False)
                generations.append(classic_cleanup(text))
            t_gen = time.perf_counter() - t0
            losses = []
            for d in docs:
                ids = tok(d.document, return_tensors="pt")["input_ids"]
                losses.append(float(model(input_ids=ids, labels=ids).loss))
        extra = {}
    t_model = time.perf_counter() - t0
    samples = [{"split": r.split, "id": r.id, "task": r.task, "kind": r.kind, "input": r.input, "reference": r.output,
                "generation": g} for r, g in zip(records, generations)]
    mia_rows = [{"set": d.set, "id": d.id, "loss": x} for d, x in zip(docs, losses)]
    metrics = compute_metrics(samples, mia_rows, mode="semeval2025")
    total = time.perf_counter() - t0
    if args.variant == "engine":  # after the clock stops
        extra["floor"] = _floor(model, tok, records, docs, gen, stats)
    return {"variant": args.variant, "generations": generations, "losses": losses, "metrics": metrics,
            "seconds": {"generation": t_gen, "mia": t_model - t_gen, "scoring": total - t_model, "total": total},
            "peak_rss_mb": _peak_rss_mb(), "n_records": len(records), "n_docs": len(docs), **extra}


def compare(case: str, args, workdir: Path) -> None:
    results: dict[str, dict] = {}
    # Variants alternate, ``--repeat`` times, and each keeps its fastest run: on a shared machine the
    # load changes from minute to minute, and alternation exposes both to the same conditions.
    for rep in range(args.repeat):
        for variant in ("engine", "reference"):
            out = workdir / f"{case}-{variant}.json"
            if variant == "reference" and args.reuse_reference and out.is_file() and rep == 0:
                results[variant] = json.loads(out.read_text())
                continue
            cmd = [sys.executable, __file__, "--child", variant, "--case", case, "--world", str(args.world),
                   "--target", str(args.target), "--json", str(out), "--max-new-tokens", str(args.max_new_tokens),
                   "--batch-size", str(args.batch_size), "--dtype", args.dtype, "--threads", str(args.threads),
                   "--hidden", str(args.hidden)] + (
                      ["--verify-margin", str(args.verify_margin)] if args.verify_margin is not None else []) + [
                   "--limit", str(args.limit if case == "target" else args.limit_large)]
            subprocess.run(cmd, check=True)
            res = json.loads(out.read_text())
            if variant not in results or res["seconds"]["total"] < results[variant]["seconds"]["total"]:
                results[variant] = res
    e, r = results["engine"], results["reference"]
    same_gen = sum(a == b for a, b in zip(e["generations"], r["generations"]))
    dloss = max((abs(a - b) for a, b in zip(e["losses"], r["losses"])), default=0.0)
    diff_metrics = [k for k in r["metrics"] if e["metrics"][k] != r["metrics"][k]]
    print(f"\n== case {case}: {e['n_records']} records, {e['n_docs']} MIA documents, max_new_tokens "
          f"{args.max_new_tokens}, dtype {args.dtype}, torch threads {args.threads}")
    for name, res in (("engine", e), ("reference", r)):
        s = res["seconds"]
        print(f"  {name:<9} total {s['total']:8.2f}s  (generation {s['generation']:.2f}s, mia {s['mia']:.2f}s, "
              f"scoring {s['scoring']:.2f}s)  peak RSS {res['peak_rss_mb']:.0f} MB")
    print(f"  speed-up end to end: {r['seconds']['total'] / e['seconds']['total']:.1f}x   "
          f"generation {r['seconds']['generation'] / e['seconds']['generation']:.1f}x   "
          f"mia {r['seconds']['mia'] / max(e['seconds']['mia'], 1e-9):.1f}x")
    print(f"  identical generations: {same_gen}/{len(r['generations'])}   max |MIA loss diff| {dloss:.2e}   "
          f"metrics differing: {diff_metrics or 'none'}   near-tie fallback rows: {e.get('fallback_rows')}   "
          f"batch sizes {e.get('batch_sizes')}")
    if e.get("generation_seconds"):
        g = e["generation_seconds"]
        print(f"  engine generation: batched {g['batched']:.2f}s, one-at-a-time re-check of near-tie rows "
              f"{g['verify']:.2f}s ({e.get('fallback_tokens')} tokens)")
    if e.get("floor"):
        print(f"  roofline: {format_floor(e['floor'], r['seconds']['total'])}")
    print(f"  task_aggregate {e['metrics']['task_aggregate']}  mia_auc {e['metrics']['mia_auc']} (engine) vs "
          f"{r['metrics']['task_aggregate']}  {r['metrics']['mia_auc']} (reference)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", type=Path, default=None, help="world folder (default: generate one, seed 0, small)")
    p.add_argument("--target", type=Path, default=None, help="trained target folder (default: train one)")
    p.add_argument("--workdir", type=Path, default=None, help="where the world/target/results go (default: a temp dir)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--batch-size", default="auto")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--hidden", type=int, default=512, help="hidden size of the large random model (case b)")
    p.add_argument("--limit", type=int, default=0, help="records per split and documents per MIA set, case a (0: all)")
    p.add_argument("--limit-large", type=int, default=24, help="same for case b")
    p.add_argument("--cases", default="target,large")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads for both variants (default 1: on a shared machine, multi-threaded "
                        "kernels mostly measure other processes' load)")
    p.add_argument("--verify-margin", type=float, default=None,
                   help="engine's near-tie margin (default: the dtype's; 0 = no one-at-a-time re-decoding)")
    p.add_argument("--repeat", type=int, default=2, help="alternating runs per variant; the fastest is kept")
    p.add_argument("--reuse-reference", action="store_true",
                   help="reuse the reference variant's results in --workdir from an earlier run (same options)")
    p.add_argument("--child", choices=("engine", "reference"), help=argparse.SUPPRESS)
    p.add_argument("--case", default="target", help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.batch_size != "auto":
        args.batch_size = int(args.batch_size)
    if args.child:
        args.variant = args.child
        Path(args.json).write_text(json.dumps(run_variant(args)))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="eval-speed-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.world is None:
        from harness.synthetic.world import generate_world

        args.world = workdir / "world"
        if not (args.world / "world.json").is_file():
            generate_world(args.world, seed=0, size="small")
    if args.target is None:
        from harness.synthetic.target import train_target

        args.target = workdir / "target"
        print(f"training the small target model in {args.target} (cached there for later runs)")
        train_target(args.world, args.target, size="small", gates=False, progress=False)
    for case in args.cases.split(","):
        compare(case, args, workdir)


if __name__ == "__main__":
    main()
