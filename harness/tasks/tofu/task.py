"""TOFU as a benchmark: TOFU's requests in a model family's format, scored by :mod:`metrics.tofu`.

Per evaluation set (retain, forget, real authors, world facts; the first ``ds_size`` questions) the
task asks for a greedy answer to each question and for the answer losses TOFU measures: the answer,
the paraphrased answer (retain and forget; on real authors and world facts TOFU's "paraphrased"
answer is the answer itself, so its loss is reused) and every perturbed answer — all with TOFU's
loss convention (:data:`TOFU_ANSWER_FORMAT`). The per-sample rows are the rows of
:mod:`metrics.tofu`; Forget Quality needs a reference run (a model trained on the retain split only,
evaluated the same way), given with the option ``reference=RUN`` (``--reference RUN``): its forget
rows are copied into this run's ``samples.jsonl`` (set ``reference_forget``), so that
``unlearnbench score`` recomputes every metric from the run folder alone.

Options (``--benchmark-option KEY=VALUE``): ``split`` (forget01/05/10; default the largest present),
``format`` (:data:`harness.tasks.tofu.formats.PROMPT_FORMATS`; default phi), ``ds_size`` (300),
``max_new_tokens`` (200), ``reference`` (a run folder).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

from harness.backends.base import AnswerFormat
from harness.core.errors import ConfigError, DataError
from harness.core.registry import register_benchmark
from harness.core.types import Benchmark, Record
from harness.tasks.base import BenchmarkTask, Requests, Responses, Scores
from harness.tasks.tofu.data import (DEFAULT_DS_SIZE, FORGET_SPLITS, TofuData, TofuItem, available_splits,
                                     find_config, load_tofu, retain_config)
from harness.tasks.tofu.formats import DEFAULT_FORMAT, PromptFormat, prompt_format

#: TOFU evaluates with ``max_length=200``: loss texts are truncated there (then without the EOS label).
TOFU_MAX_LENGTH = 200
#: The generation budget (TOFU: 200 tokens including the prompt, batch-padded; see the protocol).
DEFAULT_MAX_NEW_TOKENS = 200
#: Set name of the reference model's forget rows inside a run's ``samples.jsonl``.
REFERENCE_SET = "reference_forget"
#: Sets with a paraphrased answer of their own (elsewhere TOFU re-scores the answer).
PARAPHRASED_SETS = ("retain", "forget")


def tofu_answer_format(fmt: PromptFormat) -> AnswerFormat:
    """TOFU's loss convention: no separator, the question part's token count masked, EOS label,
    truncation at 200 tokens."""
    return AnswerFormat(separator="", eos_label=fmt.eos_label, max_length=TOFU_MAX_LENGTH, split_by_prompt_length=True)


@dataclass(frozen=True)
class TofuOptions:
    split: str | None = None
    format: str = DEFAULT_FORMAT
    ds_size: int = DEFAULT_DS_SIZE
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    reference: str | None = None

    @classmethod
    def parse(cls, options: Mapping[str, str] | None) -> "TofuOptions":
        options = dict(options or {})
        unknown = sorted(set(options) - {"split", "format", "ds_size", "max_new_tokens", "reference"})
        if unknown:
            raise ConfigError(f"unknown TOFU option(s) {', '.join(unknown)}; expected split, format, ds_size, "
                              "max_new_tokens, reference")
        out: dict[str, Any] = {}
        for name in ("ds_size", "max_new_tokens"):
            if name in options:
                try:
                    out[name] = int(options[name])
                except ValueError:
                    raise ConfigError(f"TOFU option {name} must be a whole number, got {options[name]!r}") from None
                if out[name] < 1:
                    raise ConfigError(f"TOFU option {name} must be at least 1, got {out[name]}")
        if "split" in options and options["split"] not in FORGET_SPLITS:
            raise ConfigError(f"TOFU option split must be one of {', '.join(FORGET_SPLITS)}, got {options['split']!r}")
        if "format" in options:
            prompt_format(options["format"])
        return cls(split=options.get("split"), format=options.get("format", DEFAULT_FORMAT),
                   ds_size=out.get("ds_size", DEFAULT_DS_SIZE), max_new_tokens=out.get("max_new_tokens",
                                                                                       DEFAULT_MAX_NEW_TOKENS),
                   reference=options.get("reference") or None)


def items_hash(sets: Mapping[str, Sequence[tuple[int, str, str]]]) -> str:
    """The record's benchmark hash: sha256 over every evaluated (set, index, question, answer) in order.

    It is what TOFU's own logs also determine (their ``generated_text`` holds the formatted question
    and the answer), so an imported log and a harness run of the same questions rank together."""
    h = hashlib.sha256()
    for set_name in ("retain", "forget", "real_authors", "world_facts"):
        for index, question, answer in sets.get(set_name, ()):
            h.update(json.dumps([set_name, index, question, answer], ensure_ascii=False).encode("utf-8"))
            h.update(b"\n")
    return h.hexdigest()


def split_reference_rows(samples: Sequence[Mapping[str, Any]]) -> tuple[list, list | None]:
    """(the run's own rows, the reference's forget rows as forget rows, or ``None``)."""
    own = [r for r in samples if r.get("set") != REFERENCE_SET]
    ref = [{**r, "set": "forget"} for r in samples if r.get("set") == REFERENCE_SET]
    return own, (ref or None)


def read_reference(run: str | Path, expected: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The forget rows of a reference run folder, rows marked as :data:`REFERENCE_SET`.

    ``expected``: protocol values (split, ds_size, format) the reference must share with this run."""
    from harness.core.fileio import read_jsonl
    from harness.core.records import RESULT_FILE, SAMPLES_FILE, read_result

    folder = Path(run)
    samples = folder / SAMPLES_FILE
    if not samples.is_file():
        raise DataError(f"not a run folder: no {SAMPLES_FILE} (the reference is the run of a model trained on the "
                        "retain split only, evaluated on the same TOFU questions)", folder)
    if expected and (folder / RESULT_FILE).is_file():
        protocol = read_result(folder / RESULT_FILE).settings.get("protocol") or {}
        for key, value in expected.items():
            if key in protocol and protocol[key] != value:
                raise DataError(f"the reference run was evaluated with {key}={protocol[key]!r}, this run with "
                                f"{key}={value!r}; Forget Quality compares runs of the same protocol", folder)
    rows = [r for r in read_jsonl(samples) if isinstance(r, dict) and r.get("set") == "forget"]
    if not rows:
        raise DataError("the run has no TOFU forget rows; is it a TOFU run?", samples)
    return [{**r, "set": REFERENCE_SET, "reference_run": str(folder)} for r in rows]


