"""Finding result records under folders, checking them before anything is ranked, and keeping apart
what cannot be ranked together.

A record reaches a board only when all of these hold; otherwise it is *refused*: listed with its
file and one line of reason (``Collection.skipped``), never half-read, never silently dropped.

1. **Readable.** :func:`harness.core.records.read_result` validates the whole file against the schema.
2. **Complete for the board.** It has every metric the board needs (score, floor metric, ``required``),
   and, on a board with ``complete_benchmark = true``, was evaluated on the whole benchmark (no
   ``evaluate --limit``; :func:`limit_problem`).
3. **Valid values** (:func:`value_problem`). Every metric is finite and inside the range the metrics
   package declares for it (:func:`metrics.specs.value_problem`: ``[0, 1]`` for AUCs, ROUGE, exact
   match, MMLU, the aggregates; ``>= 0`` for answer losses; any finite number for an undeclared one).
4. **Self-consistent** (:func:`formula_problem`). Derived metrics equal their formula over the record's
   own components: ``mia_score = 1 - 2|mia_auc - 0.5|``, ``task_aggregate`` = the harmonic mean of the
   twelve terms, ``final_score``/``final_score_utility`` = the mean of their three components.
5. **The run folder's files belong together** (:func:`run_folder_problem`):

   - :func:`manifest_problem`, where the run manifest's content hashes will be verified;
   - ``config.json``, when present, describes the same run (label, method, parameters, scoring mode);
   - ``samples.jsonl`` / ``mia.jsonl``, when present, are readable, have the row counts the record's
     benchmark counts say, and give back the record's metrics when recomputed
     (:func:`metrics.compute_metrics` from the rows' stored scores, or from the generations re-scored
     in the record's ``settings["mode"]``; MIA AUCs by :func:`leaderboards.bootstrap.mia_aucs`). A folder that mixes files of two runs (an interrupted
     rerun) is refused: its numbers, and a bootstrap interval drawn from the other run's rows, would
     be wrong. The verified rows are kept (:class:`PerSample`) and are what the bootstrap resamples.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from harness.core import fileio
from harness.core.errors import RecordError
from harness.core.records import CONFIG_FILE, MIA_FILE, RESULT_FILE, SAMPLES_FILE, EvalResult, read_result
from metrics.robust import is_attack_method

from .board import Board

#: The board that ranks attacked runs (leaderboards/boards/robust.toml); every other board leaves them out.
ROBUST_BOARD = "robust"

#: Relative and absolute tolerance when a metric is compared with its recomputed value: records are
#: written from the same formulas, so anything above float noise means the files disagree.
REL_TOL = 1e-9
ABS_TOL = 1e-9
_COUNT_KEY = re.compile(r"(forget|retain)/[^/]+/(sc|qa)\Z")


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass(frozen=True)
class PerSample:
    """A run's per-sample rows, checked against its record."""

    rows: list[dict[str, Any]]
    """``samples.jsonl`` rows with ``kind``, ``regurgitation``/``knowledge`` filled (as verified)."""
    mia: Optional[list[dict[str, Any]]]
    """``mia.jsonl`` rows, or None when the run has no MIA file."""
    digest: str
    """sha256 of the per-item scores and MIA losses: equal for copies of one run."""
    mcq: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """``mmlu.jsonl`` / ``utility.jsonl`` rows by metric (checked: they give the record's accuracy), for
    the runs that wrote them."""


@dataclass(frozen=True)
class LoadedRecord:
    path: Path
    """The ``result.json`` file."""
    result: EvalResult
    per_sample: Optional[PerSample] = field(default=None, compare=False, repr=False)
    """The verified per-sample rows (None when the run folder has no ``samples.jsonl``)."""

    @property
    def run_dir(self) -> Path:
        return self.path.parent


@dataclass
class Collection:
    records: list[LoadedRecord] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def find_result_files(folders: Iterable[str | Path]) -> list[Path]:
    """Every ``result.json`` under the folders (or the files themselves), sorted, without duplicates."""
    found: dict[Path, None] = {}
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            found[folder.resolve()] = None
        elif folder.is_dir():
            for path in sorted(folder.rglob(RESULT_FILE)):
                if path.is_file():
                    found[path.resolve()] = None
        else:
            raise FileNotFoundError(f"{folder}: no such results folder")
    return sorted(found)


