"""Errors that describe a user's mistake (bad input, bad option) rather than a bug.

The CLI prints these as one line and exits with status 2; everything else is a bug and
keeps its traceback.
"""


class FerError(Exception):
    """A problem with the user's input or options, stated in one line."""
