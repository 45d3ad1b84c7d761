"""Time the real-model pipeline (``unlearnbench demo --real``) and print what issue 15 asks for: the
target's scores (does it regurgitate the subset?), each method's row, each method's MMLU against the
target's (over-forgetting shows as MMLU falling), and the time of every step.

    python benchmarks/real_pipeline.py --assets ASSETS --lume ../shared/lume --out scratch/real-demo
    python benchmarks/real_pipeline.py --assets ASSETS --docs 1 --mmlu-limit 20 --methods grad_ascent,zjuklab_merge

A rerun with the same options reuses the fine-tuned target and the finished runs (``--fresh`` removes
``--out`` first, for a timing from scratch). The printed figures are also in ``OUT/real_demo.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path


def report(summary: dict) -> str:
    rows = summary["rows"]
    names = ("forget/regurgitation", "forget/knowledge", "retain/regurgitation", "retain/knowledge",
             "task_aggregate", "mia_auc", "mia_score", "mmlu", "final_score")

    def fmt(v) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    lines = ["| run | " + " | ".join(names) + " | MMLU - target's |", "|---" * (len(names) + 2) + "|"]
    target_mmlu = rows["target"].get("mmlu")
    for run, row in rows.items():
        delta = (None if run == "target" or row.get("mmlu") is None or target_mmlu is None
                 else row["mmlu"] - target_mmlu)
        lines.append(f"| {run} | " + " | ".join(fmt(row.get(n)) for n in names) + f" | {fmt(delta)} |")
    t = summary["target"]
    lines.append(f"\ntarget: {t['epochs']} epochs of full fine-tuning on {t['n_examples']} records "
                 f"({t['n_tokens']} tokens), answer-token loss by epoch {t['loss_by_epoch']}, {t['seconds']} s")
    lines.append("time (s): " + ", ".join(f"{k} {v}" for k, v in summary["timings"].items()))
    return "\n".join(lines)


def main() -> None:
    from harness.real.demo import DEFAULT_METHODS, DEFAULT_MMLU_SUBJECTS, FinetuneSpec, RealDemoPlan, SubsetSpec, \
        run_real_demo

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--assets", type=Path, required=True, help="the folder `unlearnbench assets` wrote")
    p.add_argument("--lume", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "lume")
    p.add_argument("--out", type=Path, default=Path("scratch/real-demo"))
    p.add_argument("--docs", type=int, default=2, help="documents per split x task (default 2)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    p.add_argument("--method-epochs", type=int, default=2)
    p.add_argument("--mmlu-subjects", default=DEFAULT_MMLU_SUBJECTS)
    p.add_argument("--mmlu-limit", type=int, default=40)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=2e-4, help="target fine-tuning learning rate")
    p.add_argument("--max-epochs", type=int, default=30, help="target fine-tuning epochs at most")
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--fresh", action="store_true", help="remove --out first (a timing from scratch)")
    args = p.parse_args()
    if args.fresh and args.out.exists():
        shutil.rmtree(args.out)
    plan = RealDemoPlan(out=args.out, assets=args.assets, lume=args.lume, subset=SubsetSpec(docs=args.docs),
                        finetune=FinetuneSpec(learning_rate=args.learning_rate, max_epochs=args.max_epochs),
                        methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
                        method_epochs=args.method_epochs, mmlu_subjects=args.mmlu_subjects,
                        mmlu_limit=args.mmlu_limit, max_new_tokens=args.max_new_tokens, bootstrap=args.bootstrap)
    t0 = time.perf_counter()
    summary = run_real_demo(plan)
    wall = time.perf_counter() - t0
    print()
    print(report(summary))
    print(f"wall {wall:.0f} s; load average at the end {os.getloadavg()[0]:.1f} (2 cores)")


if __name__ == "__main__":
    main()
