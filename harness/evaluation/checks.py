"""Checks before and around the model work: inputs the model cannot take, and a model that computes
non-finite numbers -- each named, in seconds, instead of an out-of-memory error after a minute or a
"field 'loss' must be a finite number" blamed on the data after two.

- :func:`check_context`: every prompt (plus the tokens to generate), every prompt + answer (answer
  losses) and every document (MIA statistics) must fit the model's context; the first one that does
  not is reported by record id, before any generation. A text far too long is refused from its
  length in characters alone (a token is never longer than the longest string in the vocabulary),
  so a 10 MB prompt is not even tokenised.
- :class:`FiniteOutputs`: a forward hook that checks the logits of the first forward passes and, on
  a NaN or an infinity, names the model -- and the weights that hold non-finite values, if any.
"""

from __future__ import annotations

from typing import Any, Sequence

from harness.core.errors import DataError, ModelError

#: Config attributes that hold a model's context length (Llama/Mistral/OLMo, GPT-2, others).
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


def model_context(model: Any) -> int | None:
    """The number of positions the model was built for (None when its config does not say)."""
    config = getattr(model, "config", None)
    for key in _CONTEXT_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _longest_token_chars(tokenizer: Any) -> int:
    try:
        return max((len(t) for t in tokenizer.get_vocab()), default=1) or 1
    except Exception:  # a tokenizer without a vocabulary listing
        return 64


def check_context(model: Any, tokenizer: Any, texts: Sequence[str], ids: Sequence[str], what: str,
                  reserve: int = 0, source: str | None = None) -> None:
    """Refuse the first text whose tokens (plus ``reserve`` generated tokens) exceed the context."""
    context = model_context(model)
    if context is None or not texts:
        return
    limit = context - reserve
    longest = _longest_token_chars(tokenizer)
    suspects = []
    for i, text in enumerate(texts):
        # No token decodes to more characters than the longest vocabulary string, so this many
        # characters cannot fit (the factor 2 leaves room for normalisers that merge characters).
        if len(text) / longest > 2 * limit:
            raise DataError(f"{what} of {len(text):,} characters is longer than the model's context of {context} "
                            f"tokens{_reserve(reserve)}; shorten or drop the record", source, record_id=ids[i])
        # A text never has more tokens than UTF-8 bytes (plus a few special tokens): only longer ones
        # can be too long, and only those are tokenised here.
        if len(text.encode("utf-8")) + 8 > limit:
            suspects.append(i)
    if not suspects:
        return
    counts = tokenizer([texts[i] for i in suspects], add_special_tokens=True)["input_ids"]
    for i, tokens in zip(suspects, counts):
        if len(tokens) > limit:
            raise DataError(f"{what} of {len(tokens):,} tokens is longer than the model's context of {context} "
                            f"tokens{_reserve(reserve)}; shorten or drop the record", source, record_id=ids[i])


def _reserve(reserve: int) -> str:
    return f" minus the {reserve} tokens to generate" if reserve else ""


def check_requests(model: Any, tokenizer: Any, task: Any, max_new_tokens: int) -> None:
    """:func:`check_context` over what a benchmark asks of the model (LUME: prompts, prompt + answer,
    MIA documents), naming the benchmark's record ids."""
    requests = task.requests()
    data = task.data
    records = getattr(data, "records", ())
    record_ids = [r.id for r in records] if len(records) == len(requests.prompts) else \
        [f"#{i + 1}" for i in range(len(requests.prompts))]
    path = getattr(data, "path", None)
    # A benchmark may give each prompt its own generation budget (TOFU, MUSE): each is checked with its own.
    budgets = list(getattr(requests, "max_new_tokens", None) or ()) or [max_new_tokens] * len(requests.prompts)
    for budget in sorted(set(budgets)):
        picked = [i for i, b in enumerate(budgets) if b == budget]
        check_context(model, tokenizer, [requests.prompts[i] for i in picked], [record_ids[i] for i in picked],
                      "prompt", reserve=budget, source=path)
    if requests.answers and len(requests.answers) == len(record_ids):
        check_context(model, tokenizer, [a + b for a, b in requests.answers], record_ids, "prompt + answer",
                      source=path)
    if requests.documents:
        docs = list(getattr(data, "members", ())) + list(getattr(data, "nonmembers", ()))
        doc_ids = [d.id for d in docs] if len(docs) == len(requests.documents) else \
            [f"document #{i + 1}" for i in range(len(requests.documents))]
        check_context(model, tokenizer, requests.documents, doc_ids, "MIA document", source=path)


