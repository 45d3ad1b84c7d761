"""The ``unlearnbench`` command line (console entry point ``harness.cli:main``)."""

from harness.cli.main import USER_ERRORS, UserError, build_parser, examples, main

__all__ = ["USER_ERRORS", "UserError", "build_parser", "examples", "main"]
