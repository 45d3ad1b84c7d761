"""Turning result records into a ranked board: seed groups, the floor, ranks and ties.

Rules (all from the board definition, :mod:`leaderboards.board`):

- **Entries.** Records with the same label, method and method parameters apart from ``seed`` (and,
  by construction, the same benchmark hash and MCQ protocol) are one entry: every number is the mean
  over its seeds, with the sample standard deviation (ddof 1) and the number of seeds. A column is
  shown for an entry only when every seed has that metric.
- **One seed counts once.** Within an entry, runs with the same seed are not several seeds. When
  they are *copies of one run* — the same evaluated weights (``model.weight_hash``, where both
  records have one), bit-identical metrics and, where both have per-sample files, identical
  per-item scores and MIA losses — they are collapsed into one (a copied folder, or the same model
  evaluated twice); a note lists the copies. When they differ, the first (runs with per-sample files
  first, then by path) is kept and the others are refused with the reason: one seed cannot have two
  results.
- **Parents.** A run that is a parent of another collected run (:mod:`leaderboards.lineage`: the
  ZJUKLAB system's ``<run>/parents/over|under``, or a record's ``parents`` list, as ``merge`` writes
  it) is listed in the *parents* section with the runs it belongs to, never ranked as an entry of
  its own — unless ``rank_parents`` asks for it (then it is an ordinary entry with a note).
- **Status.** The reference entry (``[reference]``, the un-unlearned target model) and labels
  matching ``unranked_labels`` are listed without a rank. An entry whose floor metric (its mean) is
  below the floor is *excluded*: listed in a separate section with the reason. Everything else is
  ranked.
- **Ranks.** By the score, descending. Two scores are equal when equal after rounding to
  ``rank_decimals``; ``competition`` ties share a rank and the next rank skips (1, 2, 2, 4),
  ``dense`` ties do not skip (1, 2, 2, 3). Order within a tie: label.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

from .board import Board
from .collect import LoadedRecord
from .lineage import Lineage, find_lineage


class LeaderboardError(ValueError):
    """Records that cannot form the requested board (e.g. a relative floor without its reference)."""


Status = Literal["ranked", "unranked", "excluded", "parent"]

#: ``columns`` choices: the board's own columns, or those plus the twelve SemEval per-task terms.
COLUMN_SETS = ("board", "terms")


@dataclass(frozen=True)
class BuildOptions:
    """How :func:`leaderboards.build_leaderboards` builds boards."""

    bootstrap: int = 1000
    """Bootstrap replicates for intervals and rank stability (0: none)."""
    seed: int = 0
    """Bootstrap seed."""
    split_by_benchmark: bool = False
    """Incompatible records: one board per compatible group instead of an error."""
    progress: bool = True
    rank_parents: bool = False
    """Rank runs that are parents of other collected runs as entries of their own."""
    columns: str = "board"
    """``board``: the board's columns; ``terms``: also the twelve SemEval per-task terms."""

    def __post_init__(self) -> None:
        if isinstance(self.bootstrap, bool) or not isinstance(self.bootstrap, int) or self.bootstrap < 0:
            raise LeaderboardError(f"bootstrap must be a whole number >= 0 (0 disables), got {self.bootstrap!r}")
        if self.columns not in COLUMN_SETS:
            raise LeaderboardError(f"columns must be one of {', '.join(COLUMN_SETS)}, got {self.columns!r}")


@dataclass
class Entry:
    label: str
    method: str
    params: dict[str, Any]
    """Method parameters without ``seed``."""
    runs: list[LoadedRecord]
    values: dict[str, Optional[float]] = field(default_factory=dict)
    """Mean over seeds per board metric (None where a seed lacks it)."""
    stds: dict[str, Optional[float]] = field(default_factory=dict)
    status: Status = "ranked"
    reason: str = ""
    rank: Optional[int] = None
    is_reference: bool = False
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    """95% bootstrap interval per metric (only metrics recomputed from per-sample files)."""
    rank_stability: Optional[float] = None
    """Fraction of bootstrap replicates in which the entry keeps its rank (ranked entries only)."""
    display_label: str = ""
    parent_of: list[str] = field(default_factory=list)
    """Display labels of the entries whose runs this entry's runs are parents of."""

    @property
    def n_seeds(self) -> int:
        return len(self.runs)

    @property
    def seeds(self) -> list[Optional[int]]:
        return [run_seed(r) for r in self.runs]

    @property
    def score(self) -> float:
        return self._score

    def __post_init__(self) -> None:
        self._score = math.nan
        if not self.display_label:
            self.display_label = self.label


