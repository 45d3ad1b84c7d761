"""The benchmark seam: what a benchmark is to the harness.

A benchmark (:class:`BenchmarkTask`) reads its files, says what it needs from the model as plain
requests (:class:`Requests`: prompts to continue greedily, answers whose loss to measure, documents
whose loss statistics to take), and turns the backend's answers into per-sample rows and metrics
(:meth:`BenchmarkTask.score`). It never calls the model: the evaluation pipeline
(:mod:`harness.evaluation.pipeline`) runs the requests through a model backend
(:mod:`harness.backends`), caches them and writes the run folder. The same scoring runs again from
the per-sample files alone (:meth:`BenchmarkTask.rescore`, ``unlearnbench score``), and during
training on a small sample (:meth:`BenchmarkTask.curves`, the training log's ``eval`` events).

Benchmarks register like methods: ``@register_benchmark("name")`` inside this repository, the
``unlearnbench.benchmarks`` entry-point group for other packages (both land in
:data:`harness.core.registry.BENCHMARKS`). ``--benchmark NAME`` picks one; without it the data folder
is offered to every registered benchmark's :meth:`BenchmarkTask.detect` (:func:`harness.tasks.load_task`).

What unlearning methods train on is :attr:`BenchmarkTask.data`, a :class:`harness.core.types.Benchmark`
(forget and retain records, membership-inference documents): the methods' interface does not change
with the benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

from harness.backends.base import AnswerFormat
from harness.core.records import BenchmarkInfo
from harness.core.types import Benchmark, Record, summary_line


@dataclass(frozen=True)
class Requests:
    """What a benchmark needs from the model (lm-eval's request shape; the backend computes them)."""

    prompts: tuple[str, ...] = ()
    """Raw prompts to continue greedily (one per sample row)."""
    answers: tuple[tuple[str, str], ...] = ()
    """``(prompt, answer)`` pairs: the mean token cross-entropy of the answer given the prompt."""
    documents: tuple[str, ...] = ()
    """Whole texts: per-document loss statistics (membership inference; ``mia.jsonl``)."""
    max_new_tokens: tuple[int, ...] = ()
    """A generation budget per prompt (the benchmark's protocol); empty: the run's ``max_new_tokens``."""
    answer_format: AnswerFormat = AnswerFormat()
    """Which tokens of each answer its loss covers (default: LUME's convention)."""
    token_texts: tuple[str, ...] = ()
    """Whole texts whose per-token log-probabilities the benchmark needs (its own Min-K% statistics)."""
    truncations: tuple[tuple[str, int], ...] = ()
    """``(text, n)``: the text cut to its first ``n`` tokens and decoded (references shortened as a
    benchmark's protocol does, e.g. MUSE's verbatim-memorisation ground truths)."""


@dataclass(frozen=True)
class Responses:
    """The backend's answers to :class:`Requests`, in request order."""

    generations: list[str]
    answer_losses: list[float | None]
    """One per answer request; all ``None`` when answer losses were not computed."""
    document_scores: list[dict[str, Any]] | None = None
    """One per document; ``None`` when the benchmark asked for none."""
    token_logprobs: list[list[float]] | None = None
    """One list per ``token_texts`` entry; ``None`` when the benchmark asked for none."""
    truncated: list[str] | None = None
    """One text per ``truncations`` entry; ``None`` when the benchmark asked for none."""


@dataclass(frozen=True)
class Scores:
    """A scored evaluation: the run folder's per-sample rows and the result record's metrics."""

    samples: list[dict[str, Any]]
    """``samples.jsonl``: one row per generation request."""
    documents: list[dict[str, Any]] | None
    """``mia.jsonl``: one row per document request, or ``None``."""
    metrics: dict[str, float | None]


class BenchmarkTask:
    """Base class of benchmarks. Subclasses implement :meth:`detect`, :meth:`load`, :meth:`requests`,
    :meth:`score`, :meth:`rescore` and :meth:`curves`; the docstring's first line is what
    ``unlearnbench benchmarks`` shows."""

    #: The registered name (set by :func:`harness.tasks.load_task` on the loaded benchmark).
    name: ClassVar[str] = ""
    #: One line naming the files :meth:`detect` looks for (listed when no benchmark recognises a folder).
    layout: ClassVar[str] = ""

    def __init__(self, data: Benchmark):
        self.data = data

    # -- reading ------------------------------------------------------------------------------------
    @classmethod
    def detect(cls, path: Path) -> bool:
        """Whether ``path`` looks like this benchmark's data (cheap: file names, not contents)."""
        raise NotImplementedError

    @classmethod
    def load(cls, path: str | Path, mia: str | Path | None = None) -> "BenchmarkTask":
        """Read and validate the benchmark at ``path`` (``mia``: membership-inference sets kept apart).
        Bad input raises :class:`harness.core.errors.DataError` naming the file and record.

        A benchmark with options (``--benchmark-option KEY=VALUE``, ``--reference RUN``) also accepts
        ``options``, a ``{key: value}`` mapping of strings; it is only passed when options were given."""
        raise NotImplementedError

    def protocol(self) -> dict[str, Any] | None:
        """How this benchmark was run, beyond the evaluation settings (recorded as
        ``settings["protocol"]``; ``None`` when there is nothing to add)."""
        return None

    @property
    def content_hash(self) -> str:
        """Order-sensitive hash of everything the benchmark evaluates (part of the cache key)."""
        return self.data.content_hash

    def info(self) -> BenchmarkInfo:
        """The result record's description of the benchmark."""
        return BenchmarkInfo(name=self.data.name, content_hash=self.content_hash, path=self.data.path,
                             counts=self.data.counts())

    # -- evaluating ---------------------------------------------------------------------------------
    def requests(self) -> Requests:
        raise NotImplementedError

    def score(self, responses: Responses, mcq: Mapping[str, float | None], mode: str) -> Scores:
        """Per-sample rows and metrics from the backend's answers. ``mcq``: accuracies of the MCQ sets
        run beside the benchmark (``mmlu``, ``utility``; ``None`` when not run); ``mode``: the scoring
        mode of :class:`harness.evaluation.pipeline.EvalSettings`."""
        raise NotImplementedError

    @classmethod
    def read_samples(cls, path: Path) -> list[dict[str, Any]]:
        """The rows of a run's ``samples.jsonl`` (validated where the benchmark can)."""
        from harness.core.fileio import read_jsonl

        return read_jsonl(path)

    @classmethod
    def read_documents(cls, path: Path) -> list[dict[str, Any]]:
        """The rows of a run's ``mia.jsonl``."""
        from harness.core.fileio import read_jsonl

        return read_jsonl(path)

    @classmethod
    def rescore(cls, samples: Sequence[Mapping[str, Any]], documents: Sequence[Mapping[str, Any]] | None,
                mcq: Mapping[str, float | None], mode: str, progress: bool = True) -> dict[str, float | None]:
        """Every metric again from the per-sample files alone (``unlearnbench score``): no model."""
        raise NotImplementedError

    def curves(self, backend: Any, records: Sequence[Record], max_new_tokens: int) -> dict[str, Any]:
        """Scores on a small fixed sample of records, for the training log's ``eval`` events."""
        raise NotImplementedError

    # -- listing ------------------------------------------------------------------------------------
    @classmethod
    def summary(cls) -> str:
        return summary_line(cls.__doc__)


__all__ = ["BenchmarkTask", "Requests", "Responses", "Scores"]
