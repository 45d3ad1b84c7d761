"""Reading and validating the per-sample files (``samples.jsonl``, ``mia.jsonl``).

The scoring functions trust nothing about a row but its documented fields (docs/contracts.md) and
check those up front, so that a malformed row is reported as one clear
:class:`harness.core.errors.DataError` naming the file, the line and the record id — instead of a
``KeyError`` deep inside an aggregation.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from harness.core.errors import DataError
from harness.core.fileio import text_lines
from harness.core.types import KINDS, SPLITS, kind_from_id

from .mia import MIA_SETS

_OPTIONAL_MIA_NUMBERS = ("min_k", "min_k_pp")


def _where(index: int | None) -> str:
    return f"row {index}: " if index is not None else ""


def row_checker(row: Any, index: int | None, path: str | Path | None, line: int | None):
    """Check that ``row`` is an object with a non-empty string ``id``; return a function that builds
    a :class:`DataError` naming the row's position and id (shared by every row kind)."""
    if not isinstance(row, Mapping):
        raise DataError(f"{_where(index)}expected a JSON object, got {type(row).__name__}", path, line)
    record_id = row.get("id")
    if not isinstance(record_id, str) or not record_id:
        raise DataError(f"{_where(index)}field 'id' must be a non-empty string, got {record_id!r}", path, line)

    def fail(message: str) -> DataError:
        return DataError(f"{_where(index)}{message}", path, line, record_id)

    return fail


def group_by_set(rows: Iterable[Any], check: Callable[..., str],
                 path: str | Path | None = None) -> dict[str, list[Mapping[str, Any]]]:
    """Validate in-memory rows with ``check(row, index=..., path=...)`` (which returns the row's set)
    and group them by set, order kept. An id twice in one set is an error naming both rows."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    seen: dict[tuple[str, str], int] = {}
    for index, row in enumerate(rows):
        set_name = check(row, index=index, path=path)
        key = (set_name, row["id"])
        if key in seen:
            raise DataError(f"row {index}: item appears twice in set {set_name!r} (first as row {seen[key]})",
                            path, None, row["id"])
        seen[key] = index
        grouped.setdefault(set_name, []).append(row)
    return grouped


def sample_kind(row: Mapping[str, Any], *, index: int | None = None, path: str | Path | None = None,
                line: int | None = None) -> str:
    """Validate one ``samples.jsonl`` row and return its kind (``sc`` or ``qa``).

    The kind is the row's ``kind`` field when present, else derived from the id by the organisers'
    rule (drop the last character, look for ``sc``/``qa``); when both exist they must agree.
    ``index`` is the 0-based position (for in-memory rows), ``path``/``line`` the file position.
    """
    fail = row_checker(row, index, path, line)

    split = row.get("split")
    if split not in SPLITS:
        raise fail(f"field 'split' must be one of {', '.join(SPLITS)}, got {split!r}")
    for name in ("task", "reference", "generation"):
        if not isinstance(row.get(name), str):
            raise fail(f"field {name!r} must be a string, got {row.get(name)!r}")
    if not row["task"]:
        raise fail("field 'task' is empty")
    loss = row.get("answer_loss")
    if loss is not None and (isinstance(loss, bool) or not isinstance(loss, (int, float)) or not math.isfinite(loss)):
        raise fail(f"field 'answer_loss' must be a finite number or null, got {loss!r}")
    from_id = kind_from_id(row["id"])
    kind = row.get("kind", from_id)
    if kind not in KINDS:
        raise fail(f"cannot tell the item kind: field 'kind' is {row.get('kind')!r} and the id does not end in "
                   "'sc'/'qa' plus one character; expected kind 'sc' or 'qa'")
    if from_id is not None and kind != from_id:
        raise fail(f"field 'kind' is {kind!r} but the id says {from_id!r}")
    return kind


def check_mia_row(row: Mapping[str, Any], *, index: int | None = None, path: str | Path | None = None,
                  line: int | None = None) -> None:
    """Validate one ``mia.jsonl`` row: ``set``, ``id``, a finite ``loss``; optional attack fields."""
    fail = row_checker(row, index, path, line)

    if row.get("set") not in MIA_SETS:
        raise fail(f"field 'set' must be one of {', '.join(MIA_SETS)}, got {row.get('set')!r}")
    loss = row.get("loss")
    if isinstance(loss, bool) or not isinstance(loss, (int, float)) or not math.isfinite(loss):
        raise fail(f"field 'loss' must be a finite number, got {loss!r}")
    zlib_entropy = row.get("zlib_entropy")
    if zlib_entropy is not None and (isinstance(zlib_entropy, bool) or not isinstance(zlib_entropy, int)
                                     or zlib_entropy <= 0):
        raise fail(f"field 'zlib_entropy' must be a positive integer or null, got {zlib_entropy!r}")
    for name in _OPTIONAL_MIA_NUMBERS:
        value = row.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise fail(f"field {name!r} must be a finite number or null, got {value!r}")


def _read_jsonl(path: str | Path, check) -> list[dict[str, Any]]:
    path = Path(path)
    rows: list[dict[str, Any]] = []
    for lineno, text in text_lines(path):  # decoded line by line: a bad byte is reported on its own line
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"not valid JSON ({exc.msg} at column {exc.colno}); expected one JSON object "
                            "per line", path, lineno) from exc
        check(row, path=path, line=lineno)
        rows.append(row)
    return rows


def read_samples(path: str | Path) -> list[dict[str, Any]]:
    """Read and validate ``samples.jsonl`` (file order kept: the SemEval means depend on it).

    A record that appears twice in a split is an error: the organisers' multi-process evaluation
    padded shards by duplicating records, and the harness must never reproduce that.
    """
    seen: dict[tuple[str, str], int] = {}

    def check(row: Mapping[str, Any], *, path: Path, line: int) -> None:
        sample_kind(row, path=path, line=line)
        key = (row["split"], row["id"])
        if key in seen:
            raise DataError(f"record appears twice in split {key[0]!r} (first on line {seen[key]}); "
                            "expected each record once", path, line, key[1])
        seen[key] = line

    return _read_jsonl(path, check)


def read_mia_rows(path: str | Path) -> list[dict[str, Any]]:
    """Read and validate ``mia.jsonl`` (a document listed twice in a set is an error)."""
    seen: dict[tuple[str, str], int] = {}

    def check(row: Mapping[str, Any], *, path: Path, line: int) -> None:
        check_mia_row(row, path=path, line=line)
        key = (row["set"], row["id"])
        if key in seen:
            raise DataError(f"document appears twice in the {key[0]} set (first on line {seen[key]})",
                            path, line, key[1])
        seen[key] = line

    return _read_jsonl(path, check)
