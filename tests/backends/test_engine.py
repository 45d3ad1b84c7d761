"""The evaluation engine: batched generation is exactly one-at-a-time generation; batched losses equal
one-document-at-a-time losses; answer losses, Min-K%, Min-K%++ and zlib by hand; model loading/hashing."""

from __future__ import annotations

import json
import math
import zlib

import pytest

torch = pytest.importorskip("torch")

from conftest import MINI_FORGET, MINI_NONMEMBERS, MINI_MEMBERS, MINI_RETAIN, all_mini_texts  # noqa: E402

from harness.backends import base, batching  # noqa: E402
from harness.backends import hf as engine  # noqa: E402
from harness.backends.loading import load_model, model_info, weight_hash  # noqa: E402



ROWS = MINI_FORGET + MINI_RETAIN
PROMPTS = [r["input"] for r in ROWS] + [d["document"] for d in MINI_MEMBERS + MINI_NONMEMBERS]


def memorise(model, tok, rows, steps=60, lr=1e-2, seed=0):
    """Overfit ``model`` on ``input + output + EOS`` so that greedy decoding regurgitates real text and
    stops at EOS (the random models never emit EOS)."""
    torch.manual_seed(seed)
    seqs = [tok(r["input"] + r["output"])["input_ids"] + [tok.eos_token_id] for r in rows]
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), tok.eos_token_id)
    labels = torch.full((len(seqs), width), -100)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        labels[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model


@pytest.fixture(scope="module")
def memorised_llama(tiny_tokenizer):
    from harness.synthetic.tiny import tiny_llama

    return memorise(tiny_llama(tiny_tokenizer, hidden_size=64, num_layers=2, seed=1), tiny_tokenizer, ROWS)


def reference(model, tok, prompts, max_new_tokens):
    from harness.backends.reference import generate_reference

    return generate_reference(model, tok, prompts, max_new_tokens=max_new_tokens, progress=False)


# -- generation -------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_gpt2"])
def test_batched_generation_is_identical_to_one_at_a_time(arch, request, tiny_tokenizer):
    model = request.getfixturevalue(arch)
    prompts = PROMPTS  # questions, sentences and whole documents
    ref = reference(model, tiny_tokenizer, prompts, 32)
    for bs in (3, 64):
        # verify_margin=0: no near-tie fallback at all, i.e. the raw batched computation is exact here.
        raw = engine.generate_detailed(model, tiny_tokenizer, prompts, max_new_tokens=32, batch_size=bs,
                                       verify_margin=0, progress=False)
        assert raw.token_ids == ref.token_ids
        assert raw.texts == ref.texts
    default = engine.generate_detailed(model, tiny_tokenizer, prompts, max_new_tokens=32, batch_size=64,
                                       progress=False)
    assert default.texts == ref.texts


def test_batched_generation_exact_on_memorised_model(memorised_llama, tiny_tokenizer):
    tok = tiny_tokenizer
    prompts = [r["input"] for r in ROWS]
    ref = reference(memorised_llama, tok, prompts, 40)
    out = engine.generate_detailed(memorised_llama, tok, prompts, max_new_tokens=40, batch_size=4,
                                   verify_margin=0, progress=False)
    assert out.token_ids == ref.token_ids
    assert out.texts == ref.texts
    # Non-trivial: the model stops at EOS (rows of different lengths leave the batch early) and
    # regurgitates most references.
    assert all(ids[-1] == tok.eos_token_id for ids in out.token_ids)
    assert len({len(ids) for ids in out.token_ids}) > 3
    assert sum(t == r["output"] for t, r in zip(out.texts, ROWS)) >= len(ROWS) // 2


def test_exact_logit_ties_pick_the_first_token_like_generate(tiny_tokenizer):
    """Every token 2m+1 gets the same lm_head row as token 2m, so every step is an exact tie; greedy
    generate takes the first maximal index, and so must the engine, even with no near-tie re-check."""
    from harness.synthetic.tiny import tiny_llama

    model = tiny_llama(tiny_tokenizer, hidden_size=64, num_layers=2, seed=3)
    with torch.no_grad():
        w = model.lm_head.weight
        w[1::2] = w[0: w.shape[0] - w.shape[0] % 2: 2][: w[1::2].shape[0]]
    ref = reference(model, tiny_tokenizer, PROMPTS[:6], 12)
    raw = engine.generate_detailed(model, tiny_tokenizer, PROMPTS[:6], max_new_tokens=12, batch_size=6,
                                   verify_margin=0, progress=False)
    assert raw.token_ids == ref.token_ids
    assert all(t % 2 == 0 for row in raw.token_ids for t in row)
    assert all(m == 0 for m in raw.min_margins)


def test_left_padding_and_output_order(tiny_llama, tiny_tokenizer):
    short = "Which city?"
    long = " ".join(r["input"] for r in ROWS[:4])
    alone = engine.generate(tiny_llama, tiny_tokenizer, [short], max_new_tokens=12, batch_size=1,
                            verify_margin=0, progress=False)
    # In a batch with a much longer prompt the short one is left-padded by dozens of tokens.
    mixed = engine.generate(tiny_llama, tiny_tokenizer, [long, short, long[:50]], max_new_tokens=12,
                            batch_size=8, verify_margin=0, progress=False)
    assert mixed[1] == alone[0]
    reversed_out = engine.generate(tiny_llama, tiny_tokenizer, [long[:50], short, long], max_new_tokens=12,
                                   batch_size=8, verify_margin=0, progress=False)
    assert reversed_out == mixed[::-1]


def test_near_tie_rows_fall_back_to_reference(tiny_llama, tiny_tokenizer):
    # A huge margin sends every row to the one-at-a-time path; the texts still match.
    out = engine.generate_detailed(tiny_llama, tiny_tokenizer, PROMPTS[:4], max_new_tokens=8, batch_size=4,
                                   verify_margin=1e9, progress=False)
    assert out.fallback == [0, 1, 2, 3]
    assert out.texts == reference(tiny_llama, tiny_tokenizer, PROMPTS[:4], 8).texts


def test_near_tie_check_replays_only_up_to_the_last_near_tie(tiny_llama, tiny_tokenizer, monkeypatch):
    """Rows with a near tie are re-decoded one at a time only up to their last near-tie step; a row whose
    batched tokens disagree there is regenerated to the end. Simulated: every row reports its last near
    tie at step 3, and row 0's batched token at step 2 is made wrong."""
    real = engine.greedy_pool
    other = tiny_tokenizer(" x", add_special_tokens=False)["input_ids"][-1]

    def pretend(model, prompt_ids, order, max_new_tokens, eos, pad_id, bs, on_finish, last_tie=None, **kw):
        def finish(i, toks, gap):
            if i == 0:
                toks = toks[:2] + [other if toks[2] != other else other + 1] + toks[3:]
            last_tie[i] = 3
            on_finish(i, toks, 0.0)
        real(model, prompt_ids, order, max_new_tokens, eos, pad_id, bs, finish)

    monkeypatch.setattr(engine, "greedy_pool", pretend)
    stats: dict = {}
    out = engine.generate_detailed(tiny_llama, tiny_tokenizer, PROMPTS[:4], max_new_tokens=10, batch_size=4,
                                   verify_margin=1e-4, progress=False, stats=stats)
    assert out.token_ids == reference(tiny_llama, tiny_tokenizer, PROMPTS[:4], 10).token_ids
    assert out.fallback == [0, 1, 2, 3]
    assert stats["generation_fallback_tokens"] == 4 * 4  # 4 tokens replayed per row, not 10
    assert stats["generation_fallback_diverged"] == 1


def test_auto_generation_batch_fits_the_cpu_kv_budget(tiny_llama):
    # width 64, 4 heads, float32: 512 bytes of KV cache per token and layer
    assert batching.default_batch_size(tiny_llama, "generation") == 128  # capped
    tiny_llama.config.num_hidden_layers = 128  # 64 KiB per token: 2 GiB / (64 KiB x 512) = 64 rows
    assert batching.default_batch_size(tiny_llama, "generation") == 64
    tiny_llama.config.num_hidden_layers = 100_000  # a huge model still gets a few rows
    assert batching.default_batch_size(tiny_llama, "generation") == 4
    assert batching.default_batch_size(tiny_llama, "mia") == 16


def test_default_float32_margin_scales_with_width(tiny_llama):
    # 8 x float32 epsilon x sqrt(hidden): 13-16x the largest batched-vs-single difference measured
    # by benchmarks/logit_noise.py at widths 128-1024
    assert engine.default_margin(tiny_llama) == pytest.approx(8 * 2.0 ** -23 * 64 ** 0.5)
    assert engine.default_margin(tiny_llama.to(torch.bfloat16)) == engine.DEFAULT_MARGINS["bfloat16"]
    tiny_llama.to(torch.float32)


def test_stops_at_eos_and_decodes_with_semeval_cleanup(memorised_llama, tiny_tokenizer):
    out = engine.generate_detailed(memorised_llama, tiny_tokenizer, [ROWS[0]["input"]], max_new_tokens=200,
                                   progress=False)
    assert out.token_ids[0][-1] == tiny_tokenizer.eos_token_id and len(out.token_ids[0]) < 200
    assert base.decode(tiny_tokenizer, tiny_tokenizer(" a .", add_special_tokens=False)["input_ids"]
                         + [tiny_tokenizer.eos_token_id], "semeval2025") == " a."
    assert base.decode(tiny_tokenizer, tiny_tokenizer(" a .", add_special_tokens=False)["input_ids"], "plain") == " a ."


def test_batch_size_auto_backs_off_on_out_of_memory(tiny_llama, tiny_tokenizer, monkeypatch):
    real = engine.greedy_pool

    def fake(model, prompt_ids, order, max_new_tokens, eos, pad_id, batch_size, on_finish, **kw):
        if batch_size > 2:
            on_finish(order[0], *_first(model, prompt_ids, order, max_new_tokens, eos, pad_id))
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, prompt_ids, order, max_new_tokens, eos, pad_id, batch_size, on_finish, **kw)

    def _first(model, prompt_ids, order, max_new_tokens, eos, pad_id):
        got = {}
        real(model, prompt_ids, order[:1], max_new_tokens, eos, pad_id, 1, lambda i, t, g: got.update(t=t, g=g))
        return got["t"], got["g"]

    monkeypatch.setattr(engine, "greedy_pool", fake)
    stats: dict = {}
    out = engine.generate(tiny_llama, tiny_tokenizer, PROMPTS[:7], max_new_tokens=6, batch_size="auto",
                          progress=False, stats=stats, verify_margin=0)
    assert stats["batch_size"]["generation"] == 2
    monkeypatch.setattr(engine, "greedy_pool", real)
    assert out == engine.generate(tiny_llama, tiny_tokenizer, PROMPTS[:7], max_new_tokens=6, batch_size=1,
                                  progress=False, verify_margin=0)


