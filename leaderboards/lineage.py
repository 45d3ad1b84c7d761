"""Which collected runs are parents of other collected runs (they are listed, not ranked).

A run is a *parent* of another collected run when either

- it lies in that run's ``parents/`` folder: ``<run>/parents/<name>/result.json`` beside
  ``<run>/result.json`` (how the ZJUKLAB system keeps its over- and under-forgetting models,
  :mod:`baselines.zjuklab`), or
- the other run's record lists it in ``parents`` (``unlearnbench merge A B`` lists A and B).

Entries of ``parents`` are paths as the producing command saw them: absolute (``merge`` resolves
them) or relative (to the working directory of that command). They are matched robustly:

1. an absolute path, or a relative one taken from the child's run folder or from the current
   working directory, that resolves to a collected run folder (or its ``result.json``);
2. otherwise — the runs were moved or copied to another machine — the collected run folders whose
   trailing path components equal the entry's (at least two, or the whole entry when it has one),
   the longest such match winning; among equally long matches the one nearest the child's folder
   (longest common prefix). A match that stays ambiguous links nothing and is reported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from harness.core.records import RESULT_FILE

from .collect import LoadedRecord

PARENTS_DIR = "parents"


@dataclass
class Lineage:
    parents_of: dict[Path, list[Path]] = field(default_factory=dict)
    """Child run folder → its collected parents' run folders (resolved)."""
    children_of: dict[Path, list[Path]] = field(default_factory=dict)
    """Parent run folder → the collected runs it is a parent of."""
    notes: list[str] = field(default_factory=list)

    def is_parent(self, rec: LoadedRecord) -> bool:
        return _key(rec.run_dir) in self.children_of

    def children(self, rec: LoadedRecord) -> list[Path]:
        return self.children_of.get(_key(rec.run_dir), [])


def _key(path: Path) -> Path:
    return Path(os.path.normpath(Path(path).resolve()))


def _common_prefix(a: Path, b: Path) -> int:
    n = 0
    for x, y in zip(a.parts, b.parts):
        if x != y:
            break
        n += 1
    return n


def resolve_parent(entry: str, child_dir: Path, run_dirs: Sequence[Path]) -> tuple[Optional[Path], str]:
    """The collected run folder ``entry`` (one item of a record's ``parents``) names, or (None, why)."""
    known = set(run_dirs)
    try:
        os.fsencode(str(entry))
    except UnicodeEncodeError:
        return None, "not a valid path"
    if "\x00" in str(entry) or not str(entry).strip():
        return None, "not a valid path"
    raw = Path(os.path.expanduser(str(entry)))
    if raw.name == RESULT_FILE:
        raw = raw.parent
    candidates = [raw] if raw.is_absolute() else [child_dir / raw, Path.cwd() / raw]
    for candidate in candidates:
        try:
            key = _key(candidate)
        except (OSError, ValueError):  # a path the system cannot resolve (too long, a loop…)
            continue
        if key in known:
            return key, ""
    parts = Path(os.path.normpath(str(raw))).parts
    parts = tuple(p for p in parts if p not in (os.sep, "/", ".", ""))
    if not parts or ".." in parts:
        return None, "not found among the collected runs"
    need = min(2, len(parts))
    best: list[Path] = []
    best_len = 0
    for run in run_dirs:
        k = 0
        while k < len(parts) and k < len(run.parts) and run.parts[-1 - k] == parts[-1 - k]:
            k += 1
        if k >= need and k > best_len:
            best, best_len = [run], k
        elif k >= need and k == best_len:
            best.append(run)
    if not best:
        return None, "not found among the collected runs"
    if len(best) > 1:
        nearest = max(_common_prefix(r, child_dir) for r in best)
        best = [r for r in best if _common_prefix(r, child_dir) == nearest]
    if len(best) > 1:
        return None, "ambiguous: it matches " + ", ".join(str(r) for r in best[:3])
    return best[0], ""


def find_lineage(records: Sequence[LoadedRecord], refused: Sequence[str | Path] = ()) -> Lineage:
    """Parent links among ``records`` (a run is never its own parent). ``refused``: ``result.json``
    files found but not ranked (unreadable, invalid…): a run in such a run's ``parents/`` folder is
    still its parent, not an entry of its own."""
    run_dirs = sorted({_key(r.run_dir) for r in records})
    known = set(run_dirs) | {_key(Path(p).parent) for p in refused}
    lineage = Lineage()

    def link(child: Path, parent: Path) -> None:
        if parent == child:
            return
        if parent not in lineage.parents_of.setdefault(child, []):
            lineage.parents_of[child].append(parent)
            lineage.children_of.setdefault(parent, []).append(child)

    for rec in records:
        here = _key(rec.run_dir)
        holder = here.parent
        if holder.name == PARENTS_DIR and holder.parent in known:
            link(holder.parent, here)
        for entry in rec.result.parents:
            target, why = resolve_parent(entry, here, run_dirs)
            if target is not None:
                link(here, target)
            elif "ambiguous" in why:
                lineage.notes.append(f"{rec.result.label}: its parent {entry!r} is {why}; not linked.")
    return lineage
