"""The quantisation attack: round-to-nearest (RTN) weight quantisation of a loaded model.

Why it is an attack. Unlearning usually moves the weights by far less than one step of a 4-bit grid,
so the target's and the unlearned model's weights often round to the same grid point: quantising the
unlearned model for deployment brings back much of what it "forgot" (Zhang et al., "Catastrophic
Failure of LLM Unlearning via Quantization", ICLR 2025: utility-constrained methods keep 21% of the
forgotten knowledge in full precision and 83% after 4-bit quantisation). Evaluating the quantised
model measures how much comes back (``metrics.robust``).

What is rounded. The weight of every ``torch.nn.Linear`` except the output head (``lm_head``, which
transformers' bitsandbytes integration also keeps in full precision; embeddings and norms are not
linear layers), in blocks of one output row (``group_size=None``, "per channel") or of
``group_size`` consecutive input columns of a row ("grouped"). Symmetric RTN on ``b`` bits, for a
block ``w``::

    scale = max|w| / ((qmax - qmin) / 2)       qmin, qmax = -2^(b-1), 2^(b-1) - 1
    q     = clamp(round(w / scale), qmin, qmax)
    w'    = q * scale

which is torchao's ``MappingType.SYMMETRIC`` and the same grid as the GPTQ authors' reference RTN
quantiser (scale = 2 max|w| / (2^b - 1), zero point 2^(b-1)). ``symmetric=False`` uses min-max
scaling with an integer zero point (torchao's ``ASYMMETRIC``; AWQ's RTN with ``zero_point``).

Library. torchao's ``IntxWeightOnlyConfig`` through ``torchao.quantization.quantize_`` (pytorch/ao,
release 0.18.0 of August 2026; pure PyTorch on CPU). optimum-quanto was evaluated and not chosen: its last release
is from March 2025 and on this CPU its qint4 linear layers decoded about a thousand times slower than
torchao's (seven short prompts, eight tokens: 179 s against 0.13 s).

Dequantised weights by default. torchao's CPU path for these tensors dequantises the weight and
calls ``F.linear`` on every forward pass, so writing the dequantised weights back as ordinary float
parameters computes exactly the same logits (tested bit for bit) while keeping the model an ordinary
transformers model: it saves with ``save_pretrained``, hashes like any model, runs on every
evaluation backend (vLLM and lm-eval included), and the engine's float32 exactness check applies
unchanged. ``keep_quantized=True`` keeps torchao's quantised tensors instead (the engine's generation
and losses run on them; the full evaluation pipeline does not, as it hashes the weights).

bitsandbytes. Where a CUDA device is lent, :func:`load_with_bitsandbytes` loads a saved model through
transformers' ``BitsAndBytesConfig`` -- what Zhang et al.'s released code does (``load_in_8bit``:
LLM.int8's int8 products with outlier features computed in 16 bits; ``load_in_4bit``: bitsandbytes'
default FP4 code in blocks of 64). Those are different grids from RTN; the record names the backend.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from harness.core.errors import AttackError

log = logging.getLogger("unlearnbench.attacks")

LIBRARY = "torchao"
BACKENDS = ("torchao", "bitsandbytes")
BITS = (2, 3, 4, 5, 6, 7, 8)
#: Default block per bit width: 8 bits per output channel (GPTQ's per-channel RTN);
#: 4 bits in groups of 64 input columns (bitsandbytes' 4-bit block size, the setting Zhang et al.'s
#: code ran; 64 also divides the widths of the embedded target and of SmolLM2, where 128 would not).
DEFAULT_GROUP_SIZE: dict[int, int | None] = {8: None, 7: None, 6: None, 5: 64, 4: 64, 3: 64, 2: 64}
#: Linear layers left in full precision by default (the output head, as transformers' bitsandbytes
#: integration does).
DEFAULT_SKIP = ("lm_head",)


@dataclass(frozen=True)
class QuantizeSettings:
    """How to quantise. ``group_size``: ``"auto"`` (:data:`DEFAULT_GROUP_SIZE`), ``None`` or
    ``"channel"`` (one block per output row), or a positive number of input columns per block."""

    bits: int = 4
    group_size: int | str | None = "auto"
    symmetric: bool = True
    skip: tuple[str, ...] = DEFAULT_SKIP
    """Names of linear layers (the last component of the module's name) left in full precision."""
    keep_quantized: bool = False
    """Keep torchao's quantised tensors instead of writing the dequantised weights back."""
    backend: str = "torchao"

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or self.bits not in BITS:
            raise AttackError(f"quantize: bits must be one of {', '.join(map(str, BITS))}, got {self.bits!r}")
        gs = self.group_size
        if not (gs is None or gs in ("auto", "channel") or (isinstance(gs, int) and not isinstance(gs, bool)
                                                             and gs > 0)):
            raise AttackError(f"quantize: group_size must be a positive integer, 'channel' (per output row) or "
                              f"'auto', got {gs!r}")
        if self.backend not in BACKENDS:
            raise AttackError(f"quantize: backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        object.__setattr__(self, "skip", tuple(self.skip))

    @property
    def block(self) -> int | None:
        """Input columns per block; ``None`` = the whole row (per channel)."""
        if self.group_size == "auto":
            return DEFAULT_GROUP_SIZE[self.bits]
        return None if self.group_size in (None, "channel") else int(self.group_size)  # type: ignore[arg-type]

    def describe(self) -> str:
        block = "per channel" if self.block is None else f"groups of {self.block}"
        return f"{self.bits}-bit {'symmetric' if self.symmetric else 'asymmetric'} RTN, {block} ({self.backend})"


@dataclass(frozen=True)
class QuantizationReport:
    """What :func:`quantize_model` did (stored in the attacked run's record)."""

    settings: dict[str, Any]
    library: str
    library_version: str
    modules: tuple[str, ...]
    """Fully qualified names of the quantised linear layers."""
    skipped: tuple[str, ...]
    """Linear layers left in full precision."""
    weights: int
    """Number of quantised weight values."""
    relative_error: float
    """||W' - W||_F / ||W||_F over all quantised weights."""
    max_abs_error: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["modules"] = list(self.modules)
        out["skipped"] = list(self.skipped)
        return out


def _import_torchao():
    """Import torchao with its load-time noise silenced (it warns about CUDA-only extensions that a
    CPU build cannot load, and about enum registrations, on every import)."""
    quiet = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.ERROR)
    try:
        import torchao
        from torchao.quantization import IntxWeightOnlyConfig, PerAxis, PerGroup, quantize_
        from torchao.quantization.quant_primitives import MappingType
    except ImportError as exc:  # pragma: no cover - torchao is a core dependency
        raise AttackError("the quantisation attack needs torchao: pip install 'unlearnbench[attacks]'") from exc
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)
    return torchao, IntxWeightOnlyConfig, PerAxis, PerGroup, quantize_, MappingType


