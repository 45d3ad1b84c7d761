"""The shared training loop, the loss formulas, the run orchestration and the unlearn/run commands."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import MINI_FORGET, MINI_RETAIN

torch = pytest.importorskip("torch")




# ------------------------------------------------------------------------------------------------
# helpers
@pytest.fixture
def bench(mini_benchmark):
    from harness.tasks.lume.data import load_benchmark

    return load_benchmark(mini_benchmark)


def _examples(tokenizer, records, **kw):
    from harness.training.examples import build_example

    opts = dict(max_length=256, prompt_max_fraction=0.8, mask_prompt=True) | kw
    return [build_example(tokenizer, r, i, **opts) for i, r in enumerate(records)]


def _step(model, tokenizer, bench, cache=None, padding_side="right", layer=None):
    """A TrainStep over the first 4 forget and retain records."""
    from harness.training.examples import PairedCollator
    from harness.training.step import TrainStep

    collator = PairedCollator(tokenizer, "longest", 256, padding_side)
    f = _examples(tokenizer, bench.forget)[:4]
    r = _examples(tokenizer, bench.retain)[:4]
    batch = collator([{"forget": a, "retain": b} for a, b in zip(f, r)])
    unwrapped = model
    return TrainStep(model, unwrapped, batch, cache, layer, 0, 0)


def _perturb_lora(peft_model, seed=0, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * scale)


def _lora(model, r=4):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    return get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=r, lora_alpha=r, target_modules="all-linear",
                                            lora_dropout=0.0))


# ------------------------------------------------------------------------------------------------
# examples, pairing, padding
def test_build_example_masks_prompt_and_labels_answer_plus_eos(tiny_tokenizer, bench):
    rec = bench.forget[0]
    (ex,) = _examples(tiny_tokenizer, [rec])
    prompt = tiny_tokenizer(rec.input)["input_ids"]
    answer = tiny_tokenizer(rec.output, add_special_tokens=False)["input_ids"] + [tiny_tokenizer.eos_token_id]
    assert ex["input_ids"] == prompt + answer
    assert ex["labels"] == [-100] * len(prompt) + answer
    assert ex["input_ids"][0] == tiny_tokenizer.bos_token_id  # default special tokens on the prompt
    (unmasked,) = _examples(tiny_tokenizer, [rec], mask_prompt=False)
    assert unmasked["labels"] == unmasked["input_ids"]


def test_build_example_truncates_prompt_from_the_left_and_example_to_max_length(tiny_tokenizer, bench):
    rec = bench.forget[0]
    prompt = tiny_tokenizer(rec.input)["input_ids"]
    (ex,) = _examples(tiny_tokenizer, [rec], max_length=10, prompt_max_fraction=0.5)
    assert len(ex["input_ids"]) == 10
    assert ex["input_ids"][:5] == prompt[-5:]  # the prompt keeps its last 50 % of 10 tokens
    assert ex["labels"][:5] == [-100] * 5 and all(t != -100 for t in ex["labels"][5:])


def test_pairing_cycle_and_seeded_random(tiny_tokenizer, bench):
    from harness.training.examples import PairedDataset

    f, r = _examples(tiny_tokenizer, bench.forget), _examples(tiny_tokenizer, bench.retain)
    cyc = PairedDataset(f, r, "cycle", 0)
    assert cyc.retain_for == [i % len(r) for i in range(len(f))]
    a, b = PairedDataset(f, r, "random", 3), PairedDataset(f, r, "random", 3)
    assert a.retain_for == b.retain_for
    draws = {tuple(a.retain_for)}
    for epoch in range(1, 4):
        a.set_epoch(epoch)
        draws.add(tuple(a.retain_for))
    assert len(draws) > 1  # re-drawn every epoch
    assert a[2]["forget"] is f[2] and a[2]["retain"] is r[a.retain_for[2]]


@pytest.mark.parametrize("side", ["right", "left"])
def test_collator_pads_tokens_and_labels(tiny_tokenizer, bench, side):
    from harness.training.examples import PairedCollator

    f = _examples(tiny_tokenizer, bench.forget)[:3]
    coll = PairedCollator(tiny_tokenizer, "longest", 256, side)
    batch = coll([{"forget": x, "retain": x} for x in f])["forget"]
    longest = max(len(x["input_ids"]) for x in f)
    assert batch["input_ids"].shape == (3, longest)
    for row, ex in enumerate(f):
        n = len(ex["input_ids"])
        real = slice(0, n) if side == "right" else slice(longest - n, longest)
        assert batch["input_ids"][row, real].tolist() == ex["input_ids"]
        assert batch["labels"][row, real].tolist() == ex["labels"]
        assert int(batch["attention_mask"][row].sum()) == n
        assert (batch["labels"][row][batch["attention_mask"][row] == 0] == -100).all()
    assert batch["index"].tolist() == [0, 1, 2]
    assert tiny_tokenizer.padding_side == "left"  # the caller's tokenizer is left alone
    fixed = PairedCollator(tiny_tokenizer, "max_length", 40, side)([{"forget": f[0], "retain": f[0]}])
    assert fixed["forget"]["input_ids"].shape == (1, 40)


# ------------------------------------------------------------------------------------------------
# reference quantities and loss formulas
def test_lora_reference_is_the_frozen_base(tiny_tokenizer, tiny_llama, bench):
    from harness.training.step import kl_ref_to_model, sequence_nll

    base_logits = None
    step0 = _step(tiny_llama, tiny_tokenizer, bench)
    with torch.no_grad():
        base_logits = tiny_llama(input_ids=step0.forget.input_ids, attention_mask=step0.forget.attention_mask).logits
    model = _lora(tiny_llama)
    _perturb_lora(model)
    step = _step(model, tiny_tokenizer, bench)
    ref_values, ref_mask = step.forget.ref_label_logprobs()
    from harness.training.step import label_token_logprobs

    expected, _ = label_token_logprobs(base_logits, step.forget.labels)
    assert torch.allclose(ref_values, expected, atol=1e-5)
    # the adapter changed the model, so policy and reference now differ
    assert not torch.allclose(sequence_nll(step.forget), sequence_nll(step.forget, reference=True))
    assert float(kl_ref_to_model(step.retain)) > 0
    for _, p in model.named_parameters():
        assert p.grad is None


@pytest.mark.parametrize("side", ["right", "left"])
def test_full_finetune_reference_cache_matches_direct_computation(tiny_tokenizer, tiny_llama, bench, side):
    from harness.training.examples import PairedCollator
    from harness.training.reference import ReferenceCache
    from harness.training.step import label_token_logprobs

    collator = PairedCollator(tiny_tokenizer, "longest", 256, side)
    examples = {"forget": _examples(tiny_tokenizer, bench.forget), "retain": _examples(tiny_tokenizer, bench.retain)}
    cache = ReferenceCache()
    needs = {("forget", "label_logprobs"), ("retain", "distribution"), ("retain", "hidden")}
    cache.build(tiny_llama, collator, examples, needs, 1, "cpu", 1.0, progress=False)
    step = _step(tiny_llama, tiny_tokenizer, bench, cache=cache, padding_side=side, layer=1)
    with torch.no_grad():
        out_f = tiny_llama(input_ids=step.forget.input_ids, attention_mask=step.forget.attention_mask)
        out_r = tiny_llama(input_ids=step.retain.input_ids, attention_mask=step.retain.attention_mask,
                           output_hidden_states=True)
    got, mask = step.forget.ref_label_logprobs()
    want, want_mask = label_token_logprobs(out_f.logits, step.forget.labels)
    assert torch.equal(mask, want_mask)
    assert torch.allclose(got * mask, want * want_mask, atol=1e-4)
    real = step.retain.attention_mask.bool()
    dist = step.retain.ref_logprobs()
    assert torch.allclose(dist[real], torch.log_softmax(out_r.logits, -1)[real], atol=2e-3)  # float16 storage
    assert torch.allclose(step.retain.ref_hidden()[real], out_r.hidden_states[1][real], atol=1e-4)
    with pytest.raises(Exception, match="reference_needs"):
        step.forget.ref_logprobs()  # not declared, not cached


def test_reference_cache_refuses_oversized_distribution(tiny_tokenizer, tiny_llama, bench):
    from harness.training.examples import PairedCollator
    from harness.training.reference import ReferenceCache
    from harness.training.step import TrainingError

    collator = PairedCollator(tiny_tokenizer, "longest", 256, "right")
    examples = {"forget": [], "retain": _examples(tiny_tokenizer, bench.retain)}
    with pytest.raises(TrainingError, match="finetune='lora'"):
        ReferenceCache().build(tiny_llama, collator, examples, {("retain", "distribution")}, None, "cpu", 1e-9, False)


def test_npo_loss_matches_the_formula(tiny_tokenizer, tiny_llama, bench):
    from baselines.npo import NPO

    model = _lora(tiny_llama)
    _perturb_lora(model, scale=0.3)
    step = _step(model, tiny_tokenizer, bench)
    loss, parts = NPO(beta=0.1).loss(step)
    # independent computation: per-example sums of label-token NLL, policy vs adapters disabled
    labels = step.forget.labels
    def seq_nll(logits):
        lp = torch.log_softmax(logits[:, :-1].float(), -1)
        tgt = labels[:, 1:]
        m = tgt != -100
        tok = lp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return -(tok * m).sum(1)
    with torch.no_grad():
        pol = seq_nll(model(input_ids=step.forget.input_ids, attention_mask=step.forget.attention_mask).logits)
        with model.disable_adapter():
            ref = seq_nll(model(input_ids=step.forget.input_ids, attention_mask=step.forget.attention_mask).logits)
    expected = -(2 / 0.1) * torch.nn.functional.logsigmoid(-0.1 * (ref - pol)).mean()
    assert math.isclose(float(loss), float(expected), rel_tol=1e-5)


def test_zjuklab_formulation_matches_their_code(tiny_tokenizer, tiny_llama, bench):
    """Their IterativeUnlearner.compute_loss, re-derived: outputs.loss means, kl_div batchmean on [B·T, V]."""
    import torch.nn.functional as F

    from baselines.npo_gdr_klr import NPOGradDiffKL

    model = _lora(tiny_llama)
    _perturb_lora(model, scale=0.3)
    step = _step(model, tiny_tokenizer, bench)
    method = NPOGradDiffKL(formulation="zjuklab", npo_weight=0.4, kl_weight=0.4, retain_weight=0.2)
    loss, parts = method.loss(step)
    f, r = step.forget.batch, step.retain.batch
    with torch.no_grad():
        out_f = model(input_ids=f["input_ids"], attention_mask=f["attention_mask"], labels=f["labels"])
        out_r = model(input_ids=r["input_ids"], attention_mask=r["attention_mask"], labels=r["labels"])
        with model.disable_adapter():
            ref_f = model(input_ids=f["input_ids"], attention_mask=f["attention_mask"], labels=f["labels"])
            ref_r = model(input_ids=r["input_ids"], attention_mask=r["attention_mask"], labels=r["labels"])
    V = out_r.logits.shape[-1]
    kl_r = F.kl_div(F.log_softmax(out_r.logits, -1).view(-1, V), F.log_softmax(ref_r.logits, -1).view(-1, V),
                    reduction="batchmean", log_target=True)
    npo = -F.logsigmoid(0.1 * (out_f.loss - ref_f.loss)).mean() * 2 / 0.1
    expected = 0.4 * npo + 0.4 * kl_r + 0.2 * out_r.loss
    assert math.isclose(float(parts["npo"]), float(npo), rel_tol=1e-5)
    assert math.isclose(float(parts["retain_kl"]), float(kl_r), rel_tol=1e-4, abs_tol=1e-7)
    assert math.isclose(float(parts["retain_nll"]), float(out_r.loss), rel_tol=1e-5)
    assert math.isclose(float(loss), float(expected), rel_tol=1e-5)


def test_zjuklab_presets():
    from baselines.npo_gdr_klr import NPOGradDiffKL
    from harness.training.runner import resolve_params

    over = resolve_params("npo_gdr_klr", {"preset": "zjuklab_over"})
    under = resolve_params("npo_gdr_klr", {"preset": "zjuklab_under"}, {"learning_rate": 5e-5})
    assert (over["npo_weight"], over["kl_weight"], over["retain_weight"]) == (0.4, 0.4, 0.2)
    assert (under["npo_weight"], under["kl_weight"], under["retain_weight"]) == (0.3, 0.3, 0.4)
    for p in (over, under):
        assert p["formulation"] == "zjuklab" and p["beta"] == 0.1 and p["finetune"] == "lora"
        assert (p["lora_r"], p["lora_alpha"], p["lora_dropout"], p["lora_target_modules"]) == (32, 32, 0.05, "all-linear")
        assert (p["epochs"], p["weight_decay"], p["warmup_epochs"], p["seed"], p["max_length"]) == (5, 0.01, 1.0, 42, 256)
    assert over["learning_rate"] == 1e-4 and under["learning_rate"] == 5e-5  # explicit values beat the preset
    assert (over["per_device_batch_size"], under["per_device_batch_size"]) == (1, 2)
    NPOGradDiffKL(**over)  # the resolved set is valid


# ------------------------------------------------------------------------------------------------
# the loop
def _train(model, tokenizer, bench, method="grad_ascent", out_dir=None, **params):
    from harness.training.runner import build_method, resolve_params

    events = []
    base = dict(epochs=2, max_steps=None, per_device_batch_size=4, eval_every=0, learning_rate=1e-3, seed=0)
    m = build_method(method, resolve_params(method, base | params))
    from harness.core.types import UnlearnContext

    out = m.unlearn(model, tokenizer, bench, UnlearnContext(out_dir=out_dir, seed=0, log_event=events.append,
                                                             progress=False))
    return out, events


def test_warmup_and_linear_schedule_in_log(tiny_tokenizer, tiny_llama, bench):
    _, events = _train(tiny_llama, tiny_tokenizer, bench, epochs=3, per_device_batch_size=2, warmup_epochs=1.0)
    start = next(e for e in events if e["event"] == "start")
    assert start["steps_per_epoch"] == 4 and start["total_steps"] == 12 and start["warmup_steps"] == 4
    lrs = [e["lr"] for e in events if e["event"] == "train"]
    assert len(lrs) == 12
    assert lrs[:4] == pytest.approx([1e-3 * k / 4 for k in range(1, 5)])  # warm-up over one epoch
    assert lrs[-1] == pytest.approx(0.0) and all(a >= b for a, b in zip(lrs[3:], lrs[4:]))  # linear decay


def test_gradient_accumulation_counts_optimiser_steps(tiny_tokenizer, tiny_llama, bench):
    _, events = _train(tiny_llama, tiny_tokenizer, bench, epochs=1, per_device_batch_size=1,
                       gradient_accumulation_steps=4)
    start = next(e for e in events if e["event"] == "start")
    assert start["global_batch"] == 4 and start["steps_per_epoch"] == 2  # 7 examples → ceil(7 / 4)
    assert [e["step"] for e in events if e["event"] == "train"] == [1, 2]


def test_full_finetune_npo_trains_every_weight_without_a_second_model(tiny_tokenizer, tiny_llama, bench):
    before = {k: v.clone() for k, v in tiny_llama.state_dict().items()}
    out, events = _train(tiny_llama, tiny_tokenizer, bench, method="npo", finetune="full", max_steps=2)
    assert out is tiny_llama and not hasattr(out, "peft_config")
    changed = [k for k, v in out.state_dict().items() if not torch.equal(v, before[k])]
    assert "lm_head.weight" in changed and any("embed_tokens" in k for k in changed)
    first = next(e for e in events if e["event"] == "train")
    assert first["forget_nll_minus_ref"] == pytest.approx(0.0, abs=1e-4)  # the cache is the initial model


def test_snapshots_checkpoints_and_eval_events(tmp_path, tiny_tokenizer, tiny_llama, bench):
    from safetensors.torch import load_file

    out, events = _train(tiny_llama, tiny_tokenizer, bench, out_dir=tmp_path, epochs=2,
                         save_param_snapshots_at=[0, 2], save_checkpoints=True, eval_every="epoch",
                         eval_sample=2, eval_max_new_tokens=4)
    s0 = load_file(tmp_path / "snapshots" / "step_0.safetensors")
    s2 = load_file(tmp_path / "snapshots" / "step_2.safetensors")
    assert not (tmp_path / "snapshots" / "step_1.safetensors").exists()
    assert s0.keys() == s2.keys() and all("lora_" in k for k in s0)
    assert any(not torch.equal(s0[k], s2[k]) for k in s0 if "lora_B" in k)
    assert (tmp_path / "checkpoints" / "epoch_1" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "checkpoints" / "epoch_2" / "adapter_config.json").is_file()
    evals = [e for e in events if e["event"] == "eval"]
    assert [(e["step"], e["epoch"]) for e in evals] == [(0, 0.0), (2, 1.0), (4, 2.0)]
    for e in evals:
        assert e["n_forget"] == 2 and e["n_retain"] == 2
        assert e["answer_loss_forget"] > 0 and e["answer_loss_retain"] > 0
        scores = [v for k, v in e.items() if k.count("/") == 2]
        assert scores and all(v is None or 0 <= v <= 1 for v in scores)
        assert any(e[f"{split}/all/{m}"] is not None for split in ("forget", "retain")
                   for m in ("regurgitation", "knowledge"))
        assert {k.split("/")[1] for k in e if k.count("/") == 2} <= {"Task1", "Task2", "Task3", "all"}


def test_non_finite_loss_stops_with_a_clear_error(tiny_tokenizer, tiny_llama, bench):
    from baselines.grad_ascent import GradAscent
    from harness.training.step import TrainingError
    from harness.core.types import UnlearnContext

    class Broken(GradAscent):
        def loss(self, step):
            loss, parts = super().loss(step)
            return loss * float("nan"), parts

    with pytest.raises(TrainingError, match="non-finite loss .* optimiser step 1"):
        Broken(max_steps=1, eval_every=0).unlearn(tiny_llama, tiny_tokenizer, bench, UnlearnContext(progress=False))


def test_bad_setting_fails_at_construction():
    from baselines.npo import NPO

    with pytest.raises(ValueError, match="finetune must be one of"):
        NPO(finetune="qlora")
    with pytest.raises(TypeError, match="unknown hyperparameter"):
        NPO(betta=0.2)


# ------------------------------------------------------------------------------------------------
# parameters and the runner
@pytest.mark.parametrize("text,value", [("3", 3), ("1e-4", 1e-4), ("true", True), ("null", None), ("[1, 2]", [1, 2]),
                                        ("'a b'", "a b"), ("cosine", "cosine"), ('"x"', "x"), ("1_000", 1000)])
def test_parse_value(text, value):
    from harness.training.runner import parse_value

    assert parse_value(text) == value


def test_resolve_params_precedence_and_unknown_keys():
    from harness.training.runner import ConfigError, parse_overrides, resolve_params

    p = resolve_params("npo", {"beta": 0.2, "epochs": 3}, parse_overrides(["beta=0.3"]))
    assert p["beta"] == 0.3 and p["epochs"] == 3 and p["learning_rate"] == 1e-4
    with pytest.raises(ConfigError, match=r"unknown hyperparameter\(s\) \['betta'\].*from cfg.toml.*valid: .*beta"):
        resolve_params("npo", {"betta": 1}, source_names=["cfg.toml"])
    with pytest.raises(ConfigError, match="unknown preset 'x'.*zjuklab_over"):
        resolve_params("npo_gdr_klr", {"preset": "x"})
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["beta"])


def _cli(*argv):
    from harness.cli import main

    return main(list(argv))


def test_unlearn_cli_saves_adapters_config_and_skips_finished_runs(tmp_path, tiny_model_dir, mini_benchmark, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = tmp_path / "npo.yaml"
    cfg.write_text("beta: 0.2\nepochs: 1\neval_every: 0\n")
    out = tmp_path / "run"
    rc = _cli("unlearn", "--method", "npo", "--model", str(tiny_model_dir), "--data", str(mini_benchmark),
              "--out", str(out), "--config", str(cfg), "--set", "learning_rate=1e-3", "max_steps=1", "--no-eval",
              "--no-progress")
    assert rc == 0
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "npo" and config["params"]["beta"] == 0.2 and config["params"]["learning_rate"] == 1e-3
    assert config["params"]["max_steps"] == 1 and config["base_model"] == str(tiny_model_dir.resolve())
    base = AutoModelForCausalLM.from_pretrained(config["base_model"])
    model = PeftModel.from_pretrained(base, out / "model")
    assert any("lora_A" in n for n, _ in model.named_parameters())
    assert (out / "model" / "tokenizer.json").is_file()
    lines = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [x["event"] for x in lines] == ["start", "train", "end"]
    capsys.readouterr()
    assert _cli("unlearn", "--method", "npo", "--model", str(tiny_model_dir), "--data", str(mini_benchmark),
                "--out", str(out), "--config", str(cfg), "--set", "learning_rate=1e-3", "max_steps=1", "--no-eval") == 0
    assert "skipped" in capsys.readouterr().out
    assert _cli("unlearn", "--method", "npo", "--model", str(tiny_model_dir), "--data", str(mini_benchmark),
                "--out", str(out), "--set", "max_steps=2", "--no-eval") == 2
    assert "different settings" in capsys.readouterr().err
    assert _cli("unlearn", "--method", "npo", "--model", str(tiny_model_dir), "--data", str(mini_benchmark),
                "--out", str(tmp_path / "x"), "--set", "betta=2", "--no-eval") == 2
    err = capsys.readouterr().err
    assert "unknown hyperparameter(s) ['betta']" in err and "learning_rate" in err


def test_run_cli_unlearns_and_evaluates_into_one_folder(tmp_path, tiny_model_dir, mini_benchmark):
    from harness.core.records import read_result

    out = tmp_path / "run"
    cfg = tmp_path / "run.toml"
    cfg.write_text(f"""
method = "grad_diff"
model = "{tiny_model_dir}"
data = "{mini_benchmark}"
out = "{out}"
seed = 3
label = "gd-test"
[params]
max_steps = 2
learning_rate = 1e-3
eval_every = 0
finetune = "full"
[eval]
max_new_tokens = 8
cache = false
""")
    assert _cli("run", str(cfg), "--set", "retain_weight=2", "--no-progress") == 0
    result = read_result(out)
    assert result.method.name == "grad_diff" and result.label == "gd-test"
    assert result.method.params["retain_weight"] == 2 and result.method.params["finetune"] == "full"
    assert result.timings["unlearn"] > 0 and "forget/Task1/regurgitation" in result.metrics
    assert result.provenance.seed == 3
    assert (out / "model" / "model.safetensors").is_file() and (out / "samples.jsonl").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["command"] == "run" and config["eval"]["max_new_tokens"] == 8


def test_run_cli_rejects_unknown_keys(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('method = "npo"\nmodel = "m"\ndata = "d"\nout = "o"\nepochs = 3\n')
    assert _cli("run", str(cfg)) == 2
