"""A tiny third-party benchmark, registered through the ``unlearnbench.benchmarks`` entry-point group.

Layout: a folder with ``qa.jsonl``, one ``{"id", "question", "answer", "split"}`` object per line
(``split`` is ``forget`` or ``retain``). Requests: a greedy answer and an answer loss per question.
Scores: exact match per split (``plugin_qa/forget_exact``, ``plugin_qa/retain_exact``) and the mean
answer loss per split. Not a serious benchmark: a proof that an outside package plugs a benchmark
into unlearnbench (detection, evaluation, rescoring, training curves) without touching the harness.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from harness.core.errors import DataError
from harness.core.types import Benchmark, Record
from harness.tasks.base import BenchmarkTask, Requests, Scores

FILE = "qa.jsonl"


def _exact(reference: str, generation: str) -> int:
    return int(generation.strip().lower().startswith(reference.strip().lower()))


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


class PluginQA(BenchmarkTask):
    """Plugin benchmark: exact-match question answering from qa.jsonl (test plugin)."""

    layout = "qa.jsonl with {id, question, answer, split} per line"

    @classmethod
    def detect(cls, path):
        return (Path(path) / FILE).is_file()

    @classmethod
    def load(cls, path, mia=None):
        path = Path(path) / FILE
        records = []
        for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            try:
                row = json.loads(text)
                records.append(Record(id=row["id"], input=row["question"], output=row["answer"], task="PluginQA",
                                      kind="qa", split=row["split"]))
            except (KeyError, json.JSONDecodeError) as exc:
                raise DataError(f"expected {{id, question, answer, split}} ({exc})", path, line) from exc
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return cls(Benchmark(name=path.parent.name, path=str(path.parent), content_hash=digest,
                             forget=tuple(r for r in records if r.split == "forget"),
                             retain=tuple(r for r in records if r.split == "retain")))

    def requests(self):
        records = self.data.records
        return Requests(prompts=tuple(r.input for r in records), answers=tuple((r.input, r.output) for r in records))

    def score(self, responses, mcq, mode):
        samples = [{"split": r.split, "id": r.id, "input": r.input, "reference": r.output, "generation": g,
                    "answer_loss": loss, "exact": _exact(r.output, g)}
                   for r, g, loss in zip(self.data.records, responses.generations, responses.answer_losses)]
        return Scores(samples, None, self.rescore(samples, None, mcq, mode))

    @classmethod
    def rescore(cls, samples, documents, mcq, mode, progress=True):
        out = {}
        for split in ("forget", "retain"):
            rows = [s for s in samples if s["split"] == split]
            out[f"plugin_qa/{split}_exact"] = _mean([_exact(s["reference"], s["generation"]) for s in rows])
            out[f"plugin_qa/{split}_answer_loss"] = _mean([s["answer_loss"] for s in rows])
        return out

    def curves(self, backend, records, max_new_tokens):
        texts = backend.generate([r.input for r in records], max_new_tokens)
        return {f"{split}/exact": _mean([_exact(r.output, t) for r, t in zip(records, texts) if r.split == split])
                for split in ("forget", "retain")}
