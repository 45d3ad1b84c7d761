"""``unlearnbench methods``, ``unlearnbench benchmarks``, ``unlearnbench metrics``, ``unlearnbench schema``."""

from __future__ import annotations

import argparse
import json
import sys

from harness.cli.main import examples


def _methods(args: argparse.Namespace) -> int:
    from harness.core.registry import METHODS
    from harness.core.types import summary_line

    if args.refresh:
        METHODS.refresh()
    for name in METHODS.names():
        cls = METHODS.get(name)
        origin = METHODS.origin(name)
        print(f"{name:<18} {summary_line(cls.__doc__):<70} [{origin}]")
        if args.params:
            from harness.core.params import method_specs

            specs = method_specs(cls)
            for key, value in cls.defaults().items():
                allowed = f"  ({specs[key].allowed})" if key in specs else ""
                print(f"{'':<20}{key} = {value!r}{allowed}")
            for preset, values in (getattr(cls, "presets", None) or {}).items():
                print(f"{'':<20}preset {preset}: " + ", ".join(f"{k}={v!r}" for k, v in values.items()))
    return 0


def _benchmarks(args: argparse.Namespace) -> int:
    from harness.core.registry import BENCHMARKS

    if args.refresh:
        BENCHMARKS.refresh()
    for name in BENCHMARKS.names():
        cls = BENCHMARKS.get(name)
        print(f"{name:<18} {cls.summary():<70} [{BENCHMARKS.origin(name)}]")
        if args.layout and cls.layout:
            print(f"{'':<20}reads: {cls.layout}")
    return 0


def _metrics(args: argparse.Namespace) -> int:
    from harness.core.registry import METRICS

    for name in METRICS.names():
        spec = METRICS.get(name)
        direction = f"target {spec.target}" if spec.direction == "target" else spec.direction
        final = " (in final score)" if spec.in_final_score else ""
        print(f"{name:<24} {direction:<11} {spec.description}{final}")
    return 0


def _schema(args: argparse.Namespace) -> int:
    from harness.core import fileio
    from harness.core.records import result_json_schema

    schema = result_json_schema()
    if args.out:
        fileio.write_json(args.out, schema)
    else:
        json.dump(schema, sys.stdout, indent=2)
        print()
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("methods", help="list registered unlearning methods (built-in and plugins)",
                       epilog=examples("unlearnbench methods", "unlearnbench methods --params"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", action="store_true", help="also list each method's default hyperparameters and presets")
    p.add_argument("--refresh", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=_methods)

    p = sub.add_parser("benchmarks", help="list registered benchmarks (built-in and plugins)",
                       epilog=examples("unlearnbench benchmarks", "unlearnbench benchmarks --layout",
                                       "unlearnbench evaluate --benchmark lume --model M --data D --out R"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layout", action="store_true", help="also say which files each benchmark reads")
    p.add_argument("--refresh", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=_benchmarks)

    p = sub.add_parser("metrics", help="list registered metrics and which direction is better",
                       epilog=examples("unlearnbench metrics"), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=_metrics)

    p = sub.add_parser("schema", help="print the JSON schema of result.json",
                       epilog=examples("unlearnbench schema", "unlearnbench schema --out result.schema.json"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="write the schema to this file instead of standard output")
    p.set_defaults(func=_schema)
