"""evaluate: inputs (model, data, MIA sets, MCQ sets, options), outputs (--out), bad models."""

from __future__ import annotations

import json

import framework as fw
from fixtures import FAST_EVAL
from framework import case, expect_error, expect_ok, run_problem

import engine


def _eval(c: fw.Ctx, *extra, model=None, data=None, out=None, **kw):
    model = model or c.fx.model
    data = data or c.fx.bench
    out = out or c.path("run")
    return c.cli("evaluate", "--model", model, "--data", data, "--out", out, *FAST_EVAL, *extra, **kw)


def _bench(c: fw.Ctx, forget=None, retain=None, members=None, nonmembers=None, name="bench"):
    """A copy of the mini benchmark with some files replaced (rows as dicts, or raw text/bytes)."""
    bench = c.copy("bench", name)
    for rel, rows in (("forget.jsonl", forget), ("retain.jsonl", retain), ("mia/member.jsonl", members),
                      ("mia/nonmember.jsonl", nonmembers)):
        if rows is None:
            continue
        data = rows if isinstance(rows, (str, bytes)) else fw.jsonl_text(rows)
        c.write(f"{name}/{rel}", data)
    return bench


def _rows(c: fw.Ctx, rel: str) -> list[dict]:
    return [json.loads(l) for l in (c.fx.bench / rel).read_text().splitlines() if l.strip()]


# -- the ordinary path ----------------------------------------------------------------------------
@case("evaluate/ok", "evaluate", "ordinary use", fast=True)
def _(c):
    """A plain evaluation writes a complete, self-consistent run."""
    out = _eval(c, "--label", "NEW")
    return expect_ok(out, lambda: run_problem(c.path("run"), label="NEW"))


@case("evaluate/verbose-shows-traceback", "evaluate", "traceback")
def _(c):
    """-v on an ordinary mistake shows the traceback (on purpose), still a non-zero exit."""
    out = c.cli("-v", "evaluate", "--model", c.path("nope"), "--data", c.fx.bench, "--out", c.path("run"))
    if out.rc != 0 and out.traceback:
        return fw.CORRECT, "traceback shown under -v"
    return fw.MISLEADING, f"rc {out.rc}, traceback {out.traceback}"


# -- model ---------------------------------------------------------------------------------------
@case("evaluate/model-missing", "evaluate", "traceback", fast=True)
def _(c):
    """--model names a folder that does not exist."""
    return expect_error(_eval(c, model=c.path("no-such-model")), "no-such-model")


@case("evaluate/model-is-file", "evaluate", "traceback")
def _(c):
    """--model names a file."""
    f = c.write("weights.bin", b"\0" * 64)
    return expect_error(_eval(c, model=f), "weights.bin")


@case("evaluate/model-is-benchmark", "evaluate", "traceback")
def _(c):
    """--model and --data swapped: the model folder is a benchmark."""
    return expect_error(_eval(c, model=c.fx.bench), "bench")


@case("evaluate/model-config-corrupt", "evaluate", "traceback")
def _(c):
    """The model's config.json is not valid JSON."""
    m = c.copy("model")
    (m / "config.json").write_text('{"model_type": "llama", ')
    return expect_error(_eval(c, model=m), "config.json")


@case("evaluate/model-no-weights", "evaluate", "traceback")
def _(c):
    """The model folder lost its weights file."""
    m = c.copy("model")
    (m / "model.safetensors").unlink()
    return expect_error(_eval(c, model=m), ("weights", "safetensors", "model"))


@case("evaluate/model-truncated-weights", "evaluate", "traceback")
def _(c):
    """The weights file was cut short (an interrupted copy)."""
    m = c.copy("model")
    w = m / "model.safetensors"
    w.write_bytes(w.read_bytes()[:4096])
    return expect_error(_eval(c, model=m), "safetensors")


