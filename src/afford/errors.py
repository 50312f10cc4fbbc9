"""The exception types for every user-facing problem, and the exit codes the CLI gives them.

``AffordError`` is the base: a problem the user can fix, printed as one line naming the file
or argument and what is wrong (no traceback unless ``afford -v``).  Two kinds, by exit code:

- ``UsageError`` (exit 2, also the default of a bare ``AffordError``): the command line, a
  config key or value, an unknown action/function, an output folder that already holds
  results.  The user fixes how the command was called.
- ``DataError`` (exit 1): a file or folder the command read is missing, empty, truncated,
  corrupt or of the wrong kind (an image that does not decode, a checkpoint of the other
  task, a dataset without its annotation files).  The user fixes the data.
"""

from __future__ import annotations

__all__ = ["AffordError", "UsageError", "DataError", "EXIT_USAGE", "EXIT_DATA"]

EXIT_USAGE = 2
EXIT_DATA = 1


class AffordError(Exception):
    """A problem the user can fix; the CLI prints the message and exits with ``exit_code``.

    Messages name the offending file or argument and, where possible, the fix.
    """

    exit_code: int = EXIT_USAGE


class UsageError(AffordError):
    """Bad command line, config or argument value (exit 2)."""

    exit_code = EXIT_USAGE


class DataError(AffordError):
    """A missing, corrupt or wrong-kind input file or folder (exit 1)."""

    exit_code = EXIT_DATA
