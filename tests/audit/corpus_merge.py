"""merge: parents (missing, partial, mixed, stale, incompatible), options, outputs."""

from __future__ import annotations

import shutil

import framework as fw
from fixtures import FAST_EVAL
from framework import case, expect_error, expect_ok, run_problem


def _merge(c: fw.Ctx, *extra, runs=None, out=None, **kw):
    runs = runs or [c.fx.lora_a, c.fx.lora_b]
    out = out or c.path("merged")
    return c.cli("merge", *runs, "--out", out, *FAST_EVAL, *extra, **kw)


@case("merge/ok", "merge", "ordinary use", fast=True)
def _(c):
    """Two LoRA runs merged with TIES and evaluated."""
    out = _merge(c, "--how", "ties", "--label", "NEW")
    return expect_ok(out, lambda: run_problem(c.path("merged"), label="NEW", need_model=True))


@case("merge/no-eval", "merge", "ordinary use")
def _(c):
    """--no-eval: a model and a config, no result."""
    out = _merge(c, "--no-eval")

    def check():
        m = c.path("merged")
        if not any((m / "model").glob("*.safetensors")):
            return "no merged weights"
        return None if (m / "config.json").exists() else "no config.json"

    return expect_ok(out, check)


@case("merge/out-is-parent", "merge", "destroying data", fast=True)
def _(c):
    """merge --out equal to one of the parents."""
    a, b = c.copy("lora_a"), c.copy("lora_b")
    c.protect(a, b)
    return expect_error(_merge(c, runs=[a, b], out=a), "--out", ("parent", "input", "lora_a"))


@case("merge/out-inside-parent", "merge", "destroying data")
def _(c):
    """merge --out inside a parent run folder."""
    a, b = c.copy("lora_a"), c.copy("lora_b")
    c.protect(a, b)
    return expect_error(_merge(c, runs=[a, b], out=a / "merged"), "--out", ("parent", "input", "lora_a"))


@case("merge/out-is-base-model", "merge", "destroying data")
def _(c):
    """merge --out equal to the parents' base model folder."""
    a, b, base = c.copy("lora_a"), c.copy("lora_b"), c.copy("model")
    for run in (a, b):  # the copies start from the copied base model (the fixture is shared)
        fw.edit_json(run / "config.json", lambda d: d.update(base_model=str(base), model=str(base)))
        fw.edit_json(run / "model" / "adapter_config.json", lambda d: d.update(base_model_name_or_path=str(base)))
        (run / "manifest.json").unlink(missing_ok=True)  # edited by hand: now a run without a manifest
    c.protect(a, b, base)
    return expect_error(_merge(c, runs=[a, b], out=base), "--out", ("model", "input"))


@case("merge/out-existing-file", "merge", "traceback")
def _(c):
    """merge --out an existing file."""
    f = c.write("notes.txt", "x\n")
    c.protect(f)
    return expect_error(_merge(c, out=f), "notes.txt")


@case("merge/parent-missing", "merge", "traceback")
def _(c):
    """A parent run folder that does not exist."""
    return expect_error(_merge(c, runs=[c.fx.lora_a, c.path("nope")]), "nope")


@case("merge/parent-no-config", "merge", "traceback")
def _(c):
    """A parent that is a folder without config.json."""
    d = c.path("empty")
    d.mkdir()
    return expect_error(_merge(c, runs=[c.fx.lora_a, d]), "config.json")


@case("merge/parent-config-corrupt", "merge", "traceback")
def _(c):
    """A parent whose config.json is cut short."""
    b = c.copy("lora_b")
    (b / "config.json").write_text('{"method": "grad_diff", ')
    return expect_error(_merge(c, runs=[c.fx.lora_a, b]), "config.json")


@case("merge/parent-no-weights", "merge", "interrupted run")
def _(c):
    """A parent whose model/ lost its adapter weights (an interrupted save)."""
    b = c.copy("lora_b")
    for w in (b / "model").glob("*.safetensors"):
        w.unlink()
    return expect_error(_merge(c, runs=[c.fx.lora_a, b]), "lora_b")