@case("evaluate/model-no-tokenizer", "evaluate", "traceback")
def _(c):
    """The model folder has no tokenizer files."""
    m = c.copy("model")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (m / name).unlink()
    return expect_error(_eval(c, model=m), "tokenizer")


@case("evaluate/nan-model", "evaluate", "bad value", fast=True)
def _(c):
    """Every weight is NaN: the model must be named as the cause, at once."""
    out = _eval(c, model=c.fx.model_nan)
    verdict = expect_error(out, "nan", ("model", "weights", "logits"))
    if verdict[0] == fw.CLEAR and out.seconds > 30:
        return fw.MISLEADING, f"blamed after {out.seconds:.0f}s"
    return verdict


@case("evaluate/inf-weights", "evaluate", "bad value")
def _(c):
    """One weight matrix holds +inf: logits become NaN."""
    m = c.copy("model")

    def poison(path):
        import torch
        from safetensors.torch import load_file, save_file

        state = load_file(str(path))
        key = next(k for k in state if "q_proj" in k)
        state[key] = torch.full_like(state[key], float("inf"))
        save_file(state, str(path), metadata={"format": "pt"})

    engine.call_forked(poison, m / "model.safetensors")
    return expect_error(_eval(c, model=m), ("nan", "inf", "finite"), ("model", "weights", "logits"))


@case("evaluate/out-is-model", "evaluate", "destroying data", fast=True)
def _(c):
    """--out is the model folder itself."""
    m = c.copy("model")
    c.protect(m)
    return expect_error(_eval(c, model=m, out=m), "--out", "model")


@case("evaluate/out-inside-model", "evaluate", "destroying data")
def _(c):
    """--out is a folder inside the model folder."""
    m = c.copy("model")
    c.protect(m)
    return expect_error(_eval(c, model=m, out=m / "run"), "--out", "model")


@case("evaluate/out-is-data", "evaluate", "destroying data")
def _(c):
    """--out is the benchmark folder."""
    b = c.copy("bench")
    c.protect(b)
    return expect_error(_eval(c, data=b, out=b), "--out", ("data", "benchmark"))


@case("evaluate/out-inside-data", "evaluate", "destroying data")
def _(c):
    """--out is inside the benchmark folder."""
    b = c.copy("bench")
    c.protect(b)
    return expect_error(_eval(c, data=b, out=b / "runs" / "x"), "--out", ("data", "benchmark"))


@case("evaluate/out-contains-model", "evaluate", "destroying data")
def _(c):
    """--out is a folder that contains the model (the model would be replaced with the run)."""
    m = c.copy("model", "work/model")
    c.protect(m)
    return expect_error(_eval(c, model=m, out=c.path("work")), "--out", "model")


@case("evaluate/out-is-own-run-folder", "evaluate", "destroying data")
def _(c):
    """evaluate RUN/model --out RUN: the unlearning run's config (needed by merge) would be replaced."""
    r = c.copy("lora_a")
    c.protect(r / "config.json", r / "model")
    return expect_error(_eval(c, model=r / "model", out=r), "--out", "model")


@case("evaluate/out-is-existing-file", "evaluate", "traceback", fast=True)
def _(c):
    """--out names an existing file."""
    f = c.write("notes.txt", "my notes\n")
    c.protect(f)
    return expect_error(_eval(c, out=f), "notes.txt")


@case("evaluate/out-under-a-file", "evaluate", "traceback")
def _(c):
    """--out is under a path whose parent is a file."""
    f = c.write("notes.txt", "my notes\n")
    c.protect(f)
    return expect_error(_eval(c, out=f / "run"), "notes.txt")


@case("evaluate/out-non-run-folder", "evaluate", "destroying data")
def _(c):
    """--out is an existing folder of the user's that is not a run (it holds other files)."""
    d = c.path("mydocs")
    c.write("mydocs/thesis.tex", "\\documentclass{article}\n")
    c.protect(d / "thesis.tex")
    out = _eval(c, out=d)
    return expect_error(out, "mydocs", on_success=fw.CORRECT if (d / "thesis.tex").exists() else fw.LOST,
                        success_check=lambda: None if (d / "thesis.tex").exists() else "thesis.tex deleted")