@dataclass
class Leaderboard:
    board: Board
    ranked: list[Entry]
    """Ranked entries then unranked ones (reference, baselines), in board order."""
    excluded: list[Entry]
    parents: list[Entry] = field(default_factory=list)
    """Runs that are parents of other collected runs (listed, not ranked; see ``rank_parents``)."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(file, reason) of every record left out before ranking."""
    notes: list[str] = field(default_factory=list)
    bootstrap: int = 0
    """Number of bootstrap replicates actually used (0: no intervals)."""
    seed: Optional[int] = None
    floor_threshold: Optional[float] = None

    @property
    def entries(self) -> list[Entry]:
        return self.ranked + self.parents + self.excluded

    @property
    def metrics_with_ci(self) -> list[str]:
        names = {m for e in self.entries for m in e.ci}
        return [c.metric for c in self.board.columns if c.metric in names]


def run_seed(rec: LoadedRecord) -> Optional[int]:
    seed = rec.result.method.params.get("seed")
    if seed is None:
        seed = rec.result.provenance.seed
    return seed


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _seed_order(rec: LoadedRecord) -> tuple:
    seed = run_seed(rec)
    if isinstance(seed, bool) or not isinstance(seed, (int, float)):
        return (1, 0, _canonical(seed), str(rec.path))
    return (0, seed, "", str(rec.path))


def _group_key(rec: LoadedRecord, is_parent: bool = False) -> tuple:
    params = {k: v for k, v in rec.result.method.params.items() if k != "seed"}
    return (rec.result.label, rec.result.method.name, _canonical(params), is_parent)


def group_runs(records: Sequence[LoadedRecord], parents: Optional[set[Path]] = None) -> list[Entry]:
    """One entry per (label, method, parameters except seed, parent or not); runs sorted by seed then
    path. ``parents``: ``result.json`` paths of the runs that are parents (never grouped with others)."""
    parents = parents or set()
    groups: dict[tuple, list[LoadedRecord]] = {}
    for rec in records:
        groups.setdefault(_group_key(rec, rec.path in parents), []).append(rec)
    entries = []
    for (label, method, params_json, _is_parent), runs in groups.items():
        runs.sort(key=_seed_order)
        entries.append(Entry(label=label, method=method, params=json.loads(params_json), runs=runs))
    # Two entries with one label (a sweep): show the parameters that tell them apart.
    by_label: dict[str, list[Entry]] = {}
    for entry in entries:
        by_label.setdefault(entry.label, []).append(entry)
    for same in by_label.values():
        if len(same) > 1:
            keys = sorted({k for e in same for k in e.params} | {"__method__"})
            for entry in same:
                fields = dict(entry.params, __method__=entry.method)
                differing = [k for k in keys if len({json.dumps(e.params.get(k) if k != "__method__" else e.method,
                                                                  default=str) for e in same}) > 1]
                detail = ", ".join(f"{'method' if k == '__method__' else k}={fields.get(k)}" for k in differing)
                entry.display_label = f"{entry.label} [{detail}]" if detail else entry.label
    return entries


def same_run(a: LoadedRecord, b: LoadedRecord) -> bool:
    """Whether two records of one entry and seed are copies of one run (see the module docstring)."""
    wa, wb = a.result.model.weight_hash, b.result.model.weight_hash
    if wa and wb and wa != wb:
        return False
    if _canonical(a.result.metrics) != _canonical(b.result.metrics):
        return False
    if a.per_sample is not None and b.per_sample is not None and a.per_sample.digest != b.per_sample.digest:
        return False
    return True


