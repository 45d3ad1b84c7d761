"""Board definitions: which metrics are columns, the ranking score, the floor and the tie rule.

A board is a TOML file (format in :mod:`leaderboards`). Boards are found by name among the built-in
ones (``leaderboards/boards/*.toml``, shipped as package data) and the folders listed in the
``UNLEARNBENCH_BOARDS`` environment variable (``os.pathsep``-separated), or given as a path to a
``.toml`` file; so a user adds a board without touching the code.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BOARDS_ENV = "UNLEARNBENCH_BOARDS"
BUILTIN_DIR = Path(__file__).resolve().parent / "boards"
TIE_RULES = ("competition", "dense")
DIRECTIONS = ("max", "min", "target")


class BoardError(ValueError):
    """A board definition that cannot be used (unknown name, malformed file, invalid setting)."""


@dataclass(frozen=True)
class Column:
    metric: str
    """Metric name as in ``result.json["metrics"]``."""
    header: str
    direction: Literal["max", "min", "target"]
    target: Optional[float] = None
    """The ideal value when ``direction == "target"`` (MIA AUC → 0.5)."""

    def badness(self, value: float) -> float:
        """A number that is smaller for better values (used to sort a column best-first)."""
        if self.direction == "max":
            return -value
        if self.direction == "min":
            return value
        return abs(value - float(self.target))


@dataclass(frozen=True)
class Floor:
    metric: str
    kind: Literal["absolute", "relative"]
    value: float
    """The threshold itself (absolute) or the fraction of the reference entry's metric (relative)."""

    def describe(self, name=str, text=str) -> str:
        """The rule in words; ``name`` formats the metric name and ``text`` the words around it (an
        output's escaping)."""
        if self.kind == "absolute":
            return name(self.metric) + text(f" >= {self.value:g}")
        return name(self.metric) + text(f" >= {self.value:g} x the reference entry's ") + name(self.metric)


@dataclass(frozen=True)
class Reference:
    """Which records are the reference entry (the un-unlearned target model)."""

    method: Optional[str] = "none"
    label: Optional[str] = None

    def matches(self, method: str, label: str) -> bool:
        if self.method is None and self.label is None:
            return False
        return (self.method is None or method == self.method) and (self.label is None or label == self.label)


@dataclass(frozen=True)
class Board:
    name: str
    title: str
    score: str
    """The ranking metric (ranked descending)."""
    columns: tuple[Column, ...]
    description: str = ""
    rank_decimals: int = 4
    """Scores are equal for ranking when equal after rounding to this many decimals."""
    decimals: int = 4
    """Rounding of every number in the outputs."""
    tie_rule: Literal["competition", "dense"] = "competition"
    floor: Optional[Floor] = None
    reference: Reference = field(default_factory=Reference)
    unranked_labels: tuple[str, ...] = ()
    """``fnmatch`` patterns of labels listed without a rank (e.g. the organisers' baselines)."""
    required: tuple[str, ...] = ()
    """Metrics a record must have to be on the board (the score and the floor metric always are)."""
    components: tuple[str, ...] = ()
    """The metrics the final score averages (for the components plot)."""
    complete_benchmark: bool = False
    """Refuse records evaluated on part of the benchmark (``evaluate --limit``): their numbers are not
    the benchmark's (the SemEval boards set this)."""
    source: str = ""

    @property
    def required_metrics(self) -> tuple[str, ...]:
        out = [self.score]
        if self.floor is not None:
            out.append(self.floor.metric)
        out.extend(self.required)
        return tuple(dict.fromkeys(out))

    @property
    def uses_mcq(self) -> tuple[str, ...]:
        """Which MCQ protocols (``mmlu``, ``utility``) the board's numbers depend on."""
        names = {c.metric for c in self.columns} | set(self.required_metrics) | set(self.components)
        out = []
        if any(n == "mmlu" or n == "final_score" for n in names):
            out.append("mmlu")
        if any(n == "utility" or n == "final_score_utility" for n in names):
            out.append("utility")
        return tuple(out)

    def column(self, metric: str) -> Column:
        for col in self.columns:
            if col.metric == metric:
                return col
        raise KeyError(metric)

    def is_unranked_label(self, label: str) -> bool:
        return any(fnmatch.fnmatchcase(label, pat) for pat in self.unranked_labels)