def torchao_config(settings: QuantizeSettings):
    """The torchao config that implements ``settings`` (RTN: ``IntxWeightOnlyConfig``)."""
    import torch

    _, IntxWeightOnlyConfig, PerAxis, PerGroup, _, MappingType = _import_torchao()
    granularity = PerAxis(0) if settings.block is None else PerGroup(settings.block)
    mapping = MappingType.SYMMETRIC if settings.symmetric else MappingType.ASYMMETRIC
    return IntxWeightOnlyConfig(weight_dtype=getattr(torch, f"int{settings.bits}"), granularity=granularity,
                                mapping_type=mapping)


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config") or any("lora_" in name for name, _ in model.named_parameters())


def quantization_targets(model, settings: QuantizeSettings) -> tuple[list[tuple[str, Any]], list[str]]:
    """(linear layers to quantise as ``(name, module)``, names of linear layers skipped).

    Raises :class:`AttackError` for a model quantisation cannot handle correctly: unmerged LoRA
    adapters (the adapters would stay in float and carry the unlearning), a block size that does not
    divide a layer's input width, a weight shared with a layer that is not quantised, or no linear
    layer at all."""
    import torch

    if _is_peft(model):
        raise AttackError("quantize: the model still has LoRA adapters; merge them into the weights first "
                          "(model.merge_and_unload()) so that the unlearning update is quantised with the weights")
    targets, skipped = [], []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        if name.rsplit(".", 1)[-1] in settings.skip:
            skipped.append(name)
        else:
            targets.append((name, module))
    if not targets:
        raise AttackError(f"quantize: the model has no linear layer to quantise outside {list(settings.skip)}")
    block = settings.block
    for name, module in targets:
        if not module.weight.dtype.is_floating_point:
            raise AttackError(f"quantize: layer {name} has {module.weight.dtype} weights; expected floating point "
                              "weights (is the model already quantised?)")
        if block is not None and module.in_features % block:
            raise AttackError(f"quantize: group size {block} does not divide the input width {module.in_features} "
                              f"of layer {name} (weight {tuple(module.weight.shape)}); choose a group size that "
                              "divides every layer's input width, or group_size='channel'")
    target_ptrs = {m.weight.data_ptr() for _, m in targets}
    for pname, param in model.named_parameters(remove_duplicate=False):
        owner = pname.rsplit(".", 1)[0]
        if param.data_ptr() in target_ptrs and owner not in {n for n, _ in targets}:
            raise AttackError(f"quantize: parameter {pname} shares its storage with a quantised layer (tied "
                              f"weights); quantising one would untie them. Keep that layer in skip "
                              f"(skip={list(settings.skip)})")
    return targets, skipped


