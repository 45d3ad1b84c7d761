"""Atomic file writing: a killed run never leaves a truncated result file.

Every file is written to a temporary file in the same folder, flushed and fsynced, then renamed over
the destination (``os.replace`` is atomic on POSIX and Windows for same-filesystem renames).
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterable, Iterator


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results are meant to be shared
    binary = "b" in mode
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _default(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def dumps(obj: Any, indent: int | None = 2) -> str:
    # allow_nan=False: a NaN in a result file would be unreadable by strict JSON parsers.
    return json.dumps(obj, indent=indent, ensure_ascii=False, default=_default, allow_nan=False)


def write_json(path: str | Path, obj: Any) -> Path:
    with atomic_open(path) as fh:
        fh.write(dumps(obj) + "\n")
    return Path(path)


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> Path:
    with atomic_open(path) as fh:
        for row in rows:
            fh.write(dumps(row, indent=None) + "\n")
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_open(path) as fh:
        fh.write(text)
    return Path(path)


def read_jsonl(path: str | Path) -> list[Any]:
    rows = []
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rows.append(json.loads(line))
    return rows


def append_jsonl(path: str | Path, row: Any) -> None:
    """Append one line (logs: a partial last line is tolerated by readers, results never are)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(dumps(row, indent=None) + "\n")
