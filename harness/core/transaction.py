"""A run folder is written as a transaction: all of it, or none of it.

A command never writes into its output folder. It writes into a fresh, clearly named sibling,
``.RUN.partial-<pid>-<stamp>`` (hidden, and saying what it is), and only when every file is there
(and fsynced) is that sibling renamed into place. An interrupted command (SIGINT, SIGKILL, a full
disk, an exception) therefore leaves the previous complete run untouched -- or nothing, when there
was none -- plus at most that leftover, which the next transaction on the same folder removes.

Replacing an existing run is atomic where the kernel allows it: on Linux the staging folder and the
old run are swapped with ``renameat2(RENAME_EXCHANGE)`` (one system call; a reader sees either the
old run or the new one), then the old one, now in the staging name, is deleted. Elsewhere (or on a
file system without exchange) the old run is first renamed aside to ``.RUN.old-<pid>-<stamp>``, the
new one renamed in, the old one deleted; a crash between the two renames leaves no folder under
the run's name but both clearly named siblings, and the next transaction on that folder rolls
forward (the staged run is complete: it holds a manifest) or back (the old run returns).

Before anything is written, :func:`check_output_path` refuses an output that is an existing file,
that lies under a file, that is or contains an input (model, benchmark, parent run), or that lies
inside one; and a transaction refuses to replace an existing non-empty folder that is not a run
(``evaluate --out ~`` must not replace a home folder).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from .errors import DiskFullError, RunFolderError

log = logging.getLogger("unlearnbench.transaction")

#: Files whose presence marks a folder as a run folder (safe to replace with a new run).
RUN_MARKERS = ("manifest.json", "config.json", "result.json")
#: ``.NAME.partial-PID-STAMP`` (a transaction being written) and ``.NAME.old-PID-STAMP`` (an old run
#: renamed aside during a non-atomic swap).
LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>partial|old)-(?P<pid>\d+)-(?P<stamp>\d+)$")
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


# ------------------------------------------------------------------------------------------------
# the output path, checked before any work
def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def _inside(child: Path, parent: Path) -> bool:
    return child != parent and parent in child.parents


def check_output_path(out: str | os.PathLike, inputs: Mapping[str, str | os.PathLike | Sequence | None] = (),
                      *, option: str = "--out") -> Path:
    """Refuse an output folder that cannot hold a run without destroying something; return its real path.

    ``inputs`` maps a description (``"model"``, ``"benchmark"``, ``"parent run"``) to a path or a list
    of paths (``None`` entries are ignored). Refused: ``out`` is an existing file (or lies under one);
    ``out`` is an input; ``out`` contains an input (replacing it would delete the input); ``out`` lies
    inside an input (a run written into a model or benchmark folder changes its content).
    """
    given = Path(os.fspath(out))
    real = _real(out)
    if real.exists() and not real.is_dir():
        raise RunFolderError(f"{option} {given} is an existing file; expected a folder for the run "
                             "(a new one, or a run folder to replace)")
    for ancestor in real.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise RunFolderError(f"{option} {given}: {ancestor} is a file, not a folder")
            break
    for what, value in dict(inputs).items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for p in values:
            if p is None or str(p) == "":
                continue
            candidate = Path(os.fspath(p)).expanduser()
            if not candidate.exists():
                continue  # a hub name or a missing path: its own loader reports it
            ip = _real(candidate)
            if real == ip:
                raise RunFolderError(f"{option} {given} is the {what} ({p}); write the run to another folder")
            if _inside(ip, real):
                raise RunFolderError(f"{option} {given} contains the {what} {p}: replacing the folder with the run "
                                     "would delete it; write the run to another folder")
            if _inside(real, ip):
                raise RunFolderError(f"{option} {given} is inside the {what} {p}; runs are not written into their "
                                     "inputs (it would change them); write the run to another folder")
    return real


def looks_like_run(folder: Path, markers: Sequence[str] = RUN_MARKERS) -> bool:
    """True for an empty folder or one holding a run's marker files (safe to replace with a new run)."""
    try:
        names = [p.name for p in folder.iterdir()]
    except FileNotFoundError:
        return True
    real = [n for n in names if not LEFTOVER.match(n) and not n.startswith(".")]
    return not real or any(m in real for m in markers)


