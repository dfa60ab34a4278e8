"""Run a Lava network so that its runtime always stops.

Lava starts OS processes for every ProcessModel; a run that is not stopped leaves them
behind. :func:`lava_session` stops the runtime on success, on any exception and on Ctrl-C,
and gives up waiting for the stop after ``stop_timeout`` seconds.

Lava forks its processes. Forking a Python process in which ``torch.compile`` has started its
worker threads can deadlock, so start Lava runs before compiling engine functions (the
engine compiles only when asked: ``compile=True``), or run them in separate processes.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from typing import Iterator


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
    try:
        yield process
    finally:
        _stop(process, stop_timeout)
