"""``unlearnbench import-tofu``: TOFU's own evaluation logs as a run folder that ranks on the tofu board."""

from __future__ import annotations

import argparse

from harness.cli.main import examples


def _import_tofu(args: argparse.Namespace) -> int:
    from harness.tasks.tofu.importing import import_tofu_logs

    result = import_tofu_logs(args.logs, args.retain_logs, args.out, split=args.split, label=args.label)
    m = result.metrics
    print(f"{result.label}: Model Utility {m['tofu/model_utility']!r}  Forget Quality {m['tofu/forget_quality']!r}")
    print(f"wrote {args.out}/result.json")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-tofu", help="turn TOFU's evaluation logs (eval_*.json) into a run folder and result record",
        description="Reads the four eval_*.json files TOFU's evaluate_util.py writes for a model (or its "
                    "eval_log_aggregated.json) and for a retain-only reference model, computes Model Utility, "
                    "Forget Quality and every component exactly as TOFU's aggregate_eval_stat.py, and writes "
                    "samples.jsonl, config.json and result.json into --out.",
        epilog=examples("unlearnbench import-tofu --logs ../shared/tofu-logs/phi-full "
                        "--retain-logs ../shared/tofu-logs/phi-retain90 --out runs/tofu-phi-full",
                        "unlearnbench leaderboard runs --board tofu"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--logs", required=True, metavar="DIR", help="the evaluated model's TOFU log folder")
    p.add_argument("--retain-logs", required=True, metavar="DIR",
                   help="the log folder of a model trained on the retain split only (Forget Quality's reference)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder to write")
    p.add_argument("--split", default="forget10", choices=("forget01", "forget05", "forget10"),
                   help="the forget split the logs evaluated (TOFU's default: forget10)")
    p.add_argument("--label", default=None, help="display name (default: the log folder's name)")
    p.set_defaults(func=_import_tofu)
