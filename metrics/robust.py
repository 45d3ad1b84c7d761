"""Robustness of unlearning: how much of the forgetting an attack undoes, from per-sample rows.

For a forget metric m measured on three runs over the same records -- the target (before
unlearning), the unlearned model, and the unlearned model under an attack (relearning, quantisation,
another precision, wrapped prompts) --

    recovered(m) = (m_attacked - m_unlearned) / (m_target - m_unlearned)

0 means the attack recovered nothing, 1 that it brought the metric back to the target's value; a
negative value means the attack pushed the metric further from the target, a value above 1 past it.
The ratio needs no direction: it is the share of the unlearning gap closed, for a score that
unlearning lowers (regurgitation, knowledge, MIA AUC) and for one it raises (the forget answer loss).

No forgetting, no recovery. When the unlearned run is within ``min_gap`` of the target on a metric,
nothing was forgotten there and the ratio would divide by almost nothing: ``recovered`` is ``None``
with the reason, never a large number. The interval likewise is ``None`` when the gap itself is not
stable under resampling (more than half of the (1 - confidence) tail of the bootstrap gaps fall below
``min_gap``), because the replicate ratios would then be unbounded.

Interval. A paired bootstrap over records: one set of resampling counts per replicate, drawn within
each forget (task, kind) stratum (so every per-task mean stays defined) and for the MIA members and
non-members separately, and applied to all three runs at once -- a record drawn twice counts twice in
the target, the unlearned and the attacked mean alike. The interval is the percentile interval of the
replicate ratios. A metric whose records include a (task, kind) stratum of a single record (a small
held-out half, say) resamples its records together instead, without strata: a stratum of one record is
the same in every replicate, and stratifying would narrow the interval below what the data allow (to
zero width when every stratum has one record). A metric over a single record has no interval, with
the reason. Point estimates are the runs' own numbers (the sequential SemEval means in file
order, scikit-learn's AUC), so they equal what the result records show.

Metrics (names as in ``result.json``): ``forget/<task>/regurgitation`` and ``forget/<task>/knowledge``
for each task and pooled over tasks (``<task>`` = ``all``), ``answer_loss/forget``, and ``mia_auc``
plus ``mia_auc/<attack>`` for each membership attack the MIA rows support. Pure functions: no model,
no torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from harness.core.errors import DataError

from .mia import MIA_ATTACKS, MIA_SETS, auc, membership_score, weighted_auc
from .semeval import MIA_METRIC_NAMES, score_rows, sequential_mean, trusted_rows

MEASURE_OF_KIND = {"sc": "regurgitation", "qa": "knowledge"}
#: An attacked run's record has the method name ``attack:<kind>`` (``unlearnbench attack``).
ATTACK_METHOD_PREFIX = "attack:"


def is_attack_method(name: str) -> bool:
    """Whether a result record's method name marks an attacked run."""
    return str(name).startswith(ATTACK_METHOD_PREFIX)

ANSWER_LOSS = "answer_loss/forget"
ROLES = ("target", "unlearned", "attacked")