def quantize_model(model, settings: QuantizeSettings | None = None) -> QuantizationReport:
    """Quantise ``model``'s linear layers in place with RTN (see the module docstring) and report.

    The model keeps its class, its module structure and its floating dtype; with the default
    ``keep_quantized=False`` every parameter is an ordinary ``torch.nn.Parameter`` holding the
    rounded values. Call it on a copy to keep the original."""
    import torch

    settings = settings or QuantizeSettings()
    if settings.backend != "torchao":
        raise AttackError("quantize: an in-memory model is quantised with torchao; bitsandbytes quantises at load "
                          "time (harness.attacks.quantize.load_with_bitsandbytes)")
    torchao, _, _, _, quantize_, _ = _import_torchao()
    config = torchao_config(settings)
    targets, skipped = quantization_targets(model, settings)
    t0 = time.perf_counter()
    sq_err = sq_norm = 0.0
    max_err = 0.0
    n_weights = 0
    with torch.no_grad():
        for name, module in targets:
            original = module.weight.detach().clone()
            requires_grad = module.weight.requires_grad
            quantize_(module, config, filter_fn=lambda m, fqn: m is module)
            rounded = module.weight.dequantize()
            if not settings.keep_quantized:
                module.weight = torch.nn.Parameter(rounded, requires_grad=requires_grad)
            diff = (rounded.float() - original.float())
            sq_err += float(diff.square().sum())
            sq_norm += float(original.float().square().sum())
            max_err = max(max_err, float(diff.abs().max()))
            n_weights += original.numel()
    seconds = time.perf_counter() - t0
    report = QuantizationReport(
        settings={"bits": settings.bits, "group_size": settings.block, "symmetric": settings.symmetric,
                  "skip": list(settings.skip), "keep_quantized": settings.keep_quantized,
                  "backend": settings.backend},
        library=LIBRARY, library_version=str(torchao.__version__), modules=tuple(n for n, _ in targets),
        skipped=tuple(skipped), weights=n_weights,
        relative_error=(sq_err / sq_norm) ** 0.5 if sq_norm > 0 else 0.0, max_abs_error=max_err, seconds=seconds)
    log.info("quantised %d linear layers (%s): relative weight error %.4g", len(targets), settings.describe(),
             report.relative_error)
    return report


def bitsandbytes_config(settings: QuantizeSettings):
    """transformers' ``BitsAndBytesConfig`` for ``settings`` (8 or 4 bits; bitsandbytes' own grids)."""
    from transformers import BitsAndBytesConfig

    if settings.bits not in (4, 8):
        raise AttackError(f"quantize: bitsandbytes quantises to 8 or 4 bits, not {settings.bits}")
    if settings.bits == 4 and settings.block != 64:
        raise AttackError(f"quantize: bitsandbytes' 4-bit blocks hold 64 weights; group size {settings.block} "
                          "is not available with backend bitsandbytes")
    if settings.bits == 8 and settings.block is not None:
        raise AttackError("quantize: bitsandbytes' 8-bit weights are scaled per output row; use group_size "
                          "'channel' (or 'auto') with backend bitsandbytes")
    skip = list(settings.skip) or None
    if settings.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="fp4", llm_int8_skip_modules=skip)


def load_with_bitsandbytes(path, settings: QuantizeSettings, device: str = "cuda", dtype: str = "bfloat16"):
    """Load a saved causal LM quantised by bitsandbytes at load time (GPU only)."""
    import torch

    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        raise AttackError("quantize: backend bitsandbytes needs a CUDA device; on a CPU use backend torchao")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise AttackError("quantize: backend bitsandbytes needs the bitsandbytes package "
                          "(pip install bitsandbytes)") from exc
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), quantization_config=bitsandbytes_config(settings),
                                                dtype=getattr(torch, dtype), device_map={"": device})


__all__ = ["QuantizeSettings", "QuantizationReport", "quantize_model", "quantization_targets", "torchao_config",
           "bitsandbytes_config", "load_with_bitsandbytes", "DEFAULT_GROUP_SIZE", "DEFAULT_SKIP", "LIBRARY"]
