"""Run a Lava network so that its runtime always stops.

Lava starts OS processes for every ProcessModel; a run that is not stopped leaves them
behind. :func:`lava_session` (or a :class:`LavaSession` closed by hand) stops the runtime on
success, on any exception and on Ctrl-C. The processes Lava forks inside a session ignore
SIGINT: Ctrl-C in a terminal reaches the whole process group, and workers killed mid-message
would print their own tracebacks and leave the runtime unable to stop; so only the main process
is interrupted, and it stops the runtime. When the stop fails or hangs (an interrupt can leave a
message half-read), the session terminates the runtime's processes and shuts down its shared
memory instead.

Lava forks its processes. Forking a Python process in which ``torch.compile`` has started its
worker threads can deadlock, so start Lava runs before compiling engine functions (the
engine compiles only when asked: ``compile=True``), or run them in separate processes.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import warnings
from typing import Iterator

STOP_TIMEOUT = 30.0  # seconds a normal stop may take
STOP_TIMEOUT_AFTER_ERROR = 5.0  # after an exception or Ctrl-C the runtime is often out of step

_open_sessions = 0  # sessions not yet closed; processes forked meanwhile are Lava's


def _ignore_sigint_in_lava_workers() -> None:
    if _open_sessions:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


os.register_at_fork(after_in_child=_ignore_sigint_in_lava_workers)


class LavaSession:
    """From construction on, processes forked are Lava's; :meth:`close` stops ``process``'s runtime."""

    def __init__(self, process, stop_timeout: float = STOP_TIMEOUT) -> None:
        global _open_sessions
        self.process, self.stop_timeout = process, stop_timeout
        self._children_before = set(multiprocessing.active_children())
        self._open = True
        _open_sessions += 1

    def close(self, failed: bool = False) -> None:
        """Stop the runtime (``failed``: an exception is on its way, so wait less and say nothing)."""
        global _open_sessions
        if not self._open:
            return
        self._open = False
        _open_sessions -= 1
        timeout = min(self.stop_timeout, STOP_TIMEOUT_AFTER_ERROR) if failed else self.stop_timeout
        _stop(self.process, timeout, failed, self._children_before)


@contextlib.contextmanager
def lava_session(process, stop_timeout: float = STOP_TIMEOUT) -> Iterator:
    """``with lava_session(proc): proc.run(...)`` -- always stops ``proc``'s runtime."""
    session = LavaSession(process, stop_timeout)
    failed = True
    try:
        yield process
        failed = False
    finally:
        session.close(failed)


def _stop(process, timeout: float, quiet: bool, children_before: set) -> None:
    """Lava's own stop for a started runtime; if it fails or hangs, or the runtime never finished
    starting (an error or Ctrl-C during start-up), terminate its processes, free its shared memory
    and terminate whatever else the session forked (a half-started shared-memory manager)."""
    runtime = getattr(process, "runtime", None)
    if getattr(runtime, "_is_started", False):
        problem = _stop_within(process, timeout)
        if problem is None:
            return
        if not quiet:
            warnings.warn(f"Lava runtime of {process.name} {problem}; its processes were terminated")
    infrastructure = getattr(runtime, "_messaging_infrastructure", None)
    _terminate(list(getattr(infrastructure, "actors", [])))
    if infrastructure is not None:
        with contextlib.suppress(Exception):
            infrastructure.stop()  # joins the terminated processes, frees the shared memory
        with contextlib.suppress(Exception):
            infrastructure.smm.shutdown()  # in case stop() failed before it (a no-op after it)
    _terminate([child for child in multiprocessing.active_children() if child not in children_before])


def _stop_within(process, timeout: float) -> str | None:
    """Run ``process.stop()`` for at most ``timeout`` seconds; None if it stopped, else why not."""
    errors: list[BaseException] = []

    def stop() -> None:
        try:
            process.stop()
        except Exception as e:  # noqa: BLE001 -- reported to the caller, which terminates the processes
            errors.append(e)

    worker = threading.Thread(target=stop, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return f"did not stop within {timeout:g} s"
    return f"failed to stop ({errors[0]})" if errors else None


def _terminate(processes: list[multiprocessing.Process]) -> None:
    """Terminate (then kill) the processes still alive; ones Lava's own stop closes meanwhile are skipped."""
    running = [p for p in processes if _alive(p)]
    for p in running:
        with contextlib.suppress(ValueError):
            p.terminate()
    for p in running:
        with contextlib.suppress(ValueError):
            multiprocessing.Process.join(p, 2.0)
            if p.is_alive():
                p.kill()
                multiprocessing.Process.join(p)


def _alive(p: multiprocessing.Process) -> bool:
    try:
        return p.is_alive()
    except ValueError:  # Lava's own stop already joined and closed it
        return False
