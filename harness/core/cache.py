"""A content-addressed cache of per-sample evaluation outputs (generations, losses).

The key of an entry is the sha256 of everything that decides its content: the model's weight hash,
its config and tokenizer hashes, the benchmark's content hash, the evaluation settings that affect
that phase, the harness version and the phase name. Re-evaluating an unchanged model reuses the
entry; a model with any changed weight has another weight hash, hence another key, so it can never
be served stale numbers. Entries are JSON files written atomically; an unreadable entry is a miss.

The batch size is deliberately not part of the key: batched outputs equal one-at-a-time outputs (see
``harness.backends.hf``), so entries are shared across batch sizes.

Location: ``--cache-dir``, else ``$UNLEARNBENCH_CACHE``, else ``~/.cache/unlearnbench/eval``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from harness.core import fileio
from harness.core.records import harness_version

log = logging.getLogger("unlearnbench.cache")

ENV_VAR = "UNLEARNBENCH_CACHE"
CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/unlearnbench/eval").expanduser()


def cache_key(phase: str, model_identity: dict[str, str], benchmark_hash: str, settings: dict[str, Any]) -> str:
    """sha256 over the phase, model identity (weights, config, tokenizer), benchmark, settings, version."""
    payload = {
        "format": CACHE_FORMAT,
        "phase": phase,
        "model": model_identity,
        "benchmark": benchmark_hash,
        "settings": settings,
        "harness_version": harness_version(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class EvalCache:
    """Per-phase outputs stored as ``<dir>/<key[:2]>/<key>.json``. ``enabled=False`` makes every lookup
    a miss and every store a no-op (``--no-cache``)."""

    def __init__(self, directory: str | Path | None = None, enabled: bool = True):
        self.directory = Path(directory).expanduser() if directory else default_cache_dir()
        self.enabled = enabled
        self.hits: list[str] = []
        self.misses: list[str] = []

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, phase: str, key: str, n_expected: int | None = None) -> Any | None:
        if not self.enabled:
            return None
        path = self._path(key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            self.misses.append(phase)
            return None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            log.warning("ignoring unreadable cache entry %s (%s)", path, exc)
            self.misses.append(phase)
            return None
        value = entry.get("value") if isinstance(entry, dict) and entry.get("key") == key else None
        if value is None or (n_expected is not None and (not isinstance(value, list) or len(value) != n_expected)):
            log.warning("ignoring malformed cache entry %s", path)
            self.misses.append(phase)
            return None
        self.hits.append(phase)
        log.info("%s: reusing cached outputs (%s)", phase, path)
        return value

    def put(self, phase: str, key: str, value: Any) -> None:
        if not self.enabled:
            return
        try:
            fileio.write_json(self._path(key), {"key": key, "phase": phase, "value": value})
        except OSError as exc:  # a read-only or full cache must not fail the evaluation
            log.warning("could not write cache entry for %s (%s)", phase, exc)


__all__ = ["EvalCache", "cache_key", "default_cache_dir", "ENV_VAR"]
