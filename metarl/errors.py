"""Errors meant for the person at the keyboard."""


class UsageError(ValueError):
    """Bad input: the message names the problem and the fix in one line.

    The CLI prints it as ``error: <message>`` and exits with code 2, without a traceback.
    """
