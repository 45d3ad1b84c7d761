"""Reference-model quantities for full fine-tuning, computed once before training.

With LoRA the frozen base is the reference (its outputs come from the same weights under
``disable_adapter()``), so nothing is cached. With full fine-tuning, what a method declares it needs
(:meth:`baselines.base.LossMethod.reference_needs`) is computed before the first step and kept on the
CPU: per-token log-probabilities of the labels (a few bytes per token), and only when asked the full
next-token distributions (float16, ``tokens × vocab``, refused above ``reference_cache_limit_gb``) or
one layer's hidden states.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from harness.training.step import TrainingError, label_token_logprobs

if TYPE_CHECKING:  # pragma: no cover
    from harness.training.examples import PairedCollator

#: What a method can ask of the reference model: ``label_logprobs`` (log-probability of each labelled
#: token, enough for sequence or token-mean NLL), ``distribution`` (full next-token log-probabilities,
#: for KL terms), ``hidden`` (one layer's hidden states, for RMU).
REFERENCE_KINDS = ("label_logprobs", "distribution", "hidden")


class ReferenceCache:
    """Full fine-tuning: the reference quantities of every example, computed once before training.

    Values are stored per example over its real tokens only (``attention_mask == 1``) and scattered
    back into whatever padded layout a batch has, so padding side and batch composition do not matter.
    """

    def __init__(self) -> None:
        self.store: dict[tuple[str, str], list] = {}

    @staticmethod
    def estimate_bytes(examples: list[dict], vocab: int) -> int:
        return sum(len(e["input_ids"]) for e in examples) * vocab * 2

    def build(self, model, collator: PairedCollator, examples: dict[str, list[dict]], needs: set[tuple[str, str]],
              layer: int | None, device, limit_gb: float, progress: bool) -> None:
        import torch
        from tqdm.auto import tqdm

        for split, kind in needs:
            if kind not in REFERENCE_KINDS:
                raise TrainingError(f"unknown reference quantity {kind!r}; expected one of {list(REFERENCE_KINDS)}")
            if kind == "distribution":
                size = self.estimate_bytes(examples[split], model.config.vocab_size)
                if size > limit_gb * 2**30:
                    raise TrainingError(
                        f"full fine-tuning with a KL term needs the reference model's next-token distribution "
                        f"on every {split} token: {size / 2**30:.1f} GiB in float16, above "
                        f"reference_cache_limit_gb={limit_gb}. Use finetune='lora' (the frozen base is the "
                        f"reference, nothing is cached) or raise reference_cache_limit_gb.")
            if kind == "hidden" and layer is None:
                raise TrainingError("the method asked for reference hidden states but names no layer")
        was_training = model.training
        model.eval()
        splits = sorted({s for s, _ in needs})
        for split in splits:
            kinds = {k for s, k in needs if s == split}
            for kind in kinds:
                self.store[(split, kind)] = [None] * len(examples[split])
            exs = examples[split]
            bar = tqdm(range(0, len(exs), 8), desc=f"reference {split}", disable=not progress, leave=False)
            for start in bar:
                batch = collator.one(exs[start:start + 8])
                batch = {k: v.to(device) for k, v in batch.items()}
                with torch.no_grad():
                    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                output_hidden_states="hidden" in kinds)
                mask = batch["attention_mask"].bool()
                if "label_logprobs" in kinds:
                    values, _ = label_token_logprobs(out.logits, batch["labels"])
                    values = torch.nn.functional.pad(values, (0, 1))  # align to [B, T]: position t scores t+1
                if "distribution" in kinds:
                    dist = torch.log_softmax(out.logits.float(), dim=-1)
                for row, idx in enumerate(batch["index"].tolist()):
                    m = mask[row]
                    if "label_logprobs" in kinds:
                        self.store[(split, "label_logprobs")][idx] = values[row][m].float().cpu()
                    if "distribution" in kinds:
                        self.store[(split, "distribution")][idx] = dist[row][m].to(torch.float16).cpu()
                    if "hidden" in kinds:
                        self.store[(split, "hidden")][idx] = out.hidden_states[layer][row][m].float().cpu()
        model.train(was_training)

    def gather(self, split: str, kind: str, batch: Mapping[str, Any]):
        """The cached values of a batch, in its padded layout (zeros at padding positions)."""
        import torch

        if (split, kind) not in self.store:
            raise TrainingError(
                f"the method used the reference {kind!r} on {split} data but did not declare it in "
                f"reference_needs(); with full fine-tuning only declared quantities are precomputed")
        rows = [self.store[(split, kind)][i] for i in batch["index"].tolist()]
        mask = batch["attention_mask"].bool()
        shape = tuple(mask.shape) + tuple(rows[0].shape[1:])
        out = torch.zeros(shape, dtype=torch.float32, device=mask.device)
        for r, values in enumerate(rows):
            out[r][mask[r]] = values.to(device=mask.device, dtype=torch.float32)
        return out


__all__ = ["REFERENCE_KINDS", "ReferenceCache"]