# ------------------------------------------------------------------------------------------------
# leftovers of interrupted transactions
def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leftovers(final: Path) -> list[tuple[Path, str, int]]:
    """``(path, kind, pid)`` of every leftover sibling belonging to ``final`` (oldest first)."""
    out = []
    try:
        siblings = list(final.parent.iterdir())
    except FileNotFoundError:
        return out
    for p in siblings:
        m = LEFTOVER.match(p.name)
        if m and m.group("name") == final.name:
            out.append((p, m.group("kind"), int(m.group("pid")), int(m.group("stamp"))))
    return [(p, k, pid) for p, k, pid, _ in sorted(out, key=lambda t: t[3])]


def _complete(staged: Path) -> bool:
    """A staged folder is complete once its manifest was written (the transaction's last file)."""
    return (staged / "manifest.json").is_file()


def recover(final: str | os.PathLike) -> list[str]:
    """Finish or undo what interrupted transactions on ``final`` left behind; return what was done.

    Leftovers of live processes (another transaction running now) are left alone. When ``final`` is
    missing but an old run was renamed aside (a crash between the two renames of a non-atomic swap),
    a complete staged run is rolled forward, else the old run is put back.
    """
    final = Path(os.fspath(final))
    done: list[str] = []
    dead = [(p, kind) for p, kind, pid in leftovers(final) if not _pid_alive(pid)]
    if not final.exists():
        staged = [p for p, kind in dead if kind == "partial" and _complete(p)]
        olds = [p for p, kind in dead if kind == "old"]
        if olds:
            source = staged[-1] if staged else olds[-1]
            os.rename(source, final)
            _fsync_dir(final.parent)
            done.append(f"{'rolled forward' if staged else 'restored'} {final} from {source.name}")
            dead = [(p, k) for p, k in dead if p != source]
    for p, _ in dead:
        shutil.rmtree(p, ignore_errors=True)
        done.append(f"removed leftover {p.name}")
    for line in done:
        log.info("%s", line)
    return done