def missing_metrics(result: EvalResult, names: Iterable[str]) -> list[str]:
    return [n for n in names if result.metrics.get(n) is None]


def collect(folders: Iterable[str | Path], board: Board) -> Collection:
    """Read and check every record; refuse (with file and reason) the ones that cannot be ranked."""
    out = Collection()
    for path in find_result_files(folders):
        try:
            result = read_result(path)
        except RecordError as exc:
            out.skipped.append(Skipped(str(path), exc.reason))
            continue
        limited = limit_problem(result, board)
        if limited:
            out.skipped.append(Skipped(str(path), limited))
            continue
        if is_attack_method(result.method.name) != (board.name == ROBUST_BOARD):
            # Attacked runs (`unlearnbench attack`: other weights or prompts) are ranked on the robust
            # board only, and the robust board reads nothing else.
            continue
        missing = missing_metrics(result, board.required_metrics)
        if missing:
            out.skipped.append(Skipped(str(path), f"missing metric(s) the board {board.name!r} needs: "
                                                  f"{', '.join(missing)} (null or absent in 'metrics')"))
            continue
        problem = value_problem(result) or formula_problem(result)
        per_sample = None
        if problem is None:
            per_sample, problem = run_folder_problem(path, result)
        if problem is not None:
            out.skipped.append(Skipped(str(path), problem))
            continue
        out.records.append(LoadedRecord(path=path, result=result, per_sample=per_sample))
    return out


def limit_problem(result: EvalResult, board: Board) -> Optional[str]:
    """Why a board that ranks only complete benchmarks refuses a record evaluated with ``--limit``."""
    limit = result.settings.get("limit")
    if not board.complete_benchmark or limit is None:
        return None
    return (f"evaluated with --limit {limit} (at most {limit} records per split x task x kind): not comparable "
            f"with full-benchmark numbers; the board {board.name!r} ranks complete evaluations only")


# -- 3. values ----------------------------------------------------------------------------------------
def value_problem(result: EvalResult) -> Optional[str]:
    """The first metric that is not finite or lies outside its declared range (and how many more)."""
    from metrics.specs import value_problem as metric_value_problem

    problems = []
    for name, value in result.metrics.items():
        if value is not None:
            why = metric_value_problem(name, value)
            if why is not None:
                problems.append(f"metric {name!r}: {why}")
    if not problems:
        return None
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return problems[0] + more


# -- 4. derived metrics against their formulas ------------------------------------------------------
def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def formula_problem(result: EvalResult) -> Optional[str]:
    """A derived metric that differs from its formula over the record's own components."""
    from metrics import final_score, mia_score, task_aggregate
    from metrics.semeval import AGGREGATE_TERMS

    m = result.metrics
    checks: list[tuple[str, Optional[float], str]] = []
    if m.get("mia_auc") is not None:
        checks.append(("mia_score", mia_score(m["mia_auc"]), "1 - 2|mia_auc - 0.5|"))
    if all(m.get(f"{s}/{t}/{k}") is not None for s, t, k in AGGREGATE_TERMS):
        checks.append(("task_aggregate", task_aggregate(m), "the harmonic mean of the twelve per-task terms"))
    for name, mcq in (("final_score", "mmlu"), ("final_score_utility", "utility")):
        checks.append((name, final_score(m.get("task_aggregate"), m.get(mcq), m.get("mia_score")),
                       f"mean(task_aggregate, {mcq}, mia_score)"))
    for name, expected, formula in checks:
        value = m.get(name)
        if value is not None and expected is not None and not _close(value, expected):
            return (f"metric {name!r} = {value!r} is not {formula} = {expected!r} computed from the record's own "
                    f"metrics (an edited or mixed-up record?)")
    return None


