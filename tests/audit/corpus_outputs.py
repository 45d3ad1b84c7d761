"""score and leaderboard: per-sample files and result records that do not belong together, bad
values, duplicated runs, and user text (labels, method names) in every output format."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil

import framework as fw
from framework import case, expect_error, expect_ok, run_problem


# ------------------------------------------------------------------------------------------------
# score
def _samples(run) -> list[str]:
    return [l for l in (run / "samples.jsonl").read_text().splitlines() if l.strip()]


@case("score/ok", "score", "ordinary use", fast=True)
def _(c):
    """score RUN prints the metrics; --write keeps a consistent record."""
    r = c.copy("eval_run", "run")
    out = c.cli("score", r, "--write")
    return expect_ok(out, lambda: run_problem(r, label="OLD"))


@case("score/missing", "score", "traceback")
def _(c):
    """score a folder that does not exist."""
    return expect_error(c.cli("score", c.path("nope")), "nope")


@case("score/no-samples", "score", "traceback")
def _(c):
    """score a folder without samples.jsonl."""
    d = c.path("d")
    d.mkdir()
    return expect_error(c.cli("score", d), "samples.jsonl")


def _write_case(c, mutate, *mentions, fast=False):
    r = c.copy("eval_run", "run")
    before = fw.read_json(r / "result.json")["metrics"]
    mutate(r)
    c.protect(r / "result.json")
    out = c.cli("score", r, "--write")
    return expect_error(out, *mentions)


@case("score/write-empty-samples", "score", "destroying data", fast=True)
def _(c):
    """score --write on an empty samples.jsonl: the good metrics must not become nulls."""
    return _write_case(c, lambda r: (r / "samples.jsonl").write_text(""), "samples.jsonl")


@case("score/write-truncated-samples", "score", "destroying data")
def _(c):
    """score --write on a samples.jsonl cut to its first 5 rows (a killed copy)."""
    def cut(r):
        (r / "samples.jsonl").write_text("\n".join(_samples(r)[:5]) + "\n")

    return _write_case(c, cut, "samples.jsonl")


@case("score/write-half-line", "score", "destroying data")
def _(c):
    """score --write on a samples.jsonl whose last line is cut mid-record."""
    def cut(r):
        text = (r / "samples.jsonl").read_text()
        (r / "samples.jsonl").write_text(text[: len(text) - 40])

    return _write_case(c, cut, "samples.jsonl")


@case("score/write-members-only-mia", "score", "destroying data", fast=True)
def _(c):
    """score --write with a mia.jsonl holding members only: the MIA numbers must not become nulls."""
    def members_only(r):
        rows = [l for l in (r / "mia.jsonl").read_text().splitlines() if '"member"' in l]
        (r / "mia.jsonl").write_text("\n".join(rows) + "\n")

    return _write_case(c, members_only, "mia.jsonl")


@case("score/write-mia-deleted", "score", "destroying data")
def _(c):
    """score --write after mia.jsonl was deleted."""
    return _write_case(c, lambda r: (r / "mia.jsonl").unlink(), "mia.jsonl")


@case("score/write-duplicated-row", "score", "destroying data")
def _(c):
    """score --write on a samples.jsonl with one row doubled (a bad merge of shards)."""
    def dup(r):
        rows = _samples(r)
        (r / "samples.jsonl").write_text("\n".join(rows + rows[:1]) + "\n")

    return _write_case(c, dup, "samples.jsonl")


@case("score/write-other-runs-samples", "score", "interrupted run")
def _(c):
    """score --write where samples.jsonl is another run's (a mixed folder)."""
    def mix(r):
        (r / "samples.jsonl").write_bytes((c.fx.lora_a / "samples.jsonl").read_bytes())

    return _write_case(c, mix, "samples.jsonl")


