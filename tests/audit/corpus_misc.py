"""world, target, methods/metrics/schema, analyze, demo and the top-level command line."""

from __future__ import annotations

import json
import signal

import engine
import fixtures
import framework as fw
from framework import case, expect_error, expect_ok


# -- catalog -------------------------------------------------------------------------------------
@case("methods/list", "methods", "ordinary use", fast=True)
def _(c):
    """`methods` lists the built-in methods."""
    out = c.cli("methods")
    return expect_ok(out, lambda: None if all(m in out.stdout for m in ("npo", "rmu", "grad_ascent")) else "missing")


@case("methods/params", "methods", "ordinary use")
def _(c):
    """`methods --params` lists defaults."""
    out = c.cli("methods", "--params")
    return expect_ok(out, lambda: None if "learning_rate" in out.stdout else "no parameters listed")


@case("metrics/list", "metrics", "ordinary use")
def _(c):
    """`metrics` lists metric directions."""
    out = c.cli("metrics")
    return expect_ok(out, lambda: None if "mia_auc" in out.stdout else "mia_auc missing")


@case("schema/stdout", "schema", "ordinary use")
def _(c):
    """`schema` prints valid JSON."""
    out = c.cli("schema")

    def check():
        try:
            json.loads(out.stdout)
        except ValueError as exc:
            return f"not JSON: {exc}"
        return None

    return expect_ok(out, check)


@case("schema/out-is-folder", "schema", "traceback")
def _(c):
    """schema --out an existing folder."""
    d = c.path("d")
    d.mkdir()
    return expect_error(c.cli("schema", "--out", d), "d")


@case("schema/out-full-disk", "schema", "traceback", needs_root=True)
def _(c):
    """schema --out on a disk with 1 KB free."""
    disk = c.small_disk(free_kb=1)
    out = c.cli("schema", "--out", disk / "schema.json")
    v = expect_error(out, "no space left")
    if v[0] == fw.CLEAR and (disk / "schema.json").exists():
        return fw.MISLEADING, "half-written schema.json left"
    return v


@case("cli/no-command", "cli", "ordinary use")
def _(c):
    """`unlearnbench` with no command: help, exit 2."""
    out = c.cli()
    return (fw.CORRECT, "help shown") if out.rc == 2 and "usage" in (out.stdout + out.stderr) else \
        (fw.MISLEADING, f"rc {out.rc}")


@case("cli/unknown-command", "cli", "traceback")
def _(c):
    """`unlearnbench evalute` (typo)."""
    return expect_error(c.cli("evalute"), "evalute")


@case("cli/missing-required", "cli", "traceback")
def _(c):
    """evaluate without --out."""
    return expect_error(c.cli("evaluate", "--model", c.fx.model, "--data", c.fx.bench), "--out")


# -- world -----------------------------------------------------------------------------------------
@case("world/ok", "world", "ordinary use", fast=True)
def _(c):
    """A fresh world: world.json's hashes match its files."""
    out = c.cli("world", "--out", c.path("w"))
    return expect_ok(out, lambda: _world_problem(c.path("w")))


def _world_problem(w):
    import hashlib

    try:
        manifest = json.loads((w / "world.json").read_text())
    except (OSError, ValueError) as exc:
        return f"world.json unreadable ({exc})"
    for name, digest in manifest["files"].items():
        p = w / name
        if not p.exists():
            return f"{name} missing"
        if hashlib.sha256(p.read_bytes()).hexdigest() != digest:
            return f"{name} does not match world.json"
    return None


@case("world/out-existing-file", "world", "traceback")
def _(c):
    """world --out an existing file."""
    f = c.write("w", "x")
    c.protect(f)
    return expect_error(c.cli("world", "--out", f), "w")


@case("world/out-other-folder", "world", "destroying data")
def _(c):
    """world --out a non-empty folder that is not a world."""
    c.write("d/notes.txt", "x")
    c.protect(c.path("d"))
    return expect_error(c.cli("world", "--out", c.path("d")), "d")


@case("world/out-is-model", "world", "destroying data")
def _(c):
    """world --out the model folder."""
    m = c.copy("model")
    c.protect(m)
    return expect_error(c.cli("world", "--out", m), "model")


