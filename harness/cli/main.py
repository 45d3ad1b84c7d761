"""The ``unlearnbench`` command line.

Each sub-command lives in its own module under ``harness/cli/commands/`` and exposes
``add_parser(subparsers)``; heavy libraries (torch, transformers) are imported inside the command
functions so that ``unlearnbench --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap

from harness.core import console
from harness.core.errors import UnlearnbenchError

#: Sub-command modules, in the order ``--help`` lists them.
COMMAND_MODULES = (
    "harness.cli.commands.catalog",  # methods, benchmarks, metrics, schema
    "harness.cli.commands.world",  # world --out DIR (the embedded synthetic benchmark)
    "harness.cli.commands.target",  # target --world DIR --out MODEL_DIR (the embedded target model)
    "harness.cli.commands.tofu_world",  # tofu-world --out DIR --models DIR (the world as TOFU + targets)
    "harness.cli.commands.score",  # score RUN_DIR (metrics from per-sample files)
    "harness.cli.commands.evaluate",  # evaluate --model --data --out
    "harness.cli.commands.import_tofu",  # import-tofu --logs DIR --retain-logs DIR --out RUN (TOFU's own logs)
    "harness.cli.commands.unlearn",  # unlearn --method --model --data --out; run CONFIG
    "harness.cli.commands.merge",  # merge RUN_A RUN_B ... --how ties --out RUN_DIR
    "harness.cli.commands.attack",  # attack RUN --kind relearn|quantize|precision|prompt --out RUN_DIR
    "harness.cli.commands.analyze",  # analyze merges|density|curves|angles
    "harness.cli.commands.leaderboard",  # leaderboard RESULTS_DIR... (tables and plots from result records)
    "harness.cli.commands.demo",  # demo [--quick]: the whole pipeline on the embedded world
    "harness.cli.commands.assets",  # assets --out DIR (the real artefacts, fetched from PyPI)
)

#: Errors a user can fix: printed as one clear line, no traceback (``-v`` shows it anyway). The
#: library's own (``harness.core.errors``) all derive from ``UnlearnbenchError``.
USER_ERRORS: tuple[type[BaseException], ...] = (UnlearnbenchError, FileNotFoundError)


def examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unlearnbench",
        description="Benchmark harness for LLM unlearning (SemEval-2025 Task 4 / LUME metrics).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent(
            """\
            examples:
              unlearnbench demo --quick              # the whole pipeline on an embedded synthetic world
              unlearnbench methods                   # registered unlearning methods (incl. plugins)
              unlearnbench evaluate --model M --data ../shared/lume --out runs/target
            """
        ),
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="also the libraries' warnings and output (lm-eval, datasets, transformers) and "
                             "tracebacks; -vv for debug lines")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    console.configure(args.verbose, args.quiet)
    try:
        rc = args.func(args)
    except USER_ERRORS as exc:
        if args.verbose:
            raise
        print(f"unlearnbench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `unlearnbench … | head`: the reader left; not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
