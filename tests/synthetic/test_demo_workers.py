"""The demo's worker processes (spawned: fresh interpreters) follow the terminal policy the command line
set in the parent, so a full demo is as quiet as its parent process."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor


def _worker_state() -> tuple[int | None, bool]:
    import logging

    from harness.core import console

    return console.verbosity(), logging.getLogger("torchao").isEnabledFor(logging.WARNING) and any(
        getattr(h, "_unlearnbench_console", False) for h in logging.getLogger().handlers)


def test_spawned_demo_workers_get_the_parents_terminal_policy():
    from harness.synthetic.demo import _init_worker

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_init_worker, initargs=(0,)) as pool:
        level, console_handler = pool.submit(_worker_state).result()
    assert level == 0 and console_handler  # configured like the parent: third-party output held back
    with ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_init_worker, initargs=(None,)) as pool:
        level, console_handler = pool.submit(_worker_state).result()
    assert level is None and not console_handler  # a library caller who never configured: nothing changes
