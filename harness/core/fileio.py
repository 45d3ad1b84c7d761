"""Atomic file writing: a killed run never leaves a truncated result file.

Every file is written to a temporary file in the same folder, flushed and fsynced, then renamed over
the destination (``os.replace`` is atomic on POSIX and Windows for same-filesystem renames).
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

from .errors import DiskFullError


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
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if is_disk_full(exc, path.parent):
            raise disk_full(path, exc) from exc
        raise


# -- a full disk, named ---------------------------------------------------------------------------
def device_of(path: str | Path) -> str:
    """``DEVICE (FSTYPE) mounted at MOUNTPOINT`` for the file system holding ``path`` (best effort)."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    mount = p
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[1].replace("\\040", " ") == str(mount):
                return f"{fields[0]} ({fields[2]}) mounted at {mount}"
    except OSError:
        pass
    return f"the file system mounted at {mount}"


def free_bytes(path: str | Path) -> int | None:
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


#: Below this much free space a failed write is taken to be a full disk even when the library that
#: wrote (safetensors, torch) did not say ENOSPC.
NEARLY_FULL_BYTES = 1 << 20


def is_disk_full(exc: BaseException, where: str | Path) -> bool:
    """Whether ``exc`` (raised while writing under ``where``) means the disk is full."""
    if isinstance(exc, DiskFullError):
        return False  # already named
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    if not isinstance(exc, Exception) or isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return False
    text = str(exc)
    if "No space left on device" in text or "os error 28" in text:
        return True
    free = free_bytes(where)
    return isinstance(exc, (OSError, RuntimeError)) and free is not None and free < NEARLY_FULL_BYTES


def disk_full(path: str | Path, exc: BaseException | None = None) -> DiskFullError:
    """The one-line error for a write that ran out of space."""
    target = getattr(exc, "filename", None) or path
    return DiskFullError(f"no space left on {device_of(path)} while writing {target}", filename=str(target))


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


def _non_finite(obj: Any, where: str = "") -> tuple[str, float] | None:
    """(JSON path, value) of the first NaN or infinity in ``obj``, or None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return where or "(the value itself)", obj
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for key, value in items:
        found = _non_finite(value, f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


def _checked_dumps(path: str | Path, obj: Any, indent: int | None, line: int | None = None) -> str:
    try:
        return dumps(obj, indent=indent)
    except ValueError as exc:
        found = _non_finite(obj)
        if found is None:
            raise
        from .errors import RecordError

        at = f"line {line}, " if line is not None else ""
        raise RecordError(path, f"refusing to write a non-finite number ({found[1]}) at {at}{found[0]}: strict JSON "
                                "has no NaN or infinity, and a result must be a number; nothing was written. This "
                                "is a bug in the code that computed it -- please report it") from exc


def write_json(path: str | Path, obj: Any) -> Path:
    text = _checked_dumps(path, obj, 2) + "\n"  # checked before the file is opened
    with atomic_open(path) as fh:
        fh.write(text)
    return Path(path)


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> Path:
    with atomic_open(path) as fh:
        for n, row in enumerate(rows, 1):
            fh.write(_checked_dumps(path, row, None, n) + "\n")
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_open(path) as fh:
        fh.write(text)
    return Path(path)


def text_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a UTF-8 text file, each line decoded on its own.

    A text-mode file decodes blocks of several kilobytes ahead of the line being read, so its
    ``UnicodeDecodeError`` points at whatever line was read when the block was decoded; decoding
    line by line names the line that holds the bad byte (:class:`DataError` with the line and column).
    """
    from .errors import DataError

    path = Path(path)
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        raise DataError("no such file", path) from None
    except OSError as exc:
        raise DataError(f"cannot open file ({exc.strerror})", path) from exc
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}: {exc.reason}); "
                                "expected UTF-8 text", path, lineno) from exc


def read_jsonl(path: str | Path) -> list[Any]:
    """The JSON values of a JSON-lines file (blank lines skipped); errors name the line."""
    from .errors import DataError

    rows = []
    for lineno, line in text_lines(path):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"not valid JSON ({exc.msg} at column {exc.colno}); expected one JSON value per line",
                                path, lineno) from exc
    return rows


def append_jsonl(path: str | Path, row: Any) -> None:
    """Append one line (logs: a partial last line is tolerated by readers, results never are)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(dumps(row, indent=None) + "\n")
