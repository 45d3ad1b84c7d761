"""What a run folder's manifest records about the run's inputs, for the commands that write one
(``evaluate``, ``unlearn``/``run``, ``merge``): the paths its output must not overlap, and the
content fingerprints that decide whether a finished run is still the same run.
"""

from __future__ import annotations

from typing import Any, Mapping

from harness.core.manifest import benchmark_input, folder_input, model_fingerprint

#: Evaluation settings that cannot change a number (what a run is compared on leaves them out).
_NOT_NUMBERS = ("progress", "cache", "cache_dir")


def eval_identity(settings: Any) -> dict[str, Any] | None:
    """The evaluation settings that decide the numbers (``EvalSettings`` or its dict)."""
    if settings is None:
        return None
    d = settings.to_dict() if hasattr(settings, "to_dict") else dict(settings)
    return {k: v for k, v in d.items() if k not in _NOT_NUMBERS}


def mcq_sources(settings: Any) -> dict[str, str]:
    """``{"MMLU folder": path, "utility folder": path}`` of the local MCQ sets an evaluation reads."""
    out = {}
    for name, label in (("mmlu", "MMLU folder"), ("utility", "utility folder")):
        spec = getattr(settings, name, None) if settings is not None else None
        if spec is not None and str(spec.source) != "hub":
            out[label] = str(spec.source)
    return out


def output_inputs(model: Any = None, data: Any = None, mia: Any = None, settings: Any = None,
                  **more: Any) -> dict[str, Any]:
    """The paths a run's ``--out`` must neither be, contain, nor lie inside."""
    out = {"model": model, "benchmark": data, "MIA folder": mia, **mcq_sources(settings)}
    out.update(more)
    return {k: v for k, v in out.items() if v is not None}


def record_inputs(tx: Any, *, model: Any = None, task: Any = None, settings: Any = None,
                  extra: Mapping[str, Any] | None = None) -> None:
    """Record on the transaction ``tx`` the content of what the run's numbers depend on."""
    if model is not None:
        tx.record_input("model", model_fingerprint(model))
    if task is not None:
        tx.record_input("benchmark", benchmark_input(task))
    for label, source in mcq_sources(settings).items():
        tx.record_input(label, folder_input(source))
    for name, value in (extra or {}).items():
        tx.record_input(name, value)


def current_inputs(*, model: Any = None, task: Any = None, settings: Any = None) -> dict[str, Any]:
    """The fingerprints :func:`record_inputs` would record now (to compare with a finished run's)."""

    class _Collect:
        def __init__(self):
            self.fingerprints: dict[str, Any] = {}

        def record_input(self, name, value):
            self.fingerprints[name] = value

    c = _Collect()
    record_inputs(c, model=model, task=task, settings=settings)
    return c.fingerprints


__all__ = ["eval_identity", "mcq_sources", "output_inputs", "record_inputs", "current_inputs"]
