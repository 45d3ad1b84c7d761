"""Cases, their context and the oracles that give each outcome its verdict.

Verdicts (what the user experienced):

``clear error``   the command refused with exit status 2 and one line naming what is wrong (the file,
                  record, key or value the case says must be named), no traceback -- and nothing
                  was damaged;
``correct``       it did the right thing (its output checked by the case);
``traceback``     a bare Python traceback for an ordinary mistake, or no answer within the time
                  limit (a hang or a runaway allocation, which ends the same way for the user);
``silently wrong``  exit 0 (or a later command accepting what it left) with wrong or unjustified
                  numbers: bad input accepted, a stale or mixed run taken as finished, a bad value
                  ranked;
``data lost``     a file the user had (a model, benchmark, parent run, an older finished run,
                  good metrics) destroyed or overwritten;
``security``      user text executed (a template rendered), or written raw into HTML/Markdown/CSV
                  where a browser or spreadsheet would act on it;
``misleading message``  a refusal that blames the wrong thing, names the wrong line, lacks what
                  it must name, exits with a status other than 2, or a partial folder left under
                  the run's own name (it looks like a run).

Priority when several apply: security > data lost > traceback > the case's own oracle.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import engine

CLEAR = "clear error"
CORRECT = "correct"
TRACEBACK = "traceback"
WRONG = "silently wrong"
LOST = "data lost"
SECURITY = "security"
MISLEADING = "misleading message"
SKIPPED = "skipped"
SETUP = "audit setup failed"
VERDICTS = (CLEAR, CORRECT, TRACEBACK, WRONG, LOST, SECURITY, MISLEADING)

#: Issue 14's classes (each case belongs to one).
CLASSES = ("interrupted run", "stale rerun", "bad value", "identical sets", "empty subject", "destroying data",
           "security", "traceback", "ordinary use")
COMMANDS = ("world", "target", "evaluate", "unlearn", "run", "merge", "score", "leaderboard", "analyze", "demo",
            "methods", "metrics", "schema", "cli")


class SetupFailed(Exception):
    pass


@dataclass
class Case:
    id: str
    command: str
    cls: str
    fn: Callable[["Ctx"], tuple[str, str]]
    doc: str = ""
    needs_root: bool = False
    fast: bool = False
    """In the quick subset (``--quick``, and the pytest smoke test)."""


CASES: dict[str, Case] = {}


def case(id: str, command: str, cls: str, needs_root: bool = False, fast: bool = False):
    assert command in COMMANDS, command
    assert cls in CLASSES, cls

    def deco(fn):
        if id in CASES:
            raise ValueError(f"duplicate case id {id}")
        CASES[id] = Case(id=id, command=command, cls=cls, fn=fn, doc=(fn.__doc__ or "").strip(),
                         needs_root=needs_root, fast=fast)
        return fn

    return deco


@dataclass
class Ctx:
    case: Case
    dir: Path
    fx: Any
    mode: str = "fork"
    outcomes: list[engine.Outcome] = field(default_factory=list)
    protected: dict[Path, dict[str, str]] = field(default_factory=dict)
    mounts: list[Path] = field(default_factory=list)
    n: int = 0

    # -- inputs ------------------------------------------------------------------------------------
    def copy(self, name: str, as_name: str | None = None) -> Path:
        """A private copy of fixture ``name`` in the case folder."""
        dst = self.dir / (as_name or name)
        src = self.fx.root / name
        if src.is_dir():
            shutil.copytree(src, dst, symlinks=True)
        else:
            shutil.copy2(src, dst)
        return dst

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    def write(self, rel: str, text: str | bytes) -> Path:
        p = self.dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(text, encoding="utf-8")
        return p

    def protect(self, *paths: Path) -> None:
        """These files must be byte-identical after the case (else: data lost)."""
        for p in paths:
            self.protected[Path(p)] = engine.tree_hashes(Path(p))

    def small_disk(self, name: str = "disk", free_kb: int = 8, size_kb: int = 256) -> Path:
        if not engine.can_mount():
            raise SetupFailed("needs root to mount a tmpfs")
        p = engine.mount_small_disk(self.dir / name, size_kb=size_kb, free_kb=free_kb)
        self.mounts.append(p)
        return p

    # -- running ----------------------------------------------------------------------------------
    def cli(self, *argv: Any, kill: tuple | None = None, sig: int = signal.SIGKILL, probe_work: bool = False,
            timeout: float = 120, env: dict[str, str] | None = None, setup: bool = False) -> engine.Outcome:
        self.n += 1
        tag = f"step{self.n}"
        inv = engine.Invocation(argv=[str(a) for a in argv], cwd=str(self.dir),
                                stdout=str(self.dir / f".{tag}.out"), stderr=str(self.dir / f".{tag}.err"),
                                env=env or {}, kill=kill, signal=sig, probe_work=probe_work, timeout=timeout)
        out = engine.run(inv, mode=self.mode)
        if setup and out.rc != 0:
            raise SetupFailed(f"setup command {' '.join(inv.argv[:3])}… failed (rc {out.rc}): "
                              f"{out.stderr.strip().splitlines()[-1:] if out.stderr.strip() else ''}")
        if not setup:
            self.outcomes.append(out)
        return out

    # -- generic checks ---------------------------------------------------------------------------
    def damaged(self) -> list[str]:
        bad = []
        for p, before in self.protected.items():
            after = engine.tree_hashes(p)
            # Files added beside the protected ones are pollution (the case's own oracle judges it);
            # a protected file changed or gone is data lost.
            changed = sorted(k for k in before if after.get(k) != before[k])
            if changed:
                bad.append(f"{p.name}: {', '.join(changed[:4])}")
        return bad

    def canary(self) -> bool:
        return any(self.dir.rglob("PWNED*"))


# ------------------------------------------------------------------------------------------------
# reading an outcome
ERROR_LINE = re.compile(r"^(unlearnbench|usage:)?.*\berror\b:", re.IGNORECASE)


def error_lines(out: engine.Outcome) -> list[str]:
    return [line for line in out.stderr.splitlines() if re.match(r"^unlearnbench\b[^:]*: error: ", line)]


def _has(text: str, mention: str | tuple[str, ...]) -> bool:
    options = (mention,) if isinstance(mention, str) else mention
    return any(str(m).lower() in text.lower() for m in options)


def verbose(out: engine.Outcome) -> bool:
    return "-v" in out.argv or "--verbose" in out.argv or "-vv" in out.argv


def expect_error(out: engine.Outcome, *mentions: str | tuple[str, ...], on_success: str = WRONG,
                 success_check: Callable[[], str | None] | None = None, on_work: str = MISLEADING,
                 why: str = "") -> tuple[str, str]:
    """The right answer is a refusal naming ``mentions`` (each a string or a tuple of alternatives)."""
    if out.timed_out:
        return TRACEBACK, f"no answer within the time limit ({out.seconds:.0f}s){': ' + why if why else ''}"
    if out.traceback and not verbose(out):
        return TRACEBACK, _last_line(out)
    if out.work_started:
        return on_work, "model work started before the bad input was refused"
    if out.rc == 2:
        lines = error_lines(out)
        if not lines:
            return MISLEADING, f"exit 2 without an 'unlearnbench …: error:' line: {_last_line(out)}"
        text = "\n".join(lines)
        missing = [m for m in mentions if not _has(text, m)]
        if missing:
            return MISLEADING, f"error does not name {missing}: {lines[0][:300]}"
        return CLEAR, lines[0][:300]
    if out.rc == 0:
        if success_check is not None:
            problem = success_check()
            if problem is None:
                return CORRECT, "accepted, and the output is right"
            return on_success, problem
        return on_success, why or f"accepted (exit 0): {_last_line(out, stream='stdout')}"
    return MISLEADING, f"exit status {out.rc} (expected 2): {_last_line(out)}"


def expect_ok(out: engine.Outcome, check: Callable[[], str | None] | None = None, refusal_ok: bool = False,
              on_bad_output: str = WRONG) -> tuple[str, str]:
    """The right answer is success with a right output (``check`` returns None, or the problem)."""
    if out.timed_out:
        return TRACEBACK, f"no answer within the time limit ({out.seconds:.0f}s)"
    if out.traceback and not verbose(out):
        return TRACEBACK, _last_line(out)
    if out.rc == 0:
        problem = check() if check else None
        return (CORRECT, "ok") if problem is None else (on_bad_output, problem)
    if out.rc == 2 and error_lines(out):
        return (CLEAR if refusal_ok else MISLEADING), error_lines(out)[0][:300]
    return MISLEADING, f"exit status {out.rc}: {_last_line(out)}"


def _last_line(out: engine.Outcome, stream: str = "stderr") -> str:
    text = out.stderr if stream == "stderr" else out.stdout
    if stream == "stderr" and out.traceback:
        # The exception line: the last unindented line after the last traceback header.
        tail = text.rsplit("Traceback (most recent call last)", 1)[1].splitlines()
        for line in reversed(tail):
            if line.strip() and not line.startswith((" ", "\t")) and "%|" not in line:
                return line[:300]
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1][:300] if lines else "(no output)"


# ------------------------------------------------------------------------------------------------
# run folders
def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]


def run_problem(run: Path, label: str | None = None, n_samples: int | None = 13, n_mia: int | None = 6,
                need_model: bool = False) -> str | None:
    """Why ``run`` is not a complete, self-consistent run folder (None when it is).

    Complete: result.json and config.json readable, per-sample files with the expected row counts.
    Consistent: every metric recomputed from samples.jsonl/mia.jsonl equals result.json's; the
    result and config carry the same label (``label`` when given); result.json's counts match.
    """
    from metrics import compute_metrics

    try:
        result = read_json(run / "result.json")
    except (OSError, ValueError) as exc:
        return f"result.json unreadable ({type(exc).__name__})"
    try:
        config = read_json(run / "config.json")
    except (OSError, ValueError) as exc:
        return f"config.json unreadable ({type(exc).__name__})"
    if label is not None and (result.get("label") != label or config.get("label") != label):
        return f"labels: result {result.get('label')!r}, config {config.get('label')!r}, expected {label!r}"
    if result.get("label") != config.get("label") and config.get("label") is not None:
        return f"result label {result.get('label')!r} but config label {config.get('label')!r}"
    try:
        samples = _jsonl(run / "samples.jsonl")
    except (OSError, ValueError) as exc:
        return f"samples.jsonl unreadable ({type(exc).__name__})"
    mia = None
    if (run / "mia.jsonl").exists():
        try:
            mia = _jsonl(run / "mia.jsonl")
        except (OSError, ValueError) as exc:
            return f"mia.jsonl unreadable ({type(exc).__name__})"
    if n_samples is not None and len(samples) != n_samples:
        return f"samples.jsonl has {len(samples)} rows, expected {n_samples}"
    if n_mia is not None and (mia is None or len(mia) != n_mia):
        return f"mia.jsonl has {None if mia is None else len(mia)} rows, expected {n_mia}"
    try:
        recomputed = compute_metrics(samples, mia, mode=result.get("settings", {}).get("mode", "semeval2025"))
    except Exception as exc:
        return f"metrics cannot be recomputed from the per-sample files ({type(exc).__name__}: {exc})"
    stored = result.get("metrics", {})
    for name, value in recomputed.items():
        if name.startswith(("mmlu", "utility", "final_score")):
            continue
        old = stored.get(name)
        if (value is None) != (old is None) or (value is not None and not math.isclose(value, old, rel_tol=1e-9,
                                                                                       abs_tol=1e-12)):
            return f"result.json {name} = {old!r} but the per-sample files give {value!r}"
    settings = result.get("settings", {})
    cfg_settings = config.get("settings") or config.get("eval") or {}
    for key in ("max_new_tokens", "mode", "min_k"):
        if key in cfg_settings and key in settings and cfg_settings[key] != settings[key]:
            return f"config.json {key} = {cfg_settings[key]!r} but result.json {key} = {settings[key]!r}"
    if need_model and not any((run / "model").glob("*.safetensors")):
        return "model/ holds no weights"
    return None


def expect_transaction(c: Ctx, out: engine.Outcome, target: Path, before: dict[str, str], new_label: str,
                       rerun: Callable[[], engine.Outcome] | None = None, need_model: bool = False,
                       n_mia: int | None = 6) -> tuple[str, str]:
    """After an interrupted command: ``target`` must be the old complete run (byte-identical), the
    new complete run, or absent (when there was none) -- plus at most clearly named leftovers."""
    if out.traceback and out.rc not in (130, -2, -9) and not out.injected:
        return TRACEBACK, _last_line(out)
    after = engine.tree_hashes(target)
    # Hidden entries inside the run folder (a temporary file or folder of an interrupted atomic
    # write) are not part of the run: reported, not compared.
    leftovers = sorted({p.split("/")[0] for p in after if any(x.startswith(".") for x in p.split("/"))})
    siblings = sorted(p.name for p in target.parent.iterdir()
                      if p.name != target.name and p.name.startswith(".") and target.name in p.name)
    note_left = (f"; leftovers {leftovers + siblings}" if leftovers or siblings else "")
    now = _visible(after)
    old = _visible(before)
    reached = f" [{out.injected or 'kill point not reached'}]"
    if old and now == old:
        return CORRECT, "the old complete run is untouched" + note_left + reached
    if not now:
        if old:
            return LOST, "the old run is gone and no new one took its place" + note_left + reached
        return CORRECT, "nothing under the run's name" + note_left + reached
    problem = run_problem(target, label=new_label, need_model=need_model, n_mia=n_mia)
    if problem is None:
        return CORRECT, "the new complete run" + note_left + reached
    has_result = (target / "result.json").exists()
    if old:
        lost = [k for k in old if k not in now or now[k] != old[k]]
        if has_result:
            return WRONG, f"mixed folder ranked as a run: {problem}" + reached
        return LOST, f"old run destroyed ({', '.join(lost[:3])}), no complete new run: {problem}" + reached
    if has_result:
        return WRONG, f"partial folder with a result.json: {problem}" + reached
    if rerun is not None:
        again = rerun()
        if again.rc == 0 and "skip" in (again.stdout + again.stderr).lower():
            return WRONG, f"partial folder taken as a finished run by the rerun: {problem}" + reached
    return MISLEADING, f"partial folder left under the run's own name ({sorted(now)[:4]})" + reached


def _visible(hashes: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in hashes.items() if not any(x.startswith(".") for x in k.split("/"))}


def finish(c: Ctx, verdict: tuple[str, str]) -> tuple[str, str]:
    """Generic checks over the case's own verdict (priority: security, data lost)."""
    if c.canary():
        return SECURITY, "a template payload ran a shell command (PWNED file created)"
    damaged = c.damaged()
    if damaged:
        return LOST, "changed: " + "; ".join(damaged)
    return verdict


# ------------------------------------------------------------------------------------------------
# helpers used by many cases
def jsonl_text(rows: Iterable[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def edit_json(path: Path, fn: Callable[[dict], Any]) -> None:
    data = read_json(path)
    fn(data)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def edit_raw_json(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