# -- 5. the run folder ------------------------------------------------------------------------------------
def run_folder_problem(path: Path, result: EvalResult) -> tuple[Optional[PerSample], Optional[str]]:
    """Check that the run folder's files belong together; returns (verified per-sample rows, problem)."""
    run_dir = Path(path).parent
    problem = manifest_problem(run_dir, result) or config_problem(run_dir, result)
    if problem is not None:
        return None, problem
    return per_sample_problem(run_dir, result)


def manifest_problem(run_dir: Path, result: EvalResult) -> Optional[str]:
    """The run manifest (content hashes of a run's inputs and of the files it wrote; issue 14.1),
    verified for the files a board reads: a folder whose files do not match their recorded hashes
    (an interrupted rerun, a tampered record, a file copied in from another run) is refused with the
    first file that differs. Runs made before manifests have none: the checks below (config,
    per-sample files) are what is left for them."""
    from harness.core.manifest import MANIFEST_FILE, verify

    if not (run_dir / MANIFEST_FILE).is_file():
        return None
    problem = verify(run_dir, only=(RESULT_FILE, CONFIG_FILE, SAMPLES_FILE, MIA_FILE))
    return None if problem is None else f"its files do not belong together ({MANIFEST_FILE}): {problem}"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def config_problem(run_dir: Path, result: EvalResult) -> Optional[str]:
    """``config.json`` (when the folder has one) must describe the run ``result.json`` reports."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"its {CONFIG_FILE} is unreadable ({exc}); cannot tell whether result.json belongs to this run"
    if not isinstance(config, dict):
        return f"its {CONFIG_FILE} is not a JSON object"
    differences = []
    if config.get("label") is not None and config["label"] != result.label:
        differences.append(f"label {config['label']!r} vs {result.label!r}")
    if config.get("method") is not None and config["method"] != result.method.name:
        differences.append(f"method {config['method']!r} vs {result.method.name!r}")
    elif isinstance(config.get("params"), dict) and _canonical(config["params"]) != _canonical(result.method.params):
        keys = sorted(k for k in set(config["params"]) | set(result.method.params)
                      if _canonical(config["params"].get(k)) != _canonical(result.method.params.get(k)))
        differences.append("parameters " + ", ".join(
            f"{k}={config['params'].get(k)!r} vs {result.method.params.get(k)!r}" for k in keys[:3])
            + (" …" if len(keys) > 3 else ""))
    settings = config.get("eval") or config.get("settings")
    if isinstance(settings, dict):
        for key in ("mode", "max_new_tokens"):
            # a null max_new_tokens in the record: the benchmark's own per-prompt budgets applied (TOFU, MUSE)
            if key in settings and result.settings.get(key) is not None and settings[key] != result.settings[key]:
                differences.append(f"{key} {settings[key]!r} vs {result.settings[key]!r}")
    if not differences:
        return None
    return (f"its {CONFIG_FILE} describes another run than its {RESULT_FILE} ({'; '.join(differences)}, "
            f"config vs result): the folder mixes two runs (an interrupted rerun?)")


def _run_file(run_dir: Path, result: EvalResult, default: str) -> Path:
    for rel in result.files.values():
        if Path(rel).name == default:
            return run_dir / rel
    return run_dir / default


def scoring_mode(result: EvalResult) -> str:
    """The scoring mode of a record: ``settings["mode"]``, which evaluation writes (``semeval2025`` when
    a record states none)."""
    return str(result.settings.get("mode") or "semeval2025")


def _row_counts(rows: list[dict[str, Any]], mia: Optional[list[dict[str, Any]]], expected: dict[str, int]) -> Optional[str]:
    """Rows per ``split/task/kind`` (and MIA set) against the record's benchmark counts, where it has them."""
    got = Counter(f"{r['split']}/{r['task']}/{r['kind']}" for r in rows)
    keys: set[str] = set()
    if any(_COUNT_KEY.match(k) for k in expected):
        keys |= {k for k in expected if _COUNT_KEY.match(k)} | set(got)
    if mia is not None and ("mia/member" in expected or "mia/nonmember" in expected):
        got.update(f"mia/{r['set']}" for r in mia)
        keys |= {"mia/member", "mia/nonmember"}
    wrong = sorted(k for k in keys if expected.get(k, 0) != got.get(k, 0))
    if not wrong:
        return None
    listing = ", ".join(f"{k}: {got.get(k, 0)} rows, the record says {expected.get(k, 0)}" for k in wrong[:3])
    return f"its per-sample files have other row counts than its record ({listing}{' …' if len(wrong) > 3 else ''})"


