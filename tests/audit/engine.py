"""How the audit runs a case: each command line in a forked child of a process that has already
imported the harness and its heavy libraries, with optional fault injection, under a time limit.

Why fork: importing torch, transformers, peft, lm-eval and the harness costs 5-15 s on the project's
2-core machine; a forked child starts in milliseconds with all of them loaded, so ~300 command lines
fit in a few minutes. ``--mode subprocess`` runs the same child code in a fresh interpreter instead
(slower, for checking that forking changes nothing).

The child calls the console-script entry point named in ``pyproject.toml`` (``unlearnbench =
"module:function"``), so the audit keeps working when the harness's modules move. Fault injection
uses only library-level hooks (``os.replace``/``os.rename``, the transformers model's ``forward``,
``torch.optim.Optimizer`` steps, ``safetensors`` saves), never the harness's own function names:

``("after_write", NAME)``  kill right after a file called NAME is renamed into place (an atomic write
                           committed) -- "config.json", "samples.jsonl", "mia.jsonl", "result.json";
``("forward", N)``         kill at the N-th model forward (generation or training has started);
``("step", N)``            kill at the N-th optimiser step;
``("save", N)``            kill when the N-th safetensors file is about to be written (model save);
``("forward_after_save", N)`` kill at the N-th forward after the first safetensors save (the
                           evaluation of an unlearned or merged model).

``probe_work=True`` makes the child stop with exit status 97 at the first model forward: for cases
whose point is that bad input must be refused *before* model work starts.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parents[2]
WORK_STARTED_RC = 97
#: Address-space limit of a child (a runaway allocation fails instead of taking the machine down).
CHILD_MEMORY_LIMIT = 10 * 2**30


# ------------------------------------------------------------------------------------------------
# the entry point, resolved from pyproject.toml (survives module moves)
def entry_point() -> Callable[[list[str]], int]:
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover
        import tomli as tomllib  # type: ignore[no-redef]
    spec = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]["unlearnbench"]
    module, _, func = spec.partition(":")
    return getattr(importlib.import_module(module), func)


def preload() -> None:
    """Import everything a command may import lazily, so forked children start warm."""
    import pkgutil
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("torch", "transformers", "peft", "accelerate", "safetensors.torch", "rouge_score.rouge_scorer",
                 "sklearn.metrics", "pandas", "matplotlib", "matplotlib.pyplot", "yaml", "datasets", "lm_eval",
                 "lm_eval.models.huggingface", "lm_eval.tasks", "pyarrow.parquet", "pydantic", "hypothesis"):
        try:
            importlib.import_module(name)
        except Exception:
            pass
    import matplotlib

    matplotlib.use("Agg")
    for package in ("harness", "metrics", "baselines", "leaderboards"):
        pkg = importlib.import_module(package)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=package + "."):
            if info.name.endswith("__main__"):
                continue
            try:
                importlib.import_module(info.name)
            except Exception:
                pass
    try:  # transformers model classes are imported lazily: load the ones the fixtures use
        from transformers import LlamaForCausalLM  # noqa: F401
        from transformers.models.llama import modeling_llama  # noqa: F401
    except Exception:
        pass
    entry_point()


# ------------------------------------------------------------------------------------------------
# fault injection inside the child
def _rebind(original: Any, replacement: Any) -> None:
    """Replace every module-level binding of ``original`` (``from x import f`` copies included)."""
    for module in list(sys.modules.values()):
        try:
            for name, value in list(vars(module).items()):
                if value is original:
                    setattr(module, name, replacement)
        except Exception:
            continue


def install_injection(kill: tuple | None, sig: int, probe_work: bool, marker: Path) -> None:
    counters = {"forward": 0, "step": 0, "save": 0, "forward_after_save": 0}
    kind, arg = kill if kill else (None, None)

    def fire(what: str) -> None:
        marker.write_text(what)
        os.kill(os.getpid(), sig)
        if sig == signal.SIGINT:
            time.sleep(0.01)  # let the interpreter deliver KeyboardInterrupt here

    # renames: an atomic write committed
    if kind == "after_write":
        for mod, attr in ((os, "replace"), (os, "rename")):
            original = getattr(os, attr)

            def wrapped(src, dst, *a, _orig=original, **kw):
                result = _orig(src, dst, *a, **kw)
                if os.path.basename(os.fspath(dst)) == arg:
                    fire(f"after_write {arg}")
                return result

            setattr(mod, attr, wrapped)

    if kind in ("forward", "forward_after_save") or probe_work:
        try:
            import transformers

            classes = {transformers.LlamaForCausalLM, transformers.GPT2LMHeadModel}
        except Exception:
            classes = set()
        for cls in classes:
            original_forward = cls.forward

            def forward(self, *a, _orig=original_forward, **kw):
                if probe_work:
                    marker.write_text("work started")
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(WORK_STARTED_RC)
                counters["forward"] += 1
                if counters["save"]:
                    counters["forward_after_save"] += 1
                if kind == "forward" and counters["forward"] == arg:
                    fire(f"forward {arg}")
                if kind == "forward_after_save" and counters["forward_after_save"] == arg:
                    fire(f"forward_after_save {arg}")
                return _orig(self, *a, **kw)

            cls.forward = forward

    if kind == "step":
        import torch

        original_step = torch.optim.AdamW.step

        def step(self, *a, _orig=original_step, **kw):
            counters["step"] += 1
            if counters["step"] == arg:
                fire(f"step {arg}")
            return _orig(self, *a, **kw)

        torch.optim.AdamW.step = step

    if kind in ("save", "forward_after_save"):
        import safetensors.torch

        original_save = safetensors.torch.save_file

        def save_file(*a, **kw):
            counters["save"] += 1
            if kind == "save" and counters["save"] == arg:
                fire(f"save {arg}")
            return original_save(*a, **kw)

        _rebind(original_save, save_file)


# ------------------------------------------------------------------------------------------------
# one command line
@dataclass
class Invocation:
    argv: list[str]
    cwd: str
    stdout: str
    stderr: str
    env: dict[str, str] = field(default_factory=dict)
    kill: tuple | None = None
    signal: int = signal.SIGKILL
    probe_work: bool = False
    timeout: float = 120.0
    stdin: str | None = None


@dataclass
class Outcome:
    argv: list[str]
    rc: int | None
    """Exit status; -N when killed by signal N; None when it ran past its time limit."""
    seconds: float
    stdout: str
    stderr: str
    timed_out: bool = False
    work_started: bool = False
    injected: str | None = None
    """What the fault injection did (None: the kill point was never reached)."""

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.stderr

    def to_json(self, tail: int = 1500) -> dict[str, Any]:
        return {"argv": self.argv, "rc": self.rc, "seconds": round(self.seconds, 2), "timed_out": self.timed_out,
                "work_started": self.work_started, "injected": self.injected,
                "stdout_tail": self.stdout[-tail:], "stderr_tail": self.stderr[-tail:]}


def _child_main(inv: Invocation, marker: Path) -> int:
    """Runs in the child: the command line, like the console script would."""
    os.chdir(inv.cwd)
    os.environ.update(inv.env)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_LIMIT, CHILD_MEMORY_LIMIT))
    except (ValueError, OSError):
        pass
    signal.signal(signal.SIGINT, signal.default_int_handler)
    install_injection(inv.kill, inv.signal, inv.probe_work, marker)
    sys.argv = ["unlearnbench", *inv.argv]
    main = entry_point()
    try:
        rc = main(list(inv.argv))
    except SystemExit as exc:
        code = exc.code
        if code is None:
            rc = 0
        elif isinstance(code, int):
            rc = code
        else:
            print(code, file=sys.stderr)
            rc = 1
    except KeyboardInterrupt:
        traceback.print_exc()
        rc = 130
    except BaseException:  # what the interpreter would print for an uncaught exception
        traceback.print_exc()
        rc = 1
    return int(rc or 0)


def _run_forked(inv: Invocation, marker: Path) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            out = os.open(inv.stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            err = os.open(inv.stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(out, 1)
            os.dup2(err, 2)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            code = _child_main(inv, marker)
        except BaseException:
            try:
                traceback.print_exc()
            except BaseException:
                pass
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except BaseException:
                pass
            os._exit(code)
    return pid


def _wait(pid: int, timeout: float) -> tuple[int | None, bool]:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), False
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    os.kill(pid, signal.SIGINT)
    grace = time.monotonic() + 5
    while time.monotonic() < grace:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return None, True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None, True


SUBPROCESS_CHILD = """
import json, sys
sys.path.insert(0, {here!r})
import engine
inv = engine.Invocation(**json.loads(sys.argv[1]))
marker = engine.Path(sys.argv[2])
sys.exit(engine._child_main(inv, marker))
"""


def run(inv: Invocation, mode: str = "fork") -> Outcome:
    marker = Path(inv.stdout).with_suffix(".injected")
    marker.unlink(missing_ok=True)
    started = time.monotonic()
    if mode == "fork":
        pid = _run_forked(inv, marker)
        rc, timed_out = _wait(pid, inv.timeout)
    else:
        payload = json.dumps(dataclasses.asdict(inv))
        code = SUBPROCESS_CHILD.format(here=str(Path(__file__).resolve().parent))
        with open(inv.stdout, "w") as out, open(inv.stderr, "w") as err:
            proc = subprocess.Popen([sys.executable, "-c", code, payload, str(marker)], stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})
            try:
                rc, timed_out = proc.wait(timeout=inv.timeout), False
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                rc, timed_out = None, True
    seconds = time.monotonic() - started
    injected = marker.read_text() if marker.exists() else None
    return Outcome(argv=list(inv.argv), rc=rc, seconds=seconds, stdout=_read(inv.stdout), stderr=_read(inv.stderr),
                   timed_out=timed_out, work_started=rc == WORK_STARTED_RC, injected=injected)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


# ------------------------------------------------------------------------------------------------
# file-system helpers
def tree_hashes(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every regular file under ``root`` ({} when absent)."""
    import hashlib

    out: dict[str, str] = {}
    if not root.exists():
        return out
    if root.is_file():
        return {".": hashlib.sha256(root.read_bytes()).hexdigest()}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


