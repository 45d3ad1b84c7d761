"""``unlearnbench demo [--out DIR] [--quick]``: the whole pipeline on the embedded world."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.main import examples


def _demo(args: argparse.Namespace) -> int:
    from harness.synthetic.demo import DemoPlan, run_demo

    if args.real:  # the real model, LUME and MMLU (harness.real.demo)
        from harness.real.demo import run_from_args

        return run_from_args(args)

    methods = [m.strip() for m in args.methods.split(",")] if args.methods else []
    run_demo(DemoPlan(out=Path(args.out), quick=args.quick, seed=args.seed, size=args.size, methods=methods,
                      bootstrap=args.bootstrap, jobs=args.jobs))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="the whole pipeline on a synthetic world: world, target, every method, leaderboard",
        description=(
            "World, target model, every built-in method with its `demo` preset (`unlearnbench unlearn --method NAME\n"
            "--preset demo` reproduces a row), the world leaderboard, and a check of what it should show: the ZJUKLAB\n"
            "merge ranked above both its parents (listed apart) and every single method (leaderboard/story.json).\n\n"
            "Time, measured from scratch with benchmarks/demo_time.sh on 2 idle CPU cores: the full demo 260 s\n"
            "(about 4.5 minutes), --quick 147 s; on a machine loaded 4x over the full demo took 24 minutes."),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=examples("unlearnbench demo                      # about 4.5 minutes on 2 idle CPU cores",
                        "unlearnbench demo --quick              # npo_gdr_klr and zjuklab_merge only (about 2.5)",
                        "unlearnbench demo --methods npo,rmu --out my-demo"),
    )
    p.add_argument("--out", default="demo-out", help="output folder (default demo-out); reruns reuse it")
    p.add_argument("--quick", action="store_true", help="only npo_gdr_klr and zjuklab_merge with its parents: the story on a small board")
    p.add_argument("--methods", default=None, help="comma list of methods (default: every built-in method)")
    p.add_argument("--seed", type=int, default=0, help="world and training seed (default 0)")
    p.add_argument("--size", choices=("small", "medium", "large"), default="small", help="world/target size")
    p.add_argument("--jobs", type=int, default=None,
                   help="runs at a time, one worker process each (default: one per core, at most 4)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates for the intervals (200)")
    from harness.real.demo import add_real_arguments

    add_real_arguments(p)
    p.set_defaults(func=_demo)
