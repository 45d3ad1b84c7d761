"""The demo's story (issue 16.1): the ZJUKLAB merge above both parents and every single method.

The fast tests check :func:`harness.synthetic.story.check_story` on boards built from records shaped
like the demo's (and that each claim fails when its ordering is broken); the slow test
(``test_demo_presets.py::test_the_demo_shows_the_zjuklab_story``) runs the full demo and asserts the
story on its records.
"""

from __future__ import annotations

from pathlib import Path

from test_leaderboard import full_metrics, make_record, write_record

#: (label, method, forget, retain, mia_auc, utility, forget answer loss, flags); folder = label.
DEMO_SHAPED = [
    ("target", "none", 1.0, 1.0, 1.0, 0.895, 0.03, {}),
    ("simnpo", "simnpo", 0.45, 0.65, 0.998, 0.83, 1.8, {"no_op_suspected": False}),
    ("npo", "npo", 0.60, 0.60, 1.0, 0.75, 0.5, {"no_op_suspected": False}),
    ("zjuklab_merge", "zjuklab_merge", 0.25, 0.70, 0.90, 0.76, 2.7, {"no_op_suspected": False}),
]
PARENTS = [  # the over-forgetting parent forgot more: lower MIA AUC, higher forget answer loss
    ("zjuklab:over", 0.08, 0.25, 0.34, 0.50, 9.4),
    ("zjuklab:under", 0.85, 0.95, 1.0, 0.86, 0.2),
]


def _record(label, method, forget, retain, auc, utility, loss, flags=None, seed=0):
    metrics = full_metrics(forget, retain, auc, utility, mcq_name="utility")
    metrics["answer_loss/forget"] = loss
    rec = make_record(label, method, metrics, mmlu_protocol=None, utility=True, seed=seed)
    return rec.model_copy(update={"flags": dict(flags or {})})


def demo_runs(root: Path, rows=DEMO_SHAPED, parents=PARENTS) -> Path:
    for label, method, *values, flags in rows:
        write_record(root / label, _record(label, method, *values, flags=flags, seed=None if method == "none" else 0))
    for label, *values in parents:
        which = label.split(":")[1]
        write_record(root / "zjuklab_merge" / "parents" / which, _record(label, "npo_gdr_klr", *values))
    return root


def story(root: Path) -> dict:
    import leaderboards
    from harness.synthetic.story import check_story

    [(_, lb)] = leaderboards.build_leaderboards([root], "world", bootstrap=0, progress=False)
    return {f.claim: f for f in check_story(lb)}


def test_the_story_holds_on_a_demo_shaped_board(tmp_path):
    found = story(demo_runs(tmp_path / "runs"))
    assert set(found) == {"merge_first", "parents_apart", "parents_named_right", "every_method_moved",
                          "few_zero_aggregates"}
    assert all(f.holds for f in found.values()), found
    assert "zjuklab_merge" in found["merge_first"].detail and "rank 1" in found["merge_first"].detail
    assert "zjuklab:over" in found["parents_apart"].detail


def test_a_method_above_the_merge_breaks_the_story(tmp_path):
    rows = DEMO_SHAPED + [("rmu", "rmu", 0.10, 0.85, 0.6, 0.80, 3.5, {"no_op_suspected": False})]
    found = story(demo_runs(tmp_path / "runs", rows))
    assert not found["merge_first"].holds and "rmu" in found["merge_first"].detail
    assert found["parents_apart"].holds


def test_a_parent_above_the_merge_or_misnamed_breaks_the_story(tmp_path):
    swapped = [("zjuklab:over", *PARENTS[1][1:]), ("zjuklab:under", *PARENTS[0][1:])]
    found = story(demo_runs(tmp_path / "a", parents=swapped))
    assert not found["parents_named_right"].holds
    strong = [PARENTS[0], ("zjuklab:under", 0.05, 0.95, 0.5, 0.86, 5.0)]
    found = story(demo_runs(tmp_path / "b", parents=strong))
    assert not found["parents_apart"].holds and found["merge_first"].holds


def test_a_no_op_or_a_copy_of_the_target_breaks_the_story(tmp_path):
    rows = DEMO_SHAPED + [("rmu", "rmu", 0.5, 0.6, 1.0, 0.8, 0.03, {"no_op_suspected": True})]
    found = story(demo_runs(tmp_path / "a", rows))
    assert not found["every_method_moved"].holds and "rmu" in found["every_method_moved"].detail
    rows = DEMO_SHAPED + [("kl", "kl", *DEMO_SHAPED[0][2:])]
    found = story(demo_runs(tmp_path / "b", rows))
    assert not found["every_method_moved"].holds and "kl" in found["every_method_moved"].detail


def test_more_than_two_zero_task_aggregates_break_the_story(tmp_path):
    zero = [(f"ga{i}", "grad_ascent", 1.0, 1.0, 1.0, 0.85, 0.08, {}) for i in range(3)]
    found = story(demo_runs(tmp_path / "runs", DEMO_SHAPED + zero))
    assert not found["few_zero_aggregates"].holds and "ga2" in found["few_zero_aggregates"].detail
    found = story(demo_runs(tmp_path / "two", DEMO_SHAPED + zero[:2]))
    assert found["few_zero_aggregates"].holds


#: The result records of a full ``unlearnbench demo`` run (every ``result.json`` under its ``runs/``,
#: parents included, with the per-sample file references dropped: the files are not checked in).
DEMO_RECORDS = Path(__file__).resolve().parent.parent / "data" / "demo_records"


def test_the_story_holds_on_the_recorded_demo_board():
    """The board built from the demo's own records ranks the merge first, parents apart, and so on."""
    found = story(DEMO_RECORDS)
    assert all(f.holds for f in found.values()), {k: f.detail for k, f in found.items() if not f.holds}
    # and the over-forgetting parent over-forgot: its MIA AUC is below 0.5, the under-forgetting one's above
    from harness.core.records import read_result

    over = read_result(DEMO_RECORDS / "zjuklab_merge" / "parents" / "over").metrics
    under = read_result(DEMO_RECORDS / "zjuklab_merge" / "parents" / "under").metrics
    assert over["mia_auc"] < 0.5 < under["mia_auc"]
