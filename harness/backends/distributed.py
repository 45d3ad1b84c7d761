"""Data parallelism on accelerate: shard records across processes, gather per-sample outputs.

Launched by ``accelerate launch`` (GPUs: ``--multi_gpu``; any accelerate config, DeepSpeed/FSDP for
training), or by ``torch.distributed.run`` with ``ACCELERATE_USE_CPU=true`` for CPU processes (gloo),
which is what ``--num-processes N`` does on a CPU. Without a launcher everything runs in one process
and these helpers are no-ops.

Records are split into contiguous shards *without padding or duplication* (the organisers' program
padded its shards by repeating records, which double-counts them); each process computes its shard
and the main process gathers the results in the original order.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Callable, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def launched_distributed() -> bool:
    """True when this process was started by a multi-process launcher (torchrun / accelerate)."""
    return any(int(os.environ.get(k, "1") or 1) > 1 for k in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"))


def state(device: str | None = None):
    """accelerate's process state (initialises the process group once, when launched distributed)."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or (device is not None and str(device).startswith("cpu"))
    return PartialState(cpu=cpu) if launched_distributed() else PartialState()


def num_processes() -> int:
    return state().num_processes if launched_distributed() else 1


def is_main_process() -> bool:
    return (not launched_distributed()) or state().is_main_process


def shard_bounds(n: int, world: int, rank: int) -> tuple[int, int]:
    """Contiguous shard ``[start, end)`` of ``n`` items for ``rank``: sizes differ by at most one,
    every item belongs to exactly one shard, nothing is repeated."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def map_sharded(fn: Callable[[list[T]], list[R]], items: Sequence[T]) -> list[R]:
    """``fn`` over ``items`` split across processes; every process gets the full result, in order."""
    if not launched_distributed():
        return list(fn(list(items)))
    from accelerate.utils import gather_object

    st = state()
    start, end = shard_bounds(len(items), st.num_processes, st.process_index)
    local = list(fn(list(items[start:end]))) if end > start else []
    if len(local) != end - start:
        raise RuntimeError(f"process {st.process_index}: got {len(local)} results for {end - start} items")
    # gather_object concatenates the per-process lists in rank order = the original order.
    gathered = gather_object([local])
    out: list[R] = [x for part in gathered for x in part]
    if len(out) != len(items):
        raise RuntimeError(f"gathered {len(out)} results for {len(items)} items")
    return out


def on_main(fn: Callable[[], R]) -> R:
    """Run ``fn`` on the main process only and broadcast its (picklable) result to every process."""
    if not launched_distributed():
        return fn()
    from accelerate.utils import broadcast_object_list

    st = state()
    box: list[Any] = [fn() if st.is_main_process else None]
    broadcast_object_list(box, from_process=0)
    return box[0]


def shared_token() -> str:
    """One run-folder transaction token for all processes of a data-parallel run (the main process's),
    so they agree on the staging folder; a fresh token in a single process."""
    from harness.core.transaction import new_token

    return on_main(new_token)


def wait_for_everyone() -> None:
    if launched_distributed():
        state().wait_for_everyone()


def relaunch(argv: Sequence[str], processes: int, device: str) -> int:
    """Re-run this command under ``processes`` data-parallel processes (the ``--num-processes`` flag).

    GPUs use ``accelerate launch --multi_gpu``; CPUs use ``torch.distributed.run`` with accelerate's
    CPU flag (accelerate's own CPU launcher needs MPI, which most machines lack).
    """
    env = dict(os.environ)
    args = _strip_num_processes(argv)
    if str(device).startswith("cpu"):
        env["ACCELERATE_USE_CPU"] = "true"
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_port", str(_free_port()), "-m", "harness", *args]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "harness", *args]
    return subprocess.call(cmd, env=env)


def _strip_num_processes(argv: Sequence[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--num-processes":
            skip = True
            continue
        if a.startswith("--num-processes="):
            continue
        out.append(a)
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
