"""Finding result records under folders, reading them whole or not at all, and keeping apart what
cannot be ranked together.

Every record is read with :func:`harness.core.records.read_result`, which validates the whole file
against the schema: a truncated, corrupt or other-schema file raises and is *skipped* with its
reason; nothing is ever half-read. A record missing a metric the board needs is skipped too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from harness.core.errors import RecordError
from harness.core.records import RESULT_FILE, EvalResult, read_result

from .board import Board


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass(frozen=True)
class LoadedRecord:
    path: Path
    """The ``result.json`` file."""
    result: EvalResult

    @property
    def run_dir(self) -> Path:
        return self.path.parent


@dataclass
class Collection:
    records: list[LoadedRecord] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def find_result_files(folders: Iterable[str | Path]) -> list[Path]:
    """Every ``result.json`` under the folders (or the files themselves), sorted, without duplicates."""
    found: dict[Path, None] = {}
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            found[folder.resolve()] = None
        elif folder.is_dir():
            for path in sorted(folder.rglob(RESULT_FILE)):
                if path.is_file():
                    found[path.resolve()] = None
        else:
            raise FileNotFoundError(f"{folder}: no such results folder")
    return sorted(found)


def missing_metrics(result: EvalResult, names: Iterable[str]) -> list[str]:
    return [n for n in names if result.metrics.get(n) is None]


def collect(folders: Iterable[str | Path], board: Board) -> Collection:
    """Read every record; skip (with file and reason) the unreadable and the incomplete ones."""
    out = Collection()
    for path in find_result_files(folders):
        try:
            result = read_result(path)
        except RecordError as exc:
            out.skipped.append(Skipped(str(path), exc.reason))
            continue
        missing = missing_metrics(result, board.required_metrics)
        if missing:
            out.skipped.append(Skipped(str(path), f"missing metric(s) the board {board.name!r} needs: "
                                                  f"{', '.join(missing)} (null or absent in 'metrics')"))
            continue
        out.records.append(LoadedRecord(path=path, result=result))
    return out


def _mcq_key(info) -> Optional[tuple]:
    if info is None:
        return None
    return (info.protocol, info.num_fewshot, info.full, info.limit)


def compatibility_key(result: EvalResult, board: Board) -> tuple:
    """What must be equal for two records to be ranked together: schema version, benchmark content
    hash, and the protocol of every MCQ score (MMLU / utility) the board uses."""
    key: list = [("schema", result.schema_version), ("benchmark", result.benchmark.content_hash)]
    for name in board.uses_mcq:
        info = result.mmlu if name == "mmlu" else result.utility
        key.append((name, _mcq_key(info)))
    return tuple(key)


def describe_key(key: tuple, example: EvalResult) -> str:
    parts = []
    for name, value in key:
        if name == "schema":
            parts.append(f"schema {value}")
        elif name == "benchmark":
            parts.append(f"benchmark {example.benchmark.name!r} (hash {value[:12]})")
        elif value is None:
            parts.append(f"{name}: no protocol recorded")
        else:
            protocol, shots, full, limit = value
            parts.append(f"{name}: protocol {protocol}, {shots}-shot, {'full' if full else f'limited ({limit}/subject)'}")
    return "; ".join(parts)


def key_slug(key: tuple, example: EvalResult) -> str:
    """A folder name for one compatible group (``--split-by-benchmark``)."""
    import re

    parts = [re.sub(r"[^A-Za-z0-9_.-]+", "-", example.benchmark.name).strip("-") or "benchmark",
             example.benchmark.content_hash[:8]]
    for name, value in key[2:]:
        if value is not None:
            parts.append(f"{name}-{value[0]}-{value[1]}shot" + ("" if value[2] else f"-limit{value[3]}"))
    return "_".join(parts)


def partition(records: list[LoadedRecord], board: Board) -> dict[tuple, list[LoadedRecord]]:
    """Records grouped by :func:`compatibility_key`, in first-seen order."""
    groups: dict[tuple, list[LoadedRecord]] = {}
    for rec in records:
        groups.setdefault(compatibility_key(rec.result, board), []).append(rec)
    return groups
