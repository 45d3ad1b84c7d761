"""MUSE (Shi et al. 2024) as a benchmark: VerbMem, KnowMem and PrivLeak on local copies of its files.

The folder (``--data``) holds MUSE's released subsets as ``<subset>/<split>.<ext>`` — ``.json`` (a
JSON array, as the authors' ``load_data.py`` writes, or JSON lines), ``.jsonl`` or ``.parquet``
(also Hugging Face's ``<split>-00000-of-00001.parquet`` shards):

=========================================================  =========================================
``verbmem/forget``                                         ``{prompt, gt}``
``knowmem/forget_qa``, ``forget_qa_icl``, ``retain_qa``,   ``{question, answer}`` (``retain2_qa`` is
``retain_qa_icl``                                          accepted for ``retain_qa``, as in the
                                                           authors' pre-release copies)
``privleak/forget``, ``privleak/holdout``                  texts (strings, or ``{text}`` rows)
``raw/forget``, ``raw/retain1`` (optional)                 texts: unlearning's training data
=========================================================  =========================================

Requests, as the protocol's code makes them (:mod:`metrics.muse`): VerbMem greedy continuations of
the prompts (128 new tokens) scored against the ground truth cut to its first 128 tokens (the
authors' code; open-unlearning scores the whole ground truth); KnowMem greedy answers (32 new tokens)
after the in-context examples ``Question: q\\nAnswer: a\\n\\n``; PrivLeak the per-token log-probs
of the forget and holdout texts (Min-40%). Options: ``protocol`` (``muse``, default, or
``open-unlearning``), ``corpus`` (``news``/``books``: the authors' published retrained AUC),
``retrain_auc`` (a number) or ``reference`` (the retrained model's MUSE run).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.core.errors import ConfigError, DataError
from harness.core.registry import register_benchmark
from harness.core.types import Benchmark, Record
from harness.tasks.base import BenchmarkTask, Requests, Responses, Scores

SUBSET_SUFFIXES = (".json", ".jsonl", ".parquet")
VERBMEM_NEW_TOKENS = 128
KNOWMEM_NEW_TOKENS = 32
#: Set name of the row that records the protocol and the PrivLeak reference in a run's ``samples.jsonl``
#: (so that ``unlearnbench score`` recomputes every metric from the run folder alone).
PROTOCOL_SET = "muse_protocol"
#: open-unlearning truncates MIA texts to 2048 tokens after the first and drops the last log-prob.
OU_MIA_MAX_TOKENS = 2048


def find_subset(folder: Path, subset: str, split: str) -> Path | None:
    base = folder / subset
    for suffix in SUBSET_SUFFIXES:
        if (base / f"{split}{suffix}").is_file():
            return base / f"{split}{suffix}"
    shards = sorted(base.glob(f"{split}-*-of-*.parquet")) if base.is_dir() else []
    return shards[0] if shards else None


def read_subset(folder: Path, subset: str, split: str, fields: tuple[str, ...] | None,
                required: bool = True) -> list[Any]:
    """Rows (dicts with ``fields``) or texts (``fields=None``) of ``subset/split``, validated."""
    path = find_subset(folder, subset, split)
    if path is None:
        if required:
            raise DataError(f"no {subset}/{split} ({' / '.join(split + s for s in SUBSET_SUFFIXES)} or a parquet shard)",
                            folder)
        return []
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq

            rows: list[Any] = [r for shard in sorted(path.parent.glob(f"{split}-*-of-*.parquet")) or [path]
                               for r in pq.read_table(shard).to_pylist()]
        except Exception as exc:
            raise DataError(f"cannot read as Parquet ({type(exc).__name__}: {exc})", path) from exc
    else:
        text = path.read_text(encoding="utf-8")
        try:
            rows = json.loads(text) if text.lstrip().startswith("[") else [
                json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise DataError(f"not valid JSON ({exc.msg}); expected a JSON array or JSON lines", path) from exc
    out = []
    for n, row in enumerate(rows, start=1):
        if fields is None:
            value = row.get("text") if isinstance(row, dict) else row
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"item {n}: expected a non-empty text (a string or {{text}}), got {row!r:.80}", path)
            out.append(value)
            continue
        if not isinstance(row, dict) or any(not isinstance(row.get(f), str) for f in fields):
            raise DataError(f"item {n}: expected an object with string fields {', '.join(fields)}, got {row!r:.80}", path)
        out.append({f: row[f] for f in fields})
    if not out:
        raise DataError("no items", path)
    return out


@dataclass(frozen=True)
class MuseData:
    folder: str
    verbmem: list[dict[str, str]]
    knowmem: dict[str, list[dict[str, str]]]
    """``forget``/``retain`` questions and ``forget_icl``/``retain_icl`` in-context examples."""
    privleak: dict[str, list[str]]
    raw: dict[str, list[str]]


def load_muse(folder: str | Path) -> MuseData:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("not a MUSE folder", folder)
    qa = ("question", "answer")
    retain = "retain_qa" if find_subset(folder, "knowmem", "retain_qa") else "retain2_qa"
    retain_icl = "retain_qa_icl" if find_subset(folder, "knowmem", "retain_qa_icl") else "retain2_qa_icl"
    return MuseData(
        folder=str(folder),
        verbmem=read_subset(folder, "verbmem", "forget", ("prompt", "gt")),
        knowmem={"forget": read_subset(folder, "knowmem", "forget_qa", qa),
                 "forget_icl": read_subset(folder, "knowmem", "forget_qa_icl", qa),
                 "retain": read_subset(folder, "knowmem", retain, qa),
                 "retain_icl": read_subset(folder, "knowmem", retain_icl, qa)},
        privleak={s: read_subset(folder, "privleak", s, None) for s in ("forget", "holdout")},
        raw={s: read_subset(folder, "raw", s, None, required=False) for s in ("forget", "retain1")},
    )


def knowmem_prompt(icl: Sequence[Mapping[str, str]], question: str) -> str:
    """The authors' few-shot prompt: every example as ``Question: q\\nAnswer: a\\n\\n``, then the question."""
    return "".join(f"Question: {e['question']}\nAnswer: {e['answer']}\n\n" for e in icl) + f"Question: {question}\nAnswer: "