@case("evaluate/out-over-other-run", "evaluate", "ordinary use")
def _(c):
    """--out holds a finished run of the same model with other settings: replaced by a complete new run."""
    r = c.copy("eval_run", "run")
    out = _eval(c, "--label", "NEW", out=r)
    return expect_ok(out, lambda: run_problem(r, label="NEW"))


@case("evaluate/full-disk", "evaluate", "traceback", needs_root=True, fast=True)
def _(c):
    """--out is on a disk with 8 KB free."""
    disk = c.small_disk()
    out = _eval(c, out=disk / "run")
    verdict = expect_error(out, "no space left", "disk")
    leftovers = [p for p in (disk / "run").rglob("*")] if (disk / "run").exists() else []
    if verdict[0] == fw.CLEAR and leftovers:
        return fw.MISLEADING, f"clear message but half-written files left: {[p.name for p in leftovers][:4]}"
    return verdict


# -- data ----------------------------------------------------------------------------------------
@case("evaluate/data-missing", "evaluate", "traceback")
def _(c):
    """--data does not exist."""
    return expect_error(_eval(c, data=c.path("nodata")), "nodata")


@case("evaluate/data-no-retain", "evaluate", "traceback")
def _(c):
    """The benchmark has no retain split."""
    b = c.copy("bench")
    (b / "retain.jsonl").unlink()
    return expect_error(_eval(c, data=b), "retain")


@case("evaluate/data-bad-json-line", "evaluate", "traceback")
def _(c):
    """Line 5 of forget.jsonl is not JSON."""
    lines = (c.fx.bench / "forget.jsonl").read_text().splitlines()
    lines[4] = '{"id": "b7c2qa1", "input": oops'
    b = _bench(c, forget="\n".join(lines) + "\n")
    return expect_error(_eval(c, data=b), "forget.jsonl", "line 5")


def _long_forget(n=50):
    rows = []
    for i in range(n):
        rows.append({"id": f"x{i:03d}sc1", "input": f"Story {i} begins in the valley.",
                     "output": " It ends by the sea.", "task": "Task1"})
    return rows


@case("evaluate/data-non-utf8-line-40", "evaluate", "traceback", fast=True)
def _(c):
    """A non-UTF-8 byte on line 40 of forget.jsonl must be reported on line 40."""
    rows = _long_forget(50)
    text = fw.jsonl_text(rows).encode()
    lines = text.split(b"\n")
    lines[39] = lines[39].replace(b"valley", b"vall\xe9y")
    b = _bench(c, forget=b"\n".join(lines))
    return expect_error(_eval(c, data=b), "forget.jsonl", "line 40")


@case("evaluate/data-missing-field", "evaluate", "traceback")
def _(c):
    """A record lacks its output."""
    rows = _rows(c, "forget.jsonl")
    del rows[2]["output"]
    return expect_error(_eval(c, data=_bench(c, forget=rows)), "forget.jsonl", "output")


@case("evaluate/data-duplicate-id", "evaluate", "traceback")
def _(c):
    """Two forget records share an id."""
    rows = _rows(c, "forget.jsonl")
    rows[3]["id"] = rows[2]["id"]
    return expect_error(_eval(c, data=_bench(c, forget=rows)), "duplicate", rows[2]["id"])


@case("evaluate/data-id-without-kind", "evaluate", "traceback")
def _(c):
    """A record id that is neither sc nor qa."""
    rows = _rows(c, "forget.jsonl")
    rows[0]["id"] = "abc123"
    return expect_error(_eval(c, data=_bench(c, forget=rows)), "abc123")


@case("evaluate/data-unknown-task", "evaluate", "traceback")
def _(c):
    """A record's task is Task4."""
    rows = _rows(c, "forget.jsonl")
    rows[0]["task"] = "Task4"
    return expect_error(_eval(c, data=_bench(c, forget=rows)), "Task4")


