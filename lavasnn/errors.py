"""The one exception type the CLI turns into a one-line message instead of a traceback."""


class UserError(ValueError):
    """Bad input from the user: a file, a shape, a parameter, a missing package.

    The message is one sentence that names the thing and what is allowed.
    """