@case("merge/parent-mixed-folder", "merge", "interrupted run")
def _(c):
    """A parent whose model/ is another run's (a mixed folder): refused with the reason."""
    b = c.copy("lora_b")
    shutil.rmtree(b / "model")
    shutil.copytree(c.fx.lora_a / "model", b / "model")
    out = _merge(c, runs=[c.fx.lora_a, b])
    return expect_error(out, "lora_b", ("manifest", "belong", "changed", "match"))


@case("merge/parent-stale-base", "merge", "stale rerun", fast=True)
def _(c):
    """The base model's weights were replaced after the parents were trained from it."""
    m = c.copy("model")
    for name in ("a", "b"):
        c.cli("unlearn", "--method", "grad_ascent", "--model", m, "--data", c.fx.bench, "--out", c.path(name),
              "--no-eval", "--no-progress", "--set", "epochs=1", "max_steps=1", "eval_every=0", "lora_r=4",
              setup=True)
    (m / "model.safetensors").write_bytes((c.fx.model2 / "model.safetensors").read_bytes())
    out = _merge(c, "--no-eval", runs=[c.path("a"), c.path("b")])
    return expect_error(out, ("base", "model"), ("changed", "differ", "stale", "manifest"))


@case("merge/lora-with-full", "merge", "traceback")
def _(c):
    """A LoRA run merged with a full fine-tune."""
    return expect_error(_merge(c, runs=[c.fx.lora_a, c.fx.full_run]), "full")


@case("merge/different-bases", "merge", "traceback")
def _(c):
    """Runs trained from different base models."""
    c.cli("unlearn", "--method", "grad_ascent", "--model", c.fx.model2, "--data", c.fx.bench, "--out", c.path("b"),
          "--no-eval", "--no-progress", "--set", "epochs=1", "max_steps=1", "eval_every=0", "lora_r=4", setup=True)
    return expect_error(_merge(c, runs=[c.fx.lora_a, c.path("b")]), "base")


@case("merge/weights-count", "merge", "traceback")
def _(c):
    """Three weights for two runs."""
    return expect_error(_merge(c, "--weights", "1", "1", "1"), "weight")


@case("merge/weights-nan", "merge", "bad value")
def _(c):
    """--weights nan 1."""
    return expect_error(_merge(c, "--weights", "nan", "1"), "weight", "nan")


@case("merge/density-zero", "merge", "bad value")
def _(c):
    """--density 0."""
    return expect_error(_merge(c, "--density", "0"), "density")


@case("merge/density-nan", "merge", "bad value")
def _(c):
    """--density nan."""
    return expect_error(_merge(c, "--density", "nan"), "density")


@case("merge/svd-rank-zero", "merge", "bad value")
def _(c):
    """--how svd --svd-rank 0."""
    return expect_error(_merge(c, "--how", "svd", "--svd-rank", "0"), "rank")


@case("merge/one-run", "merge", "traceback")
def _(c):
    """Only one run given."""
    return expect_error(_merge(c, runs=[c.fx.lora_a]), ("two", "2"))


@case("merge/how-unknown", "merge", "traceback")
def _(c):
    """--how average."""
    return expect_error(_merge(c, "--how", "average"), "average")


@case("merge/data-missing", "merge", "traceback")
def _(c):
    """--data a folder that does not exist."""
    return expect_error(_merge(c, "--data", c.path("nodata")), "nodata")


@case("merge/parent-data-moved", "merge", "traceback")
def _(c):
    """The parents' benchmark folder was moved away since training (merge evaluates on it)."""
    b = c.copy("bench")
    for name in ("a", "b"):
        c.cli("unlearn", "--method", "grad_ascent", "--model", c.fx.model, "--data", b, "--out", c.path(name),
              "--no-eval", "--no-progress", "--set", "epochs=1", "max_steps=1", "eval_every=0", "lora_r=4",
              setup=True)
    b.rename(c.path("bench-moved"))
    return expect_error(_merge(c, runs=[c.path("a"), c.path("b")]), "bench")


@case("merge/full-disk", "merge", "traceback", needs_root=True)
def _(c):
    """merge --out on a disk with 8 KB free."""
    disk = c.small_disk()
    out = _merge(c, out=disk / "merged")
    v = expect_error(out, "no space left", "disk")
    if v[0] == fw.CLEAR and (disk / "merged").exists() and any((disk / "merged").iterdir()):
        return fw.MISLEADING, "clear message but half-written files left"
    return v
