"""Batched greedy generation and per-document losses: the evaluation engine.

The reference procedure (the SemEval-2025 organisers', see ``../shared/specs/semeval2025-scoring.md``)
is one record at a time: tokenise the raw prompt with the tokenizer's default special tokens, greedy
``model.generate`` with at most 256 new tokens, stop only at EOS, decode the new tokens with special
tokens skipped; and one forward pass per MIA document for its mean token cross-entropy. This module
computes the same things in batches.

Why batching is *exact* here, not just close
--------------------------------------------
Batching changes the shapes of the matrix products (padding, more rows), so the logits can differ from
the one-at-a-time logits in the last bits, and a greedy ``argmax`` whose top two logits are within that
rounding noise could flip and change the whole continuation. The engine therefore records, for every
generated token, the gap between the largest and second-largest logit (relative to ``max(1, |largest|)``).
If the gap at every step exceeds twice the rounding difference between the two computations, both pick
the same token at every step, so the batched text equals the one-at-a-time text. A row with a step
whose gap is below ``verify_margin`` (:func:`default_margin`, far above the measured rounding noise)
is checked against the organisers' procedure itself, ``model.generate`` one record at a time, run up
to and including the row's *last* near-tie step: when those tokens equal the batched ones, every later
step had a safe gap after an identical prefix, so the batched tail is exact too; otherwise the row is
regenerated one at a time to the end.

The float32 rounding difference was measured with ``benchmarks/logit_noise.py``: its largest value
over 1,000-12,000 steps is 9.9e-7 (the embedded target, width 128), 9.7e-7 (random Llama, width 256,
12 layers), 1.6e-6 (width 512) and 2.3e-6 (width 1024), i.e. 0.6-0.75 x float32 epsilon x
sqrt(hidden size), independent of depth; the 99.9th percentile is within 1.5x of the maximum. The
default float32 margin, 8 x epsilon x sqrt(hidden size), is 11-16x those maxima (the guarantee needs
2x). A smaller factor would send fewer rows of random-weight models (whose top logits are often close)
to the re-check -- 4 instead of 8 saves about a third of them -- but leaves a thinner safety factor
for models never measured, so exactness keeps the wider margin. In bfloat16/float16 the rounding
noise is much larger; the margin there is a heuristic and the guarantee is weaker (documented in the
result's settings).

Other speed-ups: continuous batching. Prompts are queued by token length; up to ``batch_size`` rows
decode together; a row that emits EOS is finished at once, and once a quarter of the slots are
finished their KV-cache rows are dropped together and the free slots refilled from the queue (the
newcomers' caches are left-padded to the running length and merged). So the number of forward passes
is about (total new tokens) / batch_size, not the longest generation of each static batch.
"""

from __future__ import annotations

import functools
import logging
import math
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

log = logging.getLogger("unlearnbench.engine")

#: Smallest top-1/top-2 logit gap, relative to ``max(1, |top-1 logit|)``, that is trusted to be immune
#: to batching rounding noise, for dtypes other than float32 (float32: :func:`default_margin`). For
#: 16-bit dtypes the noise is of the order of the dtype's resolution and the margins are heuristics.
DEFAULT_MARGINS = {"float64": 1e-9, "bfloat16": 5e-2, "float16": 1e-2}
#: float32 margin = this x float32 epsilon x sqrt(hidden size) (see the module docstring).
FLOAT32_MARGIN_FACTOR = 8.0


def default_margin(model) -> float:
    """The near-tie margin for ``model`` in its dtype (see the module docstring for the measurements)."""
    dtype = model_dtype_name(model)
    if dtype == "float32":
        hidden = getattr(model.config.get_text_config(), "hidden_size", None) or 4096
        return FLOAT32_MARGIN_FACTOR * 2.0 ** -23 * math.sqrt(hidden)
    return DEFAULT_MARGINS.get(dtype, 1e-3)


#: ``generation_config`` settings that change greedy decoding. When a model sets any of them, the
#: engine's own decoding loop would not reproduce ``model.generate``, so it is not used.
_UNSUPPORTED_GENERATION_SETTINGS = {
    "repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_repetition_penalty": 1.0,
    "bad_words_ids": None, "suppress_tokens": None, "begin_suppress_tokens": None,
    "forced_bos_token_id": None, "forced_eos_token_id": None, "sequence_bias": None,
    "min_new_tokens": None, "min_length": 0, "exponential_decay_length_penalty": None,
    "renormalize_logits": False,
}