@pytest.mark.parametrize("batch_size", [2, 5, 8])
def test_continuous_batching_refills_free_slots(memorised_llama, tiny_tokenizer, batch_size):
    # 13 prompts of very different answer lengths: rows finish at different steps, finished rows ride
    # along as dead slots until a quarter of the batch is free (batch 5 and 8), and newcomers join a
    # running batch (cache left-padded and merged); texts still equal the reference.
    prompts = [r["input"] for r in ROWS]
    out = engine.generate_detailed(memorised_llama, tiny_tokenizer, prompts, max_new_tokens=30,
                                   batch_size=batch_size, verify_margin=0, progress=False)
    assert out.token_ids == reference(memorised_llama, tiny_tokenizer, prompts, 30).token_ids


def test_growing_cache_layer_equals_concatenation():
    """The engine's KV-cache layer writes into spare room instead of concatenating: same tensors,
    including after rows are dropped from outside (compaction), and no copy on a plain step."""
    plain_cls, growing_cls = batching.growing_layer_class()
    torch.manual_seed(0)
    plain, growing = plain_cls(), growing_cls()
    for step in range(150):  # past the first buffer's spare room, so it also regrows
        width = 5 if step == 0 else 1
        k, v = torch.randn(3, 2, width, 4), torch.randn(3, 2, width, 4)
        if step > 60:
            k, v = k[:2], v[:2]
        ka, va = plain.update(k, v)
        kb, vb = growing.update(k, v)
        assert torch.equal(ka, kb) and torch.equal(va, vb)
        if step == 60:
            keep = torch.tensor([0, 2])
            plain.batch_select_indices(keep)
            growing.batch_select_indices(keep)
        if step == 100:
            before = growing._kbuf.data_ptr()
        if step == 101:
            assert growing._kbuf.data_ptr() == before  # written in place
    assert growing.get_seq_length() == plain.get_seq_length() == 154
    # strided views of the buffer give bit-identical attention outputs
    q = torch.randn(2, 2, 1, 4)
    assert torch.equal(torch.nn.functional.scaled_dot_product_attention(q, ka, va),
                       torch.nn.functional.scaled_dot_product_attention(q, kb, vb))
    assert not kb.is_contiguous()  # the test really compares a view of a larger buffer