def _declared_direction(metric: str) -> tuple[str, Optional[float]] | None:
    """The direction the metrics package declares for ``metric`` (``metrics.metric_spec``), if any."""
    try:
        from metrics import metric_spec
    except ImportError:  # pragma: no cover - the metrics package is part of the distribution
        return None
    try:
        spec = metric_spec(metric)
    except KeyError:
        return None
    return spec.direction, spec.target


def _require(raw: dict, key: str, types: type | tuple, where: str, default: Any = ...) -> Any:
    if key not in raw:
        if default is ...:
            raise BoardError(f"{where}: missing required key {key!r}")
        return default
    value = raw[key]
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise BoardError(f"{where}: {key!r} must be {types}, got {value!r}")
    if not isinstance(value, types):
        raise BoardError(f"{where}: {key!r} must be of type {getattr(types, '__name__', types)}, got {value!r}")
    return value


_TOP_KEYS = {"name", "title", "description", "score", "rank_decimals", "decimals", "tie_rule", "floor", "reference",
             "columns", "unranked_labels", "required", "components", "complete_benchmark"}


def parse_board(raw: dict[str, Any], source: str = "<board>") -> Board:
    """Validate a board mapping (the parsed TOML); every problem names the file and the key."""
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise BoardError(f"{source}: unknown key(s) {unknown}; valid keys: {sorted(_TOP_KEYS)}")
    name = _require(raw, "name", str, source)
    score = _require(raw, "score", str, source)
    tie_rule = _require(raw, "tie_rule", str, source, "competition")
    if tie_rule not in TIE_RULES:
        raise BoardError(f"{source}: tie_rule {tie_rule!r} is not one of {list(TIE_RULES)}")
    rank_decimals = _require(raw, "rank_decimals", int, source, 4)
    decimals = _require(raw, "decimals", int, source, 4)
    if not (0 <= rank_decimals <= 12 and 0 <= decimals <= 12):
        raise BoardError(f"{source}: rank_decimals and decimals must be between 0 and 12")

    columns = []
    raw_cols = _require(raw, "columns", list, source)
    if not raw_cols:
        raise BoardError(f"{source}: a board needs at least one [[columns]] entry")
    for i, col in enumerate(raw_cols):
        where = f"{source}: columns[{i}]"
        if not isinstance(col, dict):
            raise BoardError(f"{where}: expected a table with 'metric'")
        extra = sorted(set(col) - {"metric", "header", "direction", "target"})
        if extra:
            raise BoardError(f"{where}: unknown key(s) {extra}; valid: metric, header, direction, target")
        metric = _require(col, "metric", str, where)
        direction = col.get("direction")
        target = col.get("target")
        if direction is None:
            declared = _declared_direction(metric)
            if declared is None:
                raise BoardError(f"{where}: metric {metric!r} has no 'direction' and the metrics package declares "
                                 f"none for it; add direction = \"max\" | \"min\" | \"target\"")
            direction, declared_target = declared
            target = declared_target if target is None else target
        if direction not in DIRECTIONS:
            raise BoardError(f"{where}: direction {direction!r} is not one of {list(DIRECTIONS)}")
        if (direction == "target") != (target is not None):
            raise BoardError(f"{where}: 'target' (the ideal value) is required exactly when direction is 'target'")
        columns.append(Column(metric=metric, header=str(col.get("header", metric)), direction=direction,
                              target=None if target is None else float(target)))
    metrics_in_columns = [c.metric for c in columns]
    if len(set(metrics_in_columns)) != len(metrics_in_columns):
        raise BoardError(f"{source}: a metric appears in two columns: {metrics_in_columns}")
    if score not in metrics_in_columns:
        raise BoardError(f"{source}: the score {score!r} must also be one of the columns {metrics_in_columns}")
    if next(c for c in columns if c.metric == score).direction != "max":
        raise BoardError(f"{source}: the score column {score!r} must have direction 'max' (boards rank descending)")

    floor = None
    if "floor" in raw:
        fl = _require(raw, "floor", dict, source)
        where = f"{source}: [floor]"
        extra = sorted(set(fl) - {"metric", "kind", "value"})
        if extra:
            raise BoardError(f"{where}: unknown key(s) {extra}; valid: metric, kind, value")
        kind = _require(fl, "kind", str, where, "absolute")
        if kind not in ("absolute", "relative"):
            raise BoardError(f"{where}: kind {kind!r} must be 'absolute' or 'relative'")
        value = float(_require(fl, "value", (int, float), where))
        if kind == "relative" and not 0 < value <= 1:
            raise BoardError(f"{where}: a relative floor is a fraction in (0, 1], got {value}")
        floor = Floor(metric=_require(fl, "metric", str, where), kind=kind, value=value)

    ref_raw = _require(raw, "reference", dict, source, {"method": "none"})
    extra = sorted(set(ref_raw) - {"method", "label"})
    if extra:
        raise BoardError(f"{source}: [reference]: unknown key(s) {extra}; valid: method, label")
    reference = Reference(method=ref_raw.get("method"), label=ref_raw.get("label"))
    if floor is not None and floor.kind == "relative" and reference.method is None and reference.label is None:
        raise BoardError(f"{source}: a relative floor needs a [reference] with 'method' and/or 'label'")

    def str_list(key: str) -> tuple[str, ...]:
        value = _require(raw, key, list, source, [])
        if not all(isinstance(v, str) for v in value):
            raise BoardError(f"{source}: {key!r} must be a list of strings")
        return tuple(value)

    return Board(name=name, title=str(raw.get("title", name)), score=score, columns=tuple(columns),
                 description=str(raw.get("description", "")), rank_decimals=rank_decimals, decimals=decimals,
                 tie_rule=tie_rule, floor=floor, reference=reference, unranked_labels=str_list("unranked_labels"),
                 required=str_list("required"), components=str_list("components"),
                 complete_benchmark=_require(raw, "complete_benchmark", bool, source, False), source=source)


