"""The conformance suite every registered unlearning method goes through (scikit-learn style).

Parametrised over ``METHODS.names()`` at collection time, so a method gets this coverage just by
registering — built-in, or a plugin through the ``unlearnbench.methods`` entry-point group (the test
plugin package included). On a tiny Llama that first memorises the mini benchmark, a short run must:
finish without NaN/inf, return a model of the same architecture, raise the forget answers' loss,
record its hyperparameters, and give identical weights when repeated with the same seed.

A method can make its run cheap with a class attribute ``conformance_params`` (merged over the
suite's own cheap settings), or opt out with ``conformance = False`` (composite systems that train
several models and are covered by their own tests).
"""

from __future__ import annotations

import copy
import functools
import inspect

import pytest

from harness.core.registry import METHODS
from harness.core.types import UnlearnContext

#: Cheap settings for every method built on the shared loop (a few optimiser steps).
LOOP_PARAMS = dict(epochs=3, max_steps=3, per_device_batch_size=4, learning_rate=3e-3, eval_every=0, seed=0)


def _method_names() -> list:
    out = []
    for name in METHODS.names():
        cls = METHODS.get(name)
        marks = []
        if getattr(cls, "conformance", True) is False:
            marks.append(pytest.mark.skip(reason=f"{name} opts out of the conformance suite (composite system)"))
        out.append(pytest.param(name, marks=marks, id=name))
    return out


METHOD_NAMES = _method_names()




def _params_for(cls) -> dict:
    from baselines.base import LossMethod

    params = dict(LOOP_PARAMS) if issubclass(cls, LossMethod) else {}
    params.update(getattr(cls, "conformance_params", {}) or {})
    return params


@functools.lru_cache(maxsize=1)
def _memorised():
    """A tiny Llama fitted to the mini benchmark (so there is something to unlearn), and its tokenizer."""
    import torch

    from conftest import MINI_FORGET, MINI_RETAIN, all_mini_texts
    from harness.synthetic.tiny import tiny_llama, train_bpe_tokenizer

    tok = train_bpe_tokenizer(all_mini_texts() * 3, vocab_size=400)
    model = tiny_llama(tok, hidden_size=64, num_layers=2, seed=0)
    texts = [r["input"] + r["output"] for r in MINI_FORGET + MINI_RETAIN]
    enc = tok(texts, return_tensors="pt", padding=True)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(40):
        loss = model(**enc, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    return model, tok


@functools.lru_cache(maxsize=1)
def _benchmark():
    import tempfile
    from pathlib import Path

    from conftest import make_mini_benchmark
    from harness.tasks.lume.data import load_benchmark

    return load_benchmark(make_mini_benchmark(Path(tempfile.mkdtemp(prefix="conformance-")) / "bench"))


def forget_loss(model, tokenizer, bench) -> float:
    """Mean answer-token NLL of the forget records (answer + EOS, prompt masked), as the loop trains it."""
    import torch

    from harness.training.examples import build_example

    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for i, rec in enumerate(bench.forget):
            ex = build_example(tokenizer, rec, i, 256, 0.8, True)
            ids = torch.tensor([ex["input_ids"]])
            labels = torch.tensor([ex["labels"]])
            n = int((labels[:, 1:] != -100).sum())
            total += float(model(input_ids=ids, labels=labels).loss) * n
            count += n
    return total / count


def _base(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@functools.lru_cache(maxsize=None)
def _runs(name: str):
    """Two runs of ``name`` with the same seed from the same memorised model."""
    import torch

    cls = METHODS.get(name)
    base, tok = _memorised()
    bench = _benchmark()
    params = _params_for(cls)
    before = forget_loss(base, tok, bench)
    outs, methods, events = [], [], []
    for _ in range(2):
        torch.manual_seed(1234)  # the method must seed itself; a different global state must not matter
        method = cls(**params)
        log: list = []
        model = method.unlearn(copy.deepcopy(base), tok, bench,
                               UnlearnContext(seed=0, log_event=log.append, progress=False))
        outs.append(model)
        methods.append(method)
        events.append(log)
        torch.manual_seed(999)
    return {"cls": cls, "params": params, "before": before, "models": outs, "methods": methods,
            "events": events, "tok": tok, "bench": bench, "base": base}


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_runs_without_nan_or_inf(name):
    import torch

    run = _runs(name)
    for model in run["models"]:
        for pname, p in model.named_parameters():
            assert torch.isfinite(p).all(), f"{name}: non-finite values in {pname}"
    after = forget_loss(run["models"][0], run["tok"], run["bench"])
    assert after == after and after != float("inf"), f"{name}: forget loss {after}"


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_returns_same_architecture(name):
    run = _runs(name)
    original = run["base"]
    for model in run["models"]:
        base = _base(model)
        assert type(base) is type(original), f"{name} returned {type(base).__name__}"
        assert base.config.to_dict()["vocab_size"] == original.config.vocab_size
        n_orig = sum(p.numel() for p in original.parameters())
        n_base = sum(p.numel() for n, p in base.named_parameters() if "lora_" not in n)
        assert n_base == n_orig, f"{name}: {n_base} base parameters, expected {n_orig}"


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_raises_forget_loss(name):
    run = _runs(name)
    after = forget_loss(run["models"][0], run["tok"], run["bench"])
    assert after > run["before"], f"{name}: forget loss {run['before']:.4f} -> {after:.4f} did not rise"


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_records_hyperparameters(name):
    run = _runs(name)
    cls, method = run["cls"], run["methods"][0]
    defaults = cls.defaults()
    for pname, default in defaults.items():
        assert pname in inspect.signature(cls.__init__).parameters or hasattr(method, pname), pname
    params = method.get_params()
    assert set(params) == set(defaults)
    for key, value in run["params"].items():
        assert params[key] == value, f"{name}: get_params()[{key!r}] = {params[key]!r}, expected {value!r}"
    assert cls(**params).get_params() == params  # round trip: the record rebuilds the method


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_deterministic_for_fixed_seed(name):
    import torch

    a, b = (_state(m) for m in _runs(name)["models"])
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{name}: {key} differs between two runs with the same seed"


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_logs_training_losses(name):
    from baselines.base import LossMethod

    run = _runs(name)
    if not issubclass(run["cls"], LossMethod):
        pytest.skip("not built on the shared loop")
    train_events = [e for e in run["events"][0] if e.get("event") == "train"]
    assert [e["step"] for e in train_events] == list(range(1, LOOP_PARAMS["max_steps"] + 1))
    for e in train_events:
        assert isinstance(e["loss"], float) and isinstance(e["lr"], float)
