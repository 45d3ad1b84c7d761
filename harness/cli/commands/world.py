"""``unlearnbench world``: write the embedded synthetic LUME-format benchmark."""

from __future__ import annotations

import argparse

from harness.cli.main import examples


def _world(args: argparse.Namespace) -> int:
    from harness.tasks.lume.data import load_benchmark
    from harness.synthetic.world import generate_world, read_manifest

    out = generate_world(args.out, seed=args.seed, size=args.size)  # a WorldError is a user error
    bench = load_benchmark(out)  # the world must load like any benchmark
    counts = read_manifest(out)["counts"]
    docs = counts["documents"]
    print(f"wrote {out}: {len(bench.forget)} forget / {len(bench.retain)} retain records "
          f"({docs['forget']} + {docs['retain']} documents), {len(bench.members)} MIA members, "
          f"{len(bench.nonmembers)} non-members, {counts['facts']} utility facts "
          f"(seed {args.seed}, size {args.size})")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from harness.synthetic.world import SIZES

    p = sub.add_parser(
        "world", help="write the embedded synthetic LUME-format benchmark (deterministic for a seed)",
        description="Generate a LUME-format benchmark from a seed: Task1 stories, Task2 PII biographies, Task3 "
                    "encyclopedic biographies (forget/retain ~1:1), MIA member/non-member sets, and a "
                    "general-knowledge multiple-choice set (utility/, MMLU's CSV layout).",
        epilog=examples("unlearnbench world --out worlds/default",
                        "unlearnbench world --out worlds/w7 --seed 7 --size medium"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder to write (created; rewritten if it holds a world)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default 0); same seed = same files")
    p.add_argument("--size", choices=sorted(SIZES), default="small",
                   help="small: 90 forget + 90 retain + 90 non-member documents (default); medium; large")
    p.set_defaults(func=_world)
