"""Any lm-evaluation-harness task as metric columns (``--lm-eval-tasks wmdp_bio,arc_easy``).

The tasks run on the in-memory model (lm-eval's ``HFLM`` wrapping it, as for MMLU), beside whatever
benchmark is evaluated. Each metric lm-eval marks "higher is better" becomes a result metric
``lm_eval/<task>/<metric>`` (``lm_eval/arc_easy/acc``, ``lm_eval/arc_easy/acc_norm``; a non-default
filter adds ``/<filter>``); metrics lm-eval marks lower-is-better (perplexities) are kept in the
record's settings only (as do metrics lm-eval declares no direction for), so a board never ranks them
the wrong way. The protocol is recorded as
``settings["lm_eval_tasks"]``: lm-eval's version, and per task its version, shots, limit and the
other metrics.

lm-eval loads each task's data set with ``datasets``; offline, a task whose data is not in the
Hugging Face cache cannot run, and :func:`check_lm_eval_tasks` says so — naming the task — before
any model work. ``include`` adds a folder of lm-eval task YAML files (lm-eval's ``include_path``),
e.g. tasks over local data files.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from harness.core.errors import ConfigError, DataError


@dataclass(frozen=True)
class LMEvalTasksSpec:
    tasks: tuple[str, ...]
    num_fewshot: int | None = None
    """None: each task's own default."""
    limit: int | None = None
    """At most this many documents per task (recorded: not the full task)."""
    batch_size: int = 8
    include: str | None = None
    """A folder of extra lm-eval task YAML files."""


def parse_task_list(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise ConfigError(f"--lm-eval-tasks expects comma-separated lm-eval task names, got {text!r}")
    return names


def _task_manager(spec: LMEvalTasksSpec):
    if spec.include is not None and not Path(spec.include).is_dir():
        raise DataError("not a folder of lm-eval task files", spec.include)
    return _indexed_tasks(str(Path(spec.include).resolve()) if spec.include else None)


@functools.lru_cache(maxsize=4)
def _indexed_tasks(include: str | None):
    """lm-eval's task index (it reads every task YAML it ships: seconds), built once per process; the
    pre-flight check and the run share it."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include) if include else TaskManager()


def check_lm_eval_tasks(spec: LMEvalTasksSpec):
    """Resolve the task names and load their data now (no model): an unknown name, or a data set that
    cannot be had offline, is one error naming the task. Returns lm-eval's task manager."""
    import difflib
    import logging

    from lm_eval.tasks import get_task_dict

    if spec.limit is not None and spec.limit < 1:
        raise ConfigError(f"--lm-eval-limit must be at least 1, got {spec.limit}")
    if spec.num_fewshot is not None and spec.num_fewshot < 0:
        raise ConfigError(f"--lm-eval-fewshot must be >= 0, got {spec.num_fewshot}")
    manager = _task_manager(spec)
    known = set(manager.all_tasks)
    for name in spec.tasks:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=3)
            raise ConfigError(f"lm-eval has no task {name!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
    for name in spec.tasks:
        level = logging.getLogger("lm-eval").level
        try:
            get_task_dict([name], manager)
        except Exception as exc:  # datasets raises several types offline (ConnectionError, FileNotFoundError, …)
            raise DataError(f"lm-eval task {name!r}: its data set cannot be loaded ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); offline, an lm-eval task needs "
                            "its data in the Hugging Face cache (or a local task file via --lm-eval-include)") from None
        finally:
            logging.getLogger("lm-eval").setLevel(level)
    return manager


def run_lm_eval_tasks(model, tokenizer, spec: LMEvalTasksSpec) -> tuple[dict[str, float], dict[str, Any]]:
    """(metrics, protocol) of the tasks on the in-memory model."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    manager = check_lm_eval_tasks(spec)
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        device = str(next(model.parameters()).device)
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=spec.batch_size, device=device)
        out = lm_eval.simple_evaluate(model=lm, tasks=list(spec.tasks), task_manager=manager,
                                      num_fewshot=spec.num_fewshot, limit=spec.limit, bootstrap_iters=0,
                                      random_seed=None, numpy_random_seed=None, torch_random_seed=None)
    finally:
        if was_training:
            model.train()
    return lm_eval_columns(out or {}, spec)


def lm_eval_columns(out: Mapping[str, Any], spec: LMEvalTasksSpec) -> tuple[dict[str, float], dict[str, Any]]:
    """(metrics, protocol) from ``lm_eval.simple_evaluate``'s output: every finite metric lm-eval marks
    higher-is-better becomes ``lm_eval/<task>/<metric>[/<filter>]``; standard errors are dropped; the
    other metrics (lower-is-better, non-finite) are kept in the protocol only."""
    from harness.core.records import _version

    metrics: dict[str, float] = {}
    protocol: dict[str, Any] = {"lm_eval_version": _version("lm_eval") or _version("lm-eval"),
                                "include": spec.include, "tasks": {}}
    for task, values in out.get("results", {}).items():
        better = out.get("higher_is_better", {}).get(task, {})
        other = {}
        for key, value in values.items():
            metric, _, filt = key.partition(",")
            if metric == "alias" or metric.endswith("_stderr") or isinstance(value, bool) \
                    or not isinstance(value, (int, float)):
                continue
            name = f"lm_eval/{task}/{metric}" + (f"/{filt}" if filt and filt != "none" else "")
            if better.get(metric, False) is True and math.isfinite(value):
                metrics[name] = float(value)
            else:
                other[name] = value if math.isfinite(value) else str(value)
        protocol["tasks"][task] = {"version": out.get("versions", {}).get(task),
                                   "num_fewshot": out.get("n-shot", {}).get(task), "limit": spec.limit,
                                   "full": spec.limit is None, "other_metrics": other or None}
    if not metrics:
        raise RuntimeError(f"lm-eval returned no higher-is-better metric for {', '.join(spec.tasks)}")
    return metrics, protocol


__all__ = ["LMEvalTasksSpec", "check_lm_eval_tasks", "lm_eval_columns", "parse_task_list", "run_lm_eval_tasks"]
