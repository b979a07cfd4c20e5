"""Exception types of the project.

Every error caused by bad user input (a file, a header, a config, a CLI argument)
is raised as :class:`InputError` with a message that names what is wrong, so that
command-line entry points can print it without a traceback and exit non-zero.
"""


class CrunetError(Exception):
    """Base class of all errors raised on purpose by this project."""


class InputError(CrunetError, ValueError):
    """Bad input: the message names the file, field or value that is wrong."""
