"""Representation Misdirection for Unlearning (RMU, Li et al. 2024, WMDP).

On forget data the hidden states at one layer are pushed towards a fixed random direction scaled by
``steering_coeff`` (``c · u``, ``u`` uniform in [0, 1)^H normalised to unit length, drawn from the
seed); on retain data they are held to the frozen model's (MSE, weight ``retain_weight``). Both MSEs
are averaged over the real (attended) tokens.

``layer`` indexes ``outputs.hidden_states`` as transformers returns them: i = 1 … n-1 is the output of
block i, and i = n (the last) is the last block's output *after the final norm*; 0 (the token
embeddings, which no adapter changes) is refused. ``None`` picks the middle block. The frozen
activations come from the base under ``disable_adapter`` (LoRA) or are precomputed once (full
fine-tuning). Unlike the original, which trains only three MLP blocks' weights, the trainable
parameters are whatever the loop's ``finetune`` mode makes trainable (layers above ``layer`` get no
gradient).

The defaults are the WMDP paper's for Zephyr-7B (c = 6.5; retain weight 100, their code's default,
1200 in their Zephyr run). The retain weight is not scale-free: it trades activation changes on retain
text against steering on forget text, and how much steering costs on retain text depends on how well
the model separates the two. WMDP's forget (biosecurity papers) and retain (Wikipedia) texts are far
apart; the embedded world's forget and retain documents come from the same generator, and its
2-layer target represents them almost alike. There the retain term wins outright: with the default
weight RMU leaves the forget answer loss where it was (0.0316 -> 0.0319 nats, every score unchanged).
The ``demo`` preset measures what works there instead (see its comment).
"""

from __future__ import annotations

from harness.core.params import NonNegativeFloat, PositiveFloat, PositiveInt
from harness.core.registry import register_method

from .base import LossMethod
from .presets import demo_preset


def _masked_mse(a, b, mask):
    per_token = ((a.float() - b.float()) ** 2).mean(dim=-1)
    mask = mask.to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


@register_method("rmu")
class RMU(LossMethod):
    """Steer forget activations at one layer to a scaled random direction, keep retain ones (RMU)."""

    presets = {
        # The demo recipe (baselines.presets) at the top hidden state of the 2-layer target (the only
        # one that has seen two attention layers: at layer 1 the steering hits retain text as hard as
        # forget text) with retain weight 1 (open-unlearning's default; WMDP's 100 is a no-op here, see
        # the module docstring). World-board final score per learning rate: 5e-4: 0.294, 1e-3: 0.294,
        # 2e-3: 0.352, 3e-3: 0.406, 5e-3: 0.460. The steering coefficient stays WMDP's 6.5, as every
        # other method keeps its paper's own parameters; larger ones do much better on this world
        # (c = 15 at 5e-3: 0.798, c = 30 at 3e-3: 0.735; benchmarks/demo_presets.py --rmu-coeffs).
        "demo": demo_preset(5e-3, layer=2, retain_weight=1.0),
    }

    def __init__(self, layer: PositiveInt | None = None, steering_coeff: PositiveFloat = 6.5,
                 retain_weight: NonNegativeFloat = 100.0,
                 **training):
        super().__init__(**training)
        if layer is not None and (isinstance(layer, bool) or not isinstance(layer, int) or layer < 1):
            raise ValueError(f"rmu: layer indexes outputs.hidden_states and must be an integer >= 1 (0 is the token "
                             f"embeddings, which training does not steer), got {layer!r}")
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
        if n_layers and self.layer > n_layers:
            raise ValueError(f"rmu: layer must be in [1, {n_layers}] for this model ({n_layers} = the last block's "
                             f"output after the final norm), got {self.layer}")
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
