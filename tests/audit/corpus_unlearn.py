"""unlearn and run: hyper-parameters (--set, config files, run configs), outputs, stale reruns."""

from __future__ import annotations

import json

import framework as fw
from fixtures import FAST_EVAL, FAST_TRAIN
from framework import case, expect_error, expect_ok, run_problem


ZJUKLAB_FAST = ['common_params={"epochs": 1, "max_steps": 1, "eval_every": 0, "lora_r": 4}',
                "evaluate_parents=false"]


def _unlearn(c: fw.Ctx, *extra, method="grad_ascent", model=None, data=None, out=None, sets=(), **kw):
    model = model or c.fx.model
    data = data or c.fx.bench
    out = out or c.path("run")
    train = ["--set", *ZJUKLAB_FAST] if method == "zjuklab_merge" else FAST_TRAIN
    set_args = ["--set", *sets] if sets else []
    return c.cli("unlearn", "--method", method, "--model", model, "--data", data, "--out", out, *FAST_EVAL,
                 *train, *set_args, *extra, **kw)


#: Cases whose message need not repeat the value (an unknown key; a count that is wrong).
_KEY_ONLY = ("unknown-key", "zjuklab-weights-one")


def _bad_set(cid: str, method: str, assignment: str, cls: str = "traceback", fast: bool = False):
    key, _, value = assignment.partition("=")

    @case(f"unlearn/set-{cid}", "unlearn", cls, fast=fast)
    def _(c):
        out = _unlearn(c, method=method, sets=[assignment])
        return expect_error(out, key) if cid in _KEY_ONLY else expect_error(out, key, value)

    fw.CASES[f"unlearn/set-{cid}"].doc = f"--set {assignment} ({method}): one line naming the key, value, what is allowed."


for _cid, _method, _assign, _cls, _fast in [
    ("lr-negative", "grad_ascent", "learning_rate=-1", "bad value", True),
    ("lr-word", "grad_ascent", "learning_rate=fast", "traceback", True),
    ("lr-nan", "grad_ascent", "learning_rate=nan", "bad value", False),
    ("lr-inf", "grad_ascent", "learning_rate=inf", "bad value", False),
    ("lr-bool", "grad_ascent", "learning_rate=true", "bad value", False),
    ("lr-zero", "grad_ascent", "learning_rate=0", "bad value", False),
    ("beta-zero", "npo", "beta=0", "traceback", True),
    ("beta-list", "npo", "beta=[1,2]", "traceback", False),
    ("beta-negative", "npo", "beta=-0.1", "bad value", False),
    ("lora-r-zero", "grad_ascent", "lora_r=0", "traceback", True),
    ("lora-r-float", "grad_ascent", "lora_r=2.5", "bad value", False),
    ("lora-alpha-negative", "grad_ascent", "lora_alpha=-8", "bad value", False),
    ("lora-dropout-above-1", "grad_ascent", "lora_dropout=1.5", "traceback", False),
    ("lora-targets-unknown", "grad_ascent", 'lora_target_modules=["nonexistent_proj"]', "traceback", False),
    ("epochs-zero", "grad_ascent", "epochs=0", "bad value", False),
    ("epochs-fraction", "grad_ascent", "epochs=1.5", "bad value", False),
    ("batch-zero", "grad_ascent", "per_device_batch_size=0", "bad value", False),
    ("grad-accum-string", "grad_ascent", "gradient_accumulation_steps=two", "traceback", False),
    ("weight-decay-negative", "grad_ascent", "weight_decay=-1", "bad value", False),
    ("max-grad-norm-negative", "grad_ascent", "max_grad_norm=-1", "bad value", False),
    ("warmup-negative", "grad_ascent", "warmup_steps=-3", "bad value", False),
    ("warmup-epochs-negative", "grad_ascent", "warmup_epochs=-0.5", "bad value", False),
    ("max-length-one", "grad_ascent", "max_length=1", "bad value", False),
    ("prompt-fraction-one", "grad_ascent", "prompt_max_fraction=1", "bad value", False),
    ("scheduler-unknown", "grad_ascent", "scheduler=sawtooth", "traceback", False),
    ("finetune-unknown", "grad_ascent", "finetune=partial", "traceback", False),
    ("seed-word", "grad_ascent", "seed=abc", "traceback", False),
    ("snapshots-word", "grad_ascent", "save_param_snapshots_at=abc", "traceback", False),
    ("forget-weight-word", "grad_diff", "forget_weight=heavy", "traceback", False),
    ("retain-weight-nan", "grad_diff", "retain_weight=nan", "bad value", False),
    ("kl-weight-negative", "kl", "kl_weight=-1", "bad value", False),
    ("simnpo-gamma-word", "simnpo", "gamma=big", "traceback", False),
    ("rmu-layer-out-of-range", "rmu", "layer=99", "traceback", False),
    ("rmu-coeff-negative", "rmu", "steering_coeff=-5", "bad value", False),
    ("unknown-key", "grad_ascent", "learning_rat=1e-4", "traceback", False),
    ("preset-unknown", "npo_gdr_klr", "preset=fastest", "traceback", False),
    ("formulation-unknown", "npo_gdr_klr", "formulation=weird", "traceback", False),
    ("zjuklab-density-two", "zjuklab_merge", "density=2", "bad value", False),
    ("zjuklab-weights-one", "zjuklab_merge", "weights=[1]", "traceback", False),
]:
    _bad_set(_cid, _method, _assign, _cls, _fast)


