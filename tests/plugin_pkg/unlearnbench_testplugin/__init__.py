"""A tiny third-party unlearning method, shipped as its own pip package for the tests.

It takes a few plain SGD steps of gradient *ascent* on the forget documents. Not a serious method:
only a proof that an outside package plugs into unlearnbench through its entry-point group.
"""

from __future__ import annotations

from harness import UnlearningMethod


class NoiseUnlearning(UnlearningMethod):
    """Plugin method: a few SGD steps of gradient ascent on forget documents (test plugin)."""

    def __init__(self, steps: int = 3, lr: float = 0.05):
        self.steps = steps
        self.lr = lr

    def unlearn(self, model, tokenizer, data, ctx):
        import torch

        torch.manual_seed(ctx.seed)
        texts = [rec.input + rec.output for rec in data.forget]
        optim = torch.optim.SGD(model.parameters(), lr=self.lr)
        model.train()
        for step in range(self.steps):
            total = 0.0
            for text in texts:
                ids = tokenizer(text, return_tensors="pt").input_ids
                loss = -model(input_ids=ids, labels=ids).loss / len(texts)
                loss.backward()
                total += loss.item()
            optim.step()
            optim.zero_grad()
            if ctx.log_event:
                ctx.log_event({"event": "plugin_noise", "step": step, "loss": total})
        model.eval()
        return model
