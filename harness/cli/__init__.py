"""The ``unlearnbench`` command line (console entry point ``harness.cli:main``)."""

from harness.cli.main import USER_ERRORS, build_parser, examples, main
from harness.core.errors import UserError

__all__ = ["USER_ERRORS", "UserError", "build_parser", "examples", "main"]
