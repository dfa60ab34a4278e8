"""Run a Lava network so that its runtime always stops.

Lava starts OS processes for every ProcessModel; a run that is not stopped leaves them
behind. :func:`lava_session` (or a :class:`LavaSession` closed by hand) stops the runtime on
success, on any exception and on Ctrl-C. The processes Lava forks inside a session ignore
SIGINT: Ctrl-C in a terminal reaches the whole process group, and workers killed mid-message
would print their own tracebacks and leave the runtime unable to stop; so only the main process
is interrupted, and it stops the runtime. When the stop fails or hangs (an interrupt can leave a
message half-read), the session terminates the runtime's processes and shuts down its shared
memory instead.

A ProcessModel that raises ends its own process, but the others, and the main process, wait
for its messages forever. So while a session is open a watcher thread polls the runtime's
processes every :data:`WATCH_INTERVAL` seconds; when one has failed, it interrupts the main
thread as Ctrl-C would, the session stops the runtime, and :meth:`LavaSession.close` raises
:class:`LavaProcessError` with the failed process's exception and traceback.

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

from lavasnn.errors import LavaProcessError

STOP_TIMEOUT = 30.0  # seconds a normal stop may take
STOP_TIMEOUT_AFTER_ERROR = 5.0  # after an exception or Ctrl-C the runtime is often out of step
WATCH_INTERVAL = 0.5  # seconds between two looks at the runtime's processes

_open_sessions = 0  # sessions not yet closed; processes forked meanwhile are Lava's


def _ignore_sigint_in_lava_workers() -> None:
    if _open_sessions:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


os.register_at_fork(after_in_child=_ignore_sigint_in_lava_workers)


class LavaSession:
    """From construction on, processes forked are Lava's; :meth:`close` stops ``process``'s runtime
    (and raises :class:`LavaProcessError` if one of its processes failed)."""

    def __init__(self, process, stop_timeout: float = STOP_TIMEOUT) -> None:
        global _open_sessions
        self.process, self.stop_timeout = process, stop_timeout
        self._children_before = set(multiprocessing.active_children())
        self._open = True
        _open_sessions += 1
        self.failure: tuple[BaseException, str] | None = None
        self._closing = threading.Event()
        self._watcher = threading.Thread(target=self._watch, args=(threading.current_thread(),), daemon=True)
        self._watcher.start()

    def _watch(self, owner: threading.Thread) -> None:
        """Until close: look for a runtime process that raised; record it and interrupt ``owner``
        (if it is the main thread, where Python delivers Ctrl-C)."""
        while not self._closing.wait(WATCH_INTERVAL):
            failure = _failed_actor(self.process)
            if failure is not None:
                self.failure = failure
                if owner is threading.main_thread():
                    signal.pthread_kill(owner.ident, signal.SIGINT)
                return

    def close(self, failed: bool = False) -> None:
        """Stop the runtime (``failed``: an exception is on its way, so wait less and say nothing);
        raise :class:`LavaProcessError` if a runtime process failed."""
        global _open_sessions
        if not self._open:
            return
        self._open = False
        _open_sessions -= 1
        self._closing.set()
        self._watcher.join()
        failed = failed or self.failure is not None
        timeout = min(self.stop_timeout, STOP_TIMEOUT_AFTER_ERROR) if failed else self.stop_timeout
        _stop(self.process, timeout, failed, self._children_before)
        if self.failure is not None:
            raise LavaProcessError(getattr(self.process, "name", "?"), *self.failure) from None


def _failed_actor(process) -> tuple[BaseException, str] | None:
    """(exception, traceback) of the first of ``process``'s runtime processes that raised, if any
    (Lava's ``SystemProcess`` sends them through a pipe as it ends)."""
    infrastructure = getattr(getattr(process, "runtime", None), "_messaging_infrastructure", None)
    for actor in list(getattr(infrastructure, "actors", [])):
        try:
            failure = getattr(actor, "exception", None)
        except (OSError, ValueError, EOFError):  # closed by a stop meanwhile
            continue
        if failure is not None:
            return failure
    return None


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
