"""Representation Misdirection for Unlearning (RMU, Li et al. 2024, WMDP).

On forget data the hidden states at one layer are pushed towards a fixed random direction scaled by
``steering_coeff`` (``c · u``, ``u`` uniform in [0, 1)^H normalised to unit length, drawn from the
seed); on retain data they are held to the frozen model's (MSE, weight ``retain_weight``). Both MSEs
are averaged over the real (attended) tokens.

``layer`` indexes ``outputs.hidden_states`` (0 = embeddings, i = output of block i); ``None`` picks
the middle block. The frozen activations come from the base under ``disable_adapter`` (LoRA) or are
precomputed once (full fine-tuning). Unlike the original, which trains only three MLP blocks' weights,
the trainable parameters are whatever the loop's ``finetune`` mode makes trainable (layers above
``layer`` get no gradient).
"""

from __future__ import annotations

from harness.core.registry import register_method

from .base import LossMethod


def _masked_mse(a, b, mask):
    per_token = ((a.float() - b.float()) ** 2).mean(dim=-1)
    mask = mask.to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


@register_method("rmu")
class RMU(LossMethod):
    """Steer forget activations at one layer to a scaled random direction, keep retain ones (RMU)."""

    def __init__(self, layer: int | None = None, steering_coeff: float = 6.5, retain_weight: float = 100.0,
                 **training):
        super().__init__(**training)
        self.layer = layer
        self.steering_coeff = steering_coeff
        self.retain_weight = retain_weight
        self._direction = None

    def hidden_layer(self, model):
        config = getattr(model, "config", None)
        n_layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
        if self.layer is None:
            if not n_layers:
                raise ValueError("rmu: cannot tell the model's number of layers; set layer=")
            return max(1, n_layers // 2)
        if n_layers and not 0 <= self.layer <= n_layers:
            raise ValueError(f"rmu: layer must be in [0, {n_layers}] for this model, got {self.layer}")
        return self.layer

    def reference_needs(self):
        return {("retain", "hidden")}

    def _control(self, hidden, seed: int):
        import torch

        if self._direction is None or self._direction.shape[-1] != hidden.shape[-1]:
            gen = torch.Generator().manual_seed(int(seed))
            u = torch.rand(hidden.shape[-1], generator=gen)
            self._direction = u / u.norm()
        return (self.steering_coeff * self._direction).to(device=hidden.device, dtype=torch.float32)

    def loss(self, step):
        forget_h = step.forget.hidden()
        forget = _masked_mse(forget_h, self._control(forget_h, step.seed).expand_as(forget_h), step.forget.attention_mask)
        retain = _masked_mse(step.retain.hidden(), step.retain.ref_hidden(), step.retain.attention_mask)
        return forget + self.retain_weight * retain, {"forget_mse": forget, "retain_mse": retain}

    def unlearn(self, model, tokenizer, data, ctx):
        self._direction = None  # a fresh direction per run, drawn from the run's seed
        return super().unlearn(model, tokenizer, data, ctx)
