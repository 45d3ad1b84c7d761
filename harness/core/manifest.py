"""A run's manifest (``manifest.json``): what the run depends on, and what it wrote.

Written last into a run's staging folder (:mod:`harness.core.transaction`), it records

- ``inputs``: content hashes of everything the run's numbers depend on -- the model (every file of
  its folder, and of the base model of a LoRA adapter), the benchmark (its records' content hash),
  MCQ sets, parent runs (their manifests' hashes);
- ``settings``: the hash of the run's settings (what ``config.json`` records, minus what cannot
  change a number);
- ``code``: the harness version, the git commit when there is one, and a hash of its source files;
- ``files``: sha256, size and (for ``.jsonl``) row count of every file the run wrote.

Two questions are answered from it. :func:`verify` -- do a folder's files belong together (each
file is the one the run wrote, nothing from another run was added)? It returns the reason when they
do not. :func:`compare_inputs` -- is a finished run the same run as the one about to be made (same
inputs by content, same settings, same code)? "Finished, skip" means the manifest verifies and
matches, never that a path exists.

Hashing is content hashing (sha256 of every byte), made cheap by a cache keyed by each file's
``(device, inode, size, mtime_ns, ctime_ns)``: an unchanged file is not read again, and any write
to a file changes its ctime, which no user tool can set back -- so the cache cannot be fooled by a
file rewritten with its old modification time. The cache is an SQLite file
(``$UNLEARNBENCH_HASH_CACHE``, default ``~/.cache/unlearnbench/file-hashes.sqlite``); where it
cannot be written, hashes are cached for the process only.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import ManifestError

MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1
#: Files a run folder may hold that a consumer reads: present but not in the manifest means they
#: came from somewhere else.
RUN_FILES = ("config.json", "result.json", "samples.jsonl", "mia.jsonl", "train_log.jsonl")
#: Folders whose every file belongs to the run (a saved model, snapshots, checkpoints).
RUN_FOLDERS = ("model", "snapshots", "checkpoints")
_CHUNK = 1 << 20
#: Files modified less than this long ago are not cached (see :func:`file_sha256`).
_RACY_NS = 2_000_000_000


# ------------------------------------------------------------------------------------------------
# content hashes, cached by file identity
class _HashCache:
    def __init__(self) -> None:
        self.memory: dict[tuple, str] = {}
        self.lock = threading.Lock()
        self.db: sqlite3.Connection | None = None
        self.opened = False

    def _open(self) -> None:
        self.opened = True
        path = os.environ.get("UNLEARNBENCH_HASH_CACHE") or str(Path.home() / ".cache" / "unlearnbench" /
                                                                "file-hashes.sqlite")
        if path in ("", "0", "off"):
            return
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS hashes (key TEXT PRIMARY KEY, sha256 TEXT NOT NULL)")
            self.db = db
        except (sqlite3.Error, OSError):
            self.db = None

    def get(self, key: tuple) -> str | None:
        with self.lock:
            if key in self.memory:
                return self.memory[key]
            if not self.opened:
                self._open()
            if self.db is None:
                return None
            try:
                row = self.db.execute("SELECT sha256 FROM hashes WHERE key = ?", (repr(key),)).fetchone()
            except sqlite3.Error:
                return None
            if row:
                self.memory[key] = row[0]
            return row[0] if row else None

    def put(self, key: tuple, digest: str) -> None:
        with self.lock:
            self.memory[key] = digest
            if self.db is not None:
                try:
                    self.db.execute("INSERT OR REPLACE INTO hashes VALUES (?, ?)", (repr(key), digest))
                except sqlite3.Error:
                    pass


_CACHE = _HashCache()


def _identity(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def file_sha256(path: str | os.PathLike) -> tuple[str, int]:
    """``(sha256 hex, size)`` of a file's content (symlinks followed), from the cache when unchanged."""
    path = os.fspath(path)
    st = os.stat(path)
    key = _identity(st)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached, st.st_size
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(_CHUNK)
            if not block:
                break
            h.update(block)
    digest = h.hexdigest()
    after = os.stat(path)
    # Cached only when unchanged while read and not "racy": file times have a coarse clock (a few
    # ms), so a same-size rewrite within the same tick would keep the identity -- as git does with
    # its index, a file modified in the last seconds is hashed again next time.
    recent = time.time_ns() - max(after.st_mtime_ns, after.st_ctime_ns) < _RACY_NS
    if _identity(after) == key and not recent:
        _CACHE.put(key, digest)
    return digest, st.st_size


