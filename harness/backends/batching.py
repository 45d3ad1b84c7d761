"""Batch sizing and continuous batching for greedy decoding (the batched HF engine's machinery).

- :func:`default_batch_size` / :func:`run_with_backoff`: the ``auto`` batch size (sized from the model on
  a CPU, halved on out-of-memory elsewhere); :func:`length_batches`: rows grouped by similar length.
- :func:`greedy_pool`: greedy decoding with continuous batching over a KV cache whose layers grow in
  place (:func:`growing_layer_class`); why each step is what ``model.generate`` computes one record at
  a time is explained in :mod:`harness.backends.hf`.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from harness.backends.base import model_device

log = logging.getLogger("unlearnbench.engine")


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


#: CPU generation: KV-cache bytes the ``auto`` batch may fill (rows x 512 tokens). A CPU process is
#: killed, not warned, when memory runs out, so the batch is sized from the model instead of retried.
CPU_KV_BUDGET_BYTES = 2 << 30


def kv_bytes_per_token(model) -> int | None:
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
    per_token = kv_bytes_per_token(model)
    if not per_token:
        return 64
    return max(4, min(128, CPU_KV_BUDGET_BYTES // (per_token * 512)))


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


def run_with_backoff(fn: Callable[[int], Any], batch_size: int, phase: str, stats: dict) -> Any:
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
def growing_layer_class():
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


def new_cache(model):
    """A ``DynamicCache`` for ``model``, with growing-buffer layers where every layer is a plain one."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    plain, growing = growing_layer_class()
    if cache.layers and all(type(layer) is plain for layer in cache.layers):
        cache.layers = [growing() for _ in cache.layers]
    return cache


def poolable(cache) -> bool:
    """Rows can join a running batch only when every cache layer is a plain full-attention dynamic layer
    (keys/values ``[batch, heads, length, dim]``); sliding-window or recurrent caches are not padded."""
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) in growing_layer_class() for layer in layers)


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


