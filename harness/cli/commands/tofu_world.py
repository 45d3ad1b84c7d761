"""``unlearnbench tofu-world``: the synthetic world in TOFU's format, with its full and oracle targets."""

from __future__ import annotations

import argparse

from harness.cli.main import examples


def _tofu_world(args: argparse.Namespace) -> int:
    from harness.tasks.world_tofu.build import make_tofu_world

    made = make_tofu_world(args.out, args.models, seed=args.seed, n_authors=args.authors, progress=not args.quiet)
    print(f"world-tofu benchmark: {made.world}")
    if made.target is not None:
        print(f"full target (all authors): {made.target}\noracle (retain90 only): {made.oracle}\n"
              f"oracle's run, the Forget Quality reference: {made.reference}\n"
              f"next: unlearnbench evaluate --model {made.target} --data {made.world} --out runs/tofu-target")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tofu-world", help="write the synthetic world in TOFU's format and train its full and oracle targets",
        description="Fictitious authors with paraphrased and five perturbed answers per question, 'real authors' "
                    "and 'world facts' sets, under TOFU's config names; with --models also a full target, a "
                    "retain-only oracle trained beside it, and the oracle's run (WORLD/reference), which the "
                    "world-tofu benchmark uses as its Forget Quality reference.",
        epilog=examples("unlearnbench tofu-world --out worlds/tofu --models models/tofu",
                        "unlearnbench evaluate --model models/tofu/target --data worlds/tofu --out runs/tofu-target",
                        "unlearnbench unlearn --method npo --model models/tofu/target --data worlds/tofu --out runs/tofu-npo"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, metavar="DIR", help="world folder to write")
    p.add_argument("--models", metavar="DIR", default=None,
                   help="also train DIR/target and DIR/oracle (cached) and write the oracle's run into the world")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--authors", type=int, default=40, help="fictitious authors, a multiple of 10 (default 40)")
    p.set_defaults(func=_tofu_world)