@case("unlearn/set-eval-sample-negative", "unlearn", "bad value")
def _(c):
    """--set eval_every=1 eval_sample=-1 (training curves on -1 records)."""
    return expect_error(_unlearn(c, sets=["eval_every=1", "eval_sample=-1"]), "eval_sample", "-1")


@case("unlearn/set-no-equals", "unlearn", "traceback")
def _(c):
    """--set epochs (no '=')."""
    return expect_error(_unlearn(c, sets=["epochs"]), "epochs")


@case("unlearn/ok", "unlearn", "ordinary use", fast=True)
def _(c):
    """A LoRA unlearning run: model saved, evaluation consistent."""
    out = _unlearn(c, "--label", "NEW")
    return expect_ok(out, lambda: run_problem(c.path("run"), label="NEW", need_model=True))


@case("unlearn/full-ok", "unlearn", "ordinary use")
def _(c):
    """A full fine-tuning run."""
    out = _unlearn(c, "--label", "NEW", sets=["finetune=full"])
    return expect_ok(out, lambda: run_problem(c.path("run"), label="NEW", need_model=True))


@case("unlearn/method-unknown", "unlearn", "traceback")
def _(c):
    """--method npoo (typo)."""
    return expect_error(_unlearn(c, method="npoo"), "npoo")


@case("unlearn/nan-model", "unlearn", "bad value", fast=True)
def _(c):
    """Unlearning a model whose weights are NaN: blamed on the model at once, not on the data."""
    out = _unlearn(c, model=c.fx.model_nan)
    return expect_error(out, "nan", ("model", "weights", "logits"))


@case("unlearn/lora-on-adapter", "unlearn", "traceback")
def _(c):
    """LoRA unlearning of a LoRA adapter folder."""
    return expect_error(_unlearn(c, model=c.fx.lora_a / "model"), "adapter")


@case("unlearn/out-is-model", "unlearn", "destroying data", fast=True)
def _(c):
    """unlearn --out equal to the model folder."""
    m = c.copy("model")
    c.protect(m)
    return expect_error(_unlearn(c, model=m, out=m), "--out", "model")


@case("unlearn/out-inside-model", "unlearn", "destroying data")
def _(c):
    """unlearn --out inside the model folder."""
    m = c.copy("model")
    c.protect(m)
    return expect_error(_unlearn(c, model=m, out=m / "runs" / "npo"), "--out", "model")


