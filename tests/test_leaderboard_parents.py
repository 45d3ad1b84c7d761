"""Parents are not entries (issue 16.1): a run that is a parent of another collected run is listed in
a marked section of every output, with the system it belongs to, and ranked only with --rank-parents."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from test_leaderboard import full_metrics, make_record, write_record


def build(folders, **options):
    import leaderboards

    options.setdefault("bootstrap", 0)
    options.setdefault("progress", False)
    [(_, lb)] = leaderboards.build_leaderboards(folders if isinstance(folders, list) else [folders], "semeval2025",
                                                **options)
    return lb


def zjuklab_runs(root: Path) -> Path:
    """The layout ``zjuklab_merge`` writes: the merged run with its two parents under ``parents/``."""
    write_record(root / "target", make_record("target", "none", full_metrics(0.82, 0.84, 0.93, 0.49), seed=None))
    write_record(root / "npo", make_record("npo", "npo", full_metrics(0.3, 0.6, 0.7, 0.47)))
    merged = root / "zjuklab_merge"
    write_record(merged, make_record("zjuklab_merge", "zjuklab_merge", full_metrics(0.12, 0.71, 0.52, 0.47)))
    # the under-forgetting parent has the best final score of all: it must still not be rank 1
    write_record(merged / "parents" / "under", make_record("zjuklab:under", "npo_gdr_klr",
                                                           full_metrics(0.02, 0.9, 0.5, 0.48)))
    write_record(merged / "parents" / "over", make_record("zjuklab:over", "npo_gdr_klr",
                                                          full_metrics(0.05, 0.4, 0.3, 0.45), params={"w": [0.4]}))
    return root


def test_zjuklab_parents_are_listed_apart_in_every_output(tmp_path):
    import leaderboards

    lb = build(zjuklab_runs(tmp_path / "runs"))
    assert [(e.label, e.rank) for e in lb.ranked] == [("zjuklab_merge", 1), ("npo", 2), ("target", None)]
    assert sorted(e.label for e in lb.parents) == ["zjuklab:over", "zjuklab:under"]
    for entry in lb.parents:
        assert entry.status == "parent" and entry.rank is None and entry.parent_of == ["zjuklab_merge"]
        assert entry.reason.startswith("parent of zjuklab_merge (not ranked; --rank-parents ranks it)")

    rows = {r["label"]: r for r in csv.DictReader(leaderboards.to_csv(lb).splitlines())}
    assert rows["zjuklab:under"]["status"] == "parent" and rows["zjuklab:under"]["rank"] == ""
    assert rows["zjuklab:under"]["reason"].startswith("parent of zjuklab_merge")
    md = leaderboards.to_markdown(lb)
    section = md.split("## Parents (listed, not ranked)")[1]
    assert "zjuklab:under" not in md.split("## Parents")[0]
    assert "| zjuklab:under | npo_gdr_klr | 1 |" in section and "| Parent of |" in section
    assert "parent of zjuklab_merge" in section
    page = leaderboards.to_html(lb)
    assert '<table id="parents" class="board parent">' in page and page.count('<tr class="parent"') == 2
    tex = leaderboards.to_latex(lb)
    group = tex.split(r"\emph{Parents (listed, not ranked)}")[1]
    assert "zjuklab:under" in group and "zjuklab:over" in group
    assert "zjuklab:under" not in tex.split(r"\emph{Parents")[0]


def test_rank_parents_ranks_them_with_a_note(tmp_path):
    import leaderboards

    lb = build(zjuklab_runs(tmp_path / "runs"), rank_parents=True)
    assert lb.parents == []
    ranked = [(e.label, e.rank) for e in lb.ranked]
    assert ranked[0] == ("zjuklab:under", 1) and ("zjuklab_merge", 2) in ranked
    under = lb.ranked[0]
    assert under.parent_of == ["zjuklab_merge"] and under.status == "ranked"
    assert "| 1 | zjuklab:under | npo_gdr_klr | 1 |" in leaderboards.to_markdown(lb)
    assert "| parent of zjuklab_merge |" in leaderboards.to_markdown(lb)


def test_the_parents_folder_alone_is_ranked(tmp_path):
    """A parent only of runs that were not collected is an ordinary entry."""
    runs = zjuklab_runs(tmp_path / "runs")
    lb = build(runs / "zjuklab_merge" / "parents")
    assert lb.parents == [] and [e.rank for e in lb.ranked] == [1, 2]


def test_a_parent_of_a_refused_run_is_still_a_parent(tmp_path):
    runs = zjuklab_runs(tmp_path / "runs")
    result = runs / "zjuklab_merge" / "result.json"
    result.write_text(result.read_text()[:200])  # the merged run's record is truncated: refused
    lb = build(runs)
    assert sorted(e.label for e in lb.parents) == ["zjuklab:over", "zjuklab:under"]
    assert lb.parents[0].parent_of == ["runs/zjuklab_merge (not on the board)"]
    assert any(path.endswith("zjuklab_merge/result.json") for path, _ in lb.skipped)


def merge_runs(root: Path, parents: list[str]) -> Path:
    write_record(root / "over", make_record("over", "npo_gdr_klr", full_metrics(0.05, 0.4, 0.3, 0.45), params={"w": 1}))
    write_record(root / "under", make_record("under", "npo_gdr_klr", full_metrics(0.02, 0.9, 0.5, 0.48),
                                             params={"w": 2}))
    record = make_record("merge:ties", "merge", full_metrics(0.12, 0.71, 0.52, 0.47))
    write_record(root / "merged", record.model_copy(update={"parents": parents}))
    return root


@pytest.mark.parametrize("how", ["absolute", "relative to the working directory", "relative to the run",
                                 "moved to another machine", "result.json files"])
def test_merge_parents_are_matched_however_their_paths_were_written(tmp_path, monkeypatch, how):
    root = tmp_path / "runs"
    monkeypatch.chdir(tmp_path)
    parents = {
        "absolute": [str(root / "over"), str(root / "under")],
        "relative to the working directory": ["runs/over", "runs/under"],
        "relative to the run": ["../over", "../under/"],
        "moved to another machine": ["/home/someone/exp/runs/over", "/home/someone/exp/runs/under"],
        "result.json files": [str(root / "over" / "result.json"), "runs/under/result.json"],
    }[how]
    merge_runs(root, parents)
    if how == "relative to the working directory":
        monkeypatch.chdir(tmp_path)  # the board is built where the merge ran
    lb = build(root if how != "moved to another machine" else Path(os.path.relpath(root)))
    assert [e.label for e in lb.ranked] == ["merge:ties"], how
    assert sorted((e.label, tuple(e.parent_of)) for e in lb.parents) == [("over", ("merge:ties",)),
                                                                         ("under", ("merge:ties",))]


def test_an_ambiguous_moved_parent_links_nothing_and_says_so(tmp_path):
    root = tmp_path / "runs"
    merge_runs(root / "one" / "a", [])
    merge_runs(root / "two" / "a", [])
    record = make_record("merge:ties", "merge", full_metrics(0.12, 0.71, 0.52, 0.47), params={"x": 1})
    write_record(root / "merged", record.model_copy(update={"parents": ["/elsewhere/a/over"]}))
    lb = build(root)
    assert lb.parents == []
    assert any("its parent '/elsewhere/a/over' is ambiguous" in n for n in lb.notes)
    # one component is not enough to match a moved parent ("over" is too common a name)
    write_record(root / "merged", record.model_copy(update={"parents": ["/elsewhere/over"]}))
    assert build(root).parents == []


def test_cli_rank_parents_flag(tmp_path, capsys):
    from harness.cli import main

    runs = zjuklab_runs(tmp_path / "runs")
    out = tmp_path / "board"
    assert main(["leaderboard", str(runs), "--out", str(out), "--bootstrap", "0", "--format", "csv"]) == 0
    rows = list(csv.DictReader((out / "leaderboard.csv").open()))
    assert [r["label"] for r in rows if r["rank"] == "1"] == ["zjuklab_merge"]
    assert main(["leaderboard", str(runs), "--out", str(out), "--bootstrap", "0", "--format", "csv",
                 "--rank-parents"]) == 0
    rows = list(csv.DictReader((out / "leaderboard.csv").open()))
    assert [r["label"] for r in rows if r["rank"] == "1"] == ["zjuklab:under"]