@case("evaluate/data-output-number", "evaluate", "traceback")
def _(c):
    """A record's output is a number."""
    rows = _rows(c, "forget.jsonl")
    rows[1]["output"] = 1931
    return expect_error(_eval(c, data=_bench(c, forget=rows)), "output", rows[1]["id"])


@case("evaluate/data-empty-forget", "evaluate", "traceback")
def _(c):
    """forget.jsonl is empty."""
    return expect_error(_eval(c, data=_bench(c, forget="")), "forget", "empty")


@case("evaluate/data-array-not-object", "evaluate", "traceback")
def _(c):
    """A line of forget.jsonl is a JSON array."""
    b = _bench(c, forget='["a", "b"]\n')
    return expect_error(_eval(c, data=b), "forget.jsonl", "line 1")


@case("evaluate/data-forget-retain-same-id", "evaluate", "identical sets")
def _(c):
    """A retain record reuses a forget id."""
    rows = _rows(c, "retain.jsonl")
    rows[0]["id"] = _rows(c, "forget.jsonl")[0]["id"]
    return expect_error(_eval(c, data=_bench(c, retain=rows)), "forget", "retain")


@case("evaluate/data-forget-retain-same-text", "evaluate", "identical sets", fast=True)
def _(c):
    """The retain split is the forget split under other ids: forget/retain must be disjoint by text."""
    rows = [dict(r, id=r["id"].replace('"', "r").replace("b7c2", "d7c2").replace("4411", "5411"))
            for r in _rows(c, "forget.jsonl")]
    return expect_error(_eval(c, data=_bench(c, retain=rows)), "forget", "retain")


@case("evaluate/mia-identical-sets", "evaluate", "identical sets", fast=True)
def _(c):
    """member.jsonl and nonmember.jsonl are the same file: AUC 0.5, a 'perfect' MIA score."""
    members = _rows(c, "mia/member.jsonl")
    return expect_error(_eval(c, data=_bench(c, nonmembers=members)), "member", "nonmember")


@case("evaluate/mia-same-text-other-ids", "evaluate", "identical sets")
def _(c):
    """The non-members are the members' documents under new ids."""
    members = _rows(c, "mia/member.jsonl")
    non = [{"id": f"n{i}", "document": m["document"]} for i, m in enumerate(members)]
    return expect_error(_eval(c, data=_bench(c, nonmembers=non)), "member", "nonmember")


@case("evaluate/mia-one-shared-document", "evaluate", "identical sets")
def _(c):
    """One document is both a member and a non-member."""
    members = _rows(c, "mia/member.jsonl")
    non = _rows(c, "mia/nonmember.jsonl")
    non[1] = {"id": "n1", "document": members[0]["document"]}
    return expect_error(_eval(c, data=_bench(c, nonmembers=non)), "member", "nonmember")


@case("evaluate/mia-same-ids-other-text", "evaluate", "identical sets")
def _(c):
    """Member and non-member ids collide (m0 in both)."""
    non = _rows(c, "mia/nonmember.jsonl")
    non[0]["id"] = "m0"
    return expect_error(_eval(c, data=_bench(c, nonmembers=non)), "m0")


@case("evaluate/mia-missing-nonmember", "evaluate", "traceback")
def _(c):
    """The MIA folder lacks nonmember.jsonl."""
    b = c.copy("bench")
    (b / "mia" / "nonmember.jsonl").unlink()
    return expect_error(_eval(c, data=b), "nonmember")


@case("evaluate/mia-flag-missing", "evaluate", "traceback")
def _(c):
    """--mia names a folder that does not exist."""
    return expect_error(_eval(c, "--mia", c.path("nomia")), "nomia")


@case("evaluate/mia-empty-document", "evaluate", "traceback")
def _(c):
    """A member document is empty."""
    members = _rows(c, "mia/member.jsonl")
    members[1]["document"] = ""
    return expect_error(_eval(c, data=_bench(c, members=members)), "member.jsonl", "document")


