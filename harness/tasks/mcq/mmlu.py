"""MMLU and MMLU-shaped general-utility sets, scored with lm-evaluation-harness on an in-memory model.

Why lm-eval: it is the engine the field trusts for MMLU, and it accepts an already-loaded model
(``HFLM(pretrained=model, tokenizer=...)``), so an unlearned model is scored without being saved.

Local copies (either layout of :mod:`harness.tasks.mcq.data`) are normalised to one JSONL file per
subject and split in a temporary folder, and the lm-eval task configs (one task per subject plus a
group) are written there *at run time* with **absolute** ``data_files`` paths: lm-eval resolves
relative ``data_files`` against the working directory, a known pitfall. The datasets cache of the
run also lives in that folder, so nothing piles up in ``~/.cache``.

Protocols (every setting lands in :class:`harness.core.records.MMLUInfo`):

``semeval2025``
    What the SemEval-2025 Task 4 organisers computed: 5-shot, the few-shot examples being the first
    five items of the subject's ``dev`` split in file order, no chat template, the MMLU prompt
    ("The following are multiple choice questions (with answers) about {subject}.\\n\\n" +
    examples "{question}\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer: X" joined by "\\n\\n"), the
    predicted letter is the one among " A"/" B"/" C"/" D" with the highest log-likelihood after
    "Answer:", and the accuracy is micro-averaged over all questions of all subjects. The micro
    average is computed here from lm-eval's per-sample outputs (exact: correct / questions).
``lm-eval``
    lm-eval's own ``mmlu`` defaults: the same prompt and scoring, **0-shot**. lm-eval reports
    per-subject accuracies and group accuracies weighted by subject size (``weight_by_size: True``
    in its ``mmlu`` group files), which makes its headline number the micro average too; for local
    copies the built-in task cannot read local files, so the harness runs lm-eval with task configs
    equal to the built-in ones (``lm_eval/tasks/mmlu/default/_default_template_yaml``) except for
    ``dataset_path``. With ``source="hub"`` the built-in ``mmlu`` task itself runs.

The value returned is always the exact micro average; lm-eval's own group number is stored beside
it (``settings["lm_eval_group_acc"]``) as a cross-check.
"""

from __future__ import annotations

import difflib
import logging
import re
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence
from urllib.parse import urlparse

from harness.core import console, fileio
from harness.core.errors import DataError, UserError
from harness.tasks.mcq.data import (LAYOUT_HELP, LETTERS, MMLU_GROUPS, MMLU_SUBJECT_CATEGORIES, MMLU_TEST_COUNTS,
                                    MCQSet, load_mcq)
from harness.core.records import MMLUInfo, env_flag

log = logging.getLogger(__name__)

PROTOCOLS = ("semeval2025", "lm-eval")
METRIC_NAMES = ("mmlu", "utility")
#: Shots per protocol when ``MCQSpec.num_fewshot`` is not given.
DEFAULT_FEWSHOT = {"semeval2025": 5, "lm-eval": 0}
#: The SemEval-2025 7B board's floor: 75% of the un-unlearned OLMo-7B's 0.4947, rounded.
SEMEVAL_7B_MMLU_FLOOR = 0.371
DEFAULT_RELATIVE_FLOOR = 0.75

# The prompt, exactly as lm-eval's mmlu default template writes it.
DESCRIPTION = "The following are multiple choice questions (with answers) about {subject}.\n\n"
DOC_TO_TEXT = "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:"
TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"
# The cloze layout, exactly as lm-eval's ``mmlu_continuation`` tasks write it
# (``lm_eval/tasks/mmlu/continuation/_continuation_template_yaml``): no choices in the prompt, and
# each choice's own text is the scored continuation.
CONTINUATION_DESCRIPTION = "The following are questions (with answers) about {subject}.\n\n"
CONTINUATION_DOC_TO_TEXT = "Question: {{question.strip()}}\nAnswer:"
#: Prompt format -> its lm-eval layout. ``letters``: MMLU's own (choices listed, the answer letter
#: scored). ``cloze``: lm-eval's ``mmlu_continuation`` (the answer text scored) -- the formulation
#: OLMES recommends for models too small to map a recalled answer onto a letter, which is what the
#: embedded world's target is.
_LAYOUTS: dict[str, dict[str, Any]] = {
    "letters": {"description": DESCRIPTION, "doc_to_text": DOC_TO_TEXT, "doc_to_choice": list(LETTERS),
                "scored": [TARGET_DELIMITER + c for c in LETTERS], "scoring": "' A'..' D'",
                "lm_eval_template": "mmlu default", "lm_eval_suffix": ""},
    "cloze": {"description": CONTINUATION_DESCRIPTION, "doc_to_text": CONTINUATION_DOC_TO_TEXT,
              "doc_to_choice": "{{choices}}", "scored": "' ' + each choice's text", "scoring": "' ' + choice text",
              "lm_eval_template": "mmlu_continuation", "lm_eval_suffix": "_continuation"},
}
PROMPT_FORMATS = tuple(_LAYOUTS)