@register_benchmark("tofu")
class TofuTask(BenchmarkTask):
    """TOFU (fictitious authors): Probability, ROUGE, Truth Ratio, Model Utility, Forget Quality (--reference)."""

    name = "tofu"
    layout = ("TOFU's released configs: forget01/05/10_perturbed, retain_perturbed, real_authors_perturbed, "
              "world_facts_perturbed (.json JSON lines, .jsonl or .parquet), + forgetNN / retainNN for unlearning")

    def __init__(self, tofu: TofuData, options: TofuOptions, reference: list[dict[str, Any]] | None = None):
        self.tofu, self.options, self.reference = tofu, options, reference
        self.format = prompt_format(options.format)
        super().__init__(self._benchmark())

    # -- reading ------------------------------------------------------------------------------------
    @classmethod
    def detect(cls, path: Path) -> bool:
        path = Path(path)
        return path.is_dir() and bool(available_splits(path)) and find_config(path, "retain_perturbed") is not None

    @classmethod
    def load(cls, path: str | Path, mia: str | Path | None = None, options: Mapping[str, str] | None = None
             ) -> "TofuTask":
        if mia is not None:
            raise ConfigError("TOFU has no membership-inference sets of its own; --mia does not apply")
        opts = TofuOptions.parse(options)
        tofu = load_tofu(path, opts.split, opts.ds_size)
        opts = TofuOptions(tofu.split, opts.format, opts.ds_size, opts.max_new_tokens, opts.reference)
        task = cls(tofu, opts)
        if opts.reference:
            task.reference = read_reference(opts.reference, {"split": tofu.split, "ds_size": opts.ds_size,
                                                                   "format": opts.format})
            # Fail now, before any model work, if the reference covers other forget questions.
            task._check_reference()
        return task

    def _records(self, items: Sequence[TofuItem], split: str, config: str) -> tuple[Record, ...]:
        return tuple(Record(id=f"{config}-{i.index}", input=self.format.loss_prompt(i.question),
                            output=self.format.loss_answer(i.answer), task="tofu", kind="qa", split=split)  # type: ignore[arg-type]
                     for i in items)

    def _benchmark(self) -> Benchmark:
        t = self.tofu
        return Benchmark(name=f"{type(self).name}-{t.split}", path=t.folder,
                         forget=self._records(t.train_forget, "forget", t.split),
                         retain=self._records(t.train_retain, "retain", retain_config(t.split)),
                         content_hash=items_hash({s: [(i.index, i.question, i.answer) for i in items]
                                                  for s, items in t.eval_sets.items()}))

    @property
    def content_hash(self) -> str:
        """Everything the model is asked (the cache key): the requests and the loss convention."""
        req = self.requests()
        h = hashlib.sha256(json.dumps([req.prompts, req.answers, req.max_new_tokens,
                                       req.answer_format.__dict__], ensure_ascii=False).encode("utf-8"))
        return h.hexdigest()

    def protocol(self) -> dict[str, Any]:
        return {"split": self.tofu.split, "format": self.format.name, "ds_size": self.options.ds_size,
                "max_new_tokens": self.options.max_new_tokens,
                "answer_loss": "TOFU: question-part tokens masked, answer tag and an EOS label in the loss, "
                               f"truncated at {TOFU_MAX_LENGTH} tokens",
                "reference": self.options.reference}

    # -- evaluating ---------------------------------------------------------------------------------
    def _items(self) -> list[tuple[str, TofuItem]]:
        return [(s, i) for s in ("retain", "forget", "real_authors", "world_facts") for i in self.tofu.eval_sets[s]]

    def requests(self) -> Requests:
        fmt = self.format
        prompts, answers = [], []
        for set_name, item in self._items():
            prompts.append(fmt.generation_prompt(item.question))
            q = fmt.loss_prompt(item.question)
            answers.append((q, fmt.loss_answer(item.answer)))
            if set_name in PARAPHRASED_SETS:
                answers.append((q, fmt.loss_answer(item.paraphrased_answer or "")))
            answers.extend((q, fmt.loss_answer(p)) for p in item.perturbed_answers)
        return Requests(prompts=tuple(prompts), answers=tuple(answers),
                        max_new_tokens=(self.options.max_new_tokens,) * len(prompts),
                        answer_format=tofu_answer_format(fmt))

    def score(self, responses: Responses, mcq: Mapping[str, float | None], mode: str) -> Scores:
        from metrics.regurgitation import rouge_recalls

        rows = []
        losses = iter(responses.answer_losses)
        for (set_name, item), generation in zip(self._items(), responses.generations):
            answer_loss = next(losses)
            paraphrased = next(losses) if set_name in PARAPHRASED_SETS else answer_loss
            perturbed = [next(losses) for _ in item.perturbed_answers]
            rouge_l, rouge_1 = rouge_recalls(item.answer, generation)
            rows.append({"set": set_name, "id": str(item.index), "question": item.question,
                         "prompt": self.format.generation_prompt(item.question), "reference": item.answer,
                         "generation": generation, "answer_loss": answer_loss, "paraphrased_loss": paraphrased,
                         "perturbed_losses": perturbed, "rougeL_recall": rouge_l, "rouge1_recall": rouge_1})
        samples = rows + list(self.reference or [])
        return Scores(samples, None, self.rescore(samples, None, mcq, mode, progress=False))

    def _check_reference(self) -> None:
        ids = {str(i.index) for i in self.tofu.eval_sets["forget"]}
        ref_ids = {r.get("id") for r in self.reference or []}
        if ids != ref_ids:
            raise DataError(f"the reference run's forget rows cover other questions ({len(ref_ids)} rows, "
                            f"{len(ids & ref_ids)} shared with this run's {len(ids)}); Forget Quality compares the "
                            "same forget questions", self.options.reference)

    @classmethod
    def rescore(cls, samples: Sequence[Mapping[str, Any]], documents: Sequence[Mapping[str, Any]] | None,
                mcq: Mapping[str, float | None], mode: str, progress: bool = True) -> dict[str, float | None]:
        from metrics.tofu import tofu_metrics

        own, reference = split_reference_rows(samples)
        metrics: dict[str, float | None] = dict(tofu_metrics(own, reference))
        for name, value in mcq.items():
            if value is not None:
                metrics[name] = value
        return metrics

    def curves(self, backend: Any, records: Sequence[Record], max_new_tokens: int) -> dict[str, Any]:
        """ROUGE-L recall of greedy answers and mean answer probability, per split, on ``records``."""
        import math

        from metrics.regurgitation import rouge_recalls

        fmt = self.format
        texts = backend.generate([r.input + (fmt.answer_tag if fmt.generation_answer_tag else "") for r in records],
                                 max_new_tokens)
        losses = backend.answer_losses([r.input for r in records], [r.output for r in records],
                                       tofu_answer_format(fmt))
        out: dict[str, Any] = {}
        for split in ("forget", "retain"):
            picked = [(r, t, x) for r, t, x in zip(records, texts, losses) if r.split == split]
            recalls = [rouge_recalls(r.output[len(fmt.answer_tag):] if r.output.startswith(fmt.answer_tag) else r.output,
                                     t)[0] for r, t, _ in picked]
            finite = [x for _, _, x in picked if x is not None]
            out[f"{split}/rougeL_recall"] = sum(recalls) / len(recalls) if recalls else None
            out[f"{split}/probability"] = sum(math.exp(-x) for x in finite) / len(finite) if finite else None
            out[f"answer_loss_{split}"] = sum(finite) / len(finite) if finite else None
            out[f"n_{split}"] = len(picked)
        return out


__all__ = ["REFERENCE_SET", "TofuOptions", "TofuTask", "items_hash", "read_reference", "split_reference_rows",
           "tofu_answer_format"]
