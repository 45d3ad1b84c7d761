"""``unlearnbench evaluate``: score a saved model on a LUME-format benchmark into a run folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli import UserError, examples


def parse_batch_size(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {value!r}")
    return n


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    """The evaluation options shared by commands that evaluate a model (``evaluate``, ``run``)."""
    g = p.add_argument_group("evaluation")
    g.add_argument("--mia", metavar="DIR", default=None,
                   help="folder with member.jsonl and nonmember.jsonl (default: DATA/mia when present)")
    g.add_argument("--max-new-tokens", type=int, default=256, metavar="N", help="generation limit (default 256)")
    g.add_argument("--batch-size", type=parse_batch_size, default="auto", metavar="N|auto",
                   help="rows per batch; auto starts large and halves on out-of-memory (on CPU, generation starts at "
                        "as many rows as fit 2 GiB of KV cache, 4 to 128) (default auto)")
    g.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                   help="weights dtype (the organisers used bfloat16; batching is verified-exact in float32)")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    g.add_argument("--mode", choices=("semeval2025", "plain"), default="semeval2025",
                   help="semeval2025: the organisers' clean-up and scoring quirks (default); plain: neither")
    g.add_argument("--min-k", type=float, default=0.2, metavar="K", help="fraction for Min-K%% and Min-K%%++ (0.2)")
    g.add_argument("--engine", choices=("hf", "reference", "vllm"), default="hf",
                   help="hf: batched, verified-exact (default); reference: the organisers' one-at-a-time loop; "
                        "vllm: vLLM generation (extra unlearnbench[vllm], GPUs)")
    g.add_argument("--tensor-parallel-size", type=int, default=1, metavar="N",
                   help="vLLM only: GPUs per model (default 1)")
    g.add_argument("--cache-dir", default=None,
                   help="evaluation cache (default $UNLEARNBENCH_CACHE or ~/.cache/unlearnbench/eval)")
    g.add_argument("--no-cache", action="store_true", help="neither read nor write the evaluation cache")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    from ..mmlu import add_mcq_arguments

    add_mcq_arguments(p)


def add_parallel_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-processes", type=int, default=1, metavar="N",
                   help="data-parallel processes: re-launches this command under torchrun (CPU) or "
                        "accelerate launch --multi_gpu (GPU); default 1. Equivalent: accelerate launch -m harness …")


def maybe_relaunch(args: argparse.Namespace) -> int | None:
    """Re-run the command under ``--num-processes`` processes; ``None`` when already running as one."""
    from ..distributed import launched_distributed, relaunch

    if args.num_processes > 1 and not launched_distributed():
        return relaunch(sys.argv[1:], args.num_processes, args.device)
    return None


def settings_from_args(args: argparse.Namespace):
    from ..evaluate import EvalSettings
    from ..mmlu import specs_from_args

    from ..mmlu import check_mcq_source

    mmlu, utility = specs_from_args(args)
    # A missing MMLU folder or an offline hub must fail now, not after minutes of generation.
    for spec in (mmlu, utility):
        if spec is not None:
            check_mcq_source(spec)
    try:
        return EvalSettings(mode=args.mode, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                            dtype=args.dtype, device=args.device, min_k=args.min_k, mmlu=mmlu, utility=utility,
                            engine=args.engine, tensor_parallel_size=args.tensor_parallel_size,
                            model_path=str(getattr(args, "model", "") or "") or None, progress=not args.no_progress, cache=not args.no_cache,
                            cache_dir=args.cache_dir)
    except ValueError as exc:
        raise UserError(str(exc)) from exc


def summary_lines(result) -> list[str]:
    m = result.metrics

    def fmt(name: str) -> str:
        v = m.get(name)
        return "n/a" if v is None else f"{v:.4f}"

    lines = [f"{result.label}: task_aggregate {fmt('task_aggregate')}  mia_auc {fmt('mia_auc')}  "
             f"mia_score {fmt('mia_score')}  mmlu {fmt('mmlu')}  utility {fmt('utility')}  final {fmt('final_score')}"]
    for split in ("forget", "retain"):
        parts = [f"{t} rougeL {fmt(f'{split}/{t}/regurgitation')} em {fmt(f'{split}/{t}/knowledge')}"
                 for t in ("Task1", "Task2", "Task3")]
        lines.append(f"  {split:<6} " + " | ".join(parts))
    lines.append("  time " + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items()))
    return lines


def _evaluate(args: argparse.Namespace) -> int:
    from ..data import load_benchmark
    from ..evaluate import evaluate_model
    from ..models import load_model, model_info
    from ..records import MethodInfo

    from ..distributed import is_main_process

    rc = maybe_relaunch(args)
    if rc is not None:
        return rc
    settings = settings_from_args(args)
    bench = load_benchmark(args.data, mia=args.mia)
    try:
        model, tok = load_model(args.model, dtype=args.dtype, device=args.device,
                                trust_remote_code=args.trust_remote_code)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    out = Path(args.out)
    config = {"command": "evaluate", "argv": sys.argv[1:], "model": str(args.model), "data": str(args.data),
              "mia": args.mia, "label": args.label, "settings": settings.to_dict()}
    result = evaluate_model(model, tok, bench, settings, out, model_info=model_info(model, id=str(args.model)),
                            method_info=MethodInfo(name="none"), label=args.label, config=config)
    if is_main_process():
        for line in summary_lines(result):
            print(line)
        print(f"wrote {out / 'result.json'}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="evaluate a saved model on a LUME-format benchmark (SemEval-2025 metrics)",
        description="Greedy generation for every forget/retain record, answer losses, MIA losses, optional "
                    "MMLU/utility; writes result.json, samples.jsonl, mia.jsonl and config.json into --out.",
        epilog=examples("unlearnbench evaluate --model runs/target/model --data ../shared/lume --out runs/eval-target",
                        "unlearnbench evaluate --model M --data W --mia W/mia --utility W/utility --out runs/x",
                        "unlearnbench evaluate --model M --data D --dtype bfloat16 --device cuda --batch-size auto "
                        "--out runs/y",
                        "unlearnbench evaluate --model M --data D --num-processes 2 --out runs/dp   # data parallel"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, metavar="PATH",
                   help="model folder (save_pretrained), LoRA adapter folder, .gguf file (dequantised; needs the "
                        "'gguf' package) or hub id (e.g. HuggingFaceTB/SmolLM2-135M-Instruct, where a hub is reachable)")
    p.add_argument("--data", required=True, metavar="DIR", help="benchmark folder (forget/retain [+ mia/])")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder to write")
    p.add_argument("--label", default=None, help="display name on leaderboards (default: the model folder name)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the model's own code (as the organisers)")
    add_parallel_argument(p)
    add_eval_arguments(p)
    p.set_defaults(func=_evaluate)