@dataclass(frozen=True)
class MCQSpec:
    """What to run: one MCQ evaluation (MMLU or the world's ``utility`` set)."""

    source: str
    """A local folder in either layout of :mod:`harness.tasks.mcq.data`, or ``hub`` (lm-eval's ``cais/mmlu``)."""
    protocol: str = "semeval2025"
    """``semeval2025`` (5-shot, micro-averaged) or ``lm-eval`` (lm-eval's mmlu defaults, 0-shot)."""
    subjects: Optional[Sequence[str] | str] = None
    """``None`` for all; subject names (a list, or one comma-separated string); or an MMLU group
    (``stem``, ``humanities``, ``social_sciences``, ``other``; lm-eval's subject→category mapping).
    Groups only select MMLU subjects."""
    limit: Optional[int] = None
    """At most this many test questions per subject (the first ones, in file order)."""
    metric_name: str = "mmlu"
    """``mmlu`` or ``utility``: the name the number gets in ``result.json``."""
    batch_size: int = 8
    num_fewshot: Optional[int] = None
    """Overrides the protocol's shot count (recorded; a non-default count is not the protocol's number)."""
    samples_path: Optional[str] = None
    """When set, one JSON line per question (subject, answer, prediction, log-likelihoods) is written here."""
    prompt_format: str = "letters"
    """``letters`` (MMLU's layout; the SemEval protocol) or ``cloze`` (lm-eval's ``mmlu_continuation``)."""

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise UserError(f"unknown MMLU protocol {self.protocol!r}; choose one of {', '.join(PROTOCOLS)}")
        if self.prompt_format not in PROMPT_FORMATS:
            raise UserError(f"unknown MCQ prompt format {self.prompt_format!r}; "
                              f"choose one of {', '.join(PROMPT_FORMATS)}")
        if self.metric_name not in METRIC_NAMES:
            raise UserError(f"unknown MCQ metric name {self.metric_name!r}; choose one of {', '.join(METRIC_NAMES)}")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--mmlu-limit must be a positive number of questions per subject, got {self.limit}")
        if self.batch_size < 1:
            raise UserError(f"MCQ batch size must be positive, got {self.batch_size}")
        if self.num_fewshot is not None and self.num_fewshot < 0:
            raise UserError(f"number of few-shot examples must be >= 0, got {self.num_fewshot}")
        if not str(self.source).strip():
            raise UserError("MCQ source is empty; give a folder or 'hub'")

    @property
    def shots(self) -> int:
        return self.num_fewshot if self.num_fewshot is not None else DEFAULT_FEWSHOT[self.protocol]


# -- subject selection ---------------------------------------------------------------------------
def _filter_tokens(subjects: Optional[Sequence[str] | str]) -> list[str]:
    if subjects is None:
        return []
    raw = subjects.split(",") if isinstance(subjects, str) else list(subjects)
    return [t.strip() for t in raw if t and t.strip() and t.strip() != "all"]


