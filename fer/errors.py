"""Errors that describe a user's mistake or a fault of the environment rather than a bug.

The CLI prints these as one line and exits with their ``exit_code``: 2 for a mistake in
the command (bad input, bad option), 3 for an environment fault (no GPUs for ``--gpus``,
a full disk, no permission to write). Everything else is a bug and keeps its traceback.
"""


class FerError(Exception):
    """A problem with the user's input or options, stated in one line."""

    exit_code = 2


class EnvironmentFault(FerError):
    """The command is right but the machine or cluster cannot carry it out (no GPUs, disk
    full, no permission), stated in one line."""

    exit_code = 3