def is_oom(exc: BaseException) -> bool:
    """True for an out-of-memory error of any torch backend."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _empty_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def model_device(model) -> Any:
    import torch

    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model without parameters
        return torch.device("cpu")


def model_dtype_name(model) -> str:
    try:
        return str(next(model.parameters()).dtype).replace("torch.", "")
    except StopIteration:  # pragma: no cover
        return "float32"


#: CPU generation: KV-cache bytes the ``auto`` batch may fill (rows x 512 tokens). A CPU process is
#: killed, not warned, when memory runs out, so the batch is sized from the model instead of retried.
CPU_KV_BUDGET_BYTES = 2 << 30


def _kv_bytes_per_token(model) -> int | None:
    cfg = model.config.get_text_config()
    layers, heads = getattr(cfg, "num_hidden_layers", None), getattr(cfg, "num_attention_heads", None)
    hidden = getattr(cfg, "hidden_size", None)
    if not (layers and heads and hidden):
        return None
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or hidden // heads
    try:
        item = next(model.parameters()).element_size()
    except (StopIteration, AttributeError):  # pragma: no cover
        item = 4
    return 2 * layers * kv_heads * head_dim * item


def default_batch_size(model, phase: str) -> int:
    """A starting batch size for ``--batch-size auto`` (halved on out-of-memory).

    CPU generation: as many rows (4 to 128) as fit :data:`CPU_KV_BUDGET_BYTES` of KV cache at 512
    tokens per row -- 128 for the embedded target (measured ~10% faster than 64 now that the cache
    grows in place), about 4 for a 7B model in float32."""
    dev = model_device(model)
    if dev.type == "cuda":
        return 256 if phase == "generation" else 64
    if phase != "generation":
        return 16
    per_token = _kv_bytes_per_token(model)
    if not per_token:
        return 64
    return max(4, min(128, CPU_KV_BUDGET_BYTES // (per_token * 512)))


def eos_token_ids(model, tokenizer) -> list[int]:
    """The ids ``model.generate`` stops at: the generation config's EOS id(s), else the tokenizer's."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if ids is None:
        ids = tokenizer.eos_token_id
    if ids is None:
        raise ValueError("the tokenizer has no EOS token and the model's generation config names none; "
                         "greedy generation needs an EOS id to stop at")
    return [int(i) for i in (ids if isinstance(ids, (list, tuple)) else [ids])]


def unsupported_generation_settings(model) -> dict[str, Any]:
    """``generation_config`` fields that alter greedy decoding (the engine's own loop ignores them)."""
    cfg = getattr(model, "generation_config", None)
    out = {}
    for key, neutral in _UNSUPPORTED_GENERATION_SETTINGS.items():
        value = getattr(cfg, key, neutral)
        if value is not None and value != neutral:
            out[key] = value
    return out


def decode(tokenizer, token_ids: Sequence[int], cleanup: str | None) -> str:
    """Decode new tokens with special tokens skipped; ``cleanup="semeval2025"`` applies the classic
    clean-up of transformers 4 (which transformers 5 skips for BPE tokenizers), exactly once."""
    text = tokenizer.decode(list(token_ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)
    if cleanup == "semeval2025":
        from metrics.text import classic_cleanup

        text = classic_cleanup(text)
    elif cleanup not in (None, "none", "plain"):
        raise ValueError(f"unknown clean-up {cleanup!r}; expected 'semeval2025' or 'plain'")
    return text


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="rec", disable=not enabled, leave=False, dynamic_ncols=True)


def length_batches(lengths: Sequence[int], batch_size: int, token_budget: int | None = None) -> list[list[int]]:
    """Indices grouped into batches of similar length (sorted, stable), at most ``batch_size`` rows and,
    when given, at most ``token_budget`` padded tokens per batch."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = lengths[i]  # ascending order: the newcomer is the longest
        if current and (len(current) >= batch_size or
                        (token_budget is not None and longest * (len(current) + 1) > token_budget)):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def _run_with_backoff(fn: Callable[[int], Any], batch_size: int, phase: str, stats: dict) -> Any:
    """Call ``fn(batch_size)``, halving the batch size on out-of-memory until it fits (or 1 fails)."""
    while True:
        try:
            out = fn(batch_size)
            stats.setdefault("batch_size", {})[phase] = batch_size
            return out
        except Exception as exc:
            if not is_oom(exc) or batch_size == 1:
                raise
            _empty_cache()
            log.warning("%s: out of memory at batch size %d; retrying with %d", phase, batch_size, batch_size // 2)
            batch_size //= 2


# ------------------------------------------------------------------------------------------------
# generation
@dataclass
class GenerationOutput:
    texts: list[str]
    """Decoded generations, in input order."""
    token_ids: list[list[int]]
    """New token ids (including the final EOS when one was produced), in input order."""
    min_margins: list[float]
    """Smallest relative top-1/top-2 logit gap, ``(l1 - l2) / max(1, |l1|)``, over each row's decoding
    steps (``inf`` for the ``engine="reference"`` path)."""
    fallback: list[int] = field(default_factory=list)
    """Indices regenerated one at a time because a step's logit gap was below the margin."""
    batch_size: int = 1
    engine: str = "batched"