def row_count_problem(run_dir: Path, result: EvalResult) -> Optional[str]:
    """Whether the run's per-sample files hold the rows its record counts (a partial or truncated
    file), without recomputing any metric: what ``unlearnbench score --write`` checks on a run that
    has no manifest before it replaces the record's metrics."""
    from harness.core.errors import DataError
    from metrics import read_mia_rows, read_samples

    samples_path = _run_file(run_dir, result, SAMPLES_FILE)
    mia_path = _run_file(run_dir, result, MIA_FILE)
    try:
        rows = read_samples(samples_path)
        mia = read_mia_rows(mia_path) if mia_path.is_file() else None
    except DataError as exc:
        return f"its per-sample files cannot be read: {exc}"
    from harness.core.types import kind_from_id

    keyed = [{"split": r.get("split"), "task": r.get("task"), "kind": r.get("kind") or kind_from_id(str(r.get("id")))}
             for r in rows]
    return _row_counts(keyed, mia, result.benchmark.counts)


def _mismatches(recomputed: dict[str, Optional[float]], recorded: dict[str, Optional[float]],
                with_mia: bool) -> list[tuple[str, Optional[float], float]]:
    out = []
    for name, value in recomputed.items():
        if name in ("mmlu", "utility"):
            continue  # passed through from the record
        if not with_mia and (name.startswith("mia_") or name.startswith("final_score")):
            continue
        have = recorded.get(name)
        if have is None:
            continue
        if value is None or not _close(value, have):
            out.append((name, value, have))
    return out


def _digest(rows: list[dict[str, Any]], mia: Optional[list[dict[str, Any]]]) -> str:
    item_fields = ("split", "id", "task", "kind", "generation", "regurgitation", "rouge1_recall", "knowledge",
                   "answer_loss")
    mia_fields = ("set", "id", "n_tokens", "loss", "zlib_entropy", "min_k", "min_k_pp")
    content = {"items": [[r.get(f) for f in item_fields] for r in rows],
               "mia": None if mia is None else [[r.get(f) for f in mia_fields] for r in mia]}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def _recompute(scored: list[dict[str, Any]], mia_metrics: Optional[dict[str, Optional[float]]],
               mcq: dict[str, Optional[float]]) -> dict[str, Optional[float]]:
    """The record's metrics from its scored rows (:func:`metrics.compute_metrics`) and MIA AUCs."""
    from metrics import compute_metrics, final_score, mia_score

    metrics = compute_metrics(scored, None, rescore=False, **mcq)
    if mia_metrics is not None:
        metrics.update(mia_metrics)
        metrics["mia_score"] = mia_score(metrics["mia_auc"]) if metrics["mia_auc"] is not None else None
        for name, accuracy in (("final_score", "mmlu"), ("final_score_utility", "utility")):
            metrics[name] = final_score(metrics["task_aggregate"], metrics[accuracy], metrics["mia_score"])
    return metrics


