"""The one exception type for bad input from a user (a file, a flag, a spec).

The CLI prints it as a single line, ``bayes-prune: error: <message>``, and exits with status 2;
messages name the bad value and what was expected instead.
"""


class UserError(ValueError):
    """Bad input: a malformed grid or spec, an unknown name, a value out of range."""