def _reference_generate_ids(model, tokenizer, prompt: str, max_new_tokens: int, pad_id: int) -> list[int]:
    """The organisers' procedure for one record (``model.generate``, batch of one, greedy)."""
    import torch

    enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=True)
    dev = model_device(model)
    with torch.no_grad():
        out = model.generate(input_ids=enc["input_ids"].to(dev), attention_mask=enc["attention_mask"].to(dev),
                             max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                             pad_token_id=pad_id, temperature=None, top_p=None, top_k=None)
    new = out[0, enc["input_ids"].shape[1]:].tolist()
    # generate() pads nothing for a single row, but be safe: cut after the first EOS.
    eos = set(eos_token_ids(model, tokenizer))
    for j, t in enumerate(new):
        if t in eos:
            return new[: j + 1]
    return new


def _token_ids(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text with the default special tokens, as ``tokenizer(text)`` gives them one at
    a time (one batched call: a fast tokenizer encodes the list in one go)."""
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=True)["input_ids"]]


def _left_pad_batch(prompt_ids: list[list[int]], pad_id: int, dev):
    import torch

    n, width = len(prompt_ids), max(len(p) for p in prompt_ids)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for r, ids in enumerate(prompt_ids):
        input_ids[r, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
        mask[r, width - len(ids):] = 1
    return input_ids.to(dev), mask.to(dev)


@functools.lru_cache(maxsize=None)
def _growing_layer_class():
    """A ``DynamicLayer`` whose keys/values live in a buffer with spare room along the sequence axis.

    ``DynamicLayer.update`` concatenates, i.e. copies the whole cache at every decoding step (0.26 s of
    2.0 s on the embedded target; a quarter of a step of a 512-wide model at 300 tokens). Here a step
    writes its new key/value into the spare room and ``keys``/``values`` are views of the first
    ``length`` columns; the buffer doubles when full. The values are the same numbers either way (a
    test checks the strided views give bit-identical attention outputs). When something outside
    replaces ``keys``/``values`` (row selection, left padding, merging, trimming: all at compaction
    time), the next update adopts the new tensors into a fresh buffer.
    """
    from transformers.cache_utils import DynamicLayer

    def _views(t, buf) -> bool:
        return (buf is not None and t.data_ptr() == buf.data_ptr() and t.stride() == buf.stride()
                and t.shape[:2] == buf.shape[:2] and t.shape[3] == buf.shape[3])

    class GrowingLayer(DynamicLayer):
        _kbuf = None
        _vbuf = None

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized or self.keys is None or self.keys.numel() == 0:
                return super().update(key_states, value_states, *args, **kwargs)
            n, add = self.keys.shape[-2], key_states.shape[-2]
            if not (_views(self.keys, self._kbuf) and _views(self.values, self._vbuf)) or n + add > self._kbuf.shape[-2]:
                cap = n + add + max(64, n)
                b, h, _, d = self.keys.shape
                self._kbuf = self.keys.new_empty((b, h, cap, d))
                self._vbuf = self.values.new_empty((b, h, cap, self.values.shape[3]))
                self._kbuf[:, :, :n] = self.keys
                self._vbuf[:, :, :n] = self.values
            self._kbuf[:, :, n:n + add] = key_states
            self._vbuf[:, :, n:n + add] = value_states
            self.keys = self._kbuf[:, :, :n + add]
            self.values = self._vbuf[:, :, :n + add]
            return self.keys, self.values

    return DynamicLayer, GrowingLayer


def _new_cache(model):
    """A ``DynamicCache`` for ``model``, with growing-buffer layers where every layer is a plain one."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    plain, growing = _growing_layer_class()
    if cache.layers and all(type(layer) is plain for layer in cache.layers):
        cache.layers = [growing() for _ in cache.layers]
    return cache


def _poolable(cache) -> bool:
    """Rows can join a running batch only when every cache layer is a plain full-attention dynamic layer
    (keys/values ``[batch, heads, length, dim]``); sliding-window or recurrent caches are not padded."""
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) in _growing_layer_class() for layer in layers)


def _pad_cache_left(cache, extra: int) -> None:
    import torch

    if extra <= 0:
        return
    for layer in cache.layers:
        for name in ("keys", "values"):
            t = getattr(layer, name)
            setattr(layer, name, torch.cat([t.new_zeros(t.shape[0], t.shape[1], extra, t.shape[3]), t], dim=2))


def _merge_cache(cache, other) -> None:
    import torch

    for layer, new in zip(cache.layers, other.layers):
        layer.keys = torch.cat([layer.keys, new.keys], dim=0)
        layer.values = torch.cat([layer.values, new.values], dim=0)


