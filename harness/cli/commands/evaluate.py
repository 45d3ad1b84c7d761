"""``unlearnbench evaluate``: score a saved model on a registered benchmark (LUME by default) into a run folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.main import examples
from harness.core.errors import UserError


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
    from harness.backends import ENGINES

    g = p.add_argument_group("evaluation")
    g.add_argument("--mia", metavar="DIR", default=None,
                   help="folder with member.jsonl and nonmember.jsonl (default: DATA/mia when present)")
    g.add_argument("--max-new-tokens", type=int, default=256, metavar="N", help="generation limit (default 256)")
    g.add_argument("--limit", type=int, default=None, metavar="N",
                   help="quick look: only the first N records of each split x task x kind and the first N documents "
                        "of each MIA set (recorded; not comparable with full runs, so the SemEval boards refuse it)")
    g.add_argument("--batch-size", type=parse_batch_size, default="auto", metavar="N|auto",
                   help="rows per batch; auto starts large and halves on out-of-memory (on CPU, generation starts at "
                        "as many rows as fit 2 GiB of KV cache, 4 to 128) (default auto)")
    g.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                   help="weights dtype (the organisers used bfloat16; batching is verified-exact in float32)")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    g.add_argument("--mode", choices=("semeval2025", "plain"), default="semeval2025",
                   help="semeval2025: the organisers' clean-up and scoring quirks (default); plain: neither")
    g.add_argument("--min-k", type=float, default=0.2, metavar="K", help="fraction for Min-K%% and Min-K%%++ (0.2)")
    g.add_argument("--engine", choices=ENGINES, default="hf",
                   help="hf: batched, verified-exact (default); reference: the organisers' one-at-a-time loop; "
                        "vllm: vLLM generation (extra unlearnbench[vllm], GPUs)")
    g.add_argument("--tensor-parallel-size", type=int, default=1, metavar="N",
                   help="vLLM only: GPUs per model (default 1)")
    g.add_argument("--cache-dir", default=None,
                   help="evaluation cache (default $UNLEARNBENCH_CACHE or ~/.cache/unlearnbench/eval)")
    g.add_argument("--no-cache", action="store_true", help="neither read nor write the evaluation cache")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_mcq_arguments(p)


def add_mcq_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--mmlu``, ``--utility`` and the ``--mmlu-*`` options to an evaluation command's parser."""
    from harness.tasks.mcq.data import MMLU_GROUPS
    from harness.tasks.mcq.mmlu import PROMPT_FORMATS, PROTOCOLS

    g = parser.add_argument_group("MMLU and utility (multiple choice, scored by lm-evaluation-harness)")
    g.add_argument("--mmlu", metavar="PATH|hub", default=None,
                   help="MMLU folder (CSV release, cais/mmlu parquet/arrow layout, or hails/mmlu_no_train as "
                        "`unlearnbench assets` writes it) or 'hub' (online only)")
    g.add_argument("--utility", metavar="PATH", default=None,
                   help="an MCQ set in the MMLU layout scored as 'utility' (e.g. WORLD/utility); always run in "
                        "full, with --mmlu-protocol")
    g.add_argument("--mmlu-protocol", choices=PROTOCOLS, default="semeval2025",
                   help="semeval2025: 5-shot from dev, micro average (default); lm-eval: lm-eval's mmlu "
                        "defaults (0-shot)")
    g.add_argument("--mmlu-format", choices=PROMPT_FORMATS, default="letters",
                   help="letters: MMLU's layout, the answer letter is scored (default; the SemEval protocol); "
                        "cloze: lm-eval's mmlu_continuation, each choice's text is scored")
    g.add_argument("--utility-format", choices=PROMPT_FORMATS, default="cloze",
                   help="prompt format of the --utility set (default cloze: the embedded target is trained and "
                        "gated in that format; a 1M-parameter model answers letter prompts at chance)")
    g.add_argument("--mmlu-subjects", metavar="LIST|GROUP", default=None,
                   help=f"comma-separated subjects or one of {', '.join(MMLU_GROUPS)} (recorded; not the full MMLU)")
    g.add_argument("--mmlu-limit", type=int, metavar="N", default=None,
                   help="at most N test questions per subject, for quick runs (recorded; not the full MMLU)")
    g.add_argument("--mmlu-fewshot", type=int, metavar="K", default=None,
                   help="override the protocol's number of few-shot examples (recorded)")
    g.add_argument("--mcq-batch-size", type=int, metavar="B", default=8, help="lm-eval batch size (default 8)")
    g = parser.add_argument_group("any lm-evaluation-harness task as metric columns (lm_eval/<task>/<metric>)")
    g.add_argument("--lm-eval-tasks", metavar="LIST", default=None,
                   help="comma-separated lm-eval task names, e.g. wmdp_bio,arc_easy (their data must be reachable: "
                        "offline, in the Hugging Face cache)")
    g.add_argument("--lm-eval-fewshot", type=int, metavar="K", default=None,
                   help="shots for every --lm-eval-tasks task (default: each task's own; recorded)")
    g.add_argument("--lm-eval-limit", type=int, metavar="N", default=None,
                   help="at most N documents per task, for quick runs (recorded; not the full task)")
    g.add_argument("--lm-eval-include", metavar="DIR", default=None,
                   help="a folder of extra lm-eval task YAML files (e.g. tasks over local data)")