@case("unlearn/out-is-data", "unlearn", "destroying data")
def _(c):
    """unlearn --out equal to the benchmark folder."""
    b = c.copy("bench")
    c.protect(b)
    return expect_error(_unlearn(c, data=b, out=b), "--out", ("data", "benchmark"))


@case("unlearn/out-contains-model", "unlearn", "destroying data")
def _(c):
    """unlearn --out a folder holding the model: --force would delete the model with the old run."""
    m = c.copy("model", "work/model")
    c.protect(m)
    return expect_error(_unlearn(c, "--force", model=m, out=c.path("work")), "--out", "model")


@case("unlearn/out-existing-file", "unlearn", "traceback")
def _(c):
    """unlearn --out an existing file."""
    f = c.write("notes.txt", "x\n")
    c.protect(f)
    return expect_error(_unlearn(c, out=f), "notes.txt")


@case("unlearn/out-other-finished-run", "unlearn", "ordinary use")
def _(c):
    """--out holds a finished run with other settings, no --force: refused, old run kept."""
    r = c.copy("lora_b", "run")
    c.protect(r)
    return expect_error(_unlearn(c, out=r), "--force")


@case("unlearn/full-disk", "unlearn", "traceback", needs_root=True)
def _(c):
    """--out on a disk with 8 KB free."""
    disk = c.small_disk()
    out = _unlearn(c, out=disk / "run")
    v = expect_error(out, "no space left", "disk")
    if v[0] == fw.CLEAR and (disk / "run").exists() and any((disk / "run").iterdir()):
        return fw.MISLEADING, "clear message but half-written files left"
    return v


@case("unlearn/forget-retain-same-text", "unlearn", "identical sets")
def _(c):
    """Unlearning with retain = forget under other ids."""
    rows = [json.loads(l) for l in (c.fx.bench / "forget.jsonl").read_text().splitlines()]
    for r in rows:
        r["id"] = "r" + r["id"].replace('"', "")
    b = c.copy("bench")
    c.write("bench/retain.jsonl", fw.jsonl_text(rows))
    return expect_error(_unlearn(c, data=b), "forget", "retain")


# -- config files --------------------------------------------------------------------------------
@case("unlearn/config-missing", "unlearn", "traceback")
def _(c):
    """--config names a missing file."""
    return expect_error(_unlearn(c, "--config", c.path("npo.toml")), "npo.toml")


@case("unlearn/config-toml-syntax", "unlearn", "traceback")
def _(c):
    """--config with a TOML syntax error."""
    f = c.write("npo.toml", "learning_rate = = 3\n")
    return expect_error(_unlearn(c, "--config", f), "npo.toml")


@case("unlearn/config-unknown-key", "unlearn", "traceback")
def _(c):
    """--config with an unknown hyper-parameter."""
    f = c.write("npo.toml", "learnin_rate = 1e-4\n")
    return expect_error(_unlearn(c, "--config", f), "learnin_rate")


@case("unlearn/config-bad-type", "unlearn", "traceback")
def _(c):
    """--config with lora_dropout = "big"."""
    f = c.write("npo.toml", 'lora_dropout = "big"\n')
    return expect_error(_unlearn(c, "--config", f), "lora_dropout", "big")


@case("unlearn/config-non-utf8", "unlearn", "traceback")
def _(c):
    """--config file with a Latin-1 byte."""
    f = c.write("npo.toml", b"# caf\xe9\nepochs = 1\n")
    return expect_error(_unlearn(c, "--config", f), "npo.toml")


# -- run CONFIG ----------------------------------------------------------------------------------
def _run_config(c: fw.Ctx, body: str, name: str = "run.toml"):
    head = (f'method = "grad_ascent"\nmodel = "{c.fx.model}"\ndata = "{c.fx.bench}"\nout = "{c.path("run")}"\n'
            if "method =" not in body else "")
    tail = ('[params]\nepochs = 1\nmax_steps = 2\neval_every = 0\nlora_r = 4\nlora_alpha = 8\n'
            '[eval]\nmax_new_tokens = 4\nprogress = false\ncache = false\n') if "[params]" not in body else ""
    return c.write(name, head + body + "\n" + tail)