@case("evaluate/prompt-10mb", "evaluate", "traceback", fast=True)
def _(c):
    """A 10 MB prompt: must be refused by record id before generation, not run out of memory."""
    rows = _rows(c, "forget.jsonl")
    rows[0]["input"] = "word " * (2 * 1024 * 1024)
    out = _eval(c, data=_bench(c, forget=rows), timeout=150)
    return expect_error(out, rows[0]["id"], ("context", "too long", "longer"))


@case("evaluate/prompt-longer-than-context", "evaluate", "bad value")
def _(c):
    """A prompt longer than the model's context (64 positions): reported by record id."""
    rows = _rows(c, "forget.jsonl")
    rows[2]["input"] = " ".join(["Ivo Marren was born on 3 May 1981."] * 12)
    out = _eval(c, data=_bench(c, forget=rows), model=c.fx.model_ctx64)
    return expect_error(out, rows[2]["id"], ("context", "too long", "longer"))


# -- options ---------------------------------------------------------------------------------------
@case("evaluate/batch-size-zero", "evaluate", "traceback")
def _(c):
    """--batch-size 0."""
    return expect_error(_eval(c, "--batch-size", "0"), "batch-size")


@case("evaluate/max-new-tokens-zero", "evaluate", "traceback")
def _(c):
    """--max-new-tokens 0 (after the fast default of 4)."""
    return expect_error(_eval(c, "--max-new-tokens", "0"), "max_new_tokens")


@case("evaluate/max-new-tokens-negative", "evaluate", "traceback")
def _(c):
    """--max-new-tokens -5."""
    return expect_error(_eval(c, "--max-new-tokens", "-5"), ("max_new_tokens", "max-new-tokens"))


@case("evaluate/min-k-nan", "evaluate", "bad value")
def _(c):
    """--min-k nan."""
    return expect_error(_eval(c, "--min-k", "nan"), "min_k")


@case("evaluate/min-k-zero", "evaluate", "bad value")
def _(c):
    """--min-k 0."""
    return expect_error(_eval(c, "--min-k", "0"), "min_k")


@case("evaluate/device-bogus", "evaluate", "traceback")
def _(c):
    """--device gpu9 (not a device)."""
    return expect_error(_eval(c, "--device", "gpu9"), "gpu9")


@case("evaluate/device-cuda-absent", "evaluate", "traceback")
def _(c):
    """--device cuda on a machine without CUDA."""
    return expect_error(_eval(c, "--device", "cuda"), "cuda")


@case("evaluate/dtype-bogus", "evaluate", "traceback")
def _(c):
    """--dtype float8."""
    return expect_error(_eval(c, "--dtype", "float8"), "float8")


@case("evaluate/engine-vllm-missing", "evaluate", "traceback")
def _(c):
    """--engine vllm without the vllm extra installed."""
    return expect_error(_eval(c, "--engine", "vllm"), "vllm")


@case("evaluate/cache-dir-is-file", "evaluate", "traceback")
def _(c):
    """--cache-dir names an existing file (and the cache is on)."""
    f = c.write("cachefile", "x")
    c.protect(f)
    out = c.cli("evaluate", "--model", c.fx.model, "--data", c.fx.bench, "--out", c.path("run"),
                "--max-new-tokens", "4", "--no-progress", "--cache-dir", f)
    return expect_error(out, "cachefile", success_check=lambda: run_problem(c.path("run")))


@case("evaluate/label-html", "evaluate", "ordinary use")
def _(c):
    """A label with HTML is stored as given (it is data)."""
    label = "<b>npo</b> & 'x'"
    out = _eval(c, "--label", label)
    return expect_ok(out, lambda: run_problem(c.path("run"), label=label))