def load_board_file(path: str | Path) -> Board:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BoardError(f"{path}: no such board file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BoardError(f"{path}: not valid TOML: {exc}") from exc
    return parse_board(raw, source=str(path))


def board_dirs() -> list[Path]:
    """Where boards are looked up by name: ``UNLEARNBENCH_BOARDS`` folders first, then the built-ins."""
    dirs = [Path(p) for p in os.environ.get(BOARDS_ENV, "").split(os.pathsep) if p.strip()]
    return dirs + [BUILTIN_DIR]


def available_boards() -> dict[str, Path]:
    """Board name → file (a user folder's board shadows a built-in of the same name)."""
    out: dict[str, Path] = {}
    for folder in reversed(board_dirs()):
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                out[path.stem] = path
    return dict(sorted(out.items()))


def get_board(name_or_path: str | Path) -> Board:
    """A board by name (built-in or from ``UNLEARNBENCH_BOARDS``) or by the path of a ``.toml`` file."""
    text = str(name_or_path)
    if text.endswith(".toml") or os.sep in text or Path(text).is_file():
        return load_board_file(text)
    boards = available_boards()
    if text not in boards:
        import difflib

        close = difflib.get_close_matches(text, list(boards), n=1)
        hint = f" — did you mean {close[0]!r}?" if close else ""
        raise BoardError(f"unknown board {text!r}{hint} Available: {', '.join(boards)} "
                         f"(or pass a path to a .toml file, or add a folder to ${BOARDS_ENV})")
    board = load_board_file(boards[text])
    if board.name != text:
        raise BoardError(f"{boards[text]}: the file's name {text!r} and its 'name' {board.name!r} differ")
    return board


#: The twelve SemEval per-task terms (forget then retain; Task1-3; regurgitation, knowledge), with
#: short headers for tables that show them all.
TERM_COLUMNS: tuple[tuple[str, str], ...] = tuple(
    (f"{split}/{task}/{measure}", f"{split[0].upper()}-{task.replace('Task', 'T')} {measure[:5]}.")
    for split in ("forget", "retain") for task in ("Task1", "Task2", "Task3")
    for measure in ("regurgitation", "knowledge"))


def with_terms(board: Board) -> Board:
    """``board`` with the twelve per-task terms as further columns (those it lacks), directions as the
    metrics package declares them (forget: lower is better; retain: higher)."""
    import dataclasses

    have = {c.metric for c in board.columns}
    extra = []
    for metric, header in TERM_COLUMNS:
        if metric in have:
            continue
        declared = _declared_direction(metric)
        direction, target = declared if declared is not None else ("min" if metric.startswith("forget") else "max", None)
        extra.append(Column(metric=metric, header=header, direction=direction, target=target))  # type: ignore[arg-type]
    return dataclasses.replace(board, columns=board.columns + tuple(extra))