@case("run/ok", "run", "ordinary use", fast=True)
def _(c):
    """A run config with params and eval tables."""
    f = _run_config(c, 'label = "NEW"\nseed = 3\n')
    return expect_ok(c.cli("run", f), lambda: run_problem(c.path("run"), label="NEW", need_model=True))


def _bad_run_key(cid: str, line: str, mentions: tuple, cls: str, fast: bool = False) -> None:
    @case(f"run/{cid}", "run", cls, fast=fast)
    def _(c):
        return expect_error(c.cli("run", _run_config(c, line + "\n")), *mentions)

    fw.CASES[f"run/{cid}"].doc = f"{line} in a run config."


for _cid, _line, _mentions, _cls, _fast in [
    ("seed-string", 'seed = "abc"', ("seed", "abc"), "traceback", True),
    ("seed-float", "seed = 1.5", ("seed", "1.5"), "bad value", False),
    ("unknown-key", 'lable = "x"', ("lable",), "traceback", False),
    ("device-number", "device = 5", ("device", "5"), "traceback", False),
    ("dtype-unknown", 'dtype = "float8"', ("dtype", "float8"), "traceback", False),
    ("evaluate-string", 'evaluate = "no"', ("evaluate", "no"), "bad value", False),
]:
    _bad_run_key(_cid, _line, _mentions, _cls, _fast)


@case("run/missing-method", "run", "traceback")
def _(c):
    """A run config without method."""
    f = c.write("run.toml", f'model = "{c.fx.model}"\ndata = "{c.fx.bench}"\nout = "{c.path("run")}"\n')
    return expect_error(c.cli("run", f), "method")


@case("run/params-not-table", "run", "traceback")
def _(c):
    """params = 3."""
    f = c.write("run.toml", f'method = "npo"\nmodel = "{c.fx.model}"\ndata = "{c.fx.bench}"\n'
                            f'out = "{c.path("run")}"\nparams = 3\n[eval]\nmax_new_tokens = 4\n')
    return expect_error(c.cli("run", f), "params")


@case("run/eval-max-new-tokens-word", "run", "traceback")
def _(c):
    """[eval] max_new_tokens = "many"."""
    f = c.write("run.toml", f'method = "grad_ascent"\nmodel = "{c.fx.model}"\ndata = "{c.fx.bench}"\n'
                            f'out = "{c.path("run")}"\n[params]\nmax_steps = 1\neval_every = 0\n'
                            '[eval]\nmax_new_tokens = "many"\n')
    return expect_error(c.cli("run", f), "max_new_tokens", "many")


@case("run/eval-unknown-option", "run", "traceback")
def _(c):
    """[eval] with a misspelt option."""
    f = c.write("run.toml", f'method = "grad_ascent"\nmodel = "{c.fx.model}"\ndata = "{c.fx.bench}"\n'
                            f'out = "{c.path("run")}"\n[eval]\nmax_new_token = 4\n')
    return expect_error(c.cli("run", f), "max_new_token")


@case("run/yaml-list-top", "run", "traceback")
def _(c):
    """A YAML run config whose top level is a list."""
    f = c.write("run.yaml", "- method: npo\n- model: m\n")
    return expect_error(c.cli("run", f), "run.yaml")


@case("run/json-broken", "run", "traceback")
def _(c):
    """A JSON run config cut short."""
    f = c.write("run.json", '{"method": "npo", "model": ')
    return expect_error(c.cli("run", f), "run.json")


@case("run/out-is-model", "run", "destroying data")
def _(c):
    """A run config whose out is the model folder."""
    m = c.copy("model")
    c.protect(m)
    f = c.write("run.toml", f'method = "grad_ascent"\nmodel = "{m}"\ndata = "{c.fx.bench}"\nout = "{m}"\n'
                            '[params]\nmax_steps = 1\neval_every = 0\nlora_r = 4\n[eval]\nmax_new_tokens = 4\n')
    return expect_error(c.cli("run", f), "out", "model")