@case("evaluate/stale-cache-weights-replaced", "evaluate", "stale rerun")
def _(c):
    """With the evaluation cache on, the model's weights are replaced in place: no stale generations."""
    m = c.copy("model")
    cache = c.path("cache")
    args = ["--max-new-tokens", "4", "--no-progress", "--cache-dir", cache]
    c.cli("evaluate", "--model", m, "--data", c.fx.bench, "--out", c.path("run1"), *args, setup=True)
    (m / "model.safetensors").write_bytes((c.fx.model2 / "model.safetensors").read_bytes())
    out = c.cli("evaluate", "--model", m, "--data", c.fx.bench, "--out", c.path("run2"), *args)
    c.cli("evaluate", "--model", c.fx.model2, "--data", c.fx.bench, "--out", c.path("ref"),
          "--max-new-tokens", "4", "--no-progress", "--no-cache", setup=True)

    def check():
        a = fw.read_json(c.path("run2") / "result.json")["metrics"]
        b = fw.read_json(c.path("ref") / "result.json")["metrics"]
        return None if a == b else "cached numbers of the old weights served for the new ones"

    return expect_ok(out, check)


@case("evaluate/stale-cache-data-changed", "evaluate", "stale rerun")
def _(c):
    """With the cache on, forget.jsonl changes between two evaluations: no stale generations."""
    b = c.copy("bench")
    cache = c.path("cache")
    args = ["--max-new-tokens", "4", "--no-progress", "--cache-dir", cache]
    c.cli("evaluate", "--model", c.fx.model, "--data", b, "--out", c.path("run1"), *args, setup=True)
    rows = _rows(c, "forget.jsonl")
    rows[0]["input"] = "Madera, a quiet town, was home to Sherry the potter."
    c.write("bench/forget.jsonl", fw.jsonl_text(rows))
    out = c.cli("evaluate", "--model", c.fx.model, "--data", b, "--out", c.path("run2"), *args)

    def check():
        s = [json.loads(l) for l in (c.path("run2") / "samples.jsonl").read_text().splitlines()]
        return None if s[0]["input"] == rows[0]["input"] else "samples show the old prompt"

    return expect_ok(out, check)


# -- MCQ (utility / MMLU) ----------------------------------------------------------------------------
@case("evaluate/utility-ok", "evaluate", "ordinary use")
def _(c):
    """--utility with a well-formed MCQ folder: utility recorded, full true."""
    out = _eval(c, "--utility", c.fx.utility, "--label", "NEW", timeout=240)

    def check():
        r = fw.read_json(c.path("run") / "result.json")
        if r["metrics"].get("utility") is None:
            return "no utility metric"
        return None if r["utility"]["full"] and r["utility"]["n_questions"] == 6 else f"utility info {r['utility']}"

    return expect_ok(out, check)


@case("evaluate/utility-empty-subject", "evaluate", "empty subject", fast=True)
def _(c):
    """A utility subject's test CSV is empty: an error, or `full` false -- never dropped with full true."""
    u = c.copy("utility")
    (u / "test" / "rivers_test.csv").write_text("")
    out = _eval(c, "--utility", u, timeout=240)

    def check():
        r = fw.read_json(c.path("run") / "result.json")
        if r["utility"]["full"]:
            return f"subject 'rivers' dropped but utility.full is true (subjects {r['utility']['subjects']})"
        return None

    return expect_error(out, "rivers", success_check=check)


@case("evaluate/utility-missing", "evaluate", "traceback")
def _(c):
    """--utility names a folder that does not exist."""
    return expect_error(_eval(c, "--utility", c.path("nou")), "nou")


@case("evaluate/utility-few-dev-rows", "evaluate", "traceback")
def _(c):
    """5-shot prompts but a subject has 2 dev questions."""
    u = c.copy("utility")
    p = u / "dev" / "rivers_dev.csv"
    p.write_text("\n".join(p.read_text().splitlines()[:2]) + "\n")
    return expect_error(_eval(c, "--utility", u), "rivers", "dev")