def per_sample_problem(run_dir: Path, result: EvalResult) -> tuple[Optional[PerSample], Optional[str]]:
    """Read the run's per-sample files and check them against its record (see the module docstring)."""
    from harness.core.errors import DataError
    from metrics import MODES, read_mia_rows, read_samples, score_rows, trusted_rows

    samples_path = _run_file(run_dir, result, SAMPLES_FILE)
    mia_path = _run_file(run_dir, result, MIA_FILE)
    if not samples_path.is_file():
        return None, None
    if result.settings.get("benchmark", "lume") != "lume":
        return None, _benchmark_rows_problem(result, samples_path, mia_path)
    try:
        rows = read_samples(samples_path)
        mia = read_mia_rows(mia_path) if mia_path.is_file() else None
    except DataError as exc:
        return None, f"its per-sample files cannot be read: {exc}"
    mode = scoring_mode(result)
    if mode not in MODES:
        return None, f"settings.mode {mode!r} is not a scoring mode ({', '.join(MODES)})"
    mcq = {"mmlu": result.metrics.get("mmlu"), "utility": result.metrics.get("utility")}
    try:
        try:
            scored = trusted_rows(rows)
        except DataError:  # rows without their stored scores: score them in the record's mode
            scored = score_rows(rows, mode=mode)
        problem = _row_counts(scored, mia, result.benchmark.counts)
        if problem is not None:
            return None, problem
        mia_metrics = None
        if mia is not None:
            from .bootstrap import mia_aucs

            mia_metrics = mia_aucs(mia)
        wrong = _mismatches(_recompute(scored, mia_metrics, mcq), result.metrics, mia is not None)
        if wrong and any(r.get("generation") is not None for r in rows):
            # The record may have been re-scored (``unlearnbench score --write``) in its mode while the
            # rows keep the scores they were written with: the generations decide.
            rescored = score_rows(rows, mode=mode)
            if not _mismatches(_recompute(rescored, mia_metrics, mcq), result.metrics, mia is not None):
                scored, wrong = rescored, []
    except (DataError, ValueError) as exc:
        return None, f"its per-sample files cannot be scored: {exc}"
    if wrong:
        name, value, have = wrong[0]
        got = "no value" if value is None else f"{value:.6g}"
        more = f" (and {len(wrong) - 1} more metric(s))" if len(wrong) > 1 else ""
        files = SAMPLES_FILE + (f"/{MIA_FILE}" if mia is not None else "")
        return None, (f"its per-sample files disagree with it: {name} recomputed from {files} is {got}, the record "
                      f"says {have:.6g}{more}; the folder mixes files of different runs (an interrupted rerun?)")
    mcq_rows, problem = mcq_rows_problem(run_dir, result)
    if problem is not None:
        return None, problem
    return PerSample(rows=scored, mia=mia, digest=_digest(scored, mia), mcq=mcq_rows), None


_LETTERS = ("A", "B", "C", "D")


def _mcq_row_problem(row: Any) -> Optional[str]:
    if not isinstance(row, dict):
        return "not a JSON object"
    lls = row.get("loglikelihoods")
    if not (isinstance(row.get("subject"), str) and isinstance(row.get("doc_id"), int)
            and isinstance(lls, list) and lls and all(isinstance(x, (int, float)) for x in lls)
            and row.get("answer") in _LETTERS[:len(lls)] and row.get("prediction") in _LETTERS[:len(lls)]
            and row.get("correct") in (0, 1)):
        return ("expected subject (text), doc_id (integer), loglikelihoods (numbers, one per choice), answer and "
                "prediction (choice letters), correct (0 or 1)")
    best = max(range(len(lls)), key=lambda i: (lls[i], -i))
    if _LETTERS[best] != row["prediction"] or int(row["prediction"] == row["answer"]) != row["correct"]:
        return "its prediction is not the first maximum of its log-likelihoods, or correct does not match it"
    return None


