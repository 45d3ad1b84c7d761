"""The errors a user can fix, raised by the library and turned into one line by the CLI.

Every error here derives from :class:`UnlearnbenchError`: ``unlearnbench`` prints such an error as
``unlearnbench COMMAND: error: MESSAGE`` and exits with status 2 (``-v`` shows the traceback). The
library raises them itself; nothing here imports the CLI, so the dependency runs one way only
(``harness.cli`` → library). Errors that mean a bug or a broken environment (``RuntimeError``, an
out-of-memory error) are deliberately not in this family: they keep their traceback.
"""

from __future__ import annotations

from pathlib import Path


class UnlearnbenchError(Exception):
    """Base of every error a user can fix (bad input, a missing file, an unknown name)."""


class UserError(UnlearnbenchError):
    """A problem with the input that the user can fix (the general case of this family)."""


class ConfigError(UserError):
    """A configuration file or override the user can fix (unknown key, unreadable file, bad value)."""


class BackendUnavailable(UserError):
    """A model backend cannot run here (e.g. vLLM not installed, or no GPU for it)."""


class DataError(UnlearnbenchError, ValueError):
    """A benchmark file is missing or malformed. Carries ``path``, ``line`` and ``record_id``."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None,
                 record_id: str | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        self.record_id = record_id
        self.reason = message
        where = []
        if self.path:
            where.append(self.path)
        if line is not None:
            where.append(f"line {line}")
        if record_id is not None:
            where.append(f"record id {record_id!r}")
        super().__init__(f"{': '.join([', '.join(where), message]) if where else message}")


class RecordError(UnlearnbenchError, ValueError):
    """A result record or run folder that cannot be read (corrupt, partial, or of another schema)."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class RegistryError(UnlearnbenchError, LookupError):
    """Unknown name, duplicate registration, or a plugin that fails to load."""


class WorldError(UnlearnbenchError, ValueError):
    """The synthetic world cannot be written or read (names the folder/file and what was expected)."""


class TargetError(UnlearnbenchError, ValueError):
    """The embedded target cannot be trained or saved (names the folder and what was expected)."""


class RunFolderError(UserError):
    """An output folder that cannot be written as asked: an existing file, an input of the run (model,
    benchmark, parent run), inside or around one, or a folder that is not a run."""


class ManifestError(UnlearnbenchError, ValueError):
    """A run folder whose files do not belong together (``reason``: which file, and why)."""

    def __init__(self, folder: str | Path, reason: str):
        self.folder = str(folder)
        self.reason = reason
        super().__init__(f"{folder}: {reason}")


class ModelError(UnlearnbenchError, ValueError):
    """A model that cannot be used as given: non-finite weights or outputs (names the model and where)."""


class DiskFullError(UnlearnbenchError, OSError):
    """No space left on the device a file was being written to (nothing half-written is left)."""

    def __init__(self, message: str, filename: str | None = None):
        import errno

        super().__init__(errno.ENOSPC, message, filename)
        self.message = message

    def __str__(self) -> str:
        return self.message


class AttackError(UnlearnbenchError, ValueError):
    """A robustness attack cannot run with these settings on this model (``harness.attacks``)."""


__all__ = ["AttackError", "BackendUnavailable", "ConfigError", "DataError", "DiskFullError", "ManifestError",
           "ModelError", "RecordError", "RegistryError", "RunFolderError", "TargetError",
           "UnlearnbenchError", "UserError", "WorldError"]
