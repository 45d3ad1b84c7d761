"""The precision attack: the same weights evaluated in float32, bfloat16 or float16.

What changes. Casting rounds every weight to the target format (bfloat16 keeps 8 significant bits,
float16 11 bits with a narrower exponent range) and transformers then computes the forward pass in
that dtype (Llama's RMSNorm upcasts to float32 internally and casts back); the engine takes the
argmax and the losses from the logits cast to float32. A small unlearning update can vanish in the
rounding, as it can under quantisation, and a greedy choice that the unlearning made by a small
logit margin can flip. Casting down to float16 can overflow (|w| > 65504 becomes inf, refused here)
and flushes values below float16's smallest subnormal (about 6e-8) to zero (counted).

What the engine's exactness check does in 16 bits. Batched and one-at-a-time decoding round
differently; in float32 the engine re-decodes every row whose top-two logit gap falls below a margin
of 8 x float32 epsilon x sqrt(hidden size), 11-16x the largest measured batching noise, which makes
its texts provably those of one-at-a-time decoding. In bfloat16 and float16 the noise is of the order
of the format's resolution and ``harness.backends.hf.default_margin`` uses heuristic margins (5e-2 relative
in bfloat16, 1e-2 in float16): near-tie rows are still replayed one at a time with ``model.generate``,
but a batching difference larger than the margin would go unnoticed, so 16-bit texts are one-at-a-time
texts only as far as the heuristic holds. The report records the margin in force.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from harness.core.errors import AttackError

PRECISIONS = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class PrecisionReport:
    """What :func:`cast_model` did (stored in the attacked run's record)."""

    dtype: str
    from_dtypes: tuple[str, ...]
    """The floating dtypes the parameters had before."""
    parameters: int
    """Floating-point parameter values cast."""
    changed: int
    """Values whose value changed in the cast (0 when casting up or to the same dtype)."""
    flushed_to_zero: int
    """Non-zero values that became zero (below the format's smallest subnormal)."""
    max_relative_change: float
    """Largest |w' - w| / |w| over the non-zero values."""
    verify_margin: float
    """The engine's near-tie margin for the cast model (``harness.backends.hf.default_margin``)."""
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["from_dtypes"] = list(self.from_dtypes)
        return out


def _kept_in_float32(model, dtype: str) -> list[str]:
    """Module names transformers keeps in float32 when loading in ``dtype`` (``_keep_in_fp32_modules``
    for float16, ``_keep_in_fp32_modules_strict`` for both 16-bit formats)."""
    keep: list[str] = []
    if dtype == "float16":
        keep += list(getattr(model, "_keep_in_fp32_modules", None) or [])
    if dtype in ("float16", "bfloat16"):
        keep += list(getattr(model, "_keep_in_fp32_modules_strict", None) or [])
    return keep


def cast_model(model, dtype: str) -> PrecisionReport:
    """Cast ``model``'s floating-point parameters to ``dtype`` in place and report.

    Parameters only, as ``from_pretrained(..., dtype=...)`` loads them: buffers such as the rotary
    embedding's ``inv_freq`` stay float32 (``model.to(torch.bfloat16)`` would round them too and give
    different logits from a model loaded in bfloat16), and modules the architecture keeps in float32
    for 16-bit loading stay float32. Raises :class:`AttackError` for an unknown dtype or when a weight
    does not fit the format (float16's range), naming the parameter; the model is left unchanged then."""
    import re

    import torch

    from harness.backends.hf import default_margin

    if dtype not in PRECISIONS:
        raise AttackError(f"precision: dtype must be one of {', '.join(PRECISIONS)}, got {dtype!r}")
    target = getattr(torch, dtype)
    finfo = torch.finfo(target)
    t0 = time.perf_counter()
    from_dtypes: set[str] = set()
    n = changed = flushed = 0
    max_rel = 0.0
    keep = _kept_in_float32(model, dtype)
    kept = [name for name, _ in model.named_parameters()
            if any(re.search(rf"(^|\.){re.escape(k)}(\.|$)", name) for k in keep)]
    todo = [(name, p) for name, p in model.named_parameters() if p.dtype.is_floating_point and name not in kept]
    with torch.no_grad():
        for name, param in todo:
            from_dtypes.add(str(param.dtype).replace("torch.", ""))
            big = float(param.detach().abs().max()) if param.numel() else 0.0
            if big > finfo.max:
                raise AttackError(f"precision: parameter {name} has values up to {big:.4g}, beyond {dtype}'s largest "
                                  f"finite value {finfo.max:.4g}; casting would turn them into inf")
            wide = param.detach().to(torch.float64)
            rounded = param.detach().to(target).to(torch.float64)
            diff = rounded != wide
            n += param.numel()
            changed += int(diff.sum())
            nonzero = wide != 0
            flushed += int((nonzero & (rounded == 0)).sum())
            if bool(nonzero.any()):
                rel = ((rounded - wide).abs()[nonzero] / wide.abs()[nonzero]).max()
                max_rel = max(max_rel, float(rel))
        for _, param in todo:
            param.data = param.data.to(target)
    return PrecisionReport(dtype=dtype, from_dtypes=tuple(sorted(from_dtypes)), parameters=n, changed=changed,
                           flushed_to_zero=flushed, max_relative_change=max_rel, verify_margin=default_margin(model),
                           seconds=time.perf_counter() - t0)


__all__ = ["PRECISIONS", "PrecisionReport", "cast_model"]
