"""Per-token log-probabilities in batched forward passes: answer losses and membership-inference statistics.

Right-padded batches, no attention mask (real tokens of a causal model only attend to earlier real
tokens), vocabulary-sized temporaries one row at a time, and under data parallelism whole batches of
the single-process plan per process, so the gathered floats are bit-identical to one process's.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Sequence

from harness.backends.base import AnswerFormat, model_device, progress_bar, token_ids
from harness.backends.batching import default_batch_size, length_batches, run_with_backoff

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


@dataclass
class ScoringPass:
    """How one loss phase runs (:func:`token_scores`): none of it changes a number."""

    phase: str
    """``mia`` or ``answer_loss``: the name its batch size is recorded under in ``stats``."""
    desc: str
    batch_size: int | str = "auto"
    progress: bool = True
    stats: dict = field(default_factory=dict)
    token_budget: int | None = None
    """Padded tokens per batch; ``None``: as many as keep one batch's logits within ~512 MiB."""
    data_parallel: bool = True
    """Shard the batches across ``accelerate``/torchrun processes (all must call) and gather."""


def token_scores(model, sequences: list[list[int]], starts: list[int], want_stats: bool, run_as: ScoringPass
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
    bs0 = default_batch_size(model, run_as.phase) if run_as.batch_size == "auto" else int(run_as.batch_size)
    token_budget = run_as.token_budget
    if token_budget is None:
        # Logits are [batch, length, vocab] floats: cap padded tokens per batch so that one batch's
        # logits stay within ~512 MiB.
        vocab = int(getattr(model.config.get_text_config(), "vocab_size", 32000) or 32000)
        token_budget = max(max((len(s) for s in sequences), default=1), (1 << 29) // (4 * vocab))
    bar = progress_bar(n, run_as.desc, run_as.progress)

    from harness.backends.distributed import launched_distributed, state

    sharded = run_as.data_parallel and launched_distributed()
    rank, world = (state().process_index, state().num_processes) if sharded else (0, 1)

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
        run_with_backoff(run, bs0, run_as.phase, run_as.stats)
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
                    progress: bool = True, stats: dict | None = None, data_parallel: bool = True
                    ) -> list[dict[str, Any]]:
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
    seqs = _at_least_two_tokens(tokenizer, texts, "document", "a loss")
    scores = token_scores(model, seqs, [1] * len(seqs), True,
                           ScoringPass("mia", "mia losses", batch_size, progress, stats, data_parallel=data_parallel))
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
                  progress: bool = True, stats: dict | None = None, data_parallel: bool = True,
                  answer_format: AnswerFormat | None = None) -> list[float | None]:
    """Mean token cross-entropy of each ``output`` given its ``input``, in input order.

    ``input`` is tokenised with the default special tokens; the answer's tokens are those following it
    in ``input + seam + output`` (one space where the document had one, :mod:`harness.core.text`), i.e. the
    tokens the model would generate. ``None`` when the answer adds no token. ``answer_format`` changes
    the convention (:class:`harness.backends.base.AnswerFormat`; TOFU's: no seam, EOS label, truncation).
    """
    if len(inputs) != len(outputs):
        raise ValueError(f"{len(inputs)} inputs but {len(outputs)} outputs")
    stats = stats if stats is not None else {}
    from harness.core.text import prompt_and_answer_ids

    fmt = answer_format or AnswerFormat()
    if fmt.is_default:
        pairs = [prompt_and_answer_ids(tokenizer, i, o) for i, o in zip(inputs, outputs)]
    else:
        pairs = [_formatted_answer_ids(tokenizer, i, o, fmt) for i, o in zip(inputs, outputs)]
    starts = [len(p) for p, _ in pairs]
    seqs = [p + a for p, a in pairs]
    scores = token_scores(model, seqs, starts, False, ScoringPass("answer_loss", "answer losses", batch_size, progress,
                                                                   stats, data_parallel=data_parallel))
    return [float(-s["logp"].mean()) if len(s["logp"]) else None for s in scores]


def _formatted_answer_ids(tokenizer, prompt: str, answer: str, fmt: AnswerFormat) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) under ``fmt``: with ``split_by_prompt_length`` the answer is whatever
    follows the prompt's token count in the joined text (TOFU masks by count); EOS after an untruncated
    text when ``eos_label``."""
    from harness.core.text import prompt_and_answer_ids, seam

    if not fmt.split_by_prompt_length:
        p, a = prompt_and_answer_ids(tokenizer, prompt, answer, fmt.separator)
    else:
        p = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        full = tokenizer(prompt + seam(prompt, answer, fmt.separator) + answer, add_special_tokens=True)["input_ids"]
        p, a = full[:len(p)], full[len(p):]
    truncated = False
    if fmt.max_length is not None and len(p) + len(a) > fmt.max_length:
        truncated = True
        p, a = (p + a)[:min(len(p), fmt.max_length)], (p + a)[len(p):fmt.max_length]
    if fmt.eos_label and not truncated:
        if tokenizer.eos_token_id is None:
            raise ValueError("the answer format asks for an EOS label but the tokenizer has no EOS token")
        a = a + [tokenizer.eos_token_id]
    return list(p), list(a)


def _at_least_two_tokens(tokenizer, texts: Sequence[str], noun: str, needs: str) -> list[list[int]]:
    """The texts' token ids (default special tokens); a text of fewer than 2 tokens has nothing to score."""
    seqs = token_ids(tokenizer, texts)
    for i, s in enumerate(seqs):
        if len(s) < 2:
            raise ValueError(f"{noun} {i} ({texts[i][:60]!r}) has {len(s)} token(s); {needs} needs at least 2")
    return seqs


def token_logprobs(model, tokenizer, texts: Sequence[str], batch_size: int | str = "auto", progress: bool = True,
                   stats: dict | None = None, data_parallel: bool = True) -> list[list[float]]:
    """The log-probability of every token after the first of each text (default special tokens), in
    input order — the raw material of Min-K%-style statistics a benchmark computes itself."""
    stats = stats if stats is not None else {}
    seqs = _at_least_two_tokens(tokenizer, texts, "text", "a log-probability")
    scores = token_scores(model, seqs, [1] * len(seqs), False,
                          ScoringPass("token_logprobs", "token log-probs", batch_size, progress, stats,
                                      data_parallel=data_parallel))
    return [[float(x) for x in sc["logp"].tolist()] for sc in scores]


__all__ = ["ScoringPass", "answer_losses", "sequence_losses", "token_logprobs", "token_scores"]