def mcq_specs_from_args(args: argparse.Namespace):
    """(MMLU spec or None, utility spec or None) from the options of :func:`add_mcq_arguments`."""
    from harness.tasks.mcq.mmlu import MCQSpec

    protocol = getattr(args, "mmlu_protocol", "semeval2025") or "semeval2025"
    batch = getattr(args, "mcq_batch_size", 8) or 8
    fewshot = getattr(args, "mmlu_fewshot", None)
    mmlu = None
    if getattr(args, "mmlu", None):
        mmlu = MCQSpec(source=args.mmlu, protocol=protocol, subjects=getattr(args, "mmlu_subjects", None),
                       limit=getattr(args, "mmlu_limit", None), metric_name="mmlu", batch_size=batch,
                       num_fewshot=fewshot, prompt_format=getattr(args, "mmlu_format", "letters") or "letters")
    utility = None
    if getattr(args, "utility", None):
        utility = MCQSpec(source=args.utility, protocol=protocol, metric_name="utility", batch_size=batch,
                          num_fewshot=fewshot, prompt_format=getattr(args, "utility_format", "cloze") or "cloze")
    return mmlu, utility


def add_benchmark_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--benchmark", metavar="NAME", default=None,
                   help="registered benchmark the data folder holds (see `unlearnbench benchmarks`; default: the "
                        "one its benchmark.json names, else the one that recognises the folder, lume for LUME files)")
    p.add_argument("--benchmark-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the benchmark (repeatable), e.g. tofu: split=forget05, format=llama2; "
                        "muse: protocol=open-unlearning, corpus=news")
    p.add_argument("--reference", metavar="RUN", default=None,
                   help="reference run the benchmark compares against (tofu: a retain-only model's run, for Forget "
                        "Quality; muse: the retrained model's run, for PrivLeak)")


def benchmark_options(args: argparse.Namespace) -> dict[str, str] | None:
    """``--benchmark-option`` and ``--reference`` as the benchmark's ``{key: value}`` options (None: none)."""
    options: dict[str, str] = {}
    for item in getattr(args, "benchmark_option", None) or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--benchmark-option expects KEY=VALUE, got {item!r}")
        options[key.strip()] = value.strip()
    if getattr(args, "reference", None):
        options["reference"] = args.reference
    return options or None


def add_parallel_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-processes", type=int, default=1, metavar="N",
                   help="data-parallel processes: re-launches this command under torchrun (CPU) or "
                        "accelerate launch --multi_gpu (GPU); default 1. Equivalent: accelerate launch -m harness …")


def maybe_relaunch(args: argparse.Namespace) -> int | None:
    """Re-run the command under ``--num-processes`` processes; ``None`` when already running as one."""
    from harness.backends.distributed import launched_distributed, relaunch

    if args.num_processes > 1 and not launched_distributed():
        return relaunch(sys.argv[1:], args.num_processes, args.device)
    return None


