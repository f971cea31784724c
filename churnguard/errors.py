"""Errors that the CLI turns into one clear line and exit code 2."""


class InputError(Exception):
    """Bad input from the user: a file, column, field or parameter, named in the message."""
