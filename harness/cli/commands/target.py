"""``unlearnbench target``: train (or reuse) the embedded target model for a synthetic world."""

from __future__ import annotations

import argparse
import sys

from harness.cli.main import examples


def _target(args: argparse.Namespace) -> int:
    from harness.synthetic.target import read_report, read_target_info, train_target

    out = train_target(args.world, args.out, size=args.size, seed=args.seed, progress=not args.quiet)
    info = read_target_info(out) or {}
    report = read_report(out) or {}
    print(f"target model: {out} ({info.get('parameters', '?'):,} parameters, trained in "
          f"{info.get('train_seconds', '?')} s)")
    values = report.get("values", {})
    for key, threshold in report.get("gates", {}).items():
        value = values.get(key)
        mark = "ok  " if value is not None and value >= threshold else "FAIL"
        note = "; chance 0.25, lm-eval cloze 5-shot" if key == "utility" else ""
        print(f"  {mark} {key:<22} {value if value is None else round(value, 4)!s:<8} (gate >= {threshold}{note})")
    if report.get("failed"):
        print(f"unlearnbench target: quality gate(s) failed: {'; '.join(report['failed'])} "
              f"(model and report kept in {out})", file=sys.stderr)
        return 1
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from harness.synthetic.target import CONFIGS

    p = sub.add_parser(
        "target", help="train the embedded target model that memorises a synthetic world (cached)",
        description="Train a byte-level BPE tokenizer and a small Llama on a world's forget + retain documents, "
                    "their QA pairs and the utility facts, save it with save_pretrained, and check quality gates "
                    "(MIA AUC, regurgitation, knowledge, utility MCQ) into MODEL_DIR/target_report.json. A second "
                    "call with the same world and settings returns at once.",
        epilog=examples("unlearnbench world --out worlds/default",
                        "unlearnbench target --world worlds/default --out models/target"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", required=True, help="a world folder written by `unlearnbench world`")
    p.add_argument("--out", required=True, help="model folder to write (reused when up to date)")
    p.add_argument("--size", choices=sorted(CONFIGS), default="small",
                   help="small: hidden 128, 2 layers, a few minutes on 2 CPU cores (default); medium; large")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.set_defaults(func=_target)