def settings_from_args(args: argparse.Namespace):
    from harness.evaluation.pipeline import EvalSettings
    from harness.tasks.mcq.mmlu import check_mcq_source

    mmlu, utility = mcq_specs_from_args(args)
    # A missing MMLU folder or an offline hub must fail now, not after minutes of generation.
    for spec in (mmlu, utility):
        if spec is not None:
            check_mcq_source(spec)
    lm_eval_tasks = None
    if getattr(args, "lm_eval_tasks", None):
        from harness.tasks.lm_eval_tasks import LMEvalTasksSpec, check_lm_eval_tasks, parse_task_list

        lm_eval_tasks = LMEvalTasksSpec(parse_task_list(args.lm_eval_tasks), num_fewshot=args.lm_eval_fewshot,
                                        limit=args.lm_eval_limit, batch_size=getattr(args, "mcq_batch_size", 8) or 8,
                                        include=args.lm_eval_include)
        check_lm_eval_tasks(lm_eval_tasks)  # an unknown task or unreachable data: now, before any model work
    try:
        return EvalSettings(mode=args.mode, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                            lm_eval_tasks=lm_eval_tasks,
                            dtype=args.dtype, device=args.device, min_k=args.min_k, mmlu=mmlu, utility=utility,
                            engine=args.engine, tensor_parallel_size=args.tensor_parallel_size,
                            limit=getattr(args, "limit", None), progress=not args.no_progress, cache=not args.no_cache, cache_dir=args.cache_dir)
    except ValueError as exc:
        raise UserError(str(exc)) from exc


def summary_lines(result) -> list[str]:
    m = result.metrics

    def fmt(name: str) -> str:
        v = m.get(name)
        return "n/a" if v is None else f"{v:.4f}"

    if result.settings.get("benchmark", "lume") != "lume":  # another benchmark: its metrics as they are
        return ([f"{result.label} ({result.settings['benchmark']}):"] + [f"  {k} {fmt(k)}" for k in m]
                + ["  time " + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())])
    lines = [f"{result.label}: task_aggregate {fmt('task_aggregate')}  mia_auc {fmt('mia_auc')}  "
             f"mia_score {fmt('mia_score')}  mmlu {fmt('mmlu')}  utility {fmt('utility')}  final {fmt('final_score')}"]
    for split in ("forget", "retain"):
        parts = [f"{t} rougeL {fmt(f'{split}/{t}/regurgitation')} em {fmt(f'{split}/{t}/knowledge')}"
                 for t in ("Task1", "Task2", "Task3")]
        lines.append(f"  {split:<6} " + " | ".join(parts))
    lines.append("  time " + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items()))
    return lines


def _evaluate(args: argparse.Namespace) -> int:
    from harness.backends.distributed import is_main_process, shared_token
    from harness.backends.loading import load_model, model_info
    from harness.core.records import MethodInfo, RunConfig
    from harness.core.transaction import RunTransaction
    from harness.evaluation.pipeline import evaluate_model
    from harness.evaluation.runfolder import eval_identity, output_inputs, record_inputs
    from harness.tasks import load_task

    rc = maybe_relaunch(args)
    if rc is not None:
        return rc
    settings = settings_from_args(args)
    # --out is checked before anything is loaded: not a file, not an input, not inside or around one.
    tx = RunTransaction(args.out, command="evaluate", token=shared_token(), main=is_main_process(),
                        inputs=output_inputs(model=args.model, data=args.data, mia=args.mia, settings=settings))
    options = benchmark_options(args)
    task = load_task(args.data, name=args.benchmark, mia=args.mia, options=options)
    try:
        model, tok = load_model(args.model, dtype=args.dtype, device=args.device,
                                trust_remote_code=args.trust_remote_code)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    config = RunConfig(command="evaluate", argv=sys.argv[1:], model=str(args.model), data=str(args.data), mia=args.mia,
                       label=args.label, benchmark=task.name, benchmark_options=options, device=args.device,
                       dtype=args.dtype, eval=settings.to_dict())
    with tx:  # everything lands in a staging folder, swapped in as --out only when complete
        result = evaluate_model(model, tok, task, settings, tx.path, model_info=model_info(model, id=str(args.model)),
                                method_info=MethodInfo(name="none"), label=args.label, config=config,
                                run_id=tx.final.name,
                                backend=settings.make_backend(model, tok, model_path=args.model))
        record_inputs(tx, model=args.model, task=task, settings=settings)
        tx.settings = {"benchmark": task.name, "benchmark_options": options, "dtype": args.dtype,
                       "eval": eval_identity(settings)}
    if is_main_process():
        for line in summary_lines(result):
            print(line)
        print(f"wrote {Path(args.out) / 'result.json'}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="evaluate a saved model on a benchmark (LUME: the SemEval-2025 metrics)",
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
    p.add_argument("--data", required=True, metavar="DIR", help="benchmark folder (LUME: forget/retain [+ mia/])")
    add_benchmark_argument(p)
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder to write")
    p.add_argument("--label", default=None, help="display name on leaderboards (default: the model folder name)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the model's own code (as the organisers)")
    add_parallel_argument(p)
    add_eval_arguments(p)
    p.set_defaults(func=_evaluate)
