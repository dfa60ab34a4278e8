"""lava_session: processes forked inside it (Lava's workers) ignore Ctrl-C; others keep it. A
runtime that fails to stop has its processes terminated."""

import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from lavasnn.backends.session import LavaSession, lava_session


def child_ignores_sigint() -> bool:
    pid = os.fork()
    if pid == 0:
        os._exit(0 if signal.getsignal(signal.SIGINT) == signal.SIG_IGN else 1)
    return os.waitpid(pid, 0)[1] == 0


class NotStarted:  # a process whose runtime never started: nothing to stop
    name = "p"


def test_only_processes_forked_in_a_session_ignore_sigint():
    assert not child_ignores_sigint()
    with lava_session(NotStarted()):
        assert child_ignores_sigint()
    assert not child_ignores_sigint()
    assert signal.getsignal(signal.SIGINT) == signal.default_int_handler  # the main process keeps Ctrl-C
    session = LavaSession(NotStarted())
    assert child_ignores_sigint()
    session.close()
    session.close()  # closing twice is harmless
    assert not child_ignores_sigint()


def sleeper() -> multiprocessing.Process:
    worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))
    worker.start()
    return worker


class StuckRuntime:
    """Stands for a Lava process whose runtime has one live worker and either started but never
    returns from its stop, or never finished starting (Ctrl-C during start-up)."""

    def __init__(self, started: bool) -> None:
        self.name = "stuck"
        self.freed = False
        self.worker = sleeper()
        runtime = type("Runtime", (), {})()
        runtime._is_started = started
        runtime._messaging_infrastructure = type("Infrastructure", (), {"actors": [self.worker],
                                                                        "stop": lambda _: setattr(self, "freed", True)})()
        self.runtime = runtime

    def stop(self) -> None:
        time.sleep(60)


@pytest.mark.parametrize("failed", [False, True])
def test_a_runtime_that_does_not_stop_has_its_processes_terminated(failed):
    process = StuckRuntime(started=True)
    session = LavaSession(process, stop_timeout=0.2)
    if failed:
        session.close(failed=True)  # after an error: no warning, the error says enough
    else:
        with pytest.warns(UserWarning, match="did not stop within 0.2 s; its processes were terminated"):
            session.close()
    assert not process.worker.is_alive() and process.freed


def test_a_runtime_interrupted_while_starting_is_taken_down_with_all_it_forked():
    unrelated = sleeper()  # forked before the session and not the runtime's: left alone
    process = StuckRuntime(started=False)
    session = LavaSession(process)
    half_started_manager = sleeper()  # forked in the session but not one of the runtime's actors
    session.close(failed=True)
    assert not process.worker.is_alive() and process.freed and not half_started_manager.is_alive()
    assert unrelated.is_alive()
    unrelated.terminate()
    unrelated.join()


def test_a_process_that_raises_stops_the_run_with_its_error():
    """A ProcessModel that raises used to leave the main process waiting forever; now the session
    stops the runtime and the CLI exits 1 with the error and the failed process's traceback. Run in a
    subprocess with a timeout, so that a regression fails instead of hanging the suite."""
    code = ("import sys\n"
            "from lava.proc.dense.models import AbstractPyDenseModelBitAcc\n"
            "def fail(self):\n    raise ValueError('injected failure')\n"
            "AbstractPyDenseModelBitAcc.run_spk = fail\n"
            "from lavasnn.cli import main\n"
            "sys.exit(main(['smoke']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("lavasnn: error: a Lava process") and "ValueError: injected failure" in lines[-1]
    assert "the runtime was stopped" in lines[-1] and 'in fail' in r.stderr  # the worker's traceback