@case("world/rewrite-same", "world", "ordinary use")
def _(c):
    """world --out an existing world, same seed: byte-identical."""
    w = c.copy("world")
    c.protect(w)
    return expect_ok(c.cli("world", "--out", w, "--seed", "3"))


@case("world/rewrite-other-seed", "world", "ordinary use")
def _(c):
    """world --out an existing world with another seed: a consistent new world."""
    w = c.copy("world")
    out = c.cli("world", "--out", w, "--seed", "4")
    return expect_ok(out, lambda: _world_problem(w))


@case("world/size-unknown", "world", "traceback")
def _(c):
    """world --size huge."""
    return expect_error(c.cli("world", "--out", c.path("w"), "--size", "huge"), "huge")


@case("world/seed-word", "world", "traceback")
def _(c):
    """world --seed abc."""
    return expect_error(c.cli("world", "--out", c.path("w"), "--seed", "abc"), "abc")


@case("world/full-disk", "world", "traceback", needs_root=True)
def _(c):
    """world --out on a disk with 8 KB free."""
    disk = c.small_disk()
    out = c.cli("world", "--out", disk / "w")
    v = expect_error(out, "no space left")
    if v[0] == fw.CLEAR and (disk / "w").exists() and any((disk / "w").iterdir()):
        return fw.MISLEADING, "half-written world left"
    return v


for _sig_name, _sig in (("sigkill", signal.SIGKILL), ("sigint", signal.SIGINT)):
    for _point in ("retain.jsonl", "nonmember.jsonl"):
        def _make(sig=_sig, point=_point, sig_name=_sig_name):
            @case(f"world/kill-{sig_name}-after-{point.split('.')[0]}-over-old", "world", "interrupted run")
            def _(c):
                w = c.copy("world")
                before = engine.tree_hashes(w)
                out = c.cli("world", "--out", w, "--seed", "4", kill=("after_write", point), sig=sig)
                now = engine.without_leftovers(engine.tree_hashes(w))
                if now == engine.without_leftovers(before):
                    return fw.CORRECT, "old world untouched"
                problem = _world_problem(w)
                if problem is None:
                    return fw.CORRECT, "complete new world"
                return fw.WRONG, f"mixed world loads as a benchmark: {problem}"

            fw.CASES[f"world/kill-{sig_name}-after-{point.split('.')[0]}-over-old"].doc = (
                f"{sig_name.upper()} after {point} while rewriting a world with another seed.")

        _make()


# -- target --------------------------------------------------------------------------------------
@case("target/world-missing", "target", "traceback")
def _(c):
    """target --world a folder that does not exist."""
    return expect_error(c.cli("target", "--world", c.path("nope"), "--out", c.path("t")), "nope")


@case("target/world-not-a-world", "target", "traceback")
def _(c):
    """target --world a benchmark that is not a generated world (no utility facts)."""
    return expect_error(c.cli("target", "--world", c.fx.bench, "--out", c.path("t")), ("facts", "world"))


@case("target/out-existing-file", "target", "traceback")
def _(c):
    """target --out an existing file."""
    f = c.write("t", "x")
    c.protect(f)
    return expect_error(c.cli("target", "--world", c.fx.world, "--out", f, probe_work=True), "t",
                        on_work=fw.WRONG)


@case("target/out-is-world", "target", "destroying data")
def _(c):
    """target --out the world folder itself."""
    w = c.copy("world")
    c.protect(w)
    return expect_error(c.cli("target", "--world", w, "--out", w, probe_work=True), "world", on_work=fw.WRONG)


@case("target/out-inside-world", "target", "destroying data")
def _(c):
    """target --out a folder inside the world (the model would change the world's content hash)."""
    w = c.copy("world")
    c.protect(w)
    return expect_error(c.cli("target", "--world", w, "--out", w / "model", probe_work=True), "world",
                        on_work=fw.WRONG)


@case("target/size-unknown", "target", "traceback")
def _(c):
    """target --size tiny."""
    return expect_error(c.cli("target", "--world", c.fx.world, "--out", c.path("t"), "--size", "tiny"), "tiny")


