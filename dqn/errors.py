"""The one exception type a user may cause: the CLI prints it as a single line."""


class UserError(Exception):
    """Bad input from the user: a config value, a path, a checkpoint.

    The message is one sentence naming the bad value and what is allowed; the
    command-line entry point prints it without a traceback and exits with code 2.
    """