# ------------------------------------------------------------------------------------------------
def nonfinite_weights(model: Any, limit: int = 3) -> list[str]:
    """``name (N of M values)`` for the first parameters holding NaN or infinite values."""
    import torch

    out = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.is_floating_point():
                continue
            bad = int((~torch.isfinite(p)).sum())
            if bad:
                out.append(f"{name} ({bad:,} of {p.numel():,} values)")
                if len(out) >= limit:
                    break
    return out


class FiniteOutputs:
    """Check the logits of a model's first ``checks`` forward passes; raise :class:`ModelError` naming
    the model (and its non-finite weights) at the first NaN or infinity.

        with FiniteOutputs(model, "the model runs/npo/model", during="generation"):
            ... model work ...
    """

    def __init__(self, model: Any, name: str, during: str, checks: int = 2):
        self.model, self.name, self.during, self.left = model, name, during, checks
        self.handle = None

    def __enter__(self) -> "FiniteOutputs":
        if hasattr(self.model, "register_forward_hook"):
            self.handle = self.model.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc) -> bool:
        self.remove()
        return False

    def remove(self) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None

    def _hook(self, module: Any, args: Any, output: Any) -> None:
        import torch

        logits = getattr(output, "logits", None)
        if logits is None and isinstance(output, (tuple, list)) and output and torch.is_tensor(output[0]):
            logits = output[0]
        if logits is None or not torch.is_tensor(logits):
            return
        self.left -= 1
        if self.left <= 0:
            self.remove()
        if bool(torch.isfinite(logits).all()):
            return
        kind = "NaN" if bool(torch.isnan(logits).any()) else "infinite"
        weights = nonfinite_weights(self.model)
        cause = (f"its weights hold non-finite values: {'; '.join(weights)}" if weights else
                 "its weights are finite, so the values overflow (try float32 or bfloat16 instead of float16)")
        self.remove()
        raise ModelError(f"{self.name} produces {kind} logits on its first forward pass ({self.during}); {cause}. "
                         "The model is broken (a diverged fine-tune?); nothing was computed from it")




# ------------------------------------------------------------------------------------------------
def metric_problems(metrics: dict[str, Any]) -> list[str]:
    """``name = value: why`` for every metric that is not finite or lies outside its declared range
    (:func:`metrics.specs.value_problem`); ``None`` (a metric that could not be computed) passes."""
    from metrics.specs import value_problem

    out = []
    for name, value in metrics.items():
        if value is None:
            continue
        why = value_problem(name, value)
        if why is not None:
            out.append(f"{name} = {value!r}: {why}")
    return out


def check_metrics(metrics: dict[str, Any], where: Any) -> None:
    """Refuse to write a result whose metrics are not finite or out of range (a wrong number must
    never reach a board): :class:`RecordError` naming the first bad metric."""
    from harness.core.errors import RecordError

    problems = metric_problems(metrics)
    if problems:
        raise RecordError(where, f"refusing to write a result with an invalid metric: {problems[0]}"
                                 f"{f' (and {len(problems) - 1} more)' if len(problems) > 1 else ''}")


def check_weights(model: Any, name: str) -> None:
    """Refuse a model whose weights hold NaN or infinite values before any work (a diverged fine-tune,
    a corrupted file): :class:`ModelError` naming the model and the first such weights."""
    if not hasattr(model, "named_parameters"):
        return
    bad = nonfinite_weights(model)
    if bad:
        raise ModelError(f"{name} holds non-finite weights: {'; '.join(bad)}. The model is broken (a diverged "
                         "fine-tune, a damaged file?); nothing was computed from it")


__all__ = ["check_context", "check_requests", "check_weights", "model_context", "FiniteOutputs", "nonfinite_weights",
           "metric_problems", "check_metrics"]