@case("target/world-bad-line", "target", "traceback")
def _(c):
    """The world's forget.jsonl has a broken line 3."""
    w = c.copy("world")
    lines = (w / "forget.jsonl").read_text().splitlines()
    lines[2] = lines[2][:20]
    (w / "forget.jsonl").write_text("\n".join(lines) + "\n")
    return expect_error(c.cli("target", "--world", w, "--out", c.path("t"), probe_work=True), "forget.jsonl",
                        "line 3")


def _fake_target(c, w):
    """A target folder that claims (target.json cache key) to be trained on world ``w``."""
    t = c.copy("model", "t")

    def write_info(world, out):
        target = fixtures.lib("harness.synthetic.target", "harness.target")
        key = target.cache_key(world, target.CONFIGS["small"], 0)
        (out / "target.json").write_text(json.dumps({"cache_key": key, "world": str(world), "parameters": 1000,
                                                     "train_seconds": 1.0}))
        (out / "target_report.json").write_text(json.dumps({"gates": {}, "values": {}, "passed": True, "failed": []}))

    engine.call_forked(write_info, w, t)
    return t


@case("target/reuse-up-to-date", "target", "stale rerun")
def _(c):
    """A target recorded for this very world is reused without training."""
    w = c.copy("world")
    t = _fake_target(c, w)
    out = c.cli("target", "--world", w, "--out", t, probe_work=True)
    if out.work_started:
        return fw.MISLEADING, "retrained an up-to-date target"
    return expect_ok(out)


@case("target/stale-world-changed", "target", "stale rerun")
def _(c):
    """The world's forget.jsonl changed after the target was trained: it must be retrained."""
    w = c.copy("world")
    t = _fake_target(c, w)
    p = w / "forget.jsonl"
    p.write_text(p.read_text().replace("a", "e", 3))
    out = c.cli("target", "--world", w, "--out", t, probe_work=True)
    if out.work_started:
        return fw.CORRECT, "retraining started"
    return expect_error(out, ("changed", "stale"), on_success=fw.WRONG,
                        why="an out-of-date target reused")


@case("target/stale-weights-replaced", "target", "stale rerun")
def _(c):
    """The target's weights were replaced by other weights after training: not reused as the target."""
    w = c.copy("world")
    t = _fake_target(c, w)
    (t / "model.safetensors").write_bytes((c.fx.model2 / "model.safetensors").read_bytes())
    # The fake target's own weights are not the trained ones either; what matters: a record of
    # which weights were produced, so a replaced file is noticed.
    out = c.cli("target", "--world", w, "--out", t, probe_work=True)
    if out.work_started:
        return fw.CORRECT, "retraining started"
    return expect_error(out, ("weights", "changed", "manifest"), on_success=fw.WRONG,
                        why="replaced weights reused as the trained target")


# -- analyze ---------------------------------------------------------------------------------------
@case("analyze/curves-ok", "analyze", "ordinary use")
def _(c):
    """analyze curves on a run (written next to it with --out)."""
    out = c.cli("analyze", "curves", c.fx.lora_a, "--out", c.path("a"))
    return expect_ok(out, lambda: None if (c.path("a") / "curves.png").exists() else "no plot")


@case("analyze/curves-missing", "analyze", "traceback")
def _(c):
    """analyze curves on a folder that does not exist."""
    return expect_error(c.cli("analyze", "curves", c.path("nope")), "nope")


@case("analyze/curves-no-log", "analyze", "traceback")
def _(c):
    """analyze curves on an evaluation run (no train_log.jsonl)."""
    return expect_error(c.cli("analyze", "curves", c.fx.eval_run, "--out", c.path("a")), "train_log")


@case("analyze/curves-broken-log", "analyze", "traceback")
def _(c):
    """train_log.jsonl with a broken line 2."""
    r = c.copy("lora_a")
    lines = (r / "train_log.jsonl").read_text().splitlines()
    lines[1] = lines[1][:15]
    (r / "train_log.jsonl").write_text("\n".join(lines) + "\n")
    return expect_error(c.cli("analyze", "curves", r, "--out", c.path("a")), "train_log.jsonl", "line 2")