# ------------------------------------------------------------------------------------------------
# durability and the swap
def _fsync(path: str | os.PathLike, flags: int = os.O_RDONLY) -> None:
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    _fsync(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


def fsync_tree(folder: Path) -> None:
    """Flush every file and folder under ``folder`` to disk (before it is renamed into place)."""
    for root, dirs, files in os.walk(folder):
        for name in files:
            _fsync(os.path.join(root, name))
        _fsync_dir(Path(root))


_libc = None


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    global _libc
    if not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return False
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        fn = _libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _stamp() -> str:
    return str(time.time_ns())


def swap_into_place(staged: Path, final: Path, token: str | None = None) -> None:
    """Make ``staged`` (a complete folder) appear at ``final``, replacing what is there as one step."""
    token = token or f"{os.getpid()}-{_stamp()}"
    if not final.exists():
        try:
            os.rename(staged, final)
            _fsync_dir(final.parent)
            return
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise  # otherwise a folder appeared meanwhile: replace it below
    if _exchange(staged, final):
        _fsync_dir(final.parent)
        shutil.rmtree(staged, ignore_errors=True)  # holds the old run now
        return
    aside = final.parent / f".{final.name}.old-{token}"
    os.rename(final, aside)
    os.rename(staged, final)
    _fsync_dir(final.parent)
    shutil.rmtree(aside, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# the transaction
class RunTransaction:
    """Write a run folder completely or not at all -- the one context manager every command that
    writes a run folder wraps its writes in:

        with RunTransaction(out, command="evaluate", inputs={"model": model_dir, "benchmark": data}) as tx:
            ... write every file into tx.path (never into out) ...
            tx.record_input("model", model_fingerprint(model_dir))   # what the numbers depend on
            tx.settings = config                                      # hashed into the manifest
        # here: manifest.json written last, everything fsynced, tx.path swapped in as ``out``

    ``inputs`` are checked against ``out`` before anything is created (:func:`check_output_path`).
    With ``command`` set, the commit writes ``manifest.json`` (:mod:`harness.core.manifest`) from the
    recorded input fingerprints, the settings and every file in the folder. Records written into the
    folder must name it by ``tx.final`` (its name: ``tx.final.name``), never by ``tx.path``.

    ``base``: an existing run to update (``score --write``): the staging folder starts as a copy of
    it made of hard links (no data copied; files are only ever replaced, never edited in place), so
    the update also lands all at once. ``token`` names the staging folder (``<pid>-<stamp>`` by
    default); the processes of one data-parallel run agree on one token so they share the folder.
    ``main``: only the main process creates, commits or removes the staging folder. ``markers``:
    files that make an existing folder replaceable (a run's by default; ``world.json`` for a world).
    A full disk anywhere in the block becomes a :class:`~harness.core.errors.DiskFullError`
    naming the device and the file, and nothing is left behind.
    """

    def __init__(self, final: str | os.PathLike, *, command: str | None = None,
                 inputs: Mapping[str, object] | None = None, base: str | os.PathLike | None = None,
                 token: str | None = None, main: bool = True, option: str = "--out",
                 markers: Sequence[str] = RUN_MARKERS):
        self.given = Path(os.fspath(final))
        self.final = check_output_path(final, inputs or {}, option=option)
        self.command = command
        self.base = Path(os.fspath(base)) if base is not None else None
        self.token = token or new_token()
        self.main = main
        self.option = option
        self.markers = tuple(markers)
        self.path = self.final.parent / f".{self.final.name}.partial-{self.token}"
        self.committed = False
        self.fingerprints: dict[str, object] = {}
        """Input name -> fingerprint (``manifest.model_fingerprint``, a benchmark content hash, …)."""
        self.settings: Mapping[str, object] | None = None
        """What decides the run's numbers (hashed into the manifest's ``settings_sha256``)."""
        self.settings_sha256: str | None = None
        """Set instead of ``settings`` to keep a recorded hash (an update of an existing run)."""
        self._finalizers: list = []

    # -- lifecycle ----------------------------------------------------------------------------------
    def __enter__(self) -> "RunTransaction":
        if self.main:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            recover(self.final)
            if self.final.is_dir() and not looks_like_run(self.final, self.markers):
                raise RunFolderError(
                    f"{self.option} {self.given} is an existing folder that is not a run folder (no "
                    f"{', '.join(self.markers)}); refusing to replace it -- choose a new folder")
            try:
                if self.base is not None:
                    clone_tree(self.base, self.path)
                else:  # exist_ok: another process of a data-parallel run may have made it first
                    self.path.mkdir(exist_ok=True)
            except BaseException as exc:
                self.abort()
                raise self._translated(exc) from exc
        return self

    def record_input(self, name: str, fingerprint: object) -> None:
        """Record what input ``name`` was, by content, for the manifest."""
        self.fingerprints[name] = fingerprint

    def on_commit(self, fn) -> None:
        """Call ``fn(staging_path)`` just before the manifest is written and the folder swapped in."""
        self._finalizers.append(fn)

    def commit(self) -> Path:
        if self.committed:
            return self.final
        if self.main:
            for fn in self._finalizers:
                fn(self.path)
            if self.command is not None:
                from .manifest import build_manifest, write_manifest

                manifest = build_manifest(self.path, command=self.command, inputs=self.fingerprints,
                                          settings=self.settings, settings_sha256=self.settings_sha256)
                write_manifest(self.path, manifest)
            fsync_tree(self.path)
            swap_into_place(self.path, self.final, self.token)
        self.committed = True
        return self.final

    def abort(self) -> None:
        if self.main and not self.committed:
            shutil.rmtree(self.path, ignore_errors=True)

    def _translated(self, exc: BaseException) -> BaseException:
        """A full disk named (device, file, and that nothing was left); other errors unchanged."""
        from .fileio import device_of, is_disk_full

        if not isinstance(exc, DiskFullError) and not is_disk_full(exc, self.final.parent):
            return exc
        filename = getattr(exc, "filename", None)
        target = filename or self.final
        if filename and str(filename).startswith(str(self.path)):
            target = self.final / Path(filename).relative_to(self.path)  # the name the user knows
        return DiskFullError(f"no space left on {device_of(self.final.parent)} while writing {target}; nothing "
                             f"was written to {self.given}", filename=str(target))

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            try:
                self.commit()
            except BaseException as error:
                self.abort()
                translated = self._translated(error)
                if translated is not error:
                    raise translated from error
                raise
            return False
        self.abort()
        translated = self._translated(exc)
        if translated is not exc:
            raise translated from exc
        return False


def new_token() -> str:
    """A staging folder's token: ``<pid>-<nanoseconds>`` (the pid lets leftovers of dead writers be found)."""
    return f"{os.getpid()}-{_stamp()}"


def clone_tree(src: Path, dst: Path) -> None:
    """A copy of ``src`` at ``dst`` made of hard links (a real copy where linking is impossible)."""
    def link(s, d):
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=link, symlinks=True,
                    ignore=lambda folder, names: [n for n in names if LEFTOVER.match(n)])


__all__ = ["RunTransaction", "RunFolderError", "new_token", "check_output_path", "recover", "leftovers", "looks_like_run",
           "swap_into_place", "clone_tree", "fsync_tree", "LEFTOVER", "RUN_MARKERS"]
