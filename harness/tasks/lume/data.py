"""Loading and validating LUME-format benchmarks.

A benchmark is a folder holding ``forget`` and ``retain`` splits, as ``.jsonl`` (the LUME release),
``.parquet``, or a Hugging Face ``datasets`` folder (``save_to_disk`` of a ``DatasetDict`` with
``forget``/``retain`` splits, or one saved dataset per split folder). Optionally ``mia/member`` and
``mia/nonmember`` (records with at least ``id`` and ``document``).

Every problem is reported as a :class:`DataError` naming the file, the line (or row) and the record
id, and saying what was expected.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from harness.core.errors import DataError
from harness.core.fileio import text_lines
from harness.core.types import LUME_TASKS, Benchmark, MIADocument, Record, kind_from_id

RECORD_FIELDS = ("id", "input", "output", "task")
MIA_REQUIRED_FIELDS = ("id", "document")
SUFFIXES = (".jsonl", ".parquet")


# -- raw row readers (each yields (line_number, row_dict)) --------------------------------------
def _iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    for lineno, line in text_lines(path):  # decoded line by line: a bad byte is reported on its own line
        if not line.strip():
            continue  # blank lines (a trailing newline) are not records
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"not valid JSON ({exc.msg} at column {exc.colno}); expected one JSON object per line",
                            path, lineno) from exc
        yield lineno, row


def _iter_table(rows: Iterable[dict], path: Path) -> Iterator[tuple[int, Any]]:
    # For columnar files "line" is the 1-based row number.
    for i, row in enumerate(rows, start=1):
        yield i, row


def _iter_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise DataError(f"cannot read as Parquet ({type(exc).__name__}: {exc})", path) from exc
    return _iter_table(table.to_pylist(), path)


def _iter_hf_dataset(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        import datasets

        ds = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise DataError(f"cannot read as a Hugging Face dataset folder ({type(exc).__name__}: {exc})", path) from exc
    return _iter_table(ds.to_list(), path)


def find_split(folder: Path, name: str) -> tuple[Path, Callable[[Path], Iterator[tuple[int, Any]]]] | None:
    """Where split ``name`` lives in ``folder`` (any supported layout) and the reader for it; ``None``
    when it is absent. Reads no records (benchmark detection calls it on any folder)."""
    for suffix in SUFFIXES:
        candidate = folder / f"{name}{suffix}"
        if candidate.is_file():
            return candidate, (_iter_jsonl if suffix == ".jsonl" else _iter_parquet)
    sub = folder / name
    if sub.is_dir() and (sub / "dataset_info.json").is_file():
        return sub, _iter_hf_dataset
    if (folder / "dataset_dict.json").is_file():
        try:
            splits = json.loads((folder / "dataset_dict.json").read_text())["splits"]
        except Exception as exc:
            raise DataError(f"dataset_dict.json is malformed ({exc})", folder / "dataset_dict.json") from exc
        if name in splits:
            return folder / name, _iter_hf_dataset
    return None


def _locate(folder: Path, name: str) -> tuple[Path, Iterator[tuple[int, Any]]] | None:
    """Find split ``name`` in ``folder`` and open it for reading."""
    found = find_split(folder, name)
    return None if found is None else (found[0], found[1](found[0]))


# -- validation ---------------------------------------------------------------------------------
def _check_fields(row: Any, path: Path, line: int, required: tuple[str, ...], allow_extra: bool) -> str | None:
    rid = row.get("id") if isinstance(row, dict) else None
    rid_str = rid if isinstance(rid, str) else (None if rid is None else repr(rid))
    if not isinstance(row, dict):
        raise DataError(f"expected a JSON object with fields {list(required)}, got {type(row).__name__}", path, line)
    missing = [f for f in required if f not in row]
    if missing:
        raise DataError(f"missing field(s) {missing}; expected fields {list(required)}", path, line, rid_str)
    if not allow_extra:
        extra = sorted(set(row) - set(required))
        if extra:
            raise DataError(f"unexpected field(s) {extra}; expected exactly {list(required)}", path, line, rid_str)
    for f in required:
        if not isinstance(row[f], str):
            raise DataError(f"field {f!r} must be a string, got {type(row[f]).__name__} ({row[f]!r:.60})",
                            path, line, rid_str)
    if not row["id"]:
        raise DataError("field 'id' is empty", path, line)
    return row["id"]


def load_split(folder: Path, split: str, tasks: tuple[str, ...] | None = LUME_TASKS) -> tuple[Record, ...]:
    """Load and validate one forget/retain split from ``folder``."""
    found = _locate(folder, split)
    if found is None:
        raise DataError(
            f"missing split {split!r}: expected {split}.jsonl, {split}.parquet or a Hugging Face dataset "
            f"folder {split}/ in {folder}", folder)
    path, rows = found
    records: list[Record] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        rid = _check_fields(row, path, line, RECORD_FIELDS, allow_extra=False)
        if rid in seen:
            raise DataError(f"duplicate id (first seen at line {seen[rid]})", path, line, rid)
        seen[rid] = line
        kind = kind_from_id(rid)
        if kind is None:
            raise DataError("id has no recognisable kind: without its last character it must end in 'sc' "
                            "(sentence completion, e.g. '…sc1') or 'qa' (question, e.g. '…qa0')", path, line, rid)
        if tasks is not None and row["task"] not in tasks:
            raise DataError(f"unknown task {row['task']!r}; expected one of {list(tasks)}", path, line, rid)
        records.append(Record(id=rid, input=row["input"], output=row["output"], task=row["task"], kind=kind,
                              split=split))  # type: ignore[arg-type]
    if not records:
        raise DataError(f"split {split!r} is empty; expected at least one record", path)
    return tuple(records)


def load_mia(folder: Path) -> tuple[tuple[MIADocument, ...], tuple[MIADocument, ...]]:
    """Load ``member`` and ``nonmember`` documents from ``folder`` (e.g. ``<benchmark>/mia``)."""
    out = []
    for name in ("member", "nonmember"):
        found = _locate(folder, name)
        if found is None:
            raise DataError(f"missing MIA set {name!r}: expected {name}.jsonl or {name}.parquet in {folder}", folder)
        path, rows = found
        docs: list[MIADocument] = []
        seen: dict[str, int] = {}
        for line, row in rows:
            rid = _check_fields(row, path, line, MIA_REQUIRED_FIELDS, allow_extra=True)
            if rid in seen:
                raise DataError(f"duplicate id (first seen at line {seen[rid]})", path, line, rid)
            seen[rid] = line
            if not row["document"]:
                raise DataError("field 'document' is empty", path, line, rid)
            docs.append(MIADocument(id=rid, document=row["document"], set=name))  # type: ignore[arg-type]
        if not docs:
            raise DataError(f"MIA set {name!r} is empty", path)
        out.append(tuple(docs))
    return out[0], out[1]


def benchmark_hash(forget: Iterable[Record], retain: Iterable[Record], members: Iterable[MIADocument] = (),
                   nonmembers: Iterable[MIADocument] = ()) -> str:
    """Order-sensitive sha256 of the benchmark's content (ids, texts, tasks, MIA documents)."""
    h = hashlib.sha256()
    for section, items in (("forget", forget), ("retain", retain)):
        for r in items:
            h.update(json.dumps([section, r.id, r.input, r.output, r.task], ensure_ascii=False).encode())
            h.update(b"\n")
    for section, docs in (("member", members), ("nonmember", nonmembers)):
        for d in docs:
            h.update(json.dumps([section, d.id, d.document], ensure_ascii=False).encode())
            h.update(b"\n")
    return h.hexdigest()


