"""End-to-end evaluation speed: this engine vs the organisers' one-record-at-a-time loop and vs
lm-evaluation-harness's batched generation (``HFLM.generate_until``), the peer researchers use today.

Three cases, each run in a fresh subprocess per variant so peak memory (RSS) is measured separately:

(a) the embedded target model (``harness.synthetic.target.train_target`` on ``harness.synthetic.world.generate_world``,
    size ``small``) over the full world benchmark (forget + retain + MIA);
(b) a larger random-weight Llama (hidden 512) with the same tokenizer, on the first ``--limit-large``
    records of each split (random weights never emit EOS, so every record costs the full
    ``--max-new-tokens`` steps one at a time);
(c) ``real``: SmolLM2-135M-Instruct from ``unlearnbench assets`` (``--assets DIR``) on
    ``--limit-real`` real LUME prompts (``--lume DIR``; half from each file, every k-th record so
    that both tasks' questions and document openings are in), generation only.

Variants: ``engine`` (this harness), ``reference`` (the organisers' loop), ``lmeval``
(``lm_eval.models.huggingface.HFLM(pretrained=model).generate_until`` with ``--lmeval-batch-size``
rows, its own longest-first length sorting and left padding, greedy, ``max_gen_toks`` new tokens,
stopping at EOS; its texts get the same classic clean-up before they are compared). lm-eval has no
MIA pass of this kind, so its row is generation only and is compared on generation seconds.

The reference variant is a faithful re-implementation of the organisers' procedure: for each record,
``model.generate`` on the raw prompt (batch of one, greedy, ``max_new_tokens``, pad = EOS), decode the
new tokens with special tokens skipped (+ the classic clean-up, as transformers 4.45 did); for each MIA
document one forward pass with ``labels=input_ids``. Both variants are scored by the same
``metrics.semeval.compute_metrics``; the script prints the speed ratio, peak RSS, whether every
generation is identical, the largest MIA loss difference and whether every metric is identical.

    python benchmarks/eval_speed.py                 # cases target and large (several minutes on 2 CPU cores)
    python benchmarks/eval_speed.py --limit 40 --limit-large 8 --max-new-tokens 64   # quick look
    python benchmarks/eval_speed.py --cases real --assets ASSETS --limit-real 48 --max-new-tokens 64 --repeat 1
    python benchmarks/eval_speed.py --cases real --assets ASSETS --profile   # + where the engine's time goes
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


def _real_case(args):
    """SmolLM2 from the assets folder and ``--limit-real`` LUME records (every k-th of each file)."""
    from harness import load_benchmark
    from harness.backends.loading import load_model
    from harness.core.types import Benchmark

    full = load_benchmark(args.lume)
    half = max(1, args.limit_real // 2)

    def every_kth(rows):
        return tuple(rows[:: max(1, len(rows) // half)][:half])

    bench = Benchmark(name=full.name, path=full.path, forget=every_kth(full.forget), retain=every_kth(full.retain),
                      content_hash=f"{full.content_hash}-every-kth-{half}")
    model, tok = load_model(Path(args.assets) / "smollm2-135m-instruct", dtype=args.dtype)
    return model, tok, bench


def _load_case(args):
    from harness import load_benchmark
    from harness.backends.loading import load_model
    from harness.core.types import Benchmark

    if args.case == "real":
        return _real_case(args)
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
                    [{"set": d.set, "id": d.id, "loss": float(i)} for i, d in enumerate(docs)] or None,
                    mode="semeval2025")


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
    profiler = None
    if args.profile and args.variant == "engine":
        from torch.profiler import ProfilerActivity, profile

        profiler = profile(activities=[ProfilerActivity.CPU])
        profiler.__enter__()
    t0, c0 = time.perf_counter(), time.process_time()
    if args.variant == "engine":
        from harness.backends import hf as engine

        stats: dict = {}
        gen = engine.generate_detailed(model, tok, [r.input for r in records], max_new_tokens=args.max_new_tokens,
                                       batch_size=args.batch_size, progress=False, stats=stats,
                                       verify_margin=args.verify_margin)
        t_gen, c_gen = time.perf_counter() - t0, time.process_time() - c0
        mia = engine.sequence_losses(model, tok, [d.document for d in docs], batch_size=args.batch_size,
                                     progress=False, stats=stats)
        generations, losses = gen.texts, [m["loss"] for m in mia]
        extra = {"fallback_rows": len(gen.fallback), "batch_sizes": stats.get("batch_size"),
                 "generation_seconds": stats.get("generation_seconds"),
                 "fallback_tokens": stats.get("generation_fallback_tokens")}
    elif args.variant == "lmeval":
        generations, losses, extra = _lmeval_generate(model, tok, records, args), [], {}
        t_gen, c_gen = time.perf_counter() - t0, time.process_time() - c0
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
            t_gen, c_gen = time.perf_counter() - t0, time.process_time() - c0
            losses = []
            for d in docs:
                ids = tok(d.document, return_tensors="pt")["input_ids"]
                losses.append(float(model(input_ids=ids, labels=ids).loss))
        extra = {}
    t_model = time.perf_counter() - t0
    if profiler is not None:
        profiler.__exit__(None, None, None)
    samples = [{"split": r.split, "id": r.id, "task": r.task, "kind": r.kind, "input": r.input, "reference": r.output,
                "generation": g} for r, g in zip(records, generations)]
    mia_rows = [{"set": d.set, "id": d.id, "loss": x} for d, x in zip(docs, losses)] or None
    metrics = compute_metrics(samples, mia_rows, mode="semeval2025")
    total = time.perf_counter() - t0
    if args.variant == "engine":  # after the clock stops
        extra["floor"] = _floor(model, tok, records, docs, gen, stats)
    if profiler is not None:
        extra["profile"] = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    return {"variant": args.variant, "generations": generations, "losses": losses, "metrics": metrics,
            "seconds": {"generation": t_gen, "mia": t_model - t_gen, "scoring": total - t_model, "total": total},
            # CPU seconds of this process (one torch thread): unlike wall time, hardly inflated when other
            # processes share the cores, so variants run minutes apart on a loaded machine stay comparable
            "cpu_seconds": {"generation": c_gen, "total": time.process_time() - c0},
            "peak_rss_mb": _peak_rss_mb(), "n_records": len(records), "n_docs": len(docs), **extra}


def _lmeval_generate(model, tok, records, args) -> list[str]:
    """lm-evaluation-harness's batched greedy generation, as a task with ``until: []`` runs it."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from metrics.text import classic_cleanup

    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=args.lmeval_batch_size, device="cpu")
    gen_kwargs = {"until": [], "max_gen_toks": args.max_new_tokens, "do_sample": False}
    requests = [Instance(request_type="generate_until", doc={}, arguments=(r.input, dict(gen_kwargs)), idx=i)
                for i, r in enumerate(records)]
    return [classic_cleanup(t) for t in lm.generate_until(requests, disable_tqdm=True)]