def resolve_subjects(available: Sequence[str], subjects: Optional[Sequence[str] | str], source: str = "") -> list[str]:
    """The subjects a filter selects among ``available`` (sorted, no duplicates).

    Group names select by lm-eval's MMLU category mapping; unknown names are an error that lists the
    nearest valid names, because a typo must not silently shrink MMLU.
    """
    tokens = _filter_tokens(subjects)
    if not tokens:
        return sorted(available)
    chosen: set[str] = set()
    for token in tokens:
        if token in MMLU_GROUPS:
            members = [s for s in available if MMLU_SUBJECT_CATEGORIES.get(s) == token]
            if not members:
                raise UserError(
                    f"subject group {token!r} selects no subject of {source or 'the MCQ set'}: groups apply to "
                    f"the 57 MMLU subjects; name subjects instead (available: {', '.join(sorted(available))})")
            chosen.update(members)
        elif token in available:
            chosen.add(token)
        else:
            close = difflib.get_close_matches(token, list(available) + list(MMLU_GROUPS), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UserError(f"unknown subject {token!r} in {source or 'the MCQ set'}{hint} "
                              f"(groups: {', '.join(MMLU_GROUPS)}; subjects: {', '.join(sorted(available))})")
    return sorted(chosen)


# -- lm-eval plumbing ------------------------------------------------------------------------------
def _task_name(metric: str, subject: str) -> str:
    return f"unlearnbench_{metric}_" + re.sub(r"[^A-Za-z0-9_]", "_", subject)


def _task_config(name: str, subject: str, files: dict[str, str], cache_dir: str, shots: int,
                 prompt_format: str = "letters") -> dict[str, Any]:
    """One subject's lm-eval task config: lm-eval's mmlu template (``letters``) or its
    mmlu_continuation template (``cloze``) with absolute local data files."""
    layout = _LAYOUTS[prompt_format]
    config: dict[str, Any] = {
        "task": name,
        "task_alias": subject,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": files, "cache_dir": cache_dir},
        "test_split": "test",
        "output_type": "multiple_choice",
        # lm-eval renders the description with Jinja: the subject is data, so the text is passed
        # inside {% raw %} (the subject's name is also checked to be a plain name when it is read).
        "description": "{% raw %}" + layout["description"].format(subject=subject.replace("_", " ")) + "{% endraw %}",
        "doc_to_text": layout["doc_to_text"],
        "doc_to_choice": layout["doc_to_choice"],
        "doc_to_target": "answer",
        "target_delimiter": TARGET_DELIMITER,
        "fewshot_delimiter": FEWSHOT_DELIMITER,
        "num_fewshot": shots,
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }
    if "dev" in files:
        config["fewshot_split"] = "dev"
        config["fewshot_config"] = {"sampler": "first_n"}
    return config


def _write_tasks(mcq: MCQSet, subjects: list[str], spec: MCQSpec, folder: Path) -> tuple[str, dict[str, str]]:
    """Write normalised JSONL data and lm-eval YAML configs into ``folder``; returns (group, task→subject)."""
    import yaml

    shots = spec.shots
    names: dict[str, str] = {}
    cache_dir = str((folder / "hf_datasets_cache").resolve())
    for subject in subjects:
        splits = mcq.data[subject]
        test = splits["test"][: spec.limit] if spec.limit else splits["test"]
        dev = splits.get("dev", [])
        name = _task_name(spec.metric_name, subject)
        if name in names:
            raise DataError(f"subjects {names[name]!r} and {subject!r} map to the same task name", mcq.root)
        names[name] = subject
        files = {"test": str(fileio.write_jsonl(folder / "data" / f"{name}.test.jsonl",
                                                 [i.to_json() for i in test]).resolve())}
        if shots:
            files["dev"] = str(fileio.write_jsonl(folder / "data" / f"{name}.dev.jsonl",
                                                  [i.to_json() for i in dev[:shots]]).resolve())
        fileio.write_text(folder / f"{name}.yaml",
                          yaml.safe_dump(_task_config(name, subject, files, cache_dir, shots, spec.prompt_format),
                                         sort_keys=False))
    group = f"unlearnbench_{spec.metric_name}"
    fileio.write_text(folder / f"{group}.yaml", yaml.safe_dump({
        "group": group,
        "task": list(names),
        "aggregate_metric_list": [{"metric": "acc", "weight_by_size": True}],
        "metadata": {"version": 1.0},
    }, sort_keys=False))
    return group, names


def _model_device(model) -> str:
    try:
        return str(next(model.parameters()).device)
    except (StopIteration, AttributeError):
        return "cpu"


def _evaluate(model, tokenizer, spec: MCQSpec, tasks: list[str], task_manager, num_fewshot: int | None,
              limit: int | None) -> dict:
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    was_training = getattr(model, "training", False)
    model.eval()
    try:
        # lm-eval's progress bars carry no labels and it runs `git describe` (which prints "fatal: not
        # a git repository" outside one): shown with -v, or when it fails.
        with console.third_party_output("lm-eval"):
            lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=spec.batch_size, device=_model_device(model))
            out = lm_eval.simple_evaluate(
                model=lm, tasks=tasks, task_manager=task_manager, num_fewshot=num_fewshot, limit=limit,
                log_samples=True, bootstrap_iters=0,
                # None: lm-eval must not reseed the caller's global RNGs (the harness owns determinism).
                random_seed=None, numpy_random_seed=None, torch_random_seed=None,
            )
    finally:
        if was_training:
            model.train()
    if not out or "samples" not in out:
        raise RuntimeError("lm-eval returned no per-sample outputs (log_samples=True was requested)")
    return out