def jsonl_rows(path: str | os.PathLike) -> int:
    """Non-blank lines of a JSON-lines file (what readers count as records)."""
    n = 0
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                n += 1
    return n


def _skip(name: str) -> bool:
    from .transaction import LEFTOVER

    return name.startswith(".") or bool(LEFTOVER.match(name))


def folder_files(folder: str | os.PathLike) -> list[str]:
    """Relative paths (POSIX) of the regular files under ``folder``; hidden names and leftovers skipped."""
    root = Path(os.fspath(folder))
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not _skip(d))
        for name in sorted(filenames):
            if _skip(name):
                continue
            full = Path(dirpath) / name
            if full.is_file():
                out.append(full.relative_to(root).as_posix())
    return sorted(out)


def describe_file(path: Path) -> dict[str, Any]:
    digest, size = file_sha256(path)
    entry: dict[str, Any] = {"sha256": digest, "bytes": size}
    if path.suffix == ".jsonl":
        entry["rows"] = jsonl_rows(path)
    return entry


def tree_fingerprint(folder: str | os.PathLike, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """``{"sha256": …, "files": {relative path: sha256}}`` of every file under ``folder``."""
    root = Path(os.fspath(folder))
    excluded = set(exclude)
    files = {rel: file_sha256(root / rel)[0] for rel in folder_files(root) if rel not in excluded}
    h = hashlib.sha256()
    for rel, digest in sorted(files.items()):
        h.update(f"{rel}\0{digest}\n".encode("utf-8"))
    return {"sha256": h.hexdigest(), "files": files}


# ------------------------------------------------------------------------------------------------
# what a run depends on
def model_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """Content hash of a model folder (every file), with the base model's for a LoRA adapter folder.

    A name that is not a local folder (a hub id) is recorded as such: it cannot be hashed here.
    """
    p = Path(os.fspath(path)).expanduser()
    if not p.is_dir():
        return {"path": str(path), "sha256": None, "note": "not a local folder; content not hashed"}
    fp = tree_fingerprint(p)
    out: dict[str, Any] = {"path": str(p.resolve()), "sha256": fp["sha256"], "files": fp["files"]}
    adapter = p / "adapter_config.json"
    if adapter.is_file():
        try:
            base = json.loads(adapter.read_text(encoding="utf-8")).get("base_model_name_or_path")
        except (OSError, ValueError):
            base = None
        if base:
            out["base"] = model_fingerprint(base)
            h = hashlib.sha256((fp["sha256"] + "\0" + str(out["base"].get("sha256"))).encode())
            out["sha256"] = h.hexdigest()
    return out


def folder_input(path: str | os.PathLike | None) -> dict[str, Any] | None:
    """A data folder's fingerprint for a manifest: its path, file count and one hash over its files."""
    if path is None:
        return None
    p = Path(os.fspath(path)).expanduser()
    if not p.exists():
        return {"path": str(path), "sha256": None, "note": "not a local path; content not hashed"}
    if p.is_file():
        return {"path": str(p.resolve()), "sha256": file_sha256(p)[0]}
    fp = tree_fingerprint(p)
    return {"path": str(p.resolve()), "sha256": fp["sha256"], "files": len(fp["files"])}


def benchmark_input(task: Any) -> dict[str, Any]:
    """A loaded benchmark's fingerprint: its registered name and the content hash of its records."""
    data = getattr(task, "data", None)
    return {"name": getattr(task, "name", None), "sha256": getattr(task, "content_hash", None),
            "path": getattr(data, "path", None)}


def run_input(path: str | os.PathLike) -> dict[str, Any]:
    """A parent run's fingerprint: the hash of its manifest (which hashes everything in it)."""
    p = Path(os.fspath(path))
    try:
        digest = manifest_sha256(p)
    except OSError:
        digest = None
    return {"path": str(p.resolve()), "sha256": digest}


def canonical_hash(obj: Any) -> str:
    """sha256 of ``obj`` as canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


#: The source of the code that computes numbers (not tests, not docs).
_SOURCE_PACKAGES = ("harness", "metrics", "baselines", "leaderboards")


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """``{"unlearnbench": version, "git_sha": commit or None, "source_sha256": …}``.

    The source hash covers every ``.py`` file of the four packages as imported, so an edited
    checkout (uncommitted changes, an editable install) is told apart from the commit it sits on.
    """
    from importlib import metadata

    try:
        version = metadata.version("unlearnbench")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    h = hashlib.sha256()
    root = Path(__file__).resolve().parents[2]
    for package in _SOURCE_PACKAGES:
        base = root / package
        for path in sorted(base.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            h.update(path.relative_to(root).as_posix().encode() + b"\0")
            h.update(path.read_bytes())
            h.update(b"\n")
    from .records import git_sha

    return {"unlearnbench": version, "git_sha": git_sha(), "source_sha256": h.hexdigest()}


# ------------------------------------------------------------------------------------------------
# building, reading, verifying
def build_manifest(folder: str | os.PathLike, *, command: str, inputs: Mapping[str, Any],
                   settings: Mapping[str, Any] | None = None, settings_sha256: str | None = None) -> dict[str, Any]:
    """The manifest of the run in ``folder`` (every file in it described; manifest.json excluded).

    ``inputs`` are already-computed fingerprints (:func:`model_fingerprint`, a benchmark's content
    hash, parents' manifest hashes); ``settings`` what decides the run's numbers.
    """
    root = Path(os.fspath(folder))
    files = {rel: describe_file(root / rel) for rel in folder_files(root) if rel != MANIFEST_FILE}
    return {
        "manifest_version": MANIFEST_VERSION,
        "command": command,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "code": code_version(),
        "inputs": dict(inputs),
        "settings_sha256": settings_sha256 or canonical_hash(dict(settings or {})),
        "files": files,
    }


def write_manifest(folder: str | os.PathLike, manifest: Mapping[str, Any]) -> Path:
    from .fileio import write_json

    return write_json(Path(os.fspath(folder)) / MANIFEST_FILE, dict(manifest))


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    root = Path(os.fspath(folder))
    path = root / MANIFEST_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(root, f"no {MANIFEST_FILE}: not the complete output of a run (interrupted, "
                                  "or written by an unlearnbench without run manifests)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(root, f"{MANIFEST_FILE} is unreadable ({type(exc).__name__}: {exc})") from exc
    if not isinstance(raw, dict) or raw.get("manifest_version") != MANIFEST_VERSION or \
            not isinstance(raw.get("files"), dict):
        raise ManifestError(root, f"{MANIFEST_FILE} is not a version-{MANIFEST_VERSION} run manifest")
    return raw


def manifest_sha256(folder: str | os.PathLike) -> str:
    """The hash a child run records for a parent run (its manifest's bytes)."""
    return file_sha256(Path(os.fspath(folder)) / MANIFEST_FILE)[0]


def verify(folder: str | os.PathLike, only: Iterable[str] | None = None) -> str | None:
    """Why the files in ``folder`` do not belong together, or ``None`` when they do.

    Every file the manifest lists (or, with ``only``, the listed files and folders among them that a
    consumer is about to read) must exist with the recorded size, sha256 and row count; a run file
    (:data:`RUN_FILES`, or a file under :data:`RUN_FOLDERS`) that the manifest does not list came
    from elsewhere. Extra files a later analysis wrote beside the run (plots, tables) are allowed.
    """
    root = Path(os.fspath(folder))
    try:
        manifest = read_manifest(root)
    except ManifestError as exc:
        return exc.reason
    recorded: dict[str, dict] = manifest["files"]
    wanted = None if only is None else tuple(only)

    def selected(rel: str) -> bool:
        if wanted is None:
            return True
        return any(rel == w or rel.startswith(w.rstrip("/") + "/") for w in wanted)

    for rel, entry in sorted(recorded.items()):
        if not selected(rel):
            continue
        path = root / rel
        if not path.is_file():
            return f"{rel} is missing (the manifest lists it: the folder is incomplete)"
        try:
            size = path.stat().st_size
            if size != entry.get("bytes"):
                return (f"{rel} has {size} bytes, the manifest says {entry.get('bytes')}: it is not the file this "
                        "run wrote (truncated, replaced, or from another run)")
            if "rows" in entry:
                rows = jsonl_rows(path)
                if rows != entry["rows"]:
                    return f"{rel} has {rows} rows, the manifest says {entry['rows']}"
            digest, _ = file_sha256(path)
        except OSError as exc:
            return f"{rel} cannot be read ({exc.strerror or exc})"
        if digest != entry.get("sha256"):
            return f"{rel} does not match the manifest (sha256 {digest[:12]}…, recorded {str(entry.get('sha256'))[:12]}…): " \
                   "it is not the file this run wrote"
    present = folder_files(root)
    for rel in present:
        if rel in recorded or rel == MANIFEST_FILE or not selected(rel):
            continue
        top = rel.split("/", 1)[0]
        if rel in RUN_FILES or top in RUN_FOLDERS:
            return f"{rel} is not part of this run (the manifest does not list it): it came from another run"
    return None


def compare_inputs(manifest: Mapping[str, Any], inputs: Mapping[str, Any], settings: Mapping[str, Any] | None,
                   code: Mapping[str, Any] | None = None) -> list[str]:
    """What differs between a finished run's manifest and a run about to be made (empty: the same run)."""
    diffs: list[str] = []
    old_inputs = manifest.get("inputs", {})
    for name in sorted(set(old_inputs) | set(inputs)):
        old, new = _digest(old_inputs.get(name)), _digest(inputs.get(name))
        if old != new:
            diffs.append(f"{name} changed (content {_short(old)} -> {_short(new)})")
    if settings is not None and manifest.get("settings_sha256") != canonical_hash(dict(settings)):
        diffs.append("settings differ")
    code = dict(code or code_version())
    old_code = manifest.get("code", {})
    if (old_code.get("unlearnbench"), old_code.get("source_sha256")) != (code.get("unlearnbench"),
                                                                         code.get("source_sha256")):
        diffs.append(f"made by other code (unlearnbench {old_code.get('unlearnbench')}, source "
                     f"{_short(old_code.get('source_sha256'))}; now {code.get('unlearnbench')}, "
                     f"{_short(code.get('source_sha256'))})")
    return diffs


def _digest(value: Any) -> Any:
    if isinstance(value, Mapping):
        return value.get("sha256")
    if isinstance(value, (list, tuple)):
        return [_digest(v) for v in value]
    return value


def _short(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return "none" if value is None else str(value)[:12]


__all__ = ["MANIFEST_FILE", "ManifestError", "folder_input", "benchmark_input", "run_input", "build_manifest", "write_manifest", "read_manifest", "verify",
           "compare_inputs", "model_fingerprint", "tree_fingerprint", "file_sha256", "jsonl_rows", "code_version",
           "canonical_hash", "manifest_sha256", "RUN_FILES", "RUN_FOLDERS"]