@case("score/non-utf8-line-9", "score", "traceback")
def _(c):
    """samples.jsonl with a non-UTF-8 byte on line 9."""
    r = c.copy("eval_run", "run")
    lines = (r / "samples.jsonl").read_bytes().split(b"\n")
    at = lines[8].index(b'"input": "') + len(b'"input": "')
    lines[8] = lines[8][:at] + b"\xe9" + lines[8][at:]
    (r / "samples.jsonl").write_bytes(b"\n".join(lines))
    return expect_error(c.cli("score", r), "samples.jsonl", "line 9")


@case("score/nan-loss", "score", "bad value")
def _(c):
    """A sample row with answer_loss NaN."""
    r = c.copy("eval_run", "run")
    rows = _samples(r)
    row = json.loads(rows[0])
    rows[0] = json.dumps(row).replace(f'"answer_loss": {json.dumps(row["answer_loss"])}', '"answer_loss": NaN')
    (r / "samples.jsonl").write_text("\n".join(rows) + "\n")
    return expect_error(c.cli("score", r), "samples.jsonl", ("answer_loss", "finite", "nan"))


@case("score/bad-split", "score", "traceback")
def _(c):
    """A sample row with split 'holdout'."""
    r = c.copy("eval_run", "run")
    rows = _samples(r)
    rows[0] = rows[0].replace('"split": "forget"', '"split": "holdout"')
    (r / "samples.jsonl").write_text("\n".join(rows) + "\n")
    return expect_error(c.cli("score", r), "holdout")


@case("score/generation-number", "score", "traceback")
def _(c):
    """A sample row whose generation is a number."""
    r = c.copy("eval_run", "run")
    rows = _samples(r)
    row = json.loads(rows[0])
    row["generation"] = 42
    rows[0] = json.dumps(row)
    (r / "samples.jsonl").write_text("\n".join(rows) + "\n")
    return expect_error(c.cli("score", r), "generation")


@case("score/mmlu-out-of-range", "score", "bad value")
def _(c):
    """score --mmlu 2."""
    r = c.copy("eval_run", "run")
    return expect_error(c.cli("score", r, "--mmlu", "2"), "2")


@case("score/write-corrupt-result", "score", "traceback")
def _(c):
    """score --write where result.json is cut short."""
    r = c.copy("eval_run", "run")
    text = (r / "result.json").read_text()
    (r / "result.json").write_text(text[:200])
    return expect_error(c.cli("score", r, "--write"), "result.json")


@case("score/write-full-disk", "score", "traceback", needs_root=True)
def _(c):
    """score --write on a run stored on a full disk."""
    disk = c.small_disk(free_kb=0, size_kb=512)
    (disk / ".filler").unlink()
    r = disk / "run"
    shutil.copytree(c.fx.eval_run, r)
    with open(disk / ".filler", "wb") as fh:  # fill what is left
        try:
            fh.write(b"\0" * (1 << 20))
        except OSError:
            pass
    c.protect(r / "result.json")
    return expect_error(c.cli("score", r, "--write"), "no space left")


# ------------------------------------------------------------------------------------------------
# leaderboard
def _runs(c: fw.Ctx, n_extra=0) -> fw.Path:
    """runs/: the evaluation run (label TARGET) and the two LoRA runs (A, B)."""
    runs = c.path("runs")
    runs.mkdir()
    shutil.copytree(c.fx.eval_run, runs / "target")
    fw.edit_json(runs / "target" / "result.json", lambda d: d.update(label="TARGET"))
    fw.edit_json(runs / "target" / "config.json", lambda d: d.update(label="TARGET"))
    shutil.copytree(c.fx.lora_a, runs / "a")
    shutil.copytree(c.fx.lora_b, runs / "b")
    return runs


def _board(c: fw.Ctx, runs, *extra, fmt="csv,md,html", bootstrap="0"):
    return c.cli("-q", "leaderboard", runs, "--board", c.fx.root / "board.toml", "--out", c.path("board"), "--format",
                 fmt, "--bootstrap", bootstrap, *extra)


def _board_rows(c: fw.Ctx) -> list[dict]:
    text = (c.path("board") / "leaderboard.csv").read_text()
    return list(csv.DictReader(io.StringIO(text)))


