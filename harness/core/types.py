"""Core value types shared by every part of the harness.

Everything here is plain data (frozen dataclasses) or a Protocol: no torch import, so metrics and
leaderboards can use these types without loading a model stack.
"""

from __future__ import annotations

import inspect
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

Split = Literal["forget", "retain"]
Kind = Literal["sc", "qa"]
SPLITS: tuple[Split, ...] = ("forget", "retain")
KINDS: tuple[Kind, ...] = ("sc", "qa")
#: The LUME tasks. Task1: synthetic creative documents; Task2: synthetic biographies with PII;
#: Task3: (real or encyclopedic) biographies.
LUME_TASKS: tuple[str, ...] = ("Task1", "Task2", "Task3")


def kind_from_id(record_id: str) -> Kind | None:
    """The organisers' rule: drop the id's last character; ``…sc`` → sc, ``…qa`` → qa."""
    stem = record_id[:-1]
    if stem.endswith("sc"):
        return "sc"
    if stem.endswith("qa"):
        return "qa"
    return None


@dataclass(frozen=True)
class Record:
    """One forget/retain item of a LUME-format benchmark."""

    id: str
    """The record id as in the file; its suffix encodes the kind (``…sc1``, ``…qa0``…``qa4``)."""
    input: str
    """Prompt: the beginning of a document (sc) or a question (qa)."""
    output: str
    """Reference: the document's continuation (sc) or the short answer (qa)."""
    task: str
    """``Task1``, ``Task2`` or ``Task3``."""
    kind: Kind
    """``sc`` (sentence completion → regurgitation) or ``qa`` (question answering → knowledge)."""
    split: Split
    """Which file the record came from."""


@dataclass(frozen=True)
class MIADocument:
    """One document of the membership-inference sets."""

    id: str
    document: str
    set: Literal["member", "nonmember"]


@dataclass(frozen=True)
class Benchmark:
    """A validated, loaded benchmark. Records keep file order (the SemEval means depend on it)."""

    name: str
    path: str
    forget: tuple[Record, ...]
    retain: tuple[Record, ...]
    members: tuple[MIADocument, ...] = ()
    nonmembers: tuple[MIADocument, ...] = ()
    content_hash: str = ""
    """sha256 over all records in order (see :func:`harness.tasks.lume.data.benchmark_hash`)."""

    def split(self, name: Split) -> tuple[Record, ...]:
        return self.forget if name == "forget" else self.retain

    @property
    def records(self) -> tuple[Record, ...]:
        return self.forget + self.retain

    @property
    def has_mia(self) -> bool:
        return bool(self.members) and bool(self.nonmembers)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for rec in self.records:
            key = f"{rec.split}/{rec.task}/{rec.kind}"
            out[key] = out.get(key, 0) + 1
        out["mia/member"] = len(self.members)
        out["mia/nonmember"] = len(self.nonmembers)
        return dict(sorted(out.items()))


Direction = Literal["max", "min", "target"]


@dataclass(frozen=True)
class MetricSpec:
    """A metric family's declaration: what it measures and which direction is better."""

    name: str
    direction: Direction
    description: str
    target: float | None = None
    """For ``direction == "target"``: the ideal value (MIA AUC → 0.5)."""
    in_final_score: bool = False
    low: float = -math.inf
    """Smallest valid value (inclusive); ``-inf``: no lower bound. Every value must also be finite."""
    high: float = math.inf
    """Largest valid value (inclusive); ``inf``: no upper bound."""

    def __post_init__(self) -> None:
        if self.direction not in ("max", "min", "target"):
            raise ValueError(f"metric {self.name}: direction must be max, min or target, got {self.direction!r}")
        if (self.direction == "target") != (self.target is not None):
            raise ValueError(f"metric {self.name}: a target value is required exactly when direction is 'target'")
        if not self.low <= self.high:
            raise ValueError(f"metric {self.name}: low {self.low} is above high {self.high}")

    @property
    def range_text(self) -> str:
        """The valid range as text: ``[0, 1]``, ``>= 0`` or ``any finite number``."""
        if math.isinf(self.low) and math.isinf(self.high):
            return "any finite number"
        if math.isinf(self.high):
            return f">= {self.low:g}"
        if math.isinf(self.low):
            return f"<= {self.high:g}"
        return f"[{self.low:g}, {self.high:g}]"

    def value_problem(self, value: float) -> str | None:
        """Why ``value`` cannot be this metric's value (not finite, or outside the range), or None."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{value!r} is not a finite number (its declared range: {self.range_text})"
        if not self.low <= value <= self.high:
            return f"{value!r} is outside its declared range {self.range_text}"
        return None

    @property
    def higher_is_better(self) -> bool | None:
        return {"max": True, "min": False}.get(self.direction)


@dataclass
class UnlearnContext:
    """Everything the harness hands a method besides model, tokenizer and data.

    One record rather than a growing argument list, so the interface can grow without breaking
    plugins. Fields may be added; none will be removed or renamed within a schema version.
    """

    out_dir: Path | None = None
    """The run folder (logs and checkpoints go here); ``None`` for in-memory runs."""
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("unlearnbench.method"))
    log_event: Callable[[Mapping[str, Any]], None] | None = None
    """Append one JSON-serialisable event to the run's training log (``train_log.jsonl``)."""
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    task: Any = None
    """The benchmark being unlearned on (a :class:`harness.tasks.base.BenchmarkTask`, whose ``curves``
    the training log's ``eval`` events use); ``None``: LUME over ``data``."""


class UnlearningMethod:
    """Base class of unlearning methods (scikit-learn style).

    ``__init__`` only stores hyperparameters (keyword arguments with defaults); the work happens in
    :meth:`unlearn`, which returns the unlearned model (the same object modified in place, or a new
    one of the same architecture).
    """

    #: Filled in by the registry decorator; shown by ``unlearnbench methods``.
    name: str = ""

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Hyperparameter defaults, read from ``__init__``'s signature."""
        sig = inspect.signature(cls.__init__)
        out = {}
        for pname, p in sig.parameters.items():
            if pname == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if p.default is inspect.Parameter.empty:
                raise TypeError(f"{cls.__name__}.__init__ parameter {pname!r} needs a default")
            out[pname] = p.default
        return out

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.defaults()}

    def unlearn(self, model: Any, tokenizer: Any, data: Benchmark, ctx: UnlearnContext) -> Any:  # pragma: no cover
        raise NotImplementedError


def summary_line(doc: str | None) -> str:
    return (inspect.cleandoc(doc).splitlines() or [""])[0] if doc else ""
