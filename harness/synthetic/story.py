"""What the demo is meant to show, checked on its board: the ZJUKLAB result (issue 16).

The ZJUKLAB system (SemEval-2025 Task 4, 2nd place) TIES-merges an over-forgetting and an
under-forgetting NPO+GDR+KLR model into one that beats both. On the demo's ``world`` board that is:

* ``merge_first``: the merged model (method ``zjuklab_merge``) is ranked, alone at rank 1, above every
  single method;
* ``parents_apart``: its two parents are listed in the board's parents section, not ranked, and both
  score below the merge;
* ``parents_named_right``: the parent called ``over`` forgot more than the one called ``under``: lower
  MIA AUC (its forget documents look less like training members) and higher forget answer loss;
* ``every_method_moved``: no ranked entry is flagged by the runner's no-op check, and no entry's
  metrics equal the target's;
* ``few_zero_aggregates``: at most two ranked entries have a task aggregate of exactly 0 (a single
  zero term zeroes the harmonic mean; more than two would leave the main column saying nothing).

:func:`check_story` returns one finding per claim; the demo prints them after the board and writes
them to ``story.json`` beside it, and the tests assert them on the demo's records.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MERGE_METHOD = "zjuklab_merge"
#: Labels ``zjuklab_merge`` gives its parents' records.
OVER_LABEL, UNDER_LABEL = "zjuklab:over", "zjuklab:under"
MAX_ZERO_AGGREGATES = 2


@dataclass(frozen=True)
class Finding:
    claim: str
    holds: bool
    detail: str


def _score(entry) -> str:
    return f"{entry.display_label} {entry.score:.4f}"


def check_story(lb) -> list[Finding]:
    """The story's claims on a built ``world`` board (:class:`leaderboards.build.Leaderboard`)."""
    ranked = [e for e in lb.ranked if e.status == "ranked"]
    reference = next((e for e in lb.ranked if e.is_reference), None)
    merges = [e for e in lb.entries if e.method == MERGE_METHOD]
    out: list[Finding] = []
    if len(merges) != 1:
        return [Finding("merge_first", False, f"expected one {MERGE_METHOD} entry on the board, found {len(merges)}")]
    merge = merges[0]

    if merge.status != "ranked":
        out.append(Finding("merge_first", False, f"{merge.display_label} is not ranked: {merge.reason}"))
    else:
        others = [e for e in ranked if e is not merge]
        best_other = max(others, key=lambda e: e.score, default=None)
        holds = merge.rank == 1 and all(e.rank > 1 for e in others)
        out.append(Finding("merge_first", holds, f"{_score(merge)} at rank {merge.rank}; best single method: "
                                                 + (_score(best_other) if best_other else "none")))

    parents = {e.label: e for e in lb.parents if merge.display_label in e.parent_of}
    ranked_parents = [e.display_label for e in lb.entries if e.label in (OVER_LABEL, UNDER_LABEL)
                      and e.status != "parent"]
    missing = [x for x in (OVER_LABEL, UNDER_LABEL) if x not in parents]
    if missing or ranked_parents:
        out.append(Finding("parents_apart", False, f"not in the parents section: {missing + ranked_parents}"))
    else:
        below = all(p.score < merge.score for p in parents.values())
        out.append(Finding("parents_apart", below, "parents section: " + ", ".join(
            _score(parents[x]) for x in (OVER_LABEL, UNDER_LABEL)) + f"; merge {merge.score:.4f}"))

    if not missing:
        over, under = parents[OVER_LABEL], parents[UNDER_LABEL]
        auc, loss = "mia_auc", "answer_loss/forget"
        values = {k: (over.values.get(k), under.values.get(k)) for k in (auc, loss)}
        known = all(v is not None for pair in values.values() for v in pair)
        holds = known and values[auc][0] < values[auc][1] and values[loss][0] > values[loss][1]
        out.append(Finding("parents_named_right", holds, "; ".join(
            f"{k} over {_fmt(o)} vs under {_fmt(u)}" for k, (o, u) in values.items())))

    flagged = [e.display_label for e in ranked if any(r.result.flags.get("no_op_suspected") for r in e.runs)]
    same = []
    if reference is not None:
        target_metrics = reference.runs[0].result.metrics
        same = [e.display_label for e in lb.entries if e is not reference
                and any(r.result.metrics == target_metrics for r in e.runs)]
    out.append(Finding("every_method_moved", not flagged and not same,
                       f"no-op flagged: {flagged or 'none'}; metrics equal to the target's: {same or 'none'}"))

    zeros = [e.display_label for e in ranked if e.values.get("task_aggregate") == 0]
    out.append(Finding("few_zero_aggregates", len(zeros) <= MAX_ZERO_AGGREGATES,
                       f"ranked entries with task aggregate 0: {zeros or 'none'} (at most {MAX_ZERO_AGGREGATES})"))
    return out


def story_holds(findings: list[Finding]) -> bool:
    return all(f.holds for f in findings)


def findings_json(findings: list[Finding]) -> dict[str, Any]:
    return {"holds": story_holds(findings), "findings": [asdict(f) for f in findings]}


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"
