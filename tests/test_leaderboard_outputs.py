"""Paper-ready outputs (issue 16.5): a booktabs LaTeX table, the twelve per-task SemEval terms as
columns, plots as PNG, SVG and PDF without overlapping labels."""

from __future__ import annotations

import csv
import re

import pytest

from test_leaderboard import GOLDEN, RECORDS, full_metrics, make_record, write_record


def golden_board(**options):
    import leaderboards

    [(_, lb)] = leaderboards.build_leaderboards([RECORDS], "semeval2025", bootstrap=0, progress=False, **options)
    return lb


def test_golden_latex_table():
    import leaderboards

    tex = leaderboards.to_latex(golden_board())
    assert tex == (GOLDEN / "semeval2025.tex").read_text(encoding="utf-8")
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex and r"\hline" not in tex
    rows = [line for line in tex.splitlines() if line.endswith(r" \\") and not line.startswith(("Rank", r"\multi"))]
    assert [row.split(" & ")[:2] for row in rows] == [
        ["1", r"zjuklab\_merge"], ["2", "npo"], ["3", "graddiff"], ["3", "rmu"], ["--", "target"],
        ["--", "gradascent"]]
    assert r"\multicolumn{9}{l}{\emph{Excluded by the floor (mmlu $\geq$ 0.371)}} \\" in tex
    assert "0.6556 $\\pm$ 0.0200" in tex  # npo: mean and standard deviation over its two seeds


def test_the_twelve_terms_as_columns():
    import leaderboards
    from leaderboards.board import TERM_COLUMNS

    lb = golden_board(columns="terms")
    metrics = [c.metric for c in lb.board.columns]
    assert metrics[:5] == ["final_score", "task_aggregate", "mia_score", "mmlu", "mia_auc"]
    assert metrics[5:] == [m for m, _ in TERM_COLUMNS] and len(metrics[5:]) == 12
    directions = {c.metric: c.direction for c in lb.board.columns}
    assert directions["forget/Task2/knowledge"] == "min" and directions["retain/Task3/regurgitation"] == "max"
    rows = {r["label"]: r for r in csv.DictReader(leaderboards.to_csv(lb).splitlines())}
    record = next(e for e in lb.entries if e.label == "zjuklab_merge").runs[0].result
    for metric, _ in TERM_COLUMNS:
        assert rows["zjuklab_merge"][metric] == f"{record.metrics[metric]:.4f}"
    assert "| F-T1 regur. ↓ | F-T1 knowl. ↓ |" in leaderboards.to_markdown(lb)
    assert r"R-{}T3 knowl. $\uparrow$ \\" in leaderboards.to_latex(lb)
    with pytest.raises(leaderboards.LeaderboardError, match="columns must be one of board, terms"):
        golden_board(columns="all")


def test_plots_in_png_svg_and_pdf(tmp_path):
    import leaderboards

    lb = golden_board()
    written = leaderboards.write_outputs(lb, tmp_path / "a", ("png", "svg", "pdf"))
    names = sorted(p.name for p in written)
    assert names == sorted(f"{stem}.{fmt}" for stem in ("components", "forget_retain", "mia_auc")
                           for fmt in ("png", "svg", "pdf"))
    for path in written:
        head = path.read_bytes()[:64]
        assert {"png": head.startswith(b"\x89PNG"), "svg": b"<svg" in path.read_bytes()[:600] or head.startswith(b"<?xml"),
                "pdf": head.startswith(b"%PDF")}[path.suffix[1:]], path
    svg = (tmp_path / "a" / "mia_auc.svg").read_text()
    assert "<text" not in svg  # text drawn as paths
    pdf = (tmp_path / "a" / "components.pdf").read_bytes()
    assert b"/Subtype /Type3" not in pdf and b"/FontType 3" not in pdf  # TrueType fonts, as publishers want
    again = leaderboards.write_outputs(golden_board(), tmp_path / "b", ("pdf",))
    for path in again:  # deterministic files: no dates, stable ids
        assert path.read_bytes() == (tmp_path / "a" / path.name).read_bytes(), path.name