def _per_sample(out: dict, task_to_subject: dict[str, str]) -> list[dict]:
    """Per-question predictions from lm-eval's logged samples, cross-checked against its ``acc``."""
    rows = []
    for task, subject in task_to_subject.items():
        samples = sorted(out["samples"].get(task, []), key=lambda s: s["doc_id"])
        for s in samples:
            lls = [float(r[0]) for r in s["filtered_resps"]]
            pred = max(range(len(lls)), key=lambda i: (lls[i], -i))  # first maximum, like numpy.argmax
            target = int(s["target"])
            correct = int(pred == target)
            if "acc" in s and int(s["acc"]) != correct:
                raise RuntimeError(f"lm-eval's acc for {task} doc {s['doc_id']} disagrees with the argmax of its "
                                   f"log-likelihoods {lls}")
            rows.append({"subject": subject, "doc_id": int(s["doc_id"]), "answer": LETTERS[target],
                         "prediction": LETTERS[pred], "correct": correct, "loglikelihoods": lls})
    return rows


def _check_shots(out: dict, tasks, shots: int) -> None:
    """The record says ``num_fewshot``; make sure lm-eval really used that many shots."""
    used = {t: out.get("n-shot", {}).get(t) for t in tasks}
    wrong = {t: n for t, n in used.items() if n is not None and int(n) != shots}
    if wrong:
        raise RuntimeError(f"lm-eval used a different number of few-shot examples than requested ({shots}): {wrong}")


