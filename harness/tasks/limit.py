"""``--limit N``: a quick evaluation on part of a benchmark, deterministic and never ranked as the whole.

The first ``N`` records of every (split, task, kind) stratum are kept, in file order, and the first
``N`` documents of each membership-inference set: the same records every time, every stratum that the
SemEval means average over still present (a prefix of the files would drop whole tasks), and the
records keep the order the SemEval means depend on. The limited benchmark gets its own content hash
(the full benchmark's hash and ``N``), so cached answers and board groups never mix with the full
benchmark's; the evaluation records ``settings["limit"]``, and boards whose TOML says
``complete_benchmark = true`` (the SemEval boards) refuse such records (:mod:`leaderboards.collect`).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from typing import Sequence

from harness.core.types import Benchmark, MIADocument, Record


def check_limit(limit: int | None) -> None:
    """``None`` (no limit) or a positive number of records; a ValueError otherwise."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive number of records per split x task x kind, got {limit!r}")


def _first_per_stratum(records: Sequence[Record], limit: int) -> tuple[Record, ...]:
    seen: dict[tuple[str, str, str], int] = {}
    kept = []
    for r in records:
        key = (r.split, r.task, r.kind)
        if seen.get(key, 0) < limit:
            seen[key] = seen.get(key, 0) + 1
            kept.append(r)
    return tuple(kept)


def limited_hash(content_hash: str, limit: int) -> str:
    """The content hash of the benchmark's ``--limit`` subset (differs from the full benchmark's)."""
    return hashlib.sha256(f"{content_hash}\nlimit {limit} per split/task/kind and MIA set".encode()).hexdigest()


def limit_benchmark(bench: Benchmark, limit: int) -> Benchmark:
    """The first ``limit`` records of each (split, task, kind) and the first ``limit`` documents of each
    MIA set, in file order, under :func:`limited_hash`."""
    check_limit(limit)
    members: tuple[MIADocument, ...] = tuple(bench.members[:limit])
    nonmembers: tuple[MIADocument, ...] = tuple(bench.nonmembers[:limit])
    return dataclasses.replace(bench, forget=_first_per_stratum(bench.forget, limit),
                               retain=_first_per_stratum(bench.retain, limit), members=members,
                               nonmembers=nonmembers, content_hash=limited_hash(bench.content_hash, limit))


def limit_task(task, limit: int | None):
    """``task`` evaluated on :func:`limit_benchmark` of its data (``task`` itself when ``limit`` is None)."""
    if limit is None:
        return task
    out = copy.copy(task)
    out.data = limit_benchmark(task.data, limit)
    return out


__all__ = ["check_limit", "limit_benchmark", "limit_task", "limited_hash"]