def test_svg_keeps_user_text_inert(tmp_path):
    """matplotlib names each drawn text in an XML comment: a label cannot close it and add markup."""
    from lxml import etree

    import leaderboards

    for i, label in enumerate(("--><script>window.__pwned=1</script><!--", "]]><svg onload=alert(1)>", "ok")):
        write_record(tmp_path / "runs" / f"r{i}", make_record(label, "npo", full_metrics(0.2 + i / 10, 0.6, 0.6, 0.47)))
    [(_, lb)] = leaderboards.build_leaderboards([tmp_path / "runs"], "semeval2025", bootstrap=0, progress=False)
    for path in leaderboards.write_outputs(lb, tmp_path / "out", ("svg",)):
        root = etree.parse(str(path)).getroot()
        tags = {etree.QName(el).localname for el in root.iter() if isinstance(el.tag, str)}
        assert not tags & {"script", "foreignObject", "a", "image", "text"}, (path.name, tags)
        assert not [a for el in root.iter() if isinstance(el.tag, str) for a in el.attrib if a.startswith("on")]


def crowded_board(tmp_path, n: int):
    import leaderboards

    for i in range(n):
        # points 0.004 apart along a line: names cannot all sit next to their points
        write_record(tmp_path / f"r{i}", make_record(f"method number {i} with a long name", "npo",
                                                     full_metrics(0.30 + 0.004 * i, 0.60, 0.6, 0.47),
                                                     params={"i": i}))
    [(_, lb)] = leaderboards.build_leaderboards([tmp_path], "semeval2025", bootstrap=0, progress=False)
    return lb


@pytest.mark.parametrize("n", [3, 40])
def test_plot_labels_never_overlap(tmp_path, n):
    """Names next to their points where there is room, else numbers and a key; never overlapping."""
    import matplotlib

    from leaderboards import plots

    lb = crowded_board(tmp_path, n)
    with matplotlib.rc_context(plots.RC):
        for stem, build, _ in plots.PLOTS if n < 10 else [p for p in plots.PLOTS if p[0] == "forget_retain"]:
            fig = build(lb)
            assert plots.overlapping_texts(fig) == [], stem
            texts = [t for t, _ in plots.text_boxes(fig)]
            if stem == "forget_retain":
                named = any(t.startswith("method number 0") for t in texts)
                numbered = any(t.startswith("1  method number 0") for t in texts)  # the key beside the plot
                assert (named, numbered) == ((True, False) if n == 3 else (False, True))


def test_the_overlap_check_can_fail():
    """Guard for the test above: two texts drawn on top of each other are reported."""
    from leaderboards import plots

    fig = plots._new_figure(4, 3)
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, "one label")
    ax.text(0.52, 0.5, "another label")
    pairs = plots.overlapping_texts(fig)
    assert ("one label", "another label") in pairs


def test_cli_paper_outputs(tmp_path, capsys):
    from harness.cli import main

    out = tmp_path / "paper"
    assert main(["leaderboard", str(RECORDS), "--out", str(out), "--bootstrap", "0", "--format", "tex,svg,pdf",
                 "--columns", "terms"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["leaderboard.tex"] + [f"{s}.{f}" for s in ("components", "forget_retain", "mia_auc") for f in ("svg", "pdf")])
    assert "F-{}T1 regur." in (out / "leaderboard.tex").read_text()
    with pytest.raises(SystemExit) as info:
        main(["leaderboard", str(RECORDS), "--out", str(out), "--format", "docx"])
    assert info.value.code == 2 and "unknown format(s) ['docx']" in capsys.readouterr().err
    assert re.search(r"--columns \{board,terms\}", subprocess_help())


def subprocess_help() -> str:
    import contextlib
    import io

    from harness.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        main(["leaderboard", "--help"])
    return buf.getvalue()