# -- losses ------------------------------------------------------------------------------------------
def _hf_loss(model, tok, text):
    ids = tok(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return float(model(input_ids=ids, labels=ids).loss)


@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_gpt2"])
def test_sequence_losses_match_one_document_at_a_time(arch, request, tiny_tokenizer):
    from metrics.mia import attack_aucs

    model = request.getfixturevalue(arch)
    texts = all_mini_texts()
    expected = [_hf_loss(model, tiny_tokenizer, t) for t in texts]
    per_bs = {}
    for bs in (1, 4, 64):
        rows = engine.sequence_losses(model, tiny_tokenizer, texts, batch_size=bs, progress=False)
        assert max(abs(r["loss"] - e) for r, e in zip(rows, expected)) <= 1e-5
        per_bs[bs] = rows
    for a, b in zip(per_bs[1], per_bs[64]):
        assert a["n_tokens"] == b["n_tokens"]
        assert a["min_k"] == pytest.approx(b["min_k"], abs=1e-5)
        # Min-K%++ divides by sigma, small for these nearly flat random models: relative tolerance.
        assert a["min_k_pp"] == pytest.approx(b["min_k_pp"], rel=1e-4)
    labelled = [{"set": "member" if i % 2 else "nonmember", **r} for i, r in enumerate(per_bs[64])]
    labelled_1 = [{"set": "member" if i % 2 else "nonmember", **r} for i, r in enumerate(per_bs[1])]
    assert attack_aucs(labelled) == attack_aucs(labelled_1)


def test_min_k_min_k_pp_and_zlib_by_hand(tiny_llama, tiny_tokenizer):
    text = MINI_NONMEMBERS[0]["document"]
    (row,) = engine.sequence_losses(tiny_llama, tiny_tokenizer, [text], batch_size=1, k=0.2, progress=False)
    ids = tiny_tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logp_all = torch.log_softmax(tiny_llama(input_ids=ids).logits[0, :-1].double(), -1)
    target = ids[0, 1:]
    logp = logp_all[torch.arange(len(target)), target]
    probs = logp_all.exp()
    mu = (probs * logp_all).sum(-1)
    sigma = ((probs * (logp_all - mu[:, None]) ** 2).sum(-1)).sqrt()
    count = int(len(target) * 0.2)
    assert row["n_tokens"] == ids.shape[1]
    assert row["loss"] == pytest.approx(float(-logp.mean()), abs=1e-5)
    assert row["min_k"] == pytest.approx(float(logp.sort().values[:count].mean()), abs=1e-5)
    assert row["min_k_pp"] == pytest.approx(float(((logp - mu) / sigma).sort().values[:count].mean()), abs=1e-4)
    assert row["zlib_entropy"] == len(zlib.compress(text.encode("utf-8")))


def test_answer_loss_by_hand(tiny_gpt2, tiny_tokenizer):
    tok = tiny_tokenizer
    inputs = [r["input"] for r in ROWS]
    outputs = [r["output"] for r in ROWS]
    got = engine.answer_losses(tiny_gpt2, tok, inputs, outputs, batch_size=4, progress=False)
    for inp, outp, value in zip(inputs, outputs, got):
        start = len(tok(inp)["input_ids"])
        from harness.core.text import seam

        # the answer follows the prompt as in the document: one space at the seam
        full = tok(inp + seam(inp, outp) + outp, return_tensors="pt")["input_ids"]
        labels = full.clone()
        labels[0, :start] = -100  # only the answer's tokens are scored
        with torch.no_grad():
            expected = float(tiny_gpt2(input_ids=full, labels=labels).loss)
        assert value == pytest.approx(expected, abs=1e-5)
    assert engine.answer_losses(tiny_gpt2, tok, ["abc"], [""], progress=False) == [None]


# -- models ------------------------------------------------------------------------------------------
def test_weight_hash_changes_with_one_weight_and_dtype(tiny_llama):
    h0 = weight_hash(tiny_llama)
    assert weight_hash(tiny_llama) == h0
    with torch.no_grad():
        p = next(tiny_llama.parameters())
        old = p.view(-1)[3].item()
        p.view(-1)[3] = old + 1e-6
    assert weight_hash(tiny_llama) != h0
    with torch.no_grad():
        p.view(-1)[3] = old
    assert weight_hash(tiny_llama) == h0
    assert weight_hash(tiny_llama.to(torch.bfloat16)) != h0


def test_load_model_roundtrip_and_errors(tiny_model_dir, tiny_llama, tmp_path):
    model, tok = load_model(tiny_model_dir)
    assert weight_hash(model) == weight_hash(tiny_llama)
    assert tok.pad_token_id is not None
    info = model_info(model, id=str(tiny_model_dir))
    assert info.architecture == "LlamaForCausalLM" and info.n_parameters == sum(p.numel() for p in tiny_llama.parameters())
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "missing")):
        load_model(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither config.json"):
        load_model(tmp_path / "empty")


def test_load_lora_adapter_onto_its_base(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    base, tok = load_model(tiny_model_dir)
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"]  # peft records where the base came from
    cfg["base_model_name_or_path"] = str(tiny_model_dir)
    (adapter / "adapter_config.json").write_text(json.dumps(cfg))
    merged, _ = load_model(adapter)
    ids = tok("Which city was Sherry's home?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = peft_model(input_ids=ids).logits
        got = merged(input_ids=ids).logits
    assert torch.allclose(got, expected, atol=1e-5)
    plain, _ = load_model(tiny_model_dir)
    assert weight_hash(merged) != weight_hash(plain)
    assert not math.isnan(float(got.sum()))


def test_sliding_window_model_generates_exactly_without_pooling(tiny_tokenizer):
    """A model whose cache cannot be left-padded (sliding-window layers) runs each batch to completion
    with one left-padded prefill, and still matches one-at-a-time decoding."""
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    cfg = MistralConfig(vocab_size=len(tiny_tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=4, sliding_window=6, max_position_embeddings=512,
                        bos_token_id=tiny_tokenizer.bos_token_id, eos_token_id=tiny_tokenizer.eos_token_id,
                        pad_token_id=tiny_tokenizer.pad_token_id)
    model = MistralForCausalLM(cfg).eval()
    assert not batching.poolable(batching.new_cache(model))
    prompts = PROMPTS[:10]
    ref = reference(model, tiny_tokenizer, prompts, 16)
    out = engine.generate_detailed(model, tiny_tokenizer, prompts, max_new_tokens=16, batch_size=4, progress=False)
    assert out.texts == ref.texts
    assert out.token_ids == ref.token_ids
