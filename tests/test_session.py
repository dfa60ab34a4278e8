"""lava_session: processes forked inside it (Lava's workers) ignore Ctrl-C; others keep it."""

import os
import signal

from lavasnn.backends.session import lava_session


def child_ignores_sigint() -> bool:
    pid = os.fork()
    if pid == 0:
        os._exit(0 if signal.getsignal(signal.SIGINT) == signal.SIG_IGN else 1)
    return os.waitpid(pid, 0)[1] == 0


def test_only_processes_forked_in_a_session_ignore_sigint():
    class NotStarted:  # a process whose runtime never started: nothing to stop
        name = "p"

    assert not child_ignores_sigint()
    with lava_session(NotStarted()):
        assert child_ignores_sigint()
    assert not child_ignores_sigint()
    assert signal.getsignal(signal.SIGINT) == signal.default_int_handler  # the main process keeps Ctrl-C
