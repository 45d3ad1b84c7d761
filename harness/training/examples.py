"""Training examples and batches: each record becomes ``input + output + EOS`` with the prompt masked,
every forget example is paired with a retain example, and batches are padded at token level."""

from __future__ import annotations

from typing import Any

from harness.core.text import prompt_and_answer_ids
from harness.core.types import Record
from harness.training.step import IGNORE_INDEX, TrainingError


def build_example(tokenizer, record: Record, index: int, max_length: int, prompt_max_fraction: float,
                  mask_prompt: bool) -> dict[str, Any]:
    """``input`` (default special tokens, last tokens kept) + ``output`` + EOS, prompt masked.

    The output's tokens are those that follow the prompt in ``input + seam + output``
    (:func:`harness.core.text.prompt_and_answer_ids`)."""
    if tokenizer.eos_token_id is None:
        raise TrainingError("the tokenizer has no EOS token; training examples end with EOS")
    max_prompt = max(1, int(max_length * prompt_max_fraction))
    # The answer is what the model generates after the prompt: joined as in the document (see
    # harness.core.text), not the output tokenized on its own.
    prompt, answer = prompt_and_answer_ids(tokenizer, record.input, record.output)
    prompt = prompt[-max_prompt:]
    answer = answer + [tokenizer.eos_token_id]
    input_ids = (prompt + answer)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt) + answer) if mask_prompt else list(prompt + answer)
    labels = labels[:max_length]
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels, "index": index}


class PairedDataset:
    """Forget example ``i`` paired with retain example ``retain_for[i]`` (re-drawn every epoch)."""

    def __init__(self, forget: list[dict], retain: list[dict], sampling: str, seed: int):
        self.forget, self.retain, self.sampling, self.seed = forget, retain, sampling, seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        import torch

        n_f, n_r = len(self.forget), len(self.retain)
        if self.sampling == "cycle":
            self.retain_for = [i % n_r for i in range(n_f)]
        else:
            gen = torch.Generator().manual_seed(self.seed * 1000003 + epoch)
            self.retain_for = torch.randint(n_r, (n_f,), generator=gen).tolist()

    def __len__(self) -> int:
        return len(self.forget)

    def __getitem__(self, i: int) -> dict:
        return {"forget": self.forget[i], "retain": self.retain[self.retain_for[i]]}


class PairedCollator:
    """Token-level padding of both sides with ``DataCollatorForSeq2Seq`` (labels padded with -100)."""

    def __init__(self, tokenizer, padding: str, max_length: int, padding_side: str):
        import copy

        from transformers import DataCollatorForSeq2Seq

        tok = copy.copy(tokenizer)  # padding side is tokenizer state; do not change the caller's
        tok.padding_side = padding_side
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        self._collate = DataCollatorForSeq2Seq(tok, padding=padding, max_length=max_length,
                                               label_pad_token_id=IGNORE_INDEX, return_tensors="pt")

    def one(self, features: list[dict]) -> dict:
        import torch

        index = torch.tensor([f["index"] for f in features], dtype=torch.long)
        batch = dict(self._collate([{k: v for k, v in f.items() if k != "index"} for f in features]))
        batch["index"] = index
        return batch

    def __call__(self, pairs: list[dict]) -> dict:
        return {"forget": self.one([p["forget"] for p in pairs]), "retain": self.one([p["retain"] for p in pairs])}


__all__ = ["PairedCollator", "PairedDataset", "build_example"]