@dataclass(frozen=True)
class RecoverySettings:
    """How recovery is computed (see the module docstring)."""

    replicates: int = 1000
    """Bootstrap replicates (0: point estimates only)."""
    seed: int = 0
    confidence: float = 0.95
    min_gap: float = 0.05
    """Smallest |target - unlearned| that counts as forgetting, for scores in [0, 1] (regurgitation,
    knowledge, AUC): five points."""
    min_gap_loss: float = 0.1
    """The same for the forget answer loss, in nats per token."""
    mode: str = "semeval2025"
    """Scoring mode used when ``rescore`` is set."""
    rescore: bool = False
    """Re-score the generations instead of trusting the rows' stored scores."""

    def __post_init__(self) -> None:
        if isinstance(self.replicates, bool) or not isinstance(self.replicates, int) or self.replicates < 0:
            raise ValueError(f"replicates must be a non-negative integer, got {self.replicates!r}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence!r}")
        for name in ("min_gap", "min_gap_loss"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")

    def gap_floor(self, metric: str) -> float:
        return self.min_gap_loss if metric.startswith("answer_loss") else self.min_gap


@dataclass(frozen=True)
class Recovery:
    """One metric's recovery under one attack."""

    metric: str
    target: float
    unlearned: float
    attacked: float
    gap: float
    """target - unlearned: the forgetting the attack may undo."""
    recovered: float | None
    ci: tuple[float, float] | None
    reason: str | None
    """Why ``recovered`` or ``ci`` is None."""
    n: int
    """Records (or MIA documents) the metric is computed over."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ci"] = list(self.ci) if self.ci is not None else None
        return out


@dataclass(frozen=True)
class RunRows:
    """One run's per-sample rows (``samples.jsonl``, optionally ``mia.jsonl``) and a name for errors."""

    samples: Sequence[Mapping[str, Any]]
    mia: Sequence[Mapping[str, Any]] | None = None
    name: str = "run"


# -- per-record tables --------------------------------------------------------------------------------
@dataclass
class _Table:
    scores: dict[tuple[str, str], list[tuple[str, float]]]
    """(task, kind) -> [(id, score)] for the forget records, in file order."""
    losses: dict[str, float | None]
    """forget id -> answer loss."""
    mia: dict[str, dict[tuple[str, str], float]]
    """membership attack -> {(set, id): score}, in file order."""


def _table(run: RunRows, settings: RecoverySettings) -> _Table:
    rows = score_rows(run.samples, mode=settings.mode) if settings.rescore else trusted_rows(run.samples)
    scores: dict[tuple[str, str], list[tuple[str, float]]] = {}
    losses: dict[str, float | None] = {}
    for row in rows:
        if row["split"] != "forget":
            continue
        kind = row["kind"]
        scores.setdefault((row["task"], kind), []).append((row["id"], float(row[MEASURE_OF_KIND[kind]])))
        losses[row["id"]] = row.get("answer_loss")
    if not scores:
        raise DataError(f"run {run.name!r}: its samples have no forget record; robustness needs the forget split")
    mia: dict[str, dict[tuple[str, str], float]] = {}
    if run.mia is not None:
        for attack in MIA_ATTACKS:
            values = {(r["set"], r["id"]): membership_score(r, attack) for r in run.mia}
            if values and all(v is not None and math.isfinite(v) for v in values.values()):
                mia[attack] = {k: float(v) for k, v in values.items()}  # type: ignore[arg-type]
    return _Table(scores, losses, mia)


def _check_aligned(tables: Mapping[str, _Table], runs: Mapping[str, RunRows]) -> None:
    ref = tables["target"]
    for role in ROLES[1:]:
        other = tables[role]
        if set(other.scores) != set(ref.scores):
            raise DataError(f"run {runs[role].name!r} has forget (task, kind) groups {sorted(other.scores)} but the "
                            f"target {runs['target'].name!r} has {sorted(ref.scores)}; the three runs must be "
                            "evaluated on the same records")
        for key, items in ref.scores.items():
            mine = {i for i, _ in other.scores[key]}
            theirs = {i for i, _ in items}
            if mine != theirs:
                missing = sorted(theirs - mine)[:3]
                extra = sorted(mine - theirs)[:3]
                raise DataError(f"run {runs[role].name!r}: forget records of {key[0]}/{key[1]} differ from the target's "
                                f"(missing {missing}, extra {extra}); the three runs must be evaluated on the same "
                                "records", record_id=(missing or extra or [None])[0])


# -- bootstrap ------------------------------------------------------------------------------------------
def _draw(rng: np.random.Generator, n: int, replicates: int) -> np.ndarray:
    return rng.multinomial(n, np.full(n, 1.0 / n), size=replicates).astype(np.float64)


def _recovery(metric: str, points: Mapping[str, float], reps: Mapping[str, np.ndarray] | None, n: int,
              settings: RecoverySettings, no_ci: str | None = None) -> Recovery:
    t, u, a = (points[r] for r in ROLES)
    gap = t - u
    floor = settings.gap_floor(metric)
    if abs(gap) < floor:
        return Recovery(metric, t, u, a, gap, None, None,
                        f"no forgetting to recover: the unlearned run is within {floor:g} of the target "
                        f"({u:.4g} vs {t:.4g})", n)
    recovered = (a - u) / gap
    if reps is None:
        return Recovery(metric, t, u, a, gap, recovered, None, no_ci or "no bootstrap replicates requested", n)
    rep_gap = reps["target"] - reps["unlearned"]
    # A replicate whose gap is below the floor (or undefined) would give an unbounded ratio.
    stable = rep_gap * math.copysign(1.0, gap) >= floor
    unstable = float(np.mean(~stable))
    tail = (1 - settings.confidence) / 2
    unbounded = Recovery(metric, t, u, a, gap, recovered, None,
                         f"the gap is not stable under resampling: in {unstable:.1%} of the bootstrap replicates it is "
                         f"below {floor:g}, so the ratio's interval is unbounded", n)
    if unstable >= tail:
        return unbounded
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = (reps["attacked"] - reps["unlearned"]) / rep_gap
    # The few replicates whose gap is below the floor (fewer than the tail) have an unbounded ratio,
    # of either sign (0/0 when the attacked value equals the unlearned one): they count as -inf for the
    # lower bound and +inf for the upper one, which widens the interval rather than poisoning it (NaN).
    low = float(np.percentile(np.where(stable, ratios, -np.inf), 100 * tail))
    high = float(np.percentile(np.where(stable, ratios, np.inf), 100 * (1 - tail)))
    if not (math.isfinite(low) and math.isfinite(high)):
        return unbounded
    return Recovery(metric, t, u, a, gap, recovered, (low, high), None, n)


def recovery(target: RunRows, unlearned: RunRows, attacked: RunRows,
             settings: RecoverySettings | None = None) -> dict[str, Recovery]:
    """Recovery of every forget metric the three runs support, by metric name (see module docstring).

    The runs must hold the same forget records (and, for the MIA metrics, the same MIA documents); a
    :class:`harness.core.errors.DataError` names the run and the records otherwise. MIA metrics are computed
    only when all three runs carry MIA rows for that attack."""
    settings = settings or RecoverySettings()
    runs = dict(zip(ROLES, (target, unlearned, attacked)))
    tables = {role: _table(run, settings) for role, run in runs.items()}
    _check_aligned(tables, runs)
    strata = sorted(tables["target"].scores)
    ids = {key: [i for i, _ in tables["target"].scores[key]] for key in strata}
    rng = np.random.default_rng(settings.seed)
    b = settings.replicates
    counts = {key: _draw(rng, len(ids[key]), b) for key in strata} if b else {}

    out: dict[str, Recovery] = {}

    def add(metric: str, points: Mapping[str, float | None], reps: Mapping[str, np.ndarray] | None, n: int,
            no_ci: str | None = None) -> None:
        if any(points[r] is None for r in ROLES):
            return
        out[metric] = _recovery(metric, points, reps, n, settings, no_ci)  # type: ignore[arg-type]

    # A metric whose strata include a single record resamples its records together (module docstring);
    # its own generator keeps the stratified draws above as they are.
    pooled_rng = np.random.default_rng([settings.seed, 1])

    def pooled_reps(values: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray] | None, str | None]:
        n = len(next(iter(values.values())))
        if n < 2:
            return None, "no interval: the metric is computed over a single record"
        draw = _draw(pooled_rng, n, b)
        return {r: draw @ v / n for r, v in values.items()}, None

    def single(keys) -> bool:
        return any(len(ids[key]) < 2 for key in keys)

    # forget scores, per task and pooled
    for kind, measure in MEASURE_OF_KIND.items():
        groups = [key for key in strata if key[1] == kind]
        for task in [key[0] for key in groups] + (["all"] if groups else []):
            keys = [key for key in groups if task in ("all", key[0])]
            points = {r: sequential_mean(v for key in keys for _, v in tables[r].scores[key]) for r in ROLES}
            reps, no_ci = None, None
            if b:  # each run's scores per stratum, in the target's record order (the draws' order)
                values = {r: {key: np.array([dict(tables[r].scores[key])[i] for i in ids[key]]) for key in keys}
                          for r in ROLES}
            if b and single(keys):
                reps, no_ci = pooled_reps({r: np.concatenate([values[r][key] for key in keys]) for r in ROLES})
            elif b:
                n_keys = sum(len(ids[key]) for key in keys)
                reps = {r: sum(counts[key] @ values[r][key] for key in keys) / n_keys for r in ROLES}
            add(f"forget/{task}/{measure}", points, reps, sum(len(ids[key]) for key in keys), no_ci)

    # the forget answer loss, over the records whose answer has a loss in all three runs
    with_loss = {key: [i for i in ids[key] if all(tables[r].losses.get(i) is not None for r in ROLES)] for key in strata}
    n_loss = sum(len(v) for v in with_loss.values())
    if n_loss:
        order = {r: [i for key in strata for i, _ in tables[r].scores[key]] for r in ROLES}
        keep = {i for v in with_loss.values() for i in v}
        points = {r: sequential_mean(float(tables[r].losses[i]) for i in order[r] if i in keep)  # type: ignore[arg-type]
                  for r in ROLES}
        reps, no_ci = None, None
        if b and single([key for key in strata if with_loss[key]]):
            reps, no_ci = pooled_reps({r: np.array([float(tables[r].losses[i]) for key in strata  # type: ignore[arg-type]
                                                    for i in with_loss[key]]) for r in ROLES})
        elif b:
            reps = {}
            for r in ROLES:
                num = np.zeros(b)
                den = np.zeros(b)
                for key in strata:
                    mask = np.array([i in keep for i in ids[key]])
                    if not mask.any():
                        continue
                    values = np.array([float(tables[r].losses[i]) if i in keep else 0.0 for i in ids[key]])
                    num += counts[key] @ values
                    den += counts[key] @ mask.astype(np.float64)
                with np.errstate(invalid="ignore", divide="ignore"):
                    reps[r] = num / den
        add(ANSWER_LOSS, points, reps, n_loss, no_ci)

    # membership inference
    common = set.intersection(*(set(tables[r].mia) for r in ROLES))
    if common:
        first = tables["target"].mia[sorted(common)[0]]
        members = [i for s, i in first if s == "member"]
        nonmembers = [i for s, i in first if s == "nonmember"]
        if members and nonmembers:
            cm = _draw(rng, len(members), b) if b else None
            cn = _draw(rng, len(nonmembers), b) if b else None
            for attack in MIA_ATTACKS:
                if attack not in common:
                    continue
                arrays = {}
                for r in ROLES:
                    table = tables[r].mia[attack]
                    missing = [(s, i) for s in MIA_SETS for i in (members if s == "member" else nonmembers)
                               if (s, i) not in table]
                    if missing or len(table) != len(members) + len(nonmembers):
                        raise DataError(f"run {runs[r].name!r}: its MIA documents differ from the target's "
                                        f"(e.g. {missing[:3]}); the three runs must be evaluated on the same documents",
                                        record_id=missing[0][1] if missing else None)
                    arrays[r] = (np.array([table[("member", i)] for i in members]),
                                 np.array([table[("nonmember", i)] for i in nonmembers]))
                points = {r: auc(list(arrays[r][0]), list(arrays[r][1])) for r in ROLES}
                reps = {r: weighted_auc(*arrays[r], cm, cn) for r in ROLES} if b else None
                add(MIA_METRIC_NAMES[attack], points, reps, len(members) + len(nonmembers))
    return out


__all__ = ["RecoverySettings", "Recovery", "RunRows", "recovery", "ANSWER_LOSS", "ATTACK_METHOD_PREFIX",
           "is_attack_method"]