def _trim_cache_left(cache, mask):
    """Drop leading columns that are padding for every live row (they only cost attention time)."""
    real = mask.any(dim=0).nonzero()
    first = int(real[0]) if real.numel() else 0
    if first > 0:
        for layer in cache.layers:
            layer.keys = layer.keys[:, :, first:]
            layer.values = layer.values[:, :, first:]
        mask = mask[:, first:]
    return mask


@functools.lru_cache(maxsize=None)
def _cache_argument_of(model_class: type) -> str:
    import inspect

    try:
        params = inspect.signature(model_class.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - a forward without a signature
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def cache_argument(model) -> str:
    """The name under which ``model.forward`` takes the KV cache: ``cache`` from transformers 5.24 on
    (``past_key_values`` is deprecated there and removed in 5.40), ``past_key_values`` before, and for
    models (remote code, PEFT wrappers) whose forward does not name ``cache``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return _cache_argument_of(type(base))


def _forward_last(model, **kw):
    try:  # only the last position's logits are needed; remote-code models may not take the argument
        return model(**kw, use_cache=True, logits_to_keep=1)
    except TypeError as exc:
        if "logits_to_keep" not in str(exc):
            raise
        return model(**kw, use_cache=True)


def _greedy_pool(model, prompt_ids: list[list[int]], order: list[int], max_new_tokens: int, eos: set[int],
                 pad_id: int, batch_size: int, on_finish: Callable[[int, list[int], float], None],
                 trace: dict[int, list] | None = None, last_tie: dict[int, int] | None = None,
                 tie_margin: float = 0.0) -> None:
    """Greedy decoding of ``prompt_ids[i] for i in order`` with continuous batching.

    Up to ``batch_size`` rows decode together. A row that emits EOS or reaches ``max_new_tokens`` is
    finished at once (``on_finish(index, new_token_ids, min_gap)``) but its slot is only dropped from
    the batch (its KV-cache row deleted) at the next *compaction*, which happens when a quarter of the
    slots are dead or free: deleting cache rows copies the whole cache, so doing it for every finished
    row cost more than carrying a few dead rows through the forward pass (measured: 0.19 s of 2.0 s
    on the embedded target). At a compaction free slots are refilled from ``order`` (sorted by prompt
    length, so a refill group needs little padding): the newcomers are prefilled together, then their
    caches and the running ones are left-padded to a common length and concatenated. Position ids
    count real tokens only (``cumsum(mask) - 1``), so every row sees the positions it would see alone,
    and the attention mask hides every pad; a dead row's outputs are never read, and rows never
    interact (attention is per row), so carrying it changes nothing for the others. ``min_gap`` is the
    smallest relative top-1/top-2 logit gap over the row's steps. When the model's cache cannot be
    padded (sliding-window layers), batches run to completion without refills. ``trace`` (the noise
    benchmark) receives every step's logits per row; ``last_tie`` the index of each row's last step
    whose gap is below ``tie_margin``.
    """
    import torch

    dev = model_device(model)
    eos_t = torch.tensor(sorted(eos), device=dev)
    queue = list(order)
    qpos = 0
    low_water = max(1, batch_size // 4)  # compact/refill once a quarter of the slots are dead or free
    cache = mask = pos = logits = None
    rows: list[int | None] = []  # row index per batch slot; None = dead (finished, not yet compacted)
    tokens: dict[int, list[int]] = {}
    gaps: dict[int, float] = {}
    poolable = True

    # Prompts of one length are prefilled together without padding (no mask: the causal fast path,
    # and no work on pad positions; measured 0.69 s instead of 0.91 s for the embedded target's 600
    # prompts), then their caches are left-padded into one batch. Caches that cannot be padded
    # (sliding-window layers) take the whole group in one left-padded pass.
    split_runs = _poolable(_new_cache(model))
    cache_arg = cache_argument(model)

    def prefill_padded(group: list[int]):
        ids, m = _left_pad_batch([prompt_ids[i] for i in group], pad_id, dev)
        positions = (m.cumsum(-1) - 1).clamp(min=0)
        c = _new_cache(model)
        out = _forward_last(model, input_ids=ids, attention_mask=m, position_ids=positions, **{cache_arg: c})
        return c, m, positions[:, -1:], out.logits[:, -1, :].float(), group

    def prefill(group: list[int]):
        """Cache, mask, last positions and logits of ``group``'s prompts, and the order of their rows."""
        if not split_runs:
            return prefill_padded(group)
        runs: dict[int, list[int]] = {}
        for i in group:
            runs.setdefault(len(prompt_ids[i]), []).append(i)
        width = max(runs)
        caches, logits_parts, start = [], [], 0
        for length, members in runs.items():
            ids = torch.tensor([prompt_ids[i] for i in members], dtype=torch.long, device=dev)
            positions = torch.arange(length, device=dev).expand(len(members), length)
            c = _new_cache(model)
            out = _forward_last(model, input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=positions,
                                **{cache_arg: c})
            caches.append((slice(start, start + len(members)), width - length, c))
            logits_parts.append(out.logits[:, -1, :].float())
            start += len(members)
        order_in_batch = [i for members in runs.values() for i in members]
        lengths = torch.tensor([len(prompt_ids[i]) for i in order_in_batch], device=dev)
        cache = caches[0][2]
        for li, layer in enumerate(cache.layers):
            for name in ("keys", "values"):
                first = getattr(layer, name)
                merged = first.new_zeros((len(group), first.shape[1], width, first.shape[3]))
                for rows_, pad, c in caches:  # each run's cache, left-padded into its rows
                    merged[rows_, :, pad:] = getattr(c.layers[li], name)
                setattr(layer, name, merged)
        mask = (torch.arange(width, device=dev)[None, :] >= (width - lengths)[:, None]).long()
        return cache, mask, (lengths - 1)[:, None], torch.cat(logits_parts, dim=0), order_in_batch

    with torch.no_grad():
        while True:
            n_live = sum(r is not None for r in rows)
            dead = len(rows) - n_live
            can_refill = qpos < len(queue) and (not n_live or (poolable and batch_size - n_live >= low_water))
            if dead and (not n_live or can_refill or dead >= low_water):
                if not n_live:
                    rows, cache, mask, pos, logits = [], None, None, None, None
                else:
                    keep = [b for b, r in enumerate(rows) if r is not None]
                    keep_t = torch.tensor(keep, device=dev)
                    cache.batch_select_indices(keep_t)
                    mask, pos, logits = mask[keep_t], pos[keep_t], logits[keep_t]
                    rows = [rows[b] for b in keep]
                    if poolable:
                        mask = _trim_cache_left(cache, mask)
            if can_refill:
                group = queue[qpos: qpos + batch_size - n_live]
                qpos += len(group)
                c, m, p, lg, group = prefill(group)  # rows of one prompt length are adjacent
                for i in group:
                    tokens[i], gaps[i] = [], math.inf
                    if last_tie is not None:
                        last_tie.pop(i, None)  # a row re-run after an out-of-memory retry starts afresh
                if not rows:
                    cache, mask, pos, logits = c, m, p, lg
                    poolable = _poolable(cache)
                else:
                    width = max(mask.shape[1], m.shape[1])
                    _pad_cache_left(cache, width - mask.shape[1])
                    _pad_cache_left(c, width - m.shape[1])
                    _merge_cache(cache, c)
                    mask = torch.cat([torch.nn.functional.pad(mask, (width - mask.shape[1], 0)),
                                      torch.nn.functional.pad(m, (width - m.shape[1], 0))], dim=0)
                    pos = torch.cat([pos, p], dim=0)
                    logits = torch.cat([logits, lg], dim=0)
                rows = rows + group
            if not rows:
                return
            top2, top2_idx = torch.topk(logits, 2, dim=-1)
            gap_t = (top2[:, 0] - top2[:, 1]) / top2[:, 0].abs().clamp(min=1.0)
            # Greedy generate takes torch.argmax (the first maximal index); topk's first index is the
            # same token unless the top two logits are exactly equal, so only such rows pay for argmax.
            next_tok = top2_idx[:, 0]
            if bool((gap_t == 0).any()):
                next_tok = torch.where(gap_t == 0, torch.argmax(logits, dim=-1), next_tok)
            gap = gap_t.tolist()
            fin = torch.isin(next_tok, eos_t).tolist()
            toks = next_tok.tolist()
            for b, row in enumerate(rows):
                if row is None:
                    continue
                if trace is not None:
                    trace.setdefault(row, []).append(logits[b].clone())
                tokens[row].append(toks[b])
                gaps[row] = min(gaps[row], gap[b])
                if last_tie is not None and gap[b] < tie_margin:
                    last_tie[row] = len(tokens[row]) - 1
                if fin[b] or len(tokens[row]) >= max_new_tokens:
                    on_finish(row, tokens.pop(row), gaps.pop(row))
                    rows[b] = None
            if all(r is None for r in rows) and qpos >= len(queue):
                return
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            pos = pos + 1
            out = model(input_ids=next_tok[:, None], attention_mask=mask, position_ids=pos, use_cache=True,
                        **{cache_arg: cache})
            logits = out.logits[:, -1, :].float()


def generate_detailed(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 256,
                      batch_size: int | str = "auto", cleanup: str | None = "semeval2025",
                      progress: bool = True, verify_margin: float | None = None,
                      engine: str = "batched", stats: dict | None = None) -> GenerationOutput:
    """Greedy generation for every prompt; see :func:`generate`. Also returns token ids, the logit gaps
    and which rows fell back to one-at-a-time decoding.

    ``engine="reference"`` runs the organisers' loop (``model.generate``, one record at a time).
    """
    stats = stats if stats is not None else {}
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_token_ids(model, tokenizer)[0]
    # The spec: padding id = EOS id.
    pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else pad_id
    eos = set(eos_token_ids(model, tokenizer))
    n = len(prompts)
    ids: list[list[int] | None] = [None] * n
    margins = [math.inf] * n
    if engine not in ("batched", "reference"):
        raise ValueError(f"unknown engine {engine!r}; expected 'batched' or 'reference'")
    odd = unsupported_generation_settings(model)
    if engine == "batched" and odd:
        log.warning("the model's generation config sets %s; using one-at-a-time model.generate so the "
                    "output matches the reference procedure", odd)
        engine = "reference"
    was_training = model.training
    model.eval()
    try:
        if engine == "reference":
            with _progress(n, "generate (reference)", progress) as bar:
                for i, p in enumerate(prompts):
                    ids[i] = _reference_generate_ids(model, tokenizer, p, max_new_tokens, pad_id)
                    bar.update(1)
            stats.setdefault("batch_size", {})["generation"] = 1
            texts = [decode(tokenizer, t, cleanup) for t in ids]  # type: ignore[arg-type]
            return GenerationOutput(texts, ids, margins, [], 1, "reference")  # type: ignore[arg-type]

        if verify_margin is None:
            verify_margin = default_margin(model)
        prompt_ids = _token_ids(tokenizer, prompts)
        for i, p in enumerate(prompt_ids):
            if not p:
                raise ValueError(f"prompt {i} ({prompts[i][:60]!r}) tokenises to no tokens; cannot generate")
        bs0 = default_batch_size(model, "generation") if batch_size == "auto" else int(batch_size)
        if bs0 < 1:
            raise ValueError(f"batch size must be at least 1, got {bs0}")

        done = [False] * n
        bar = _progress(n, "generate", progress)

        last_tie: dict[int, int] = {}

        def finish(i: int, toks: list[int], gap: float) -> None:
            ids[i], margins[i], done[i] = toks, gap, True
            bar.update(1)

        def run(bs: int) -> None:
            # Length-sorted queue; rows finished before an out-of-memory retry are kept.
            order = sorted((i for i in range(n) if not done[i]), key=lambda i: (len(prompt_ids[i]), i))
            _greedy_pool(model, prompt_ids, order, max_new_tokens, eos, pad_id, bs, finish,
                         last_tie=last_tie, tie_margin=verify_margin)

        t0 = time.perf_counter()
        try:
            _run_with_backoff(run, bs0, "generation", stats)
        finally:
            bar.close()
        t1 = time.perf_counter()
        fallback = [i for i in range(n) if margins[i] < verify_margin]
        replayed = diverged = 0
        if fallback:
            log.info("%d of %d generations had a near-tie logit step (< %g); checking them one at a time",
                     len(fallback), n, verify_margin)
            with _progress(len(fallback), "generate (verify near-ties)", progress) as fbar:
                for i in fallback:
                    # One at a time up to the last near-tie step; past it the batched steps are safe.
                    upto = last_tie.get(i, len(ids[i]) - 1) + 1
                    head = _reference_generate_ids(model, tokenizer, prompts[i], upto, pad_id)
                    replayed += len(head)
                    if head != ids[i][:upto]:
                        diverged += 1
                        ended = len(head) < upto or (head and head[-1] in eos) or upto >= max_new_tokens
                        ids[i] = head if ended else _reference_generate_ids(model, tokenizer, prompts[i],
                                                                             max_new_tokens, pad_id)
                    fbar.update(1)
        stats["generation_fallback"] = len(fallback)
        stats["generation_fallback_tokens"] = replayed
        stats["generation_fallback_diverged"] = diverged
        stats["verify_margin"] = verify_margin
        stats["generation_seconds"] = {"batched": t1 - t0, "verify": time.perf_counter() - t1}
        texts = [decode(tokenizer, t, cleanup) for t in ids]  # type: ignore[arg-type]
        return GenerationOutput(texts, ids, margins, fallback,  # type: ignore[arg-type]
                                stats["batch_size"]["generation"], "batched")
    finally:
        if was_training:
            model.train()


def generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 256, batch_size: int | str = "auto",
             cleanup: str | None = "semeval2025", progress: bool = True, **kwargs: Any) -> list[str]:
    """Greedy continuations of ``prompts`` (raw text), in input order.

    Exactly the organisers' decoding — raw prompt tokenised with ``add_special_tokens=True``, greedy,
    KV cache, stop only at EOS or ``max_new_tokens``, pad id = EOS id, new tokens decoded with special
    tokens skipped — computed in length-sorted, left-padded batches whose finished rows exit early.
    Near-tie rows are re-decoded one at a time, which makes the texts identical to one-at-a-time
    decoding (see the module docstring). ``cleanup="semeval2025"`` applies the classic tokenization
    clean-up of transformers 4.45, as the organisers' run did; ``"plain"`` leaves the decoded text as is.
    """
    return generate_detailed(model, tokenizer, prompts, max_new_tokens, batch_size, cleanup, progress,
                             **kwargs).texts