@case("run/set-beta-zero", "run", "traceback")
def _(c):
    """run CONFIG --set beta=0 for npo."""
    f = c.write("run.toml", f'method = "npo"\nmodel = "{c.fx.model}"\ndata = "{c.fx.bench}"\n'
                            f'out = "{c.path("run")}"\n[params]\nmax_steps = 1\neval_every = 0\nlora_r = 4\n'
                            '[eval]\nmax_new_tokens = 4\n')
    return expect_error(c.cli("run", f, "--set", "beta=0"), "beta", "0")


# -- stale reruns --------------------------------------------------------------------------------
def _finished(c: fw.Ctx, *extra, data=None, model=None):
    """A finished run in c.path('run'), then return the rerun's outcome with the same arguments."""
    _unlearn(c, "--label", "NEW", *extra, data=data, model=model, setup=True)


def _rerun_check(c, out, bench_changed: bool = False, model_changed: bool = False):
    """After a rerun: skipping is right only when nothing it depends on changed."""
    skipped = "skip" in (out.stdout + out.stderr).lower()

    def check():
        if skipped:
            return "the old run was taken as finished although its inputs changed"
        return run_problem(c.path("run"), label="NEW", need_model=True)

    return expect_error(out, ("changed", "differ", "stale"), success_check=check)


@case("unlearn/stale-same-rerun", "unlearn", "stale rerun", fast=True)
def _(c):
    """Rerun with nothing changed: skipped, the run unchanged."""
    _finished(c)
    c.protect(c.path("run"))
    out = _unlearn(c, "--label", "NEW")
    return expect_ok(out, lambda: None if "skip" in out.stdout.lower() else "not skipped (redone)")


@case("unlearn/stale-forget-changed", "unlearn", "stale rerun", fast=True)
def _(c):
    """forget.jsonl changed after the run: the rerun must not be skipped as finished."""
    b = c.copy("bench")
    _finished(c, data=b)
    rows = [json.loads(l) for l in (b / "forget.jsonl").read_text().splitlines()]
    rows[0]["output"] = " She painted the hills at dusk."
    (b / "forget.jsonl").write_text(fw.jsonl_text(rows))
    return _rerun_check(c, _unlearn(c, "--label", "NEW", data=b))


@case("unlearn/stale-mia-changed", "unlearn", "stale rerun")
def _(c):
    """A non-member document changed after the run."""
    b = c.copy("bench")
    _finished(c, data=b)
    p = b / "mia" / "nonmember.jsonl"
    p.write_text(p.read_text().replace("weaver", "potter"))
    return _rerun_check(c, _unlearn(c, "--label", "NEW", data=b))


@case("unlearn/stale-weights-replaced", "unlearn", "stale rerun", fast=True)
def _(c):
    """The target model's weights were replaced (same path) after the run."""
    m = c.copy("model")
    _finished(c, model=m)
    (m / "model.safetensors").write_bytes((c.fx.model2 / "model.safetensors").read_bytes())
    return _rerun_check(c, _unlearn(c, "--label", "NEW", model=m))


@case("unlearn/stale-settings-changed", "unlearn", "stale rerun")
def _(c):
    """Other hyper-parameters, same --out, no --force: refused (or redone), never skipped."""
    _finished(c)
    out = _unlearn(c, "--label", "NEW", sets=["learning_rate=5e-4"])
    return expect_error(out, "--force", success_check=lambda: "skipped" if "skip" in out.stdout.lower() else None)


@case("unlearn/stale-eval-settings-changed", "unlearn", "stale rerun")
def _(c):
    """Other evaluation settings (--max-new-tokens), same --out."""
    _finished(c)
    out = _unlearn(c, "--label", "NEW", "--max-new-tokens", "3")
    return expect_error(out, "--force", success_check=lambda: "skipped" if "skip" in out.stdout.lower() else None)