def compare(case: str, args, workdir: Path) -> None:
    results: dict[str, dict] = {}
    # Variants alternate, ``--repeat`` times, and each keeps its fastest run: on a shared machine the
    # load changes from minute to minute, and alternation exposes both to the same conditions.
    variants = [v for v in ("engine", "lmeval", "reference") if v in args.variants.split(",")]
    reuse = set(args.reuse.split(",")) if args.reuse else set()
    if args.reuse_reference:
        reuse.add("reference")
    if "engine" not in variants or "reference" not in variants:
        raise SystemExit("--variants must include engine and reference (the others are compared with them)")
    for rep in range(args.repeat):
        for variant in variants:
            out = workdir / f"{case}-{variant}.json"
            if variant in reuse and out.is_file() and rep == 0:
                results[variant] = json.loads(out.read_text())
                continue
            if variant in reuse and rep > 0:
                continue
            cmd = [sys.executable, __file__, "--child", variant, "--case", case, "--world", str(args.world),
                   "--target", str(args.target), "--json", str(out), "--max-new-tokens", str(args.max_new_tokens),
                   "--batch-size", str(args.batch_size), "--dtype", args.dtype, "--threads", str(args.threads),
                   "--hidden", str(args.hidden), "--lmeval-batch-size", str(args.lmeval_batch_size),
                   "--limit-real", str(args.limit_real)] + (
                      ["--verify-margin", str(args.verify_margin)] if args.verify_margin is not None else []) + (
                      ["--assets", str(args.assets), "--lume", str(args.lume)] if case == "real" else []) + (
                      ["--profile"] if args.profile and variant == "engine" else []) + [
                   "--limit", str(args.limit if case == "target" else args.limit_large)]
            subprocess.run(cmd, check=True)
            res = json.loads(out.read_text())
            if variant not in results or res["seconds"]["total"] < results[variant]["seconds"]["total"]:
                results[variant] = res
    e, r = results["engine"], results["reference"]
    lm = results.get("lmeval")
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
    if lm is not None:
        lm_same = sum(a == b for a, b in zip(lm["generations"], r["generations"]))
        print(f"  lm-eval   generation {lm['seconds']['generation']:8.2f}s (HFLM.generate_until, batch "
              f"{args.lmeval_batch_size})  peak RSS {lm['peak_rss_mb']:.0f} MB  texts differing from the "
              f"organisers': {len(r['generations']) - lm_same}/{len(r['generations'])}")
        print(f"  generation seconds: organisers' loop {r['seconds']['generation']:.2f}  lm-eval "
              f"{lm['seconds']['generation']:.2f}  ours {e['seconds']['generation']:.2f}  ->  ours vs lm-eval "
              f"{lm['seconds']['generation'] / e['seconds']['generation']:.2f}x, ours vs organisers "
              f"{r['seconds']['generation'] / e['seconds']['generation']:.2f}x, lm-eval vs organisers "
              f"{r['seconds']['generation'] / lm['seconds']['generation']:.2f}x; ours differing: "
              f"{len(r['generations']) - same_gen}")
    if lm is not None and all("cpu_seconds" in x for x in (e, r, lm)):
        ce, cr, cl = (x["cpu_seconds"]["generation"] for x in (e, r, lm))
        print(f"  generation CPU seconds (this process): organisers' loop {cr:.2f}  lm-eval {cl:.2f}  ours {ce:.2f}"
              f"  ->  ours vs lm-eval {cl / ce:.2f}x, ours vs organisers {cr / ce:.2f}x")
    if e.get("floor"):
        print(f"  roofline: {format_floor(e['floor'], r['seconds']['total'])}")
        f = e["floor"]
        gen_floor = f["prefill"] + f["decode_compute"] + f["decode_memory"]
        print(f"  generation floor {gen_floor:.2f}s: engine generation at {e['seconds']['generation'] / gen_floor:.2f}x "
              f"its floor")
    if e.get("profile"):
        print("  engine profile (self CPU time, generation and MIA):\n" + e["profile"])
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
    p.add_argument("--cases", default="target,large", help="comma-separated: target, large, real")
    p.add_argument("--assets", type=Path, default=None, help="case real: the folder `unlearnbench assets` wrote")
    p.add_argument("--lume", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "lume",
                   help="case real: the LUME folder (default ../shared/lume beside the repository)")
    p.add_argument("--limit-real", type=int, default=96, help="case real: LUME prompts (half from each file)")
    p.add_argument("--variants", default="engine,lmeval,reference",
                   help="which of engine, lmeval, reference to run (engine and reference are required)")
    p.add_argument("--lmeval-batch-size", type=int, default=32, help="HFLM batch size (default 32)")
    p.add_argument("--profile", action="store_true", help="profile the engine variant with torch.profiler")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads for both variants (default 1: on a shared machine, multi-threaded "
                        "kernels mostly measure other processes' load)")
    p.add_argument("--verify-margin", type=float, default=None,
                   help="engine's near-tie margin (default: the dtype's; 0 = no one-at-a-time re-decoding)")
    p.add_argument("--repeat", type=int, default=2, help="alternating runs per variant; the fastest is kept")
    p.add_argument("--reuse-reference", action="store_true",
                   help="reuse the reference variant's results in --workdir from an earlier run (same options)")
    p.add_argument("--reuse", default="", metavar="VARIANTS",
                   help="comma-separated variants whose results in --workdir are reused from an earlier run "
                        "(e.g. reference: re-time the others against the same organisers' run)")
    p.add_argument("--child", choices=("engine", "reference", "lmeval"), help=argparse.SUPPRESS)
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
    cases = args.cases.split(",")
    if "real" in cases and (args.assets is None or not (args.assets / "smollm2-135m-instruct").is_dir()):
        raise SystemExit("case real needs --assets DIR (run `unlearnbench assets --out DIR` first)")
    if cases == ["real"]:
        for case in cases:
            compare(case, args, workdir)
        return
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
    for case in cases:
        compare(case, args, workdir)


if __name__ == "__main__":
    main()