def greedy_pool(model, prompt_ids: list[list[int]], order: list[int], max_new_tokens: int, eos: set[int],
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
    _DecodePool(model, prompt_ids, batch_size, _PoolRule(max_new_tokens, eos, pad_id, tie_margin),
                _PoolHooks(on_finish, trace, last_tie)).run(order)


@dataclass(frozen=True)
class _PoolRule:
    """When rows stop and how they are padded (the decoding itself is greedy)."""

    max_new_tokens: int
    eos: set[int]
    pad_id: int
    tie_margin: float


@dataclass(frozen=True)
class _PoolHooks:
    """Where results go: ``on_finish(row, new_token_ids, min_gap)``; ``trace`` (every step's logits per
    row) and ``last_tie`` (each row's last near-tie step) when given."""

    on_finish: Callable[[int, list[int], float], None]
    trace: dict[int, list] | None = None
    last_tie: dict[int, int] | None = None


class _DecodePool:
    """The state of :func:`greedy_pool`: the running batch (one slot per row, ``None`` for a dead
    row not yet compacted), its KV cache, attention mask, position ids and last logits."""

    def __init__(self, model, prompt_ids: list[list[int]], batch_size: int, rule: _PoolRule, hooks: _PoolHooks):
        import torch

        self.model, self.prompt_ids, self.batch_size = model, prompt_ids, batch_size
        self.max_new_tokens, self.pad_id, self.tie_margin = rule.max_new_tokens, rule.pad_id, rule.tie_margin
        self.on_finish, self.trace, self.last_tie = hooks.on_finish, hooks.trace, hooks.last_tie
        self.dev = model_device(model)
        self.eos_t = torch.tensor(sorted(rule.eos), device=self.dev)
        self.low_water = max(1, batch_size // 4)  # compact/refill once a quarter of the slots are dead or free
        self.cache = self.mask = self.pos = self.logits = None
        self.rows: list[int | None] = []  # row index per batch slot; None = dead (finished, not yet compacted)
        self.tokens: dict[int, list[int]] = {}
        self.gaps: dict[int, float] = {}
        self.poolable = True
        # Prompts of one length are prefilled together without padding (no mask: the causal fast path,
        # and no work on pad positions; measured 0.69 s instead of 0.91 s for the embedded target's 600
        # prompts), then their caches are left-padded into one batch. Caches that cannot be padded
        # (sliding-window layers) take the whole group in one left-padded pass.
        self.split_runs = poolable(new_cache(model))
        self.cache_arg = cache_argument(model)

    def run(self, order: list[int]) -> None:
        import torch

        queue, qpos = list(order), 0
        with torch.no_grad():
            while True:
                n_live = sum(r is not None for r in self.rows)
                dead = len(self.rows) - n_live
                can_refill = qpos < len(queue) and (not n_live or (self.poolable and
                                                                   self.batch_size - n_live >= self.low_water))
                if dead and (not n_live or can_refill or dead >= self.low_water):
                    self._compact(n_live)
                if can_refill:
                    group = queue[qpos: qpos + self.batch_size - n_live]
                    qpos += len(group)
                    self._join(group)
                if not self.rows:
                    return
                next_tok = self._step_tokens()
                if all(r is None for r in self.rows) and qpos >= len(queue):
                    return
                self._forward(next_tok)

    def _compact(self, n_live: int) -> None:
        """Drop the dead slots' cache rows (and leading columns that are padding for every live row)."""
        import torch

        if not n_live:
            self.rows, self.cache, self.mask, self.pos, self.logits = [], None, None, None, None
            return
        keep = [b for b, r in enumerate(self.rows) if r is not None]
        keep_t = torch.tensor(keep, device=self.dev)
        self.cache.batch_select_indices(keep_t)
        self.mask, self.pos, self.logits = self.mask[keep_t], self.pos[keep_t], self.logits[keep_t]
        self.rows = [self.rows[b] for b in keep]
        if self.poolable:
            self.mask = _trim_cache_left(self.cache, self.mask)

    def _join(self, group: list[int]) -> None:
        """Prefill ``group`` and merge it into the running batch (caches left-padded to one length)."""
        import torch

        c, m, p, lg, group = self._prefill(group)  # rows of one prompt length are adjacent
        for i in group:
            self.tokens[i], self.gaps[i] = [], math.inf
            if self.last_tie is not None:
                self.last_tie.pop(i, None)  # a row re-run after an out-of-memory retry starts afresh
        if not self.rows:
            self.cache, self.mask, self.pos, self.logits = c, m, p, lg
            self.poolable = poolable(self.cache)
        else:
            width = max(self.mask.shape[1], m.shape[1])
            _pad_cache_left(self.cache, width - self.mask.shape[1])
            _pad_cache_left(c, width - m.shape[1])
            _merge_cache(self.cache, c)
            self.mask = torch.cat([torch.nn.functional.pad(self.mask, (width - self.mask.shape[1], 0)),
                                   torch.nn.functional.pad(m, (width - m.shape[1], 0))], dim=0)
            self.pos = torch.cat([self.pos, p], dim=0)
            self.logits = torch.cat([self.logits, lg], dim=0)
        self.rows = self.rows + group

    def _prefill_padded(self, group: list[int]):
        ids, m = _left_pad_batch([self.prompt_ids[i] for i in group], self.pad_id, self.dev)
        positions = (m.cumsum(-1) - 1).clamp(min=0)
        c = new_cache(self.model)
        out = _forward_last(self.model, input_ids=ids, attention_mask=m, position_ids=positions,
                             **{self.cache_arg: c})
        return c, m, positions[:, -1:], out.logits[:, -1, :].float(), group

    def _prefill(self, group: list[int]):
        """Cache, mask, last positions and logits of ``group``'s prompts, and the order of their rows."""
        import torch

        if not self.split_runs:
            return self._prefill_padded(group)
        dev, prompt_ids = self.dev, self.prompt_ids
        runs: dict[int, list[int]] = {}
        for i in group:
            runs.setdefault(len(prompt_ids[i]), []).append(i)
        width = max(runs)
        caches, logits_parts, start = [], [], 0
        for length, members in runs.items():
            ids = torch.tensor([prompt_ids[i] for i in members], dtype=torch.long, device=dev)
            positions = torch.arange(length, device=dev).expand(len(members), length)
            c = new_cache(self.model)
            out = _forward_last(self.model, input_ids=ids, attention_mask=torch.ones_like(ids),
                                position_ids=positions, **{self.cache_arg: c})
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

    def _step_tokens(self):
        """Every live row's next token from the last logits; rows that end are handed to ``on_finish``
        and their slots marked dead. Returns the chosen tokens (dead slots included)."""
        import torch

        logits = self.logits
        top2, top2_idx = torch.topk(logits, 2, dim=-1)
        gap_t = (top2[:, 0] - top2[:, 1]) / top2[:, 0].abs().clamp(min=1.0)
        # Greedy generate takes torch.argmax (the first maximal index); topk's first index is the
        # same token unless the top two logits are exactly equal, so only such rows pay for argmax.
        next_tok = top2_idx[:, 0]
        if bool((gap_t == 0).any()):
            next_tok = torch.where(gap_t == 0, torch.argmax(logits, dim=-1), next_tok)
        gap = gap_t.tolist()
        fin = torch.isin(next_tok, self.eos_t).tolist()
        toks = next_tok.tolist()
        for b, row in enumerate(self.rows):
            if row is None:
                continue
            if self.trace is not None:
                self.trace.setdefault(row, []).append(logits[b].clone())
            self.tokens[row].append(toks[b])
            self.gaps[row] = min(self.gaps[row], gap[b])
            if self.last_tie is not None and gap[b] < self.tie_margin:
                self.last_tie[row] = len(self.tokens[row]) - 1
            if fin[b] or len(self.tokens[row]) >= self.max_new_tokens:
                self.on_finish(row, self.tokens.pop(row), self.gaps.pop(row))
                self.rows[b] = None
        return next_tok

    def _forward(self, next_tok) -> None:
        """One decoding step of the whole batch (dead slots ride along; their outputs are never read)."""
        import torch

        self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], dim=1)
        self.pos = self.pos + 1
        out = self.model(input_ids=next_tok[:, None], attention_mask=self.mask, position_ids=self.pos,
                         use_cache=True, **{self.cache_arg: self.cache})
        self.logits = out.logits[:, -1, :].float()


__all__ = ["CPU_KV_BUDGET_BYTES", "default_batch_size", "greedy_pool", "growing_layer_class", "is_oom",
           "kv_bytes_per_token", "length_batches", "new_cache", "poolable", "run_with_backoff"]