@case("unlearn/stale-no-eval-forget-changed", "unlearn", "stale rerun")
def _(c):
    """--no-eval run, forget.jsonl changed, rerun --no-eval."""
    b = c.copy("bench")
    c.cli("unlearn", "--method", "grad_ascent", "--model", c.fx.model, "--data", b, "--out", c.path("run"),
          "--no-eval", "--no-progress", *FAST_TRAIN, setup=True)
    rows = [json.loads(l) for l in (b / "forget.jsonl").read_text().splitlines()]
    rows[2]["output"] = " His phone number is 555-9999."
    (b / "forget.jsonl").write_text(fw.jsonl_text(rows))
    out = c.cli("unlearn", "--method", "grad_ascent", "--model", c.fx.model, "--data", b, "--out", c.path("run"),
                "--no-eval", "--no-progress", *FAST_TRAIN)
    skipped = "skip" in out.stdout.lower()
    return expect_error(out, ("changed", "differ"), success_check=lambda: "skipped a stale run" if skipped else None)


@case("unlearn/stale-no-eval-weights-deleted", "unlearn", "stale rerun")
def _(c):
    """--no-eval run whose model/ lost its adapter weights: the rerun must not skip it."""
    c.cli("unlearn", "--method", "grad_ascent", "--model", c.fx.model, "--data", c.fx.bench, "--out",
          c.path("run"), "--no-eval", "--no-progress", *FAST_TRAIN, setup=True)
    for w in (c.path("run") / "model").glob("*.safetensors"):
        w.unlink()
    out = c.cli("unlearn", "--method", "grad_ascent", "--model", c.fx.model, "--data", c.fx.bench, "--out",
                c.path("run"), "--no-eval", "--no-progress", *FAST_TRAIN)

    def check():
        if not any((c.path("run") / "model").glob("*.safetensors")):
            return "skipped as finished: model/ still has no weights"
        return None

    return expect_error(out, ("model", "weights", "incomplete"), success_check=check)


@case("unlearn/stale-result-deleted", "unlearn", "stale rerun")
def _(c):
    """result.json deleted from a finished run: the rerun redoes it."""
    _finished(c)
    c.path("run", "result.json").unlink()
    out = _unlearn(c, "--label", "NEW")
    return expect_ok(out, lambda: run_problem(c.path("run"), label="NEW", need_model=True))


@case("unlearn/stale-samples-tampered", "unlearn", "stale rerun")
def _(c):
    """samples.jsonl of a finished run replaced by another run's: the rerun must not skip a mixed run."""
    _finished(c)
    c.path("run", "samples.jsonl").write_bytes((c.fx.eval_run / "samples.jsonl").read_bytes())
    out = _unlearn(c, "--label", "NEW")

    def check():
        return run_problem(c.path("run"), label="NEW", need_model=True)

    return expect_error(out, ("samples", "manifest", "changed"), success_check=check)


@case("run/stale-forget-changed", "run", "stale rerun")
def _(c):
    """`run CONFIG` twice with forget.jsonl changed in between."""
    b = c.copy("bench")
    f = c.write("run.toml", f'method = "grad_ascent"\nmodel = "{c.fx.model}"\ndata = "{b}"\nout = "{c.path("run")}"\n'
                            'label = "NEW"\n[params]\nepochs = 1\nmax_steps = 2\neval_every = 0\nlora_r = 4\n'
                            'lora_alpha = 8\n[eval]\nmax_new_tokens = 4\nprogress = false\ncache = false\n')
    c.cli("run", f, setup=True)
    rows = [json.loads(l) for l in (b / "forget.jsonl").read_text().splitlines()]
    rows[0]["output"] = " She painted the hills at dusk."
    (b / "forget.jsonl").write_text(fw.jsonl_text(rows))
    return _rerun_check(c, c.cli("run", f))