@case("analyze/curves-mathtext-name", "analyze", "traceback")
def _(c):
    r"""analyze curves on a run folder named `$\foo{$` (the name goes into the plot title)."""
    r = c.copy("lora_a", "$\\foo{$")
    out = c.cli("analyze", "curves", r, "--out", c.path("a"))
    return expect_ok(out)


@case("analyze/curves-out-is-model", "analyze", "destroying data")
def _(c):
    """analyze curves --out the run's model folder."""
    r = c.copy("lora_a")
    c.protect(r / "model")
    out = c.cli("analyze", "curves", r, "--out", r / "model")
    return expect_error(out, "model", on_success=fw.CORRECT, success_check=lambda: None)


@case("analyze/angles-no-snapshots", "analyze", "traceback")
def _(c):
    """analyze angles on a run trained without snapshots."""
    return expect_error(c.cli("analyze", "angles", c.fx.lora_a, "--out", c.path("a")), "snapshot")


@case("analyze/merges-nothing", "analyze", "traceback")
def _(c):
    """analyze merges with neither --parents nor runs."""
    return expect_error(c.cli("analyze", "merges", "--out", c.path("a")), "parents")


@case("analyze/density-word", "analyze", "traceback")
def _(c):
    """analyze density --densities 0.2,abc."""
    out = c.cli("analyze", "density", "--parents", c.fx.lora_a, c.fx.lora_b, "--densities", "0.2,abc", "--out",
                c.path("a"), "--max-new-tokens", "4", "--no-progress", "--no-cache")
    return expect_error(out, "abc")


@case("analyze/merges-how-unknown", "analyze", "traceback")
def _(c):
    """analyze merges --how ties,average."""
    out = c.cli("analyze", "merges", "--parents", c.fx.lora_a, c.fx.lora_b, "--how", "ties,average", "--out",
                c.path("a"), "--max-new-tokens", "4", "--no-progress", "--no-cache")
    return expect_error(out, "average")


@case("analyze/merges-stale-parent", "analyze", "stale rerun")
def _(c):
    """analyze merges reuses its merged runs; after a parent is retrained they must be redone."""
    a, b = c.copy("lora_a"), c.copy("lora_b")
    args = ["analyze", "merges", "--parents", a, b, "--how", "ties", "--out", c.path("an"), "--max-new-tokens",
            "4", "--no-progress", "--no-cache"]
    c.cli(*args, setup=True)
    # Retrain parent a with another learning rate into the same folder.
    c.cli("unlearn", "--method", "grad_ascent", "--model", c.fx.model, "--data", c.fx.bench, "--out", a, "--force",
          "--label", "A", *fixtures.FAST_EVAL, *fixtures.FAST_TRAIN, "--set", "learning_rate=5e-3", setup=True)
    out = c.cli(*args)
    reused = "reused" in out.stdout
    return expect_ok(out, lambda: "merged run of the old parent reused" if reused else None)


# -- demo ------------------------------------------------------------------------------------------
@case("demo/methods-unknown", "demo", "traceback")
def _(c):
    """demo --methods npo,foo: refused before minutes of world and target training."""
    out = c.cli("demo", "--methods", "npo,foo", "--out", c.path("d"), probe_work=True)
    return expect_error(out, "foo")


@case("demo/bootstrap-negative", "demo", "traceback")
def _(c):
    """demo --bootstrap -5: refused before any work."""
    out = c.cli("demo", "--bootstrap", "-5", "--out", c.path("d"), probe_work=True)
    return expect_error(out, "bootstrap")


@case("demo/out-existing-file", "demo", "traceback")
def _(c):
    """demo --out an existing file."""
    f = c.write("d", "x")
    c.protect(f)
    out = c.cli("demo", "--out", f, probe_work=True)
    return expect_error(out, "d")


@case("demo/size-unknown", "demo", "traceback")
def _(c):
    """demo --size huge."""
    return expect_error(c.cli("demo", "--size", "huge", "--out", c.path("d")), "huge")