@register_benchmark("muse")
class MuseTask(BenchmarkTask):
    """MUSE (news, books): VerbMem, KnowMem forget/retain, PrivLeak (Min-40% AUC vs a retrained model)."""

    name = "muse"
    layout = "MUSE's subsets: verbmem/forget, knowmem/{forget_qa,retain_qa}(+_icl), privleak/{forget,holdout}"

    def __init__(self, muse: MuseData, protocol: str, reference: tuple[float, str] | None):
        from metrics.muse import muse_protocol

        self.muse, self.protocol_name, self.reference = muse, muse_protocol(protocol).name, reference
        records = [Record(id=f"raw-forget-{i}", input="", output=t, task="muse", kind="sc", split="forget")
                   for i, t in enumerate(muse.raw["forget"])]
        retain = [Record(id=f"raw-retain1-{i}", input="", output=t, task="muse", kind="sc", split="retain")
                  for i, t in enumerate(muse.raw["retain1"])]
        super().__init__(Benchmark(name="muse", path=muse.folder, forget=tuple(records), retain=tuple(retain),
                                   content_hash=self._hash()))

    def _hash(self) -> str:
        """The data and the protocol: the two protocols score the same generations differently (stemming,
        answer cut, means), so their runs must not share a board group (the boards group by this hash)."""
        m = self.muse
        return hashlib.sha256(json.dumps([m.verbmem, m.knowmem, m.privleak, self.protocol_name], ensure_ascii=False,
                                         sort_keys=True).encode("utf-8")).hexdigest()

    @classmethod
    def detect(cls, path: Path) -> bool:
        path = Path(path)
        return all((path / sub).is_dir() for sub in ("verbmem", "knowmem", "privleak"))

    @classmethod
    def load(cls, path: str | Path, mia: str | Path | None = None, options: Mapping[str, str] | None = None
             ) -> "MuseTask":
        from metrics.muse import MUSE_RETRAIN_AUC, PRIVLEAK_AUC, muse_protocol

        if mia is not None:
            raise ConfigError("MUSE's membership sets are its privleak subset; --mia does not apply")
        options = dict(options or {})
        unknown = sorted(set(options) - {"protocol", "corpus", "retrain_auc", "reference"})
        if unknown:
            raise ConfigError(f"unknown MUSE option(s) {', '.join(unknown)}; expected protocol, corpus, retrain_auc, "
                              "reference")
        try:
            protocol = muse_protocol(options.get("protocol", "muse")).name
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        given = [k for k in ("corpus", "retrain_auc", "reference") if k in options]
        if len(given) > 1:
            raise ConfigError(f"give one PrivLeak reference, not {' and '.join(given)}")
        reference = None
        if "corpus" in options:
            if options["corpus"] not in MUSE_RETRAIN_AUC:
                raise ConfigError(f"corpus must be one of {', '.join(MUSE_RETRAIN_AUC)}, got {options['corpus']!r}")
            reference = (MUSE_RETRAIN_AUC[options["corpus"]], f"MUSE's published retrained AUC ({options['corpus']})")
        elif "retrain_auc" in options:
            try:
                reference = (float(options["retrain_auc"]), "given with retrain_auc")
            except ValueError:
                raise ConfigError(f"retrain_auc must be a number, got {options['retrain_auc']!r}") from None
        elif "reference" in options:
            from harness.core.records import read_result

            record = read_result(Path(options["reference"]) / "result.json")
            if record.settings.get("benchmark") != "muse" or PRIVLEAK_AUC not in record.metrics:
                raise DataError("the reference run is not a MUSE run with a PrivLeak AUC", options["reference"])
            ref_protocol = (record.settings.get("protocol") or {}).get("protocol")
            if ref_protocol != protocol:
                raise DataError(f"the reference run used protocol {ref_protocol!r}, this run {protocol!r}",
                                options["reference"])
            reference = (record.metrics[PRIVLEAK_AUC], f"run {options['reference']}")
        return cls(load_muse(path), protocol, reference)

    def protocol(self) -> dict[str, Any]:
        return {"protocol": self.protocol_name, "verbmem_max_new_tokens": VERBMEM_NEW_TOKENS,
                "knowmem_max_new_tokens": KNOWMEM_NEW_TOKENS, "min_k": 0.4,
                "privleak_reference": None if self.reference is None else {"auc": self.reference[0],
                                                                           "source": self.reference[1]}}

    def _knowmem(self) -> list[tuple[str, dict[str, str], str]]:
        k = self.muse.knowmem
        return [(f"knowmem_{s}", item, knowmem_prompt(k[f"{s}_icl"], item["question"]))
                for s in ("forget", "retain") for item in k[s]]

    def requests(self) -> Requests:
        verbmem = [v["prompt"] for v in self.muse.verbmem]
        knowmem = [p for _, _, p in self._knowmem()]
        truncations = (() if self.protocol_name == "open-unlearning"
                       else tuple((v["gt"], VERBMEM_NEW_TOKENS) for v in self.muse.verbmem))
        return Requests(prompts=tuple(verbmem + knowmem),
                        max_new_tokens=(VERBMEM_NEW_TOKENS,) * len(verbmem) + (KNOWMEM_NEW_TOKENS,) * len(knowmem),
                        token_texts=tuple(self.muse.privleak["forget"] + self.muse.privleak["holdout"]),
                        truncations=truncations)

    def score(self, responses: Responses, mcq: Mapping[str, float | None], mode: str) -> Scores:
        from metrics.muse import min_k_score

        gens = iter(responses.generations)
        references = responses.truncated or [v["gt"].strip() for v in self.muse.verbmem]
        rows: list[dict[str, Any]] = [
            {"set": "verbmem_forget", "id": str(i), "prompt": v["prompt"], "reference": ref, "generation": next(gens)}
            for i, (v, ref) in enumerate(zip(self.muse.verbmem, references))]
        counters: dict[str, int] = {}
        for set_name, item, _ in self._knowmem():
            n = counters[set_name] = counters.get(set_name, -1) + 1
            rows.append({"set": set_name, "id": str(n), "question": item["question"], "reference": item["answer"],
                         "generation": next(gens)})
        logprobs = iter(responses.token_logprobs or [])
        for set_name in ("forget", "holdout"):
            for i, _ in enumerate(self.muse.privleak[set_name]):
                lp = next(logprobs)
                if self.protocol_name == "open-unlearning":
                    lp = lp[:OU_MIA_MAX_TOKENS][:-1]
                rows.append({"set": f"privleak_{set_name}", "id": str(i),
                             "min_k": min_k_score(lp, 0.4, self.protocol_name)})
        rows.append({"set": PROTOCOL_SET, "id": "protocol", "protocol": self.protocol_name,
                     "reference_auc": self.reference[0] if self.reference else None,
                     "reference_source": self.reference[1] if self.reference else None})
        return Scores(rows, None, self.rescore(rows, None, mcq, mode, progress=False))

    @classmethod
    def rescore(cls, samples: Sequence[Mapping[str, Any]], documents: Sequence[Mapping[str, Any]] | None,
                mcq: Mapping[str, float | None], mode: str, progress: bool = True) -> dict[str, float | None]:
        from metrics.muse import PrivLeakReference, muse_metrics

        meta = [r for r in samples if r.get("set") == PROTOCOL_SET]
        if len(meta) != 1:
            raise DataError(f"expected one {PROTOCOL_SET} row (the protocol and PrivLeak reference), found {len(meta)}")
        rows = [r for r in samples if r.get("set") != PROTOCOL_SET]
        protocol = meta[0].get("protocol")
        reference = (PrivLeakReference(auc=meta[0]["reference_auc"], source=meta[0]["reference_source"])
                     if meta[0].get("reference_auc") is not None else None)
        metrics: dict[str, float | None] = dict(muse_metrics(rows, protocol=protocol, reference=reference))
        metrics.update({k: v for k, v in mcq.items() if v is not None})
        return metrics

    def curves(self, backend: Any, records: Sequence[Record], max_new_tokens: int) -> dict[str, Any]:
        """Mean loss of the raw forget and retain texts in the sample (MUSE trains on raw text)."""
        losses = backend.answer_losses([""] * len(records), [r.output for r in records])
        out: dict[str, Any] = {}
        for split in ("forget", "retain"):
            values = [x for r, x in zip(records, losses) if r.split == split and x is not None]
            out[f"answer_loss_{split}"] = sum(values) / len(values) if values else None
            out[f"n_{split}"] = sum(1 for r in records if r.split == split)
        return out


__all__ = ["PROTOCOL_SET", "MuseTask", "knowmem_prompt", "load_muse"]