# ------------------------------------------------------------------------------------------------
# losses
_LOG2E = 1.4426950408889634


def _vocab_scores(z, target, want_stats: bool) -> dict[str, Any]:
    """From logits ``z`` ``[positions, vocab]`` (float32; overwritten with ``want_stats``) and the next tokens ``target``:
    ``logp`` = log p(target) and, with ``want_stats``, ``mu``/``sigma`` = mean and standard deviation
    of log p under p at each position (Min-K%++).

    One exponential per logit: ``e = 2^((z - max) log2 e)`` gives both ``lse = max + log sum e`` and
    ``p = e / sum e``. The moments need no ``log p`` tensor: log p = z - lse, so mu = E_p[z] - lse and
    sigma^2 = E_p[(z - E_p[z])^2] (the two-pass form: no cancellation when sigma is small). On CPU
    ``exp`` is the costly step (~1.5 ns per logit, ``exp2`` ~1 ns); ``torch.logsumexp`` followed by
    ``exp(z - lse)`` computed it twice and made this 1.44x the bare forward pass of the embedded target
    (``benchmarks/mia_pass.py``).
    """
    import torch

    m = z.amax(dim=-1, keepdim=True)
    e = torch.sub(z, m).mul_(_LOG2E)
    torch.exp2(e, out=e)
    s = e.sum(dim=-1, keepdim=True)
    lse = m.add_(s.log())
    out = {"logp": z.gather(-1, target[:, None])[:, 0] - lse[:, 0]}
    if want_stats:
        m1 = (e * z).sum(dim=-1, keepdim=True).div_(s)
        z.sub_(m1).square_()  # in place: z is not read again
        var = (e.mul_(z)).sum(dim=-1).div_(s[:, 0])
        out["mu"] = (m1 - lse)[:, 0]
        out["sigma"] = var.clamp_(min=0).sqrt_()
    return out