def _first_difference(a: LoadedRecord, b: LoadedRecord, score: str) -> str:
    va, vb = a.result.metrics.get(score), b.result.metrics.get(score)
    if va != vb:
        return f"{score} {va!r} vs {vb!r}"
    for name in sorted(set(a.result.metrics) | set(b.result.metrics)):
        if a.result.metrics.get(name) != b.result.metrics.get(name):
            return f"{name} {a.result.metrics.get(name)!r} vs {b.result.metrics.get(name)!r}"
    if a.result.model.weight_hash != b.result.model.weight_hash:
        return "different weights (model.weight_hash)"
    return "different per-sample files"


def one_run_per_seed(entry: Entry, score: str, roots: Sequence[Path] = ()) -> tuple[list[str], list[tuple[str, str]]]:
    """Collapse copies of one run and refuse other runs that repeat a seed; returns (notes, refused)."""
    by_seed: dict[str, list[LoadedRecord]] = {}
    for run in entry.runs:
        by_seed.setdefault(_canonical(run_seed(run)), []).append(run)
    kept: list[LoadedRecord] = []
    notes: list[str] = []
    refused: list[tuple[str, str]] = []
    for seed_text, runs in by_seed.items():
        runs = sorted(runs, key=lambda r: (r.per_sample is None, str(r.path)))
        first = runs[0]
        kept.append(first)
        copies = [r for r in runs[1:] if same_run(first, r)]
        if copies:
            paths = ", ".join(display_path(r.path, roots) for r in [first] + copies)
            notes.append(f"{entry.label}: {len(copies) + 1} copies of one run (seed {seed_text}; same weights, "
                         f"metrics and per-sample content) counted as one seed: {paths}.")
        for other in runs[1:]:
            if other in copies:
                continue
            refused.append((display_path(other.path, roots),
                            f"seed {seed_text} of entry {entry.label!r} is already on the board from "
                            f"{display_path(first.path, roots)}, and this run differs from it "
                            f"({_first_difference(first, other, score)}): one seed counts once; give the runs "
                            f"distinct seeds or pass only one of them"))
    kept.sort(key=_seed_order)
    entry.runs = kept
    return notes, refused


def _mean_std(values: list[Optional[float]]) -> tuple[Optional[float], Optional[float]]:
    if not values or any(v is None for v in values):
        return None, None
    mean = statistics.fmean(values) if len(values) > 1 else float(values[0])
    std = statistics.stdev(values) if len(values) > 1 else None
    return mean, std


#: The twelve per-task means (for the forget-vs-retain plot), averaged over seeds like the columns.
PER_TASK_METRICS = tuple(f"{s}/{t}/{m}" for s in ("forget", "retain") for t in ("Task1", "Task2", "Task3")
                         for m in ("regurgitation", "knowledge"))


def board_metrics(board: Board) -> list[str]:
    names = [c.metric for c in board.columns] + list(board.required_metrics) + list(board.components)
    names += PER_TASK_METRICS
    return list(dict.fromkeys(names))


def rank_scores(scores: Sequence[float], decimals: int, tie_rule: str = "competition") -> list[int]:
    """Ranks of ``scores`` (higher is better), equal after rounding to ``decimals`` sharing a rank."""
    rounded = [round(s, decimals) for s in scores]
    distinct = sorted(set(rounded), reverse=True)
    if tie_rule == "dense":
        position = {v: i + 1 for i, v in enumerate(distinct)}
        return [position[r] for r in rounded]
    return [1 + sum(1 for other in rounded if other > r) for r in rounded]


