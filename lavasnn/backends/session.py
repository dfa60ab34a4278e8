"""Run a Lava network so that its runtime always stops.

Lava starts OS processes for every ProcessModel; a run that is not stopped leaves them
behind. :func:`lava_session` stops the runtime on success, on any exception and on Ctrl-C,
and gives up waiting for the stop after ``stop_timeout`` seconds. The processes Lava forks
inside a session ignore SIGINT: Ctrl-C in a terminal reaches the whole process group, and
workers killed mid-message would print their own tracebacks and leave the runtime unable to
stop; so only the main process is interrupted, and it stops the runtime.

Lava forks its processes. Forking a Python process in which ``torch.compile`` has started its
worker threads can deadlock, so start Lava runs before compiling engine functions (the
engine compiles only when asked: ``compile=True``), or run them in separate processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import warnings
from typing import Iterator


_open_sessions = 0  # lava_session blocks being run; processes forked meanwhile are Lava's


def _ignore_sigint_in_lava_workers() -> None:
    if _open_sessions:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


os.register_at_fork(after_in_child=_ignore_sigint_in_lava_workers)


def _stop(process, timeout: float) -> None:
    runtime = getattr(process, "runtime", None)
    if runtime is None or not getattr(runtime, "_is_started", False):
        return
    worker = threading.Thread(target=process.stop, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        warnings.warn(f"Lava runtime of {process.name} did not stop within {timeout:g} s")


@contextlib.contextmanager
def lava_session(process, stop_timeout: float = 30.0) -> Iterator:
    """``with lava_session(proc): proc.run(...)`` -- always stops ``proc``'s runtime."""
    global _open_sessions
    _open_sessions += 1
    try:
        yield process
    finally:
        _open_sessions -= 1
        _stop(process, stop_timeout)