def _token_scores(model, sequences: list[list[int]], starts: list[int], batch_size: int | str, want_stats: bool,
                  desc: str, progress: bool, stats: dict, phase: str, token_budget: int | None = None
                  ) -> list[dict[str, Any]]:
    """For each token sequence, the log-probability of every token from ``starts[i]`` on (given the
    tokens before it) in right-padded batched forward passes; with ``want_stats`` also the mean and
    standard deviation of log p over the vocabulary at each of those positions (for Min-K%++).

    Right padding keeps every real token at its own position and, under the causal mask, unaffected by
    the padding. Batches are capped by a padded-token budget (one batch's logits ~512 MiB) and
    vocabulary-sized temporaries exist for one row at a time only.
    """
    import torch

    n = len(sequences)
    results: list[dict[str, Any] | None] = [None] * n
    dev = model_device(model)
    bs0 = default_batch_size(model, phase) if batch_size == "auto" else int(batch_size)
    if token_budget is None:
        # Logits are [batch, length, vocab] floats: cap padded tokens per batch so that one batch's
        # logits stay within ~512 MiB.
        vocab = int(getattr(model.config.get_text_config(), "vocab_size", 32000) or 32000)
        token_budget = max(max((len(s) for s in sequences), default=1), (1 << 29) // (4 * vocab))
    bar = _progress(n, desc, progress)

    from .distributed import launched_distributed, state

    rank, world = (state().process_index, state().num_processes) if launched_distributed() else (0, 1)

    def run(bs: int) -> None:
        batches = length_batches([len(s) for s in sequences], bs, token_budget)
        # Data parallelism shards whole batches of the global plan, so every document is scored in
        # exactly the batch (same shapes, same neighbours) it gets in a single process: the
        # gathered numbers are bit-identical to a one-process run.
        for batch in batches[rank::world]:
            todo = [i for i in batch if results[i] is None]
            if not todo:
                continue
            width = max(len(sequences[i]) for i in todo)
            pad = 0
            input_ids = torch.full((len(todo), width), pad, dtype=torch.long)
            for r, i in enumerate(todo):
                seq = sequences[i]
                input_ids[r, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            with torch.no_grad():
                # No attention mask: with right padding and a causal model, real tokens only ever attend
                # to earlier real tokens, so the mask would change nothing for them; without it SDPA
                # takes its causal fast path. Outputs at padded positions are never read.
                logits = model(input_ids=input_ids.to(dev), use_cache=False).logits
                # Per row, on the row's real positions only: vocabulary-sized temporaries stay at one
                # row's size (a batch-wide version measured no faster on CPU and needs two more
                # batch-sized buffers).
                for r, i in enumerate(todo):
                    seq = sequences[i]
                    start = max(1, starts[i])
                    if start >= len(seq):
                        results[i] = {"logp": torch.empty(0, dtype=torch.float32)}
                        continue
                    # The logits at position t-1 predict token t.
                    z = logits[r, start - 1: len(seq) - 1].float()
                    target = torch.tensor(seq[start:], device=z.device)
                    results[i] = {k: v.cpu() for k, v in _vocab_scores(z, target, want_stats).items()}
                    del z
                del logits
            bar.update(len(todo))

    try:
        _run_with_backoff(run, bs0, phase, stats)
    finally:
        bar.close()
    if world > 1:
        from accelerate.utils import gather_object

        mine = [(i, r) for i, r in enumerate(results) if r is not None]
        for part in gather_object([mine]):
            for i, r in part:
                results[i] = r
    return results  # type: ignore[return-value]


def _lowest_k_mean(values, k: float) -> float:
    """Mean of the ``k`` fraction of lowest values (at least one value), as Min-K% defines it."""
    import torch

    count = max(1, int(len(values) * k))
    return float(torch.sort(values).values[:count].mean())


def sequence_losses(model, tokenizer, texts: Sequence[str], batch_size: int | str = "auto", k: float = 0.2,
                    progress: bool = True, stats: dict | None = None) -> list[dict[str, Any]]:
    """Per-document membership-inference statistics, in input order.

    Each document is tokenised with the tokenizer's default special tokens, without truncation. Fields
    (``docs/contracts.md``, ``mia.jsonl``): ``n_tokens``; ``loss`` = mean token cross-entropy over every
    token after the first — what ``model(input_ids, labels=input_ids).loss`` gives one document at a
    time; ``zlib_entropy`` = bytes of the zlib-compressed UTF-8 text; ``min_k`` = mean log-probability of
    the ``k`` fraction of lowest-probability tokens (Min-K%); ``min_k_pp`` = the same over Min-K%++
    scores ``(log p(x_t) - mu_t) / sigma_t`` with ``mu_t``, ``sigma_t`` the mean and standard deviation
    of ``log p`` under the model's own next-token distribution at position t.
    """
    import torch

    if not 0 < k <= 1:
        raise ValueError(f"min-k fraction must be in (0, 1], got {k}")
    stats = stats if stats is not None else {}
    seqs = _token_ids(tokenizer, texts)
    for i, s in enumerate(seqs):
        if len(s) < 2:
            raise ValueError(f"document {i} ({texts[i][:60]!r}) has {len(s)} token(s); a loss needs at least 2")
    scores = _token_scores(model, seqs, [1] * len(seqs), batch_size, True, "mia losses", progress, stats, "mia")
    rows = []
    for text, seq, sc in zip(texts, seqs, scores):
        logp = sc["logp"]
        mink_pp = (logp - sc["mu"]) / sc["sigma"].clamp(min=torch.finfo(torch.float32).tiny)
        rows.append({
            "n_tokens": len(seq),
            "loss": float(-logp.mean()),
            "zlib_entropy": len(zlib.compress(text.encode("utf-8"))),
            "min_k": _lowest_k_mean(logp, k),
            "min_k_pp": _lowest_k_mean(mink_pp, k),
        })
    return rows


def answer_losses(model, tokenizer, inputs: Sequence[str], outputs: Sequence[str], batch_size: int | str = "auto",
                  progress: bool = True, stats: dict | None = None) -> list[float | None]:
    """Mean token cross-entropy of each ``output`` given its ``input``, in input order.

    ``input`` is tokenised with the default special tokens; the answer's tokens are those following it
    in ``input + seam + output`` (one space where the document had one, :mod:`harness.text`), i.e. the
    tokens the model would generate. ``None`` when the answer adds no token.
    """
    if len(inputs) != len(outputs):
        raise ValueError(f"{len(inputs)} inputs but {len(outputs)} outputs")
    stats = stats if stats is not None else {}
    from .text import prompt_and_answer_ids

    pairs = [prompt_and_answer_ids(tokenizer, i, o) for i, o in zip(inputs, outputs)]
    starts = [len(p) for p, _ in pairs]
    seqs = [p + a for p, a in pairs]
    scores = _token_scores(model, seqs, starts, batch_size, False, "answer losses", progress, stats,
                           "answer_loss")
    return [float(-s["logp"].mean()) if len(s["logp"]) else None for s in scores]


__all__ = ["generate", "generate_detailed", "GenerationOutput", "sequence_losses", "answer_losses", "decode",
           "eos_token_ids", "is_oom", "DEFAULT_MARGINS", "default_margin"]