def _first_shared(a: Iterable[tuple[str, str]], b: Iterable[tuple[str, str]]) -> tuple[str, str, int] | None:
    """``(id in a, id in b, how many)`` for texts found in both ``(id, text)`` lists (None: disjoint)."""
    first = {}
    for rid, text in a:
        first.setdefault(text.strip(), rid)
    shared = [(first[text.strip()], rid) for rid, text in b if text.strip() in first]
    return (*shared[0], len(shared)) if shared else None


def check_disjoint(folder: Path, forget: Sequence[Record], retain: Sequence[Record], mia_folder: Path,
                   members: Sequence[MIADocument], nonmembers: Sequence[MIADocument]) -> None:
    """Forget and retain share no id and no record (prompt + answer); MIA members and non-members share
    no id and no document. Otherwise the numbers mean nothing: identical member and non-member sets
    give AUC 0.5, a *perfect* MIA score; a record both forgotten and retained scores against itself."""
    clash = sorted({r.id for r in forget} & {r.id for r in retain})
    if clash:
        raise DataError(f"id appears in both forget and retain ({len(clash)} such ids); expected disjoint splits",
                        folder, record_id=clash[0])
    same = _first_shared(((r.id, f"{r.input}\x00{r.output}") for r in forget),
                         ((r.id, f"{r.input}\x00{r.output}") for r in retain))
    if same:
        raise DataError(f"the same record (prompt and answer) is in forget as {same[0]!r} and in retain as "
                        f"{same[1]!r} ({same[2]} such records); expected disjoint forget and retain splits", folder)
    if not members:
        return
    clash = sorted({d.id for d in members} & {d.id for d in nonmembers})
    if clash:
        raise DataError(f"id appears in both member and nonmember ({len(clash)} such ids); expected disjoint MIA "
                        "sets", mia_folder, record_id=clash[0])
    same = _first_shared(((d.id, d.document) for d in members), ((d.id, d.document) for d in nonmembers))
    if same:
        raise DataError(f"the same document is a member ({same[0]!r}) and a nonmember ({same[1]!r}) ({same[2]} such "
                        "documents); the MIA AUC of identical sets is 0.5, a perfect-looking score -- expected "
                        "disjoint member and nonmember sets", mia_folder)


def load_benchmark(path: str | Path, mia: str | Path | None = None,
                   tasks: tuple[str, ...] | None = LUME_TASKS) -> Benchmark:
    """Load a LUME-format benchmark folder.

    ``mia`` overrides where the membership-inference sets are read from; by default ``<path>/mia``
    is used when it exists. ``tasks=None`` accepts any task name.
    """
    folder = Path(path)
    if not folder.exists():
        raise DataError("benchmark folder does not exist; expected a folder with forget.jsonl and retain.jsonl", folder)
    if not folder.is_dir():
        raise DataError("expected a benchmark folder (with forget.jsonl and retain.jsonl), got a file", folder)
    forget = load_split(folder, "forget", tasks)
    retain = load_split(folder, "retain", tasks)
    members: tuple[MIADocument, ...] = ()
    nonmembers: tuple[MIADocument, ...] = ()
    mia_folder = Path(mia) if mia is not None else folder / "mia"
    if mia is not None and not mia_folder.is_dir():
        raise DataError("MIA folder does not exist; expected member.jsonl and nonmember.jsonl", mia_folder)
    if mia_folder.is_dir():
        members, nonmembers = load_mia(mia_folder)
    check_disjoint(folder, forget, retain, mia_folder, members, nonmembers)
    return Benchmark(
        name=folder.resolve().name,
        path=str(folder.resolve()),
        forget=forget,
        retain=retain,
        members=members,
        nonmembers=nonmembers,
        content_hash=benchmark_hash(forget, retain, members, nonmembers),
    )


__all__ = ["load_benchmark", "load_split", "load_mia", "benchmark_hash", "check_disjoint", "find_split"]
