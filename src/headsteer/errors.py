"""The one exception type for mistakes a user can fix.

The CLI prints a ``HeadsteerError`` as a single line (no traceback) and exits with status 2; anything
else is a bug and keeps its traceback.
"""


class HeadsteerError(Exception):
    """A problem the user caused and can fix; the message names the problem and the fix."""