def _in_board(c: fw.Ctx, label: str) -> bool:
    p = c.path("board") / "leaderboard.csv"
    return p.exists() and label in p.read_text()


@case("leaderboard/ok", "leaderboard", "ordinary use", fast=True)
def _(c):
    """Three runs ranked into CSV, Markdown and HTML."""
    runs = _runs(c)
    out = _board(c, runs)
    return expect_ok(out, lambda: None if all(_in_board(c, l) for l in ("TARGET", "A", "B")) else "entries missing")


def _bad_value(cid: str, raw_old: str, raw_new: str, fast: bool = False, metric: str = "task_aggregate"):
    @case(f"leaderboard/value-{cid}", "leaderboard", "bad value", fast=fast)
    def _(c):
        runs = _runs(c)
        p = runs / "a" / "result.json"
        text = p.read_text()
        new = re.sub(rf'"{re.escape(metric)}": [^,\n]+', f'"{metric}": {raw_new}', text, count=1)
        p.write_text(new)
        out = _board(c, runs)

        def check():
            if _in_board(c, ",A,") or any(r.get("label") == "A" or r.get("Label") == "A" for r in _board_rows(c)):
                return f"record with {metric} = {raw_new} ranked"
            if "a/result.json" not in out.stderr and "a" not in out.stderr:
                return "dropped without a warning naming the file"
            return None

        return expect_error(out, "a/result.json", success_check=check)

    fw.CASES[f"leaderboard/value-{cid}"].doc = f"A result.json with {metric} = {raw_new}: refused with the file named."


for _cid, _new, _fast, _metric in [("nan", "NaN", True, "task_aggregate"), ("infinity", "Infinity", False, "task_aggregate"),
                                   ("negative-aggregate", "-3", False, "task_aggregate"),
                                   ("mia-score-7.5", "7.5", True, "mia_score"),
                                   ("aggregate-1e308", "1e308", False, "task_aggregate"),
                                   ("mia-auc-minus", "-0.2", False, "mia_auc"),
                                   ("regurgitation-2", "2.0", False, "forget/Task1/regurgitation"),
                                   ("string-metric", '"0.9"', False, "task_aggregate")]:
    _bad_value(_cid, "", _new, _fast, _metric)


@case("leaderboard/identical-copies", "leaderboard", "bad value", fast=True)
def _(c):
    """Five copies of one run folder: one seed, not five seeds with standard deviation 0."""
    runs = c.path("runs")
    for i in range(5):
        shutil.copytree(c.fx.lora_a, runs / f"copy{i}")
    out = _board(c, runs)

    def check():
        text = (c.path("board") / "leaderboard.csv").read_text()
        rows = _board_rows(c)
        seeds = [r.get("seeds") or r.get("n_seeds") or r.get("Seeds") for r in rows]
        if any(s and s.strip() not in ("1", "") for s in seeds):
            return f"copies counted as seeds: {seeds}"
        return None

    return expect_error(out, ("identical", "duplicate", "same run"), success_check=check)


@case("leaderboard/mixed-folder", "leaderboard", "interrupted run", fast=True)
def _(c):
    """A run folder whose samples.jsonl is another run's (an interrupted rerun): refused, not ranked."""
    runs = _runs(c)
    (runs / "a" / "samples.jsonl").write_bytes((c.fx.eval_run / "samples.jsonl").read_bytes())
    out = _board(c, runs, bootstrap="50")

    def check():
        return "mixed run ranked" if _in_board(c, "A") else None

    return expect_error(out, "a", success_check=check)


@case("leaderboard/result-tampered", "leaderboard", "interrupted run")
def _(c):
    """result.json's task_aggregate edited by hand (per-sample files unchanged)."""
    runs = _runs(c)
    fw.edit_json(runs / "a" / "result.json", lambda d: d["metrics"].update(task_aggregate=0.99))
    out = _board(c, runs)
    return expect_error(out, "a", success_check=lambda: "tampered record ranked" if _in_board(c, "A") else None)


