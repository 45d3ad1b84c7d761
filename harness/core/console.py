"""What the terminal shows: the harness's own stage lines and labelled progress bars, and third-party
chatter (warnings, log lines, unlabelled progress bars, per-split messages) only when asked for.

The command line calls :func:`configure` once, before any command runs; a library user who never
calls it keeps Python's and every library's defaults (nothing here runs on import).

=========  =================================================================================
level      what the terminal shows
=========  =================================================================================
``-q``     warnings and errors of the harness; third-party errors
default    the harness's info lines and progress bars; third-party errors only; no Python
           warnings raised in other packages; no lm-eval output unless it fails
``-v``     also third-party warnings, Python warnings, lm-eval's and datasets' own output
``-vv``    debug lines of the harness, info lines of every library
=========  =================================================================================

Libraries that print through their own handlers are quietened the way each documents: environment
variables read when they are imported (set only where the user has not set them, and only at the
default and ``-q`` levels), and lm-eval, which prints progress bars without labels and runs ``git``
(``fatal: not a git repository`` outside a repository), runs inside :func:`third_party_output`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from typing import Iterator

#: Top-level logger/package names that are the harness's own.
OWN_PACKAGES = ("unlearnbench", "harness", "baselines", "metrics", "leaderboards")

#: Set (unless already set) at the default and ``-q`` levels, before the libraries are imported.
QUIET_ENVIRONMENT = {
    "TRANSFORMERS_VERBOSITY": "error",  # transformers' own handler
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "DATASETS_VERBOSITY": "error",  # datasets' own handler
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",  # "Generating test split: …" per split and file
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # hub and transformers' loading bars
    "TORCH_LOGS": "-all",  # torch's own handler: errors only (import-time pytree warnings)
    "LMEVAL_LOG_LEVEL": "ERROR",
    "TOKENIZERS_PARALLELISM": "false",  # the fork warning of the Rust tokenizers
}

_settings = {"verbosity": None}


def verbosity() -> int | None:
    """The level :func:`configure` set (-1 quiet, 0 default, 1 ``-v``, 2 ``-vv``), ``None`` if never called."""
    return _settings["verbosity"]


def is_own(logger_name: str) -> bool:
    return logger_name == "py.warnings" or logger_name.split(".", 1)[0] in OWN_PACKAGES


class _LevelByOrigin(logging.Filter):
    """Pass the harness's records from ``own`` up and other libraries' records from ``others`` up."""

    def __init__(self, own: int, others: int):
        super().__init__()
        self.own, self.others = own, others

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= (self.own if is_own(record.name) else self.others)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (a test's capture, a redirect)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


class _ConsoleFormatter(logging.Formatter):
    """Info lines as plain text (they are the stage lines); warnings and errors say so."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        if record.levelno >= logging.WARNING:
            where = "" if is_own(record.name) else f" ({record.name})"
            return f"{record.levelname.lower()}{where}: {message}"
        return message


def configure(verbose: int = 0, quiet: bool = False) -> None:
    """Set up logging, Python warnings and the libraries' own output for the command line."""
    level = -1 if quiet else min(verbose, 2)
    _settings["verbosity"] = level
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_unlearnbench_console", False):
            root.removeHandler(handler)
    handler = _StderrHandler()
    handler._unlearnbench_console = True  # type: ignore[attr-defined]
    if level >= 1:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    else:
        handler.setFormatter(_ConsoleFormatter())
    own = {-1: logging.WARNING, 0: logging.INFO, 1: logging.INFO, 2: logging.DEBUG}[level]
    others = {-1: logging.ERROR, 0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO}[level]
    handler.addFilter(_LevelByOrigin(own, others))
    root.addHandler(handler)
    root.setLevel(own)
    for name in OWN_PACKAGES:
        logging.getLogger(name).setLevel(logging.NOTSET)
    logging.captureWarnings(True)
    if level <= 0:
        for key, value in QUIET_ENVIRONMENT.items():
            os.environ.setdefault(key, value)
        # Python warnings raised in other packages (FutureWarning, UserWarning …) are theirs to fix;
        # the harness's own still show (they are attributed to its modules).
        warnings.filterwarnings("ignore")
        warnings.filterwarnings("default", module=r"(%s)(\.|$)" % "|".join(OWN_PACKAGES))
        # torch keeps its own handler on "torch" (TORCH_LOGS above covers an import still to come).
        logging.getLogger("torch").setLevel(logging.ERROR)


def third_party_quiet() -> bool:
    """Whether third-party output is held back (the command line's default and ``-q`` levels)."""
    level = verbosity()
    return level is not None and level <= 0


@contextlib.contextmanager
def third_party_output(what: str) -> Iterator[None]:
    """Run a library call whose own terminal output (progress bars without labels, subprocess
    messages) is not wanted at the default level: its stdout and stderr, file descriptors included,
    go to a temporary file that is shown only if the call fails. Does nothing unless
    :func:`third_party_quiet`."""
    if not third_party_quiet():
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as held:
        saved = os.dup(1), os.dup(2)
        try:
            os.dup2(held.fileno(), 1)
            os.dup2(held.fileno(), 2)
            stream = open(held.fileno(), "w", closefd=False, encoding="utf-8", errors="replace")
            with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
                try:
                    yield
                finally:
                    stream.flush()
        except BaseException:
            _restore(saved)
            held.seek(0)
            text = held.read().decode("utf-8", errors="replace")
            if text.strip():
                sys.stderr.write(f"--- output of {what} (held back at the default verbosity) ---\n{text}"
                                 f"--- end of {what}'s output ---\n")
                sys.stderr.flush()
            raise
        else:
            _restore(saved)
        finally:
            for fd in saved:
                with contextlib.suppress(OSError):
                    os.close(fd)


def _restore(saved: tuple[int, int]) -> None:
    os.dup2(saved[0], 1)
    os.dup2(saved[1], 2)
