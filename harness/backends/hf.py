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

Other speed-ups (:mod:`harness.backends.batching`): continuous batching. Prompts are queued by token length; up to ``batch_size`` rows
decode together; a row that emits EOS is finished at once, and once a quarter of the slots are
finished their KV-cache rows are dropped together and the free slots refilled from the queue (the
newcomers' caches are left-padded to the running length and merged). So the number of forward passes
is about (total new tokens) / batch_size, not the longest generation of each static batch. The loss
passes (answer losses, MIA statistics) are in :mod:`harness.backends.losses`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from harness.backends.base import (AnswerFormat, GenerationOutput, ModelBackend, decode, eos_token_ids, generation_pad_id,
                                   model_dtype_name, progress_bar, token_ids)
from harness.backends.batching import default_batch_size, greedy_pool, run_with_backoff
from harness.backends.losses import answer_losses, sequence_losses, token_logprobs

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


def unsupported_generation_settings(model) -> dict[str, Any]:
    """``generation_config`` fields that alter greedy decoding (the engine's own loop ignores them)."""
    cfg = getattr(model, "generation_config", None)
    out = {}
    for key, neutral in _UNSUPPORTED_GENERATION_SETTINGS.items():
        value = getattr(cfg, key, neutral)
        if value is not None and value != neutral:
            out[key] = value
    return out


def generate_detailed(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 256,
                      batch_size: int | str = "auto", cleanup: str | None = "semeval2025",
                      progress: bool = True, verify_margin: float | None = None,
                      stats: dict | None = None) -> GenerationOutput:
    """Greedy generation for every prompt; see :func:`generate`. Also returns token ids, the logit gaps
    and which rows fell back to one-at-a-time decoding.

    A model whose generation config alters greedy decoding (:func:`unsupported_generation_settings`)
    is decoded one record at a time by the organisers' loop instead (:mod:`harness.backends.reference`).
    """
    from harness.backends import reference

    stats = stats if stats is not None else {}
    pad_id = generation_pad_id(model, tokenizer)
    eos = set(eos_token_ids(model, tokenizer))
    odd = unsupported_generation_settings(model)
    if odd:
        log.warning("the model's generation config sets %s; using one-at-a-time model.generate so the "
                    "output matches the reference procedure", odd)
        return reference.generate_reference(model, tokenizer, prompts, max_new_tokens, cleanup, progress, stats)
    if verify_margin is None:
        verify_margin = default_margin(model)
    prompt_ids = token_ids(tokenizer, prompts)
    for i, p in enumerate(prompt_ids):
        if not p:
            raise ValueError(f"prompt {i} ({prompts[i][:60]!r}) tokenises to no tokens; cannot generate")
    bs0 = default_batch_size(model, "generation") if batch_size == "auto" else int(batch_size)
    if bs0 < 1:
        raise ValueError(f"batch size must be at least 1, got {bs0}")
    run = _GreedyRun(model, tokenizer, list(prompts), prompt_ids, max_new_tokens, eos, pad_id, verify_margin,
                     progress, stats)
    was_training = model.training
    model.eval()
    try:
        t0 = time.perf_counter()
        ids, margins, last_tie = _batched_greedy(run, bs0)
        t1 = time.perf_counter()
        fallback = [i for i in range(len(prompts)) if margins[i] < verify_margin]
        _verify_near_ties(run, ids, fallback, last_tie)
    finally:
        if was_training:
            model.train()
    stats["verify_margin"] = verify_margin
    stats["generation_seconds"] = {"batched": t1 - t0, "verify": time.perf_counter() - t1}
    texts = [decode(tokenizer, t, cleanup) for t in ids]
    return GenerationOutput(texts, ids, margins, fallback, stats["batch_size"]["generation"], "batched")


@dataclass
class _GreedyRun:
    """What every part of one :func:`generate_detailed` call shares."""

    model: Any
    tokenizer: Any
    prompts: list[str]
    prompt_ids: list[list[int]]
    max_new_tokens: int
    eos: set[int]
    pad_id: int
    verify_margin: float
    progress: bool
    stats: dict


def _batched_greedy(run: _GreedyRun, batch_size: int) -> tuple[list[list[int]], list[float], dict[int, int]]:
    """Every row through :func:`greedy_pool` (halving the batch on out-of-memory, keeping finished
    rows): the new token ids, each row's smallest logit gap, and each row's last near-tie step."""
    n, prompt_ids = len(run.prompt_ids), run.prompt_ids
    ids: list[list[int]] = [[] for _ in range(n)]
    margins = [math.inf] * n
    done = [False] * n
    last_tie: dict[int, int] = {}
    bar = progress_bar(n, "generate", run.progress)

    def finish(i: int, toks: list[int], gap: float) -> None:
        ids[i], margins[i], done[i] = toks, gap, True
        bar.update(1)

    def decode_rows(bs: int) -> None:
        # Length-sorted queue; rows finished before an out-of-memory retry are kept.
        order = sorted((i for i in range(n) if not done[i]), key=lambda i: (len(prompt_ids[i]), i))
        greedy_pool(run.model, prompt_ids, order, run.max_new_tokens, run.eos, run.pad_id, bs, finish,
                    last_tie=last_tie, tie_margin=run.verify_margin)

    try:
        run_with_backoff(decode_rows, batch_size, "generation", run.stats)
    finally:
        bar.close()
    return ids, margins, last_tie


def _verify_near_ties(run: _GreedyRun, ids: list[list[int]], fallback: list[int], last_tie: dict[int, int]) -> None:
    """Check each ``fallback`` row one record at a time up to its last near-tie step (past it the
    batched steps are safe, see the module docstring); a row that differs is regenerated one at a
    time to its end. ``ids`` is corrected in place."""
    from harness.backends.reference import reference_generate_ids

    model, tokenizer, prompts, pad_id = run.model, run.tokenizer, run.prompts, run.pad_id
    replayed = diverged = 0
    if fallback:
        log.info("%d of %d generations had a near-tie logit step (< %g); checking them one at a time",
                 len(fallback), len(prompts), run.verify_margin)
        with progress_bar(len(fallback), "generate (verify near-ties)", run.progress) as fbar:
            for i in fallback:
                upto = last_tie.get(i, len(ids[i]) - 1) + 1
                head = reference_generate_ids(model, tokenizer, prompts[i], upto, pad_id)
                replayed += len(head)
                if head != ids[i][:upto]:
                    diverged += 1
                    ended = len(head) < upto or (head and head[-1] in run.eos) or upto >= run.max_new_tokens
                    ids[i] = head if ended else reference_generate_ids(model, tokenizer, prompts[i],
                                                                       run.max_new_tokens, pad_id)
                fbar.update(1)
    run.stats["generation_fallback"] = len(fallback)
    run.stats["generation_fallback_tokens"] = replayed
    run.stats["generation_fallback_diverged"] = diverged


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
# the backend
class HFBackend(ModelBackend):
    """The batched engine over an in-memory transformers model (``--engine hf``, the default).

    Generation shards contiguous record ranges across data-parallel processes (batched decoding is
    verified-exact per row, so the shards' texts equal one process's); the loss phases shard whole
    batches of the single-process plan (:func:`harness.backends.losses.token_scores`), so their floats are bit-identical.
    """

    name = "hf"
    exactness = ("batched; rows with a near-tie logit step checked one at a time up to their last near tie and "
                 "regenerated one at a time when they differ (exact in float32)")

    def generate(self, prompts: Sequence[str], max_new_tokens: int, cleanup: str = "semeval2025") -> list[str]:
        def shard(part: list[str]) -> list[str]:
            return self._generate(part, max_new_tokens, cleanup)

        return self._map(shard, list(prompts))

    def _generate(self, prompts: list[str], max_new_tokens: int, cleanup: str) -> list[str]:
        o = self.options
        return generate_detailed(self.model, self.tokenizer, prompts, max_new_tokens=max_new_tokens,
                                 batch_size=o.batch_size, cleanup=cleanup, progress=o.progress,
                                 verify_margin=o.verify_margin, stats=self.stats).texts

    def _map(self, fn: Callable[[list[str]], list[str]], items: list[str]) -> list[str]:
        if not self.options.data_parallel:
            return fn(items)
        from harness.backends.distributed import map_sharded

        return map_sharded(fn, items)

    def answer_losses(self, inputs: Sequence[str], outputs: Sequence[str],
                      answer_format: AnswerFormat | None = None) -> list[float | None]:
        o = self.options
        return answer_losses(self.model, self.tokenizer, inputs, outputs, batch_size=o.batch_size, progress=o.progress,
                             stats=self.stats, data_parallel=o.data_parallel, answer_format=answer_format)

    def token_logprobs(self, texts: Sequence[str]) -> list[list[float]]:
        o = self.options
        return token_logprobs(self.model, self.tokenizer, texts, batch_size=o.batch_size, progress=o.progress,
                              stats=self.stats, data_parallel=o.data_parallel)

    def document_scores(self, texts: Sequence[str], k: float = 0.2) -> list[dict[str, Any]]:
        o = self.options
        return sequence_losses(self.model, self.tokenizer, texts, batch_size=o.batch_size, k=k, progress=o.progress,
                               stats=self.stats, data_parallel=o.data_parallel)


__all__ = ["HFBackend", "generate", "generate_detailed", "answer_losses", "sequence_losses", "default_margin",
           "unsupported_generation_settings", "DEFAULT_MARGINS", "FLOAT32_MARGIN_FACTOR"]