@case("leaderboard/truncated-result", "leaderboard", "interrupted run")
def _(c):
    """A result.json cut short: skipped with a warning naming it."""
    runs = _runs(c)
    p = runs / "a" / "result.json"
    p.write_text(p.read_text()[:300])
    out = _board(c, runs)
    return expect_ok(out, lambda: None if "a/result.json" in out.stderr and not _in_board(c, ",A,") else
                     "no warning / still ranked")


@case("leaderboard/empty-folder", "leaderboard", "traceback")
def _(c):
    """A results folder with no result.json."""
    d = c.path("runs")
    d.mkdir()
    return expect_error(_board(c, d), ("no result", "result.json", "records"))


@case("leaderboard/missing-folder", "leaderboard", "traceback")
def _(c):
    """A results folder that does not exist."""
    return expect_error(_board(c, c.path("nope")), "nope")


@case("leaderboard/board-unknown", "leaderboard", "traceback")
def _(c):
    """--board semeval2026."""
    runs = _runs(c)
    out = c.cli("leaderboard", runs, "--board", "semeval2026", "--out", c.path("board"), "--bootstrap", "0")
    return expect_error(out, "semeval2026")


@case("leaderboard/board-toml-broken", "leaderboard", "traceback")
def _(c):
    """--board a TOML file with a syntax error."""
    runs = _runs(c)
    f = c.write("b.toml", 'name = "x"\nscore = \n')
    out = c.cli("leaderboard", runs, "--board", f, "--out", c.path("board"), "--bootstrap", "0")
    return expect_error(out, "b.toml")


@case("leaderboard/bootstrap-negative", "leaderboard", "traceback")
def _(c):
    """--bootstrap -1."""
    return expect_error(_board(c, _runs(c), bootstrap="-1"), "bootstrap")


@case("leaderboard/format-unknown", "leaderboard", "traceback")
def _(c):
    """--format pdf."""
    return expect_error(_board(c, _runs(c), fmt="pdf"), "pdf")


@case("leaderboard/out-existing-file", "leaderboard", "traceback")
def _(c):
    """--out an existing file."""
    runs = _runs(c)
    f = c.write("board", "x\n")
    c.protect(f)
    return expect_error(_board(c, runs), "board")


@case("leaderboard/out-is-results", "leaderboard", "ordinary use")
def _(c):
    """--out inside the results folder: the board files must not disturb the runs."""
    runs = _runs(c)
    c.protect(runs / "a", runs / "b", runs / "target")
    out = c.cli("-q", "leaderboard", runs, "--board", c.fx.root / "board.toml", "--out", runs, "--format", "csv,md",
                "--bootstrap", "0")
    return expect_ok(out, refusal_ok=True)


@case("leaderboard/full-disk", "leaderboard", "traceback", needs_root=True)
def _(c):
    """--out on a disk with 8 KB free (PNG plots need more)."""
    runs = _runs(c)
    disk = c.small_disk()
    out = c.cli("-q", "leaderboard", runs, "--board", c.fx.root / "board.toml", "--out", disk / "board",
                "--bootstrap", "0")
    return expect_error(out, "no space left")


# -- user text through every output format -----------------------------------------------------------
def _label_case(cid: str, label: str, checks, fmt: str = "csv,md,html", fast: bool = False, doc: str = ""):
    @case(f"leaderboard/inject-{cid}", "leaderboard", "security", fast=fast)
    def _(c):
        runs = _runs(c)
        for f in ("result.json", "config.json"):
            fw.edit_json(runs / "a" / f, lambda d: d.update(label=label))
        out = _board(c, runs, fmt=fmt)
        if out.rc != 0:
            return expect_ok(out)
        for name, check in checks:
            p = c.path("board") / name
            if not p.exists():
                return fw.MISLEADING, f"{name} not written"
            problem = check(p.read_text(errors="replace"), label)
            if problem:
                return fw.SECURITY, f"{name}: {problem}"
        return fw.CORRECT, "escaped / neutralised in every format"

    fw.CASES[f"leaderboard/inject-{cid}"].doc = doc or f"label {label!r} through CSV, Markdown, HTML."


