"""One exception type for every user-facing problem (bad input, missing file, bad config)."""


class AffordError(Exception):
    """A problem the user can fix; the CLI prints the message and exits with status 2.

    Messages name the offending file or argument and, where possible, the fix.
    """
