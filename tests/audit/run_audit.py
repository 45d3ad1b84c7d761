#!/usr/bin/env python
"""The hostile, clumsy user's audit of every unlearnbench command (issue 14).

    cd REPO && PYTHONPATH=$PWD python tests/audit/run_audit.py --out scratch/audit [--jobs 2]
        [--only REGEX] [--quick] [--list] [--mode fork|subprocess]

Builds the shared inputs (tiny models, the mini benchmark, finished runs), then runs every case of
the corpus (``corpus_*.py``), each in its own folder under OUT/cases/, and writes
OUT/results.jsonl (one line per case: verdict, note, the command lines with exit status and output
tails) and OUT/summary.md (counts per verdict, per class and per command). Verdicts are defined in
``framework.py``. Exit status 0 whatever the verdicts (it is a measurement, not a test).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
REPO = HERE.parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
for _v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_v, "1")

import engine  # noqa: E402
import fixtures  # noqa: E402
import framework as fw  # noqa: E402


def load_corpus() -> dict[str, fw.Case]:
    import importlib

    for path in sorted(HERE.glob("corpus_*.py")):
        importlib.import_module(path.stem)
    return fw.CASES


_FX = None
_FX_HASHES: dict = {}
_OUT = None
_MODE = "fork"


def run_case(case_id: str) -> dict:
    case = fw.CASES[case_id]
    folder = _OUT / "cases" / case_id.replace("/", "__")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    ctx = fw.Ctx(case=case, dir=folder, fx=_FX, mode=_MODE)
    started = time.monotonic()
    try:
        if case.needs_root and not engine.can_mount():
            verdict, note = fw.SKIPPED, "needs root (tmpfs mount)"
        else:
            verdict, note = fw.finish(ctx, case.fn(ctx))
    except fw.SetupFailed as exc:
        verdict, note = fw.SETUP, str(exc)
    except Exception as exc:  # a bug in the case itself: reported, never counted as a verdict
        import traceback

        verdict, note = fw.SETUP, f"{type(exc).__name__}: {exc} | {traceback.format_exc()[-600:]}"
    finally:
        for mount in ctx.mounts:
            engine.unmount(mount)
    damaged = sorted(top for top, hashes in _FX_HASHES.items()
                     if {k: v for k, v in engine.tree_hashes(_FX.root / top).items() if k in hashes} != hashes)
    if damaged:  # a case wrote into the shared inputs: its verdict and every later one are suspect
        verdict, note = fw.SETUP, f"the case changed shared fixtures {damaged[:4]} (the audit must copy them)"
    return {"id": case.id, "command": case.command, "class": case.cls, "verdict": verdict, "note": note,
            "seconds": round(time.monotonic() - started, 2), "doc": case.doc,
            "steps": [o.to_json() for o in ctx.outcomes]}


def _init_worker() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def summarise(rows: list[dict], title: str) -> str:
    verdicts = list(fw.VERDICTS) + [fw.SKIPPED, fw.SETUP]
    total = Counter(r["verdict"] for r in rows)
    lines = [f"# {title}", "", f"{len(rows)} cases.", "", "| verdict | cases |", "|---|---|"]
    lines += [f"| {v} | {total[v]} |" for v in verdicts if total[v] or v in fw.VERDICTS]
    for key, label in (("class", "class"), ("command", "command")):
        groups: dict[str, Counter] = defaultdict(Counter)
        for r in rows:
            groups[r[key]][r["verdict"]] += 1
        shown = [v for v in verdicts if any(g[v] for g in groups.values())]
        lines += ["", f"## per {label}", "", f"| {label} | n | " + " | ".join(shown) + " |",
                  "|---|---|" + "---|" * len(shown)]
        for name in sorted(groups):
            g = groups[name]
            lines.append(f"| {name} | {sum(g.values())} | " + " | ".join(str(g[v] or "") for v in shown) + " |")
    lines += ["", "## not correct and not a clear error", ""]
    for r in sorted(rows, key=lambda r: (r["verdict"], r["id"])):
        if r["verdict"] not in (fw.CORRECT, fw.CLEAR):
            lines.append(f"- **{r['verdict']}** `{r['id']}`: {r['note'][:400]}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    global _FX, _OUT, _MODE
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(REPO / "scratch" / "audit"), help="output folder (rewritten)")
    p.add_argument("--jobs", type=int, default=2, help="cases in parallel (default 2)")
    p.add_argument("--only", default=None, help="regular expression over case ids")
    p.add_argument("--quick", action="store_true", help="only the quick subset")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--mode", choices=("fork", "subprocess"), default="fork")
    p.add_argument("--fixtures", default=None, help="reuse a fixtures folder built by an earlier run")
    p.add_argument("--title", default="unlearnbench audit")
    args = p.parse_args(argv)

    cases = load_corpus()
    ids = [i for i in cases if (not args.only or re.search(args.only, i)) and (not args.quick or cases[i].fast)]
    if args.list:
        for i in ids:
            c = cases[i]
            print(f"{i:<58} {c.command:<12} {c.cls:<16} {c.doc.splitlines()[0] if c.doc else ''}")
        print(f"{len(ids)} cases")
        return 0

    out = Path(args.out).resolve()
    for mount in engine.mounted_under(out):
        engine.unmount(mount)
    if out.exists():
        shutil.rmtree(out / "cases", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    _OUT, _MODE = out, args.mode
    t0 = time.monotonic()
    print("importing the harness and its libraries …", flush=True)
    engine.preload()
    if args.fixtures:
        _FX = fixtures.Fixtures(Path(args.fixtures).resolve())
    else:
        shutil.rmtree(out / "fixtures", ignore_errors=True)
        print("building fixtures …", flush=True)
        _FX = fixtures.build(out / "fixtures", mode=args.mode)
    for top in sorted(_FX.root.iterdir()):
        if top.is_dir():
            _FX_HASHES[top.name] = engine.tree_hashes(top)
    print(f"ready after {time.monotonic() - t0:.0f}s; running {len(ids)} cases with {args.jobs} job(s)", flush=True)

    rows = []
    results = out / "results.jsonl"
    with results.open("w") as fh:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(args.jobs, initializer=_init_worker, maxtasksperchild=40) as pool:
            for i, row in enumerate(pool.imap_unordered(run_case, ids), 1):
                rows.append(row)
                fh.write(json.dumps(row) + "\n")
                fh.flush()
                print(f"[{i}/{len(ids)}] {row['verdict']:<18} {row['id']} ({row['seconds']:.1f}s) "
                      f"{row['note'][:140]}", flush=True)
    for mount in engine.mounted_under(out):
        engine.unmount(mount)
    rows.sort(key=lambda r: r["id"])
    elapsed = time.monotonic() - t0
    summary = summarise(rows, args.title) + f"\nWall time {elapsed:.0f}s ({args.jobs} job(s), mode {args.mode}).\n"
    (out / "summary.md").write_text(summary)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