def _raw_in(fmt_name: str, needle_fn):
    def check(text, label):
        needle = needle_fn(label)
        return f"raw {needle!r} written" if needle in text else None

    return check


def _csv_formula(text, label):
    for row in csv.reader(io.StringIO(text)):
        for cell in row:
            if cell and cell[0] in "=+-@\t\r" and label.strip()[:1] in "=+-@\t\r" and label.strip("\t\r")[:4] in cell:
                return f"cell starts with {cell[0]!r}: {cell[:40]!r}"
    return None


SCRIPT = "<script>alert(document.domain)</script>"
_label_case("script", SCRIPT, [("leaderboard.html", _raw_in("html", lambda l: "<script>alert")),
                               ("leaderboard.md", _raw_in("md", lambda l: "<script>alert"))], fast=True)
_label_case("img-onerror", '<img src=x onerror="alert(1)">', [("leaderboard.html", _raw_in("html", lambda l: "<img src=x")),
                                                            ("leaderboard.md", _raw_in("md", lambda l: "<img src=x"))])
_label_case("md-js-link", "[click](javascript:alert(1))", [("leaderboard.md", _raw_in("md", lambda l: "](javascript:")),
                                                           ("leaderboard.html", _raw_in("html", lambda l: 'href="javascript:'))])
_label_case("md-remote-image", "![x](http://attacker.example/pixel.png)",
            [("leaderboard.md", _raw_in("md", lambda l: "![x](http")),
             ("leaderboard.html", _raw_in("html", lambda l: '<img src="http://attacker'))])
_label_case("html-attribute", '" onmouseover="alert(1)', [("leaderboard.html", _raw_in("html", lambda l: '" onmouseover="'))])
_label_case("csv-equals", "=cmd|' /C calc'!A0", [("leaderboard.csv", _csv_formula)], fast=True)
_label_case("csv-plus", "+SUM(1,2)", [("leaderboard.csv", _csv_formula)])
_label_case("csv-minus", "-2+3+cmd|' /C calc'!A0", [("leaderboard.csv", _csv_formula)])
_label_case("csv-at", "@SUM(1,1)", [("leaderboard.csv", _csv_formula)])
_label_case("csv-tab", "\t=1+1", [("leaderboard.csv", _csv_formula)])
_label_case("csv-cr", "\r=1+1", [("leaderboard.csv", _csv_formula)])
_label_case("md-pipe", "a | b", [("leaderboard.md", lambda t, l: None if "a \\| b" in t or "a &#124; b" in t or
                                   "a | b" not in t else "unescaped '|' breaks the table row")],
            doc="a label with '|' must not split the Markdown table row")


@case("leaderboard/inject-mathtext-png", "leaderboard", "traceback", fast=True)
def _(c):
    r"""A label `$\foo{$` with PNG output: the plot must not parse it (and must not kill CSV/MD/HTML)."""
    runs = _runs(c)
    for f in ("result.json", "config.json"):
        fw.edit_json(runs / "a" / f, lambda d: d.update(label="$\\foo{$"))
    out = _board(c, runs, fmt="csv,md,html,png")
    return expect_ok(out, lambda: None if all((c.path("board") / f"leaderboard.{x}").exists()
                                              for x in ("csv", "md", "html")) else "text outputs missing")


@case("leaderboard/inject-method-name", "leaderboard", "security")
def _(c):
    """A method name (from a plugin or a hand-made record) with HTML."""
    runs = _runs(c)
    fw.edit_json(runs / "a" / "result.json", lambda d: d["method"].update(name="<script>alert(2)</script>"))
    out = _board(c, runs)
    if out.rc != 0:
        return expect_ok(out)
    for f in ("leaderboard.html", "leaderboard.md"):
        if "<script>alert(2)" in (c.path("board") / f).read_text():
            return fw.SECURITY, f"{f}: raw script from the method name"
    return fw.CORRECT, "escaped"