def build_board(records: Sequence[LoadedRecord], board: Board, *, rank_parents: bool = False,
                lineage: Optional[Lineage] = None, roots: Sequence[Path] = ()) -> Leaderboard:
    """Group, keep one run per seed, set parents apart, apply the floor, and rank (no bootstrap; see
    :func:`leaderboards.bootstrap.add_intervals`). ``lineage`` defaults to the links among ``records``;
    ``roots`` (the folders searched) only shorten the paths shown in notes."""
    lineage = lineage if lineage is not None else find_lineage(records)
    parent_paths = {r.path for r in records if lineage.is_parent(r)}
    entries = group_runs(records, parents=set() if rank_parents else parent_paths)
    entry_of_run = {_run_key(r): e for e in entries for r in e.runs}  # before copies are collapsed
    notes: list[str] = list(lineage.notes)
    refused: list[tuple[str, str]] = []
    # Whose parent each entry is, from all its runs: collapsing copies below may drop the run that links.
    children: dict[int, list[Path]] = {id(e): [c for r in e.runs for c in lineage.children(r)] for e in entries}
    for entry in entries:
        entry_notes, entry_refused = one_run_per_seed(entry, board.score, roots)
        notes += entry_notes
        refused += entry_refused
    names = board_metrics(board)
    for entry in entries:
        for name in names:
            entry.values[name], entry.stds[name] = _mean_std([r.result.metrics.get(name) for r in entry.runs])
        entry._score = entry.values[board.score]
        entry.is_reference = board.reference.matches(entry.method, entry.label)
        of = []
        for child in children[id(entry)]:
            child_entry = entry_of_run.get(child)
            if child_entry is None:
                of.append(f"{display_path(child, roots)} (not on the board)")
            elif child_entry is not entry:
                of.append(child_entry.display_label)
        entry.parent_of = list(dict.fromkeys(of))
        if entry.parent_of and not rank_parents and not entry.is_reference:
            entry.status = "parent"
            entry.reason = f"parent of {', '.join(entry.parent_of)} (not ranked; --rank-parents ranks it)"

    threshold = None
    if board.floor is not None:
        floor = board.floor
        if floor.kind == "absolute":
            threshold = floor.value
        else:
            refs = [e for e in entries if e.is_reference]
            want = " and ".join(f"{k} {v!r}" for k, v in (("method", board.reference.method),
                                                         ("label", board.reference.label)) if v is not None)
            if not refs:
                raise LeaderboardError(
                    f"board {board.name!r}: the floor is {floor.value:g} x the reference entry's {floor.metric}, "
                    f"but no record has {want} (the un-unlearned target model). Evaluate the target model "
                    f"into one of the results folders, or use a board with an absolute floor.")
            if len(refs) > 1:
                listing = "; ".join(f"label {e.label!r} ({len(e.runs)} run(s), e.g. {e.runs[0].path})" for e in refs)
                raise LeaderboardError(f"board {board.name!r}: more than one reference entry with {want}: {listing}. "
                                       f"Name one in the board's [reference] (label = ...).")
            ref_value = refs[0].values.get(floor.metric)
            threshold = floor.value * ref_value
        for entry in entries:
            value = entry.values[floor.metric]
            if value < threshold:
                below = (f"{floor.metric} {value:.{board.decimals}f} below the floor {threshold:.{board.decimals}f}"
                         + (f" ({floor.value:g} x reference)" if floor.kind == "relative" else ""))
                if entry.status == "parent":
                    entry.reason += f"; {below}"
                else:
                    entry.status, entry.reason = "excluded", below
    for entry in entries:
        if entry.status != "ranked":
            continue
        if entry.is_reference:
            entry.status, entry.reason = "unranked", "reference (target model)"
        elif board.is_unranked_label(entry.label):
            entry.status, entry.reason = "unranked", "listed, not ranked (board's unranked_labels)"

    ranked = [e for e in entries if e.status == "ranked"]
    for entry, rank in zip(ranked, rank_scores([e.score for e in ranked], board.rank_decimals, board.tie_rule)):
        entry.rank = rank

    def order(e: Entry) -> tuple:
        return (-round(e.score, board.rank_decimals), e.display_label, str(e.runs[0].path))

    ranked.sort(key=lambda e: (e.rank, order(e)))
    unranked = sorted((e for e in entries if e.status == "unranked"), key=order)
    parents = sorted((e for e in entries if e.status == "parent"), key=order)
    excluded = sorted((e for e in entries if e.status == "excluded"), key=order)
    return Leaderboard(board=board, ranked=ranked + unranked, excluded=excluded, parents=parents,
                       floor_threshold=threshold, skipped=refused, notes=notes)


def _run_key(rec: LoadedRecord) -> Path:
    return Path(os.path.normpath(rec.run_dir.resolve()))


def display_path(path: str | Path, roots: Sequence[Path]) -> str:
    """``path`` as seen from the parent of the results folder holding it (stable across machines)."""
    path = Path(path).resolve()
    for root in roots:
        root = root.resolve()
        if not root.is_dir():
            root = root.parent
        try:
            return path.relative_to(root.parent).as_posix()
        except ValueError:
            continue
    return str(path)
