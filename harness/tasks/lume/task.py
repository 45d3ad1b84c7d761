"""LUME (SemEval-2025 Task 4) as a benchmark: requests, per-sample scores and the SemEval metrics.

Requests: a greedy generation and an answer loss per forget/retain record (forget first, then retain,
each in file order), and per-document loss statistics of the MIA members and non-members when the
benchmark has both sets. Scores: ``samples.jsonl`` rows (regurgitation = ROUGE-L recall on ``sc``
items, knowledge = exact match on ``qa`` items), ``mia.jsonl`` rows, and every metric of
:func:`metrics.semeval.compute_metrics` (docs/contracts.md). The organisers' quirks are applied in
``semeval2025`` mode only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.core.registry import register_benchmark
from harness.core.types import SPLITS, Record
from harness.tasks.base import BenchmarkTask, Requests, Responses, Scores
from harness.tasks.lume.data import find_split, load_benchmark


@register_benchmark("lume")
class LumeTask(BenchmarkTask):
    """SemEval-2025 Task 4 (LUME): regurgitation, knowledge, MIA, task aggregate, final score."""

    name = "lume"
    layout = ("forget and retain splits (forget.jsonl/retain.jsonl, .parquet or a Hugging Face dataset folder; "
              "records {id, input, output, task}), optional mia/member and mia/nonmember")

    @classmethod
    def detect(cls, path: Path) -> bool:
        path = Path(path)
        return path.is_dir() and all(find_split(path, split) is not None for split in SPLITS)

    @classmethod
    def load(cls, path: str | Path, mia: str | Path | None = None) -> "LumeTask":
        return cls(load_benchmark(path, mia=mia))

    def requests(self) -> Requests:
        records = self.data.records
        documents = (tuple(d.document for d in self.data.members + self.data.nonmembers) if self.data.has_mia
                     else ())
        return Requests(prompts=tuple(r.input for r in records), answers=tuple((r.input, r.output) for r in records),
                        documents=documents)

    def score(self, responses: Responses, mcq: Mapping[str, float | None], mode: str) -> Scores:
        from metrics.semeval import compute_metrics, score_rows

        base_rows = [{"split": r.split, "id": r.id, "task": r.task, "kind": r.kind, "input": r.input,
                      "reference": r.output, "generation": g, "answer_loss": al}
                     for r, g, al in zip(self.data.records, responses.generations, responses.answer_losses)]
        samples = score_rows(base_rows, mode=mode)
        documents = None
        if responses.document_scores is not None:
            docs = self.data.members + self.data.nonmembers
            documents = [{"set": d.set, "id": d.id, **row} for d, row in zip(docs, responses.document_scores)]
        # The rows were just scored (once): aggregate them without scoring every generation again.
        metrics = compute_metrics(samples, documents, mmlu=mcq.get("mmlu"), utility=mcq.get("utility"), mode=mode,
                                  rescore=False)
        return Scores(samples, documents, metrics)

    @classmethod
    def read_samples(cls, path: Path) -> list[dict[str, Any]]:
        from metrics import read_samples

        return read_samples(path)

    @classmethod
    def read_documents(cls, path: Path) -> list[dict[str, Any]]:
        from metrics import read_mia_rows

        return read_mia_rows(path)

    @classmethod
    def rescore(cls, samples: Sequence[Mapping[str, Any]], documents: Sequence[Mapping[str, Any]] | None,
                mcq: Mapping[str, float | None], mode: str, progress: bool = True) -> dict[str, float | None]:
        from metrics.semeval import compute_metrics

        return compute_metrics(samples, documents, mmlu=mcq.get("mmlu"), utility=mcq.get("utility"), mode=mode,
                               progress=progress)

    def curves(self, backend: Any, records: Sequence[Record], max_new_tokens: int) -> dict[str, Any]:
        """Regurgitation / knowledge per split and task (and ``all``) plus mean answer losses on ``records``.

        Keys follow the result record's names: ``forget/Task1/regurgitation``, ``retain/all/knowledge``, …
        (scores in [0, 1]; ``None`` where the group has no item of that kind), and ``answer_loss_forget`` /
        ``answer_loss_retain``, ``n_forget`` / ``n_retain``. The metric functions are those of the final
        evaluation, so the training curves measure the same thing (on fewer records, shorter generations).
        """
        from metrics.knowledge import knowledge_exact_match
        from metrics.regurgitation import regurgitation_rougeL_recall

        texts = backend.generate([r.input for r in records], max_new_tokens)
        losses = backend.answer_losses([r.input for r in records], [r.output for r in records])
        scores: dict[str, list[float]] = {}
        for rec, text in zip(records, texts):
            if rec.kind == "sc":
                metric, value = "regurgitation", regurgitation_rougeL_recall(rec.output, text)
            else:
                metric, value = "knowledge", float(knowledge_exact_match(rec.output, text))
            for task in (rec.task, "all"):
                scores.setdefault(f"{rec.split}/{task}/{metric}", []).append(value)
        out: dict[str, Any] = {}
        for split in SPLITS:
            tasks = sorted({r.task for r in records if r.split == split}) + ["all"]
            for task in tasks:
                for metric in ("regurgitation", "knowledge"):
                    values = scores.get(f"{split}/{task}/{metric}")
                    out[f"{split}/{task}/{metric}"] = sum(values) / len(values) if values else None
            split_losses = [x for r, x in zip(records, losses) if r.split == split and x is not None]
            out[f"answer_loss_{split}"] = sum(split_losses) / len(split_losses) if split_losses else None
            out[f"n_{split}"] = sum(1 for r in records if r.split == split)
        return out


__all__ = ["LumeTask"]
