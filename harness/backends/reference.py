"""The organisers' generation procedure, one record at a time (``--engine reference``).

What the SemEval-2025 Task 4 organisers ran (``../shared/specs/semeval2025-scoring.md``): tokenise
the raw prompt with the tokenizer's default special tokens, ``model.generate`` greedily on a batch of
one with at most ``max_new_tokens`` new tokens, stop only at EOS, pad id = EOS id, decode the new
tokens with special tokens skipped. Slow; it exists for comparison, and the batched engine
(:mod:`harness.backends.hf`) uses it to re-check rows whose decoding had a near-tie logit step.
The loss phases of this backend are the batched engine's (its losses need no decoding order).
"""

from __future__ import annotations

import math
from typing import Sequence

from harness.backends.base import (GenerationOutput, decode, eos_token_ids, generation_pad_id, model_device,
                                   progress_bar)
from harness.backends.hf import HFBackend


def reference_generate_ids(model, tokenizer, prompt: str, max_new_tokens: int, pad_id: int) -> list[int]:
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


def generate_reference(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 256,
                       cleanup: str | None = "semeval2025", progress: bool = True,
                       stats: dict | None = None) -> GenerationOutput:
    """Greedy continuations of ``prompts`` by the organisers' loop, one record at a time."""
    stats = stats if stats is not None else {}
    pad_id = generation_pad_id(model, tokenizer)
    eos_token_ids(model, tokenizer)  # no EOS to stop at is an error before any work, as in the batched engine
    ids: list[list[int]] = []
    was_training = model.training
    model.eval()
    try:
        with progress_bar(len(prompts), "generate (reference)", progress) as bar:
            for prompt in prompts:
                ids.append(reference_generate_ids(model, tokenizer, prompt, max_new_tokens, pad_id))
                bar.update(1)
    finally:
        if was_training:
            model.train()
    stats.setdefault("batch_size", {})["generation"] = 1
    texts = [decode(tokenizer, t, cleanup) for t in ids]
    return GenerationOutput(texts, ids, [math.inf] * len(ids), [], 1, "reference")


class ReferenceBackend(HFBackend):
    """Generation by the organisers' one-record-at-a-time loop; losses by the batched engine."""

    name = "reference"
    exactness = "one-at-a-time reference"

    def _generate(self, prompts: list[str], max_new_tokens: int, cleanup: str) -> list[str]:
        return generate_reference(self.model, self.tokenizer, prompts, max_new_tokens, cleanup, self.options.progress,
                                  self.stats).texts


__all__ = ["ReferenceBackend", "generate_reference", "reference_generate_ids"]
