"""Benchmarks: the seam (:mod:`.base`), LUME (:mod:`.lume`) and the MCQ sets scored through lm-eval
(:mod:`.mcq`: MMLU and the synthetic world's utility set, run beside a benchmark).

:func:`load_task` opens a data folder as a registered benchmark, by name (``--benchmark``) or by
asking every registered benchmark whether it recognises the folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

from harness.core.errors import DataError, RegistryError
from harness.core.registry import BENCHMARKS, register_benchmark
from harness.tasks.base import BenchmarkTask, Requests, Responses, Scores

log = logging.getLogger("unlearnbench.tasks")


def detect_benchmark(path: str | Path) -> str:
    """The name of the one registered benchmark that recognises the folder ``path``.

    Raises :class:`DataError` when the folder is missing, when no benchmark recognises it (listing
    what each one looks for), or when several do (asking for ``--benchmark``)."""
    folder = Path(path)
    if not folder.exists():
        raise DataError("benchmark folder does not exist", folder)
    if not folder.is_dir():
        raise DataError("expected a benchmark folder, got a file", folder)
    marked = marker_benchmark(folder)
    if marked is not None:
        return marked
    items, broken = [], []
    for name in BENCHMARKS.names():
        try:
            items.append((name, BENCHMARKS.get(name)))
        except RegistryError as exc:  # a broken plugin must not stop the others from being recognised
            log.warning("benchmark detection skips %s", exc)
            broken.append(name)
    matches = [name for name, cls in items if cls.detect(folder)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        expected = "; ".join(f"{name}: {cls.layout or cls.summary()}" for name, cls in items)
        skipped = f"; benchmarks that failed to load: {', '.join(broken)}" if broken else ""
        raise DataError(f"no registered benchmark recognises this folder; expected one of: {expected}{skipped} "
                        "(or name one with --benchmark)", folder)
    raise DataError(f"several benchmarks recognise this folder ({', '.join(matches)}); choose one with --benchmark",
                    folder)


#: A file in a data folder that names its benchmark; it wins over recognising the folder by its files.
MARKER_FILE = "benchmark.json"


def marker_benchmark(folder: Path) -> str | None:
    """The benchmark named by ``folder/benchmark.json`` (``{"benchmark": NAME, …}``), or ``None`` when
    the folder has no marker. A marker naming no registered benchmark is an error."""
    import json

    marker = folder / MARKER_FILE
    if not marker.is_file():
        return None
    try:
        name = json.loads(marker.read_text(encoding="utf-8")).get("benchmark")
    except (OSError, ValueError, AttributeError) as exc:
        raise DataError(f"cannot read the benchmark marker ({exc}); expected {{\"benchmark\": NAME}}", marker) from exc
    if not isinstance(name, str) or name not in BENCHMARKS.names():
        raise DataError(f"names benchmark {name!r}, which is not registered; registered: "
                        f"{', '.join(BENCHMARKS.names())}", marker)
    return name


def load_task(path: str | Path, name: str | None = None, mia: str | Path | None = None,
              options: dict[str, str] | None = None) -> BenchmarkTask:
    """Open the data folder ``path`` as benchmark ``name`` (default: the one its marker file names, else
    the one that recognises it). ``options``: the benchmark's own ``{key: value}`` options."""
    name = name or detect_benchmark(path)
    cls = BENCHMARKS.get(name)
    task = cls.load(path, mia=mia, options=options) if options else cls.load(path, mia=mia)
    task.name = name  # the registered name, also for entry-point classes that do not set one
    return task


def as_task(benchmark: object) -> BenchmarkTask:
    """A loaded LUME :class:`harness.core.types.Benchmark` as its task; tasks pass through unchanged."""
    if isinstance(benchmark, BenchmarkTask):
        return benchmark
    from harness.tasks.lume.task import LumeTask

    return LumeTask(benchmark)  # type: ignore[arg-type]


__all__ = ["BENCHMARKS", "MARKER_FILE", "BenchmarkTask", "Requests", "Responses", "Scores", "as_task", "detect_benchmark",
           "load_task", "marker_benchmark", "register_benchmark"]
