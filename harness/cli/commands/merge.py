"""``unlearnbench merge RUN_A RUN_B … --how ties --density 0.8 --weights 1 1 --out RUN_DIR``."""

from __future__ import annotations

import argparse

from harness.cli.main import examples


def merge_settings_from_args(args: argparse.Namespace):
    from baselines.merging import MergeSettings

    return MergeSettings(how=args.how, weights=tuple(args.weights) if args.weights else None,
                         density=args.density, svd_rank=args.svd_rank,
                         majority_sign_method=args.majority_sign_method, seed=args.seed)


def _merge(args: argparse.Namespace) -> int:
    from harness.training.merge import merge_runs
    from harness.cli.commands.evaluate import settings_from_args, summary_lines

    eval_settings = None if args.no_eval else settings_from_args(args)
    _, _, result = merge_runs(args.runs, merge_settings_from_args(args), args.out, data=args.data, mia=args.mia,
                              evaluate=not args.no_eval, eval_settings=eval_settings, label=args.label,
                              dtype=args.dtype, device=args.device, progress=not args.no_progress)
    print(f"merged {len(args.runs)} runs with {args.how} into {args.out}")
    if result is not None:
        for line in summary_lines(result):
            print(line)
    return 0


def add_merge_arguments(p: argparse.ArgumentParser) -> None:
    from baselines.merging import COMBINATION_TYPES

    g = p.add_argument_group("merging")
    g.add_argument("--how", choices=COMBINATION_TYPES, default="ties", help="combination type (default ties)")
    g.add_argument("--weights", type=float, nargs="+", default=None, metavar="W",
                   help="one weight per run (default 1 each)")
    g.add_argument("--density", type=float, default=0.8, help="fraction kept by ties/dare/magnitude_prune (0.8)")
    g.add_argument("--svd-rank", type=int, default=None, help="rank for the *svd methods (LoRA: default max rank)")
    g.add_argument("--majority-sign-method", choices=("total", "frequency"), default="total",
                   help="TIES sign election (default total)")
    g.add_argument("--seed", type=int, default=0, help="seed for DARE's random pruning (default 0)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from harness.cli.commands.evaluate import add_eval_arguments

    p = sub.add_parser(
        "merge", help="merge finished runs (LoRA adapters or full fine-tunes) into a new, evaluated run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=examples("unlearnbench merge runs/over runs/under --how ties --density 0.8 --weights 1 1 --out runs/merged",
                        "unlearnbench merge runs/a runs/b --how dare_linear --density 0.5 --seed 1 --out runs/dare",
                        "unlearnbench merge runs/a runs/b --how svd --svd-rank 16 --no-eval --out runs/svd"),
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished unlearning runs (same base model)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder for the merged model")
    p.add_argument("--data", default=None, metavar="DIR", help="benchmark (default: the first run's)")
    p.add_argument("--label", default=None, help="leaderboard name (default merge:<how>)")
    p.add_argument("--no-eval", action="store_true", help="only merge and save, do not evaluate")
    add_merge_arguments(p)
    add_eval_arguments(p)
    p.set_defaults(func=_merge)
