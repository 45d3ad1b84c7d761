"""Turning result records into a ranked board: seed groups, the floor, ranks and ties.

Rules (all from the board definition, :mod:`leaderboards.board`):

- **Entries.** Records with the same label, method and method parameters apart from ``seed`` (and,
  by construction, the same benchmark hash and MCQ protocol) are one entry: every number is the mean
  over its seeds, with the sample standard deviation (ddof 1) and the number of seeds. A column is
  shown for an entry only when every seed has that metric.
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
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

from .board import Board
from .collect import LoadedRecord


class LeaderboardError(ValueError):
    """Records that cannot form the requested board (e.g. a relative floor without its reference)."""


Status = Literal["ranked", "unranked", "excluded"]


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
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(file, reason) of every record left out before ranking."""
    notes: list[str] = field(default_factory=list)
    bootstrap: int = 0
    """Number of bootstrap replicates actually used (0: no intervals)."""
    seed: Optional[int] = None
    floor_threshold: Optional[float] = None

    @property
    def entries(self) -> list[Entry]:
        return self.ranked + self.excluded

    @property
    def metrics_with_ci(self) -> list[str]:
        names = {m for e in self.entries for m in e.ci}
        return [c.metric for c in self.board.columns if c.metric in names]


def run_seed(rec: LoadedRecord) -> Optional[int]:
    seed = rec.result.method.params.get("seed")
    if seed is None:
        seed = rec.result.provenance.seed
    return seed


def _group_key(rec: LoadedRecord) -> tuple:
    params = {k: v for k, v in rec.result.method.params.items() if k != "seed"}
    return (rec.result.label, rec.result.method.name, json.dumps(params, sort_keys=True, default=str))


def group_runs(records: Sequence[LoadedRecord]) -> list[Entry]:
    """One entry per (label, method, parameters except seed); runs sorted by seed then path."""
    groups: dict[tuple, list[LoadedRecord]] = {}
    for rec in records:
        groups.setdefault(_group_key(rec), []).append(rec)
    entries = []
    for (label, method, params_json), runs in groups.items():
        runs.sort(key=lambda r: (run_seed(r) is None, run_seed(r) or 0, str(r.path)))
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
                entry.display_label = f"{entry.label} [{detail}]"
    return entries


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


def build_board(records: Sequence[LoadedRecord], board: Board) -> Leaderboard:
    """Group, apply the floor, and rank (no bootstrap; see :func:`leaderboards.bootstrap.add_intervals`)."""
    entries = group_runs(records)
    names = board_metrics(board)
    for entry in entries:
        for name in names:
            entry.values[name], entry.stds[name] = _mean_std([r.result.metrics.get(name) for r in entry.runs])
        entry._score = entry.values[board.score]
        entry.is_reference = board.reference.matches(entry.method, entry.label)

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
                entry.status = "excluded"
                entry.reason = (f"{floor.metric} {value:.{board.decimals}f} below the floor "
                                f"{threshold:.{board.decimals}f}"
                                + (f" ({floor.value:g} x reference)" if floor.kind == "relative" else ""))
    for entry in entries:
        if entry.status == "excluded":
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
    excluded = sorted((e for e in entries if e.status == "excluded"), key=order)
    return Leaderboard(board=board, ranked=ranked + unranked, excluded=excluded, floor_threshold=threshold)


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