def mcq_rows_problem(run_dir: Path, result: EvalResult) -> tuple[dict[str, list[dict[str, Any]]], Optional[str]]:
    """The per-question MCQ rows the record lists in ``files`` (``mmlu``, ``utility``), checked: one row
    per scored question, well-formed, and their micro accuracy is the record's metric."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name in ("mmlu", "utility"):
        rel = result.files.get(name)
        if rel is None:
            continue
        path = run_dir / rel
        try:
            rows = fileio.read_jsonl(path)
        except (OSError, ValueError) as exc:
            return {}, f"its {rel} cannot be read: {exc}"
        for line, row in enumerate(rows, 1):
            problem = _mcq_row_problem(row)
            if problem is not None:
                return {}, f"{rel} line {line}: {problem}"
        info = result.mmlu if name == "mmlu" else result.utility
        value = result.metrics.get(name)
        if info is not None and info.n_questions is not None and len(rows) != info.n_questions:
            return {}, f"its {rel} has {len(rows)} rows but the record scored {info.n_questions} questions"
        got = sum(r["correct"] for r in rows) / len(rows) if rows else None
        if value is None or got is None or not _close(got, value):
            return {}, (f"its {rel} gives {name} {got!r}, the record says {value!r}; the folder mixes files of "
                        "different runs (an interrupted rerun?)")
        out[name] = rows
    return out, None


def _benchmark_rows_problem(result: EvalResult, samples_path: Path, mia_path: Path) -> Optional[str]:
    """Another benchmark's run: its own scoring recomputes the record's metrics from the run's files
    (no bootstrap intervals: those resample LUME's rows)."""
    from harness.core.errors import UnlearnbenchError
    from harness.core.registry import BENCHMARKS

    try:
        task = BENCHMARKS.get(result.settings["benchmark"])
        rows = task.read_samples(samples_path)
        docs = task.read_documents(mia_path) if mia_path.is_file() else None
        mcq = {"mmlu": result.metrics.get("mmlu"), "utility": result.metrics.get("utility")}
        metrics = task.rescore(rows, docs, mcq, scoring_mode(result), progress=False)
    except (UnlearnbenchError, ValueError, KeyError) as exc:
        return f"its per-sample files cannot be scored by benchmark {result.settings['benchmark']!r}: {exc}"
    wrong = [name for name, value in metrics.items()
             if value is not None and (result.metrics.get(name) is None or not _close(value, result.metrics[name]))]
    if wrong:
        return (f"its per-sample files disagree with it: {wrong[0]} recomputed from {SAMPLES_FILE} is "
                f"{metrics[wrong[0]]:.6g}, the record says {result.metrics.get(wrong[0])}; the folder mixes files of "
                "different runs (an interrupted rerun?)")
    return None


# -- compatibility ----------------------------------------------------------------------------------------
def _mcq_key(info) -> Optional[tuple]:
    if info is None:
        return None
    return (info.protocol, info.num_fewshot, info.full, info.limit, info.prompt_format)


def compatibility_key(result: EvalResult, board: Board) -> tuple:
    """What must be equal for two records to be ranked together: schema version, benchmark content
    hash, and the protocol of every MCQ score (MMLU / utility) the board uses — protocol, shots, full
    or limited, and prompt format (``letters`` and ``cloze`` accuracies are different quantities)."""
    key: list = [("schema", result.schema_version), ("benchmark", result.benchmark.content_hash)]
    for name in board.uses_mcq:
        info = result.mmlu if name == "mmlu" else result.utility
        key.append((name, _mcq_key(info)))
    return tuple(key)


def describe_key(key: tuple, example: EvalResult) -> str:
    parts = []
    for name, value in key:
        if name == "schema":
            parts.append(f"schema {value}")
        elif name == "benchmark":
            parts.append(f"benchmark {example.benchmark.name!r} (hash {value[:12]})")
        elif value is None:
            parts.append(f"{name}: no protocol recorded")
        else:
            protocol, shots, full, limit, prompt_format = value
            parts.append(f"{name}: protocol {protocol}, {shots}-shot, {prompt_format} prompts, "
                         f"{'full' if full else f'limited ({limit}/subject)'}")
    return "; ".join(parts)


def key_slug(key: tuple, example: EvalResult) -> str:
    """A folder name for one compatible group (``--split-by-benchmark``)."""
    parts = [re.sub(r"[^A-Za-z0-9_.-]+", "-", example.benchmark.name).strip("-.") or "benchmark",
             re.sub(r"[^A-Za-z0-9]+", "", example.benchmark.content_hash)[:8] or "nohash"]
    for name, value in key[2:]:
        if value is not None:
            protocol, shots, full, limit, prompt_format = value
            parts.append(re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{name}-{protocol}-{shots}shot-{prompt_format}")
                         + ("" if full else f"-limit{limit}"))
    return "_".join(parts)


def partition(records: list[LoadedRecord], board: Board) -> dict[tuple, list[LoadedRecord]]:
    """Records grouped by :func:`compatibility_key`, in first-seen order."""
    groups: dict[tuple, list[LoadedRecord]] = {}
    for rec in records:
        groups.setdefault(compatibility_key(rec.result, board), []).append(rec)
    return groups