@case("evaluate/utility-five-columns", "evaluate", "traceback")
def _(c):
    """A utility CSV with 5 columns."""
    u = c.copy("utility")
    (u / "test" / "rivers_test.csv").write_text("q,a,b,c,A\nq2,a,b,c,B\n")
    return expect_error(_eval(c, "--utility", u), "rivers_test.csv", "columns")


@case("evaluate/utility-bad-answer", "evaluate", "traceback")
def _(c):
    """A utility answer letter is E."""
    u = c.copy("utility")
    (u / "test" / "rivers_test.csv").write_text("q,a,b,c,d,E\n")
    return expect_error(_eval(c, "--utility", u), "rivers_test.csv", "E")


def _jinja_subject(c, subject: str):
    u = c.copy("utility")
    for split in ("dev", "test"):
        src = u / split / f"rivers_{split}.csv"
        src.rename(u / split / f"{subject}_{split}.csv")
    out = _eval(c, "--utility", u, timeout=240)
    return out, u


@case("evaluate/utility-jinja-popen", "evaluate", "security", fast=True)
def _(c):
    """A utility subject (file name) holding a Jinja payload that runs a shell command."""
    subject = "{{ cycler.__init__.__globals__.os.popen('id>PWNED1').read() }}"
    out, _ = _jinja_subject(c, subject)
    return expect_error(out, "subject", success_check=lambda: None if not c.canary() else "payload ran")


@case("evaluate/utility-jinja-attr", "evaluate", "security")
def _(c):
    """The same payload spelled without underscores (survives the '_' to ' ' replacement)."""
    g = "\\x5f\\x5f"
    subject = ("{{ (cycler|attr('" + g + "init" + g + "')|attr('" + g + "globals" + g + "'))['os']"
               ".popen('id>PWNED2').read() }}")
    out, _ = _jinja_subject(c, subject)
    return expect_error(out, "subject", success_check=lambda: None if not c.canary() else "payload ran")


@case("evaluate/utility-jinja-lipsum", "evaluate", "security")
def _(c):
    """A subject using Jinja's lipsum global to reach os.popen."""
    subject = "{{ lipsum.__globals__['os'].popen('id>PWNED3').read() }}"
    out, _ = _jinja_subject(c, subject)
    return expect_error(out, "subject", success_check=lambda: None if not c.canary() else "payload ran")


@case("evaluate/mmlu-jinja-popen", "evaluate", "security")
def _(c):
    """The payload as an MMLU subject (--mmlu), not the utility set."""
    u = c.copy("utility")
    subject = "{{ cycler.__init__.__globals__.os.popen('id>PWNED4').read() }}"
    for split in ("dev", "test"):
        (u / split / f"rivers_{split}.csv").rename(u / split / f"{subject}_{split}.csv")
    out = _eval(c, "--mmlu", u, timeout=240)
    return expect_error(out, "subject", success_check=lambda: None if not c.canary() else "payload ran")


@case("evaluate/mmlu-hub-offline", "evaluate", "traceback")
def _(c):
    """--mmlu hub while offline."""
    return expect_error(_eval(c, "--mmlu", "hub"), ("offline", "hub"))


@case("evaluate/mmlu-subject-typo", "evaluate", "traceback")
def _(c):
    """--mmlu-subjects with a typo."""
    return expect_error(_eval(c, "--mmlu", c.fx.utility, "--mmlu-subjects", "geografy"), "geografy")


@case("evaluate/mmlu-limit-zero", "evaluate", "traceback")
def _(c):
    """--mmlu-limit 0."""
    return expect_error(_eval(c, "--mmlu", c.fx.utility, "--mmlu-limit", "0"), "limit")


@case("evaluate/mmlu-fewshot-negative", "evaluate", "traceback")
def _(c):
    """--mmlu-fewshot -1."""
    return expect_error(_eval(c, "--mmlu", c.fx.utility, "--mmlu-fewshot", "-1"), "few")