def _group_acc(out: dict, group: str | None) -> float | None:
    entry = out.get("results", {}).get(group) if group else None
    value = entry.get("acc,none") if isinstance(entry, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def _prompt_settings(tokenizer, shots: int, prompt_format: str = "letters") -> dict[str, Any]:
    probe = tokenizer("x")["input_ids"]
    layout = _LAYOUTS[prompt_format]
    return {
        "format": prompt_format,
        "description": layout["description"],
        "doc_to_text": layout["doc_to_text"],
        "choices": layout["scored"],
        "target_delimiter": TARGET_DELIMITER,
        "fewshot_delimiter": FEWSHOT_DELIMITER,
        "fewshot_split": "dev" if shots else None,
        "fewshot_sampler": "first_n (the first dev items in file order)" if shots else None,
        "chat_template": False,
        "scoring": (f"argmax over the summed log-likelihood of each continuation {layout['scoring']} "
                    "(first maximum wins)"),
        "bos_prepended": bool(tokenizer.bos_token_id is not None and probe and probe[0] == tokenizer.bos_token_id),
    }


def _lm_eval_version() -> str:
    import lm_eval

    return getattr(lm_eval, "__version__", "unknown")


def _finish(spec: MCQSpec, rows: list[dict], subjects: list[str], full: bool,
            settings: dict[str, Any]) -> tuple[float, MMLUInfo, list[dict]]:
    if not rows:
        raise DataError("no questions were scored", spec.source)
    per_subject: dict[str, dict[str, Any]] = {}
    for r in rows:
        entry = per_subject.setdefault(r["subject"], {"n": 0, "correct": 0})
        entry["n"] += 1
        entry["correct"] += r["correct"]
    for entry in per_subject.values():
        entry["acc"] = entry["correct"] / entry["n"]
    n = len(rows)
    correct = sum(r["correct"] for r in rows)
    accuracy = correct / n  # the micro average, exact
    settings.update({
        "engine": "lm-evaluation-harness",
        "lm_eval_version": _lm_eval_version(),
        "aggregation": "micro: correct answers / questions, over all selected subjects",
        "n_correct": correct,
        "per_subject": dict(sorted(per_subject.items())),
        "batch_size": spec.batch_size,
        "num_fewshot_is_protocol_default": spec.num_fewshot is None or spec.num_fewshot == DEFAULT_FEWSHOT[spec.protocol],
    })
    if spec.samples_path:
        fileio.write_jsonl(spec.samples_path, rows)
        settings["samples_path"] = str(spec.samples_path)
    info = MMLUInfo(protocol=spec.protocol, source=settings.pop("source_resolved", spec.source),
                    metric_name=spec.metric_name, num_fewshot=spec.shots, prompt_format=spec.prompt_format,
                    n_questions=n, subjects=subjects, limit=spec.limit, full=full, settings=settings)
    log.info("%s (%s, %s, %d-shot): %.4f over %d questions in %d subjects%s", spec.metric_name, spec.protocol,
             spec.prompt_format, spec.shots, accuracy, n, len(subjects), "" if full else " (not the full set)")
    return accuracy, info, rows


# -- local and hub runs -----------------------------------------------------------------------------
def _prepare_local(spec: MCQSpec) -> tuple[MCQSet, list[str]]:
    """Load and validate a local MCQ set for ``spec``: subjects exist, enough dev items for the shots."""
    if not Path(spec.source).expanduser().exists():
        raise DataError(f"no such folder; {LAYOUT_HELP}", spec.source)
    mcq = load_mcq(spec.source)
    subjects = resolve_subjects(mcq.subjects, spec.subjects, str(mcq.root))
    shots = spec.shots
    for subject in subjects:
        dev = mcq.data[subject].get("dev", [])
        if shots and len(dev) < shots:
            raise DataError(f"subject {subject!r} has {len(dev)} dev question(s) but {shots}-shot prompts need "
                            f"{shots} (the few-shot examples are the first dev items)",
                            mcq.root / "dev" if mcq.layout == "csv" else mcq.root / subject)
    return mcq, subjects


def _check_hub(spec: MCQSpec) -> None:
    """Fail at once when the hub cannot be used (offline mode or unreachable): no retry loop."""
    if spec.metric_name != "mmlu":
        raise UserError("'hub' is only available for MMLU; the utility set is a local folder")
    offline = [v for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if env_flag(v)]
    if offline:
        raise UserError(f"--mmlu hub needs the Hugging Face hub, but {' and '.join(offline)} "
                          f"{'is' if len(offline) == 1 else 'are'} set (offline mode); {LAYOUT_HELP}")
    reachable, where = _hub_reachable()
    if not reachable:
        raise UserError(f"--mmlu hub: the Hugging Face hub is not reachable at {where}; {LAYOUT_HELP}")
    resolve_subjects(list(MMLU_SUBJECT_CATEGORIES), spec.subjects, "MMLU (hub)")


def check_mcq_source(spec: MCQSpec) -> None:
    """Pre-flight check, cheap (no model, no lm-eval import): call it before the long phases of an
    evaluation so that a missing folder, a bad subject filter or an offline hub fails in seconds,
    not after generation. Raises the same errors :func:`run_mcq` would."""
    if spec.source == "hub":
        _check_hub(spec)
    else:
        _prepare_local(spec)


def local_completeness(mcq: MCQSet, subjects: Sequence[str], spec: MCQSpec
                       ) -> tuple[bool, list[str], dict[str, dict[str, int]]]:
    """``(full, missing MMLU subjects, subjects with another number of test questions than MMLU)``.

    A limited, filtered or incomplete set is never the full one. For MMLU that means all 57 subjects
    with exactly MMLU's test questions each (:data:`MMLU_TEST_COUNTS`); for another MCQ set (the
    world's utility) it means every subject of the folder, unlimited."""
    filtered = len(subjects) < len(mcq.subjects)
    truncated = spec.limit is not None and any(len(mcq.data[s]["test"]) > spec.limit for s in subjects)
    if spec.metric_name != "mmlu":
        return not filtered and not truncated, [], {}
    missing = sorted(set(MMLU_SUBJECT_CATEGORIES) - set(mcq.subjects))
    # Subjects with more or fewer test questions than MMLU has: a partial (or padded) copy.
    short = {s: {"found": len(mcq.data[s]["test"]), "expected": MMLU_TEST_COUNTS[s]} for s in mcq.subjects
             if s in MMLU_TEST_COUNTS and len(mcq.data[s]["test"]) != MMLU_TEST_COUNTS[s]}
    if short:
        log.warning("MMLU copy %s: %d subject(s) do not have MMLU's number of test questions (%s); the result is "
                    "recorded as not the full MMLU", mcq.root, len(short),
                    ", ".join(f"{s}: {c['found']} of {c['expected']}" for s, c in sorted(short.items())[:5]))
    return not filtered and not truncated and not missing and not short, missing, short


def _run_local(model, tokenizer, spec: MCQSpec) -> tuple[float, MMLUInfo, list[dict]]:
    from lm_eval.tasks import TaskManager

    mcq, subjects = _prepare_local(spec)
    full, missing_mmlu, short_mmlu = local_completeness(mcq, subjects, spec)
    with tempfile.TemporaryDirectory(prefix="unlearnbench-mcq-") as tmp:
        folder = Path(tmp)
        group, task_to_subject = _write_tasks(mcq, subjects, spec, folder)
        task_manager = TaskManager(include_path=str(folder), include_defaults=False)
        out = _evaluate(model, tokenizer, spec, [group], task_manager, num_fewshot=None, limit=None)
        rows = _per_sample(out, task_to_subject)
    _check_shots(out, task_to_subject, spec.shots)
    expected = sum(min(len(mcq.data[s]["test"]), spec.limit or len(mcq.data[s]["test"])) for s in subjects)
    if len(rows) != expected:
        raise RuntimeError(f"lm-eval scored {len(rows)} questions, expected {expected}")
    settings: dict[str, Any] = {
        "source_resolved": str(mcq.root),
        "layout": mcq.layout,
        "data_hash": mcq.content_hash(subjects),
        "subjects_filter": _filter_tokens(spec.subjects) or None,
        "n_subjects_available": len(mcq.subjects),
        "task_configs": (f"lm-eval {_LAYOUTS[spec.prompt_format]['lm_eval_template']} template with local "
                         "absolute data_files (dataset_path: json)"),
        "prompt": _prompt_settings(tokenizer, spec.shots, spec.prompt_format),
        "lm_eval_group_acc": _group_acc(out, group),
    }
    if spec.metric_name == "mmlu":
        settings["missing_mmlu_subjects"] = missing_mmlu
        settings["incomplete_mmlu_subjects"] = dict(sorted(short_mmlu.items()))
    return _finish(spec, rows, subjects, full, settings)


def _hub_reachable(timeout: float = 3.0) -> tuple[bool, str]:
    try:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
    except Exception:
        endpoint = "https://huggingface.co"
    parsed = urlparse(endpoint)
    host, port = parsed.hostname or "huggingface.co", parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, endpoint
    except OSError as exc:
        return False, f"{endpoint} ({exc})"


def _run_hub(model, tokenizer, spec: MCQSpec) -> tuple[float, MMLUInfo, list[dict]]:
    _check_hub(spec)

    tokens = _filter_tokens(spec.subjects)
    subjects = resolve_subjects(list(MMLU_SUBJECT_CATEGORIES), spec.subjects, "MMLU (hub)")
    suffix = _LAYOUTS[spec.prompt_format]["lm_eval_suffix"]
    if not tokens:
        tasks = [f"mmlu{suffix}"]
    elif len(tokens) == 1 and tokens[0] in MMLU_GROUPS:
        tasks = [f"mmlu_{tokens[0]}{suffix}"]
    else:
        tasks = [f"mmlu_{s}{suffix}" for s in subjects]
    # task_manager=None: lm-eval builds its own index of built-in tasks.
    out = _evaluate(model, tokenizer, spec, tasks, None, num_fewshot=spec.shots, limit=spec.limit)
    task_to_subject = {t: t[len("mmlu_"):len(t) - len(suffix)] for t in out["samples"]
                       if t.startswith("mmlu_") and t.endswith(suffix)}
    rows = _per_sample(out, task_to_subject)
    _check_shots(out, task_to_subject, spec.shots)
    truncated = spec.limit is not None and any(n > spec.limit for n in
                                               (out.get("n-samples", {}).get(t, {}).get("original", 0)
                                                for t in task_to_subject))
    full = not tokens and not truncated
    settings: dict[str, Any] = {
        "source_resolved": "hub:cais/mmlu",
        "lm_eval_tasks": tasks,
        "task_configs": f"lm-eval built-in mmlu{suffix} tasks" + (f", num_fewshot={spec.shots}" if spec.shots else ""),
        "subjects_filter": tokens or None,
        "prompt": _prompt_settings(tokenizer, spec.shots, spec.prompt_format),
        "lm_eval_group_acc": _group_acc(out, tasks[0]) if len(tasks) == 1 else None,
    }
    return _finish(spec, rows, sorted(set(task_to_subject.values())), full, settings)


def run_mcq(model, tokenizer, spec: MCQSpec) -> tuple[float, MMLUInfo]:
    """Score ``model`` on the MCQ set of ``spec`` with lm-eval; returns (micro accuracy, settings record).

    A missing local folder or an unreachable / offline hub fails at once with a message saying where
    to place MMLU, before lm-eval is even imported (no retry loop against the hub).
    """
    accuracy, info, _ = run_mcq_rows(model, tokenizer, spec)
    return accuracy, info


def run_mcq_rows(model, tokenizer, spec: MCQSpec) -> tuple[float, MMLUInfo, list[dict]]:
    """:func:`run_mcq` and the per-question rows (the run folder's ``mmlu.jsonl`` / ``utility.jsonl``):
    ``subject``, ``doc_id`` (the question's index in the subject's test split, file order), ``answer``
    (gold letter), ``prediction``, ``correct`` (0/1) and ``loglikelihoods`` (one per choice)."""
    if spec.source == "hub":
        return _run_hub(model, tokenizer, spec)
    return _run_local(model, tokenizer, spec)


# -- the MMLU floor ---------------------------------------------------------------------------------
def mmlu_floor_check(value: float | None, absolute: float | None = None, relative: float | None = None,
                     reference: float | None = None) -> dict[str, Any]:
    """Flags for ``result.flags``: the floor in force and whether ``value`` reaches it.

    ``absolute`` (e.g. :data:`SEMEVAL_7B_MMLU_FLOOR`) wins when given; otherwise the floor is
    ``relative`` (default 0.75) times ``reference``, the target model's own MMLU. A value *below* the
    floor fails (the SemEval 7B board excluded entries under 0.371); ``None`` (MMLU not run) gives
    ``mmlu_floor_passed: None``.
    """
    if absolute is not None:
        floor, rule = float(absolute), "absolute"
    elif reference is not None:
        fraction = DEFAULT_RELATIVE_FLOOR if relative is None else float(relative)
        if not 0 < fraction <= 1:
            raise ValueError(f"relative MMLU floor must be a fraction in (0, 1], got {fraction}")
        floor, rule = fraction * float(reference), f"relative: {fraction} x reference MMLU {float(reference)}"
    else:
        raise ValueError("an MMLU floor needs an absolute value or a reference MMLU (the target model's own)")
    flags: dict[str, Any] = {"mmlu_floor": floor, "mmlu_floor_rule": rule,
                             "mmlu_floor_passed": None if value is None else bool(float(value) >= floor)}
    return flags


__all__ = [
    "MCQSpec", "run_mcq", "run_mcq_rows", "local_completeness", "check_mcq_source", "resolve_subjects", "mmlu_floor_check",
    "PROTOCOLS", "PROMPT_FORMATS", "DEFAULT_FEWSHOT", "SEMEVAL_7B_MMLU_FLOOR", "DEFAULT_RELATIVE_FLOOR",
]