LEFTOVER = re.compile(r"^\..*(partial|tmp|old|trash|staging)", re.IGNORECASE)


def is_leftover(name: str) -> bool:
    """A clearly named leftover of an interrupted write (a hidden name saying it is partial/temporary)."""
    return bool(LEFTOVER.match(name))


def without_leftovers(hashes: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in hashes.items() if not any(is_leftover(part) for part in k.split("/"))}


def copytree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


# ------------------------------------------------------------------------------------------------
# a nearly full disk (tmpfs), for "no space left on device"
def can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


def mount_small_disk(path: Path, size_kb: int = 256, free_kb: int = 8) -> Path:
    """Mount a tmpfs of ``size_kb`` at ``path`` and fill it until only about ``free_kb`` remain."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)], check=True)
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    filler = max(0, free - free_kb * 1024)
    with open(path / ".filler", "wb") as fh:
        fh.write(b"\0" * filler)
    return path


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def mounted_under(root: Path) -> list[Path]:
    root = str(root.resolve())
    out = []
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            mnt = line.split()[1]
            if mnt.startswith(root):
                out.append(Path(mnt))
    except OSError:
        pass
    return out


def call_forked(fn: Callable[..., Any], *args: Any, log: Path | None = None) -> None:
    """Run ``fn(*args)`` in a forked child (heavy library work stays out of the audit's own process,
    which forks many more children); raise RuntimeError when it fails."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            if log is not None:
                fd = os.open(str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
            fn(*args)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{getattr(fn, '__name__', fn)} failed" + (f"; see {log}" if log else ""))
