"""``unlearnbench demo [--out DIR] [--quick]``: the whole pipeline on the embedded world."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.main import examples


def _demo(args: argparse.Namespace) -> int:
    from harness.synthetic.demo import DemoPlan, run_demo

    methods = [m.strip() for m in args.methods.split(",")] if args.methods else []
    run_demo(DemoPlan(out=Path(args.out), quick=args.quick, seed=args.seed, size=args.size, methods=methods,
                      bootstrap=args.bootstrap))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="the whole pipeline on a synthetic world: world, target, every method, leaderboard",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=examples("unlearnbench demo                      # about 10 minutes on 2 CPU cores",
                        "unlearnbench demo --quick              # four methods, one epoch each",
                        "unlearnbench demo --methods npo,rmu --out my-demo"),
    )
    p.add_argument("--out", default="demo-out", help="output folder (default demo-out); reruns reuse it")
    p.add_argument("--quick", action="store_true", help="four methods, one epoch each (≈3 minutes)")
    p.add_argument("--methods", default=None, help="comma list of methods (default: every built-in method)")
    p.add_argument("--seed", type=int, default=0, help="world and training seed (default 0)")
    p.add_argument("--size", choices=("small", "medium", "large"), default="small", help="world/target size")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates for the intervals (200)")
    p.set_defaults(func=_demo)
