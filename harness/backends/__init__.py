"""Model access: the :class:`~harness.backends.base.ModelBackend` seam and its implementations.

- ``hf``: the batched, verified-exact engine over an in-memory transformers model (:mod:`.hf`);
- ``reference``: the organisers' one-record-at-a-time loop (:mod:`.reference`);
- ``vllm``: vLLM generation from the model's folder (:mod:`.vllm`, extra ``unlearnbench[vllm]``).

Also here: loading models and their identity hashes (:mod:`.loading`) and data parallelism
(:mod:`.distributed`). The evaluation picks a backend by its ``engine`` setting through
:func:`make_backend`; nothing else branches on engine names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.backends.base import BackendOptions, ModelBackend
from harness.backends.hf import HFBackend
from harness.backends.reference import ReferenceBackend
from harness.backends.vllm import VLLMBackend

#: ``engine`` setting → backend class.
BACKENDS: dict[str, type[ModelBackend]] = {cls.name: cls for cls in (HFBackend, ReferenceBackend, VLLMBackend)}
ENGINES: tuple[str, ...] = tuple(BACKENDS)


def backend_class(engine: str) -> type[ModelBackend]:
    try:
        return BACKENDS[engine]
    except KeyError:
        raise ValueError(f"unknown engine {engine!r}; expected one of {list(ENGINES)}") from None


def make_backend(engine: str, model: Any, tokenizer: Any, options: BackendOptions | None = None,
                 model_path: str | Path | None = None) -> ModelBackend:
    """The backend for ``engine`` over ``model``; ``model_path`` is the folder the model was loaded
    from or saved to (the vLLM backend loads it from there)."""
    return backend_class(engine)(model, tokenizer, options, model_path)


__all__ = ["BACKENDS", "ENGINES", "BackendOptions", "HFBackend", "ModelBackend", "ReferenceBackend", "VLLMBackend",
           "backend_class", "make_backend"]
