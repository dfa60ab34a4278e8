"""The CLI's exceptions: bad input (a one-line message, no traceback) and a failed Lava process."""


class UserError(ValueError):
    """Bad input from the user: a file, a shape, a parameter, a missing package.

    The message is one sentence that names the thing and what is allowed.
    """


class LavaProcessError(RuntimeError):
    """A process of a Lava run raised; the runtime was stopped. ``worker_traceback`` is its traceback."""

    def __init__(self, process_name: str, error: BaseException, worker_traceback: str) -> None:
        super().__init__(f"a Lava process of {process_name}'s network failed with {type(error).__name__}: {error}; "
                         "the runtime was stopped")
        self.worker_traceback = worker_traceback
