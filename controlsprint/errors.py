"""The error type for user mistakes.

Anything a user can get wrong (a missing file, a bad option value, an unknown config key) raises
`UserError` with a one-line message that names the input. The CLI prints that line and exits with
code 2; it never shows a traceback for a `UserError`. Bugs stay ordinary exceptions.
"""


class UserError(Exception):
    """A mistake in user input, reported as one line, exit code 2."""

    exit_code = 2

    def __init__(self, message: str):
        # One line by contract: a message that spans lines would break `controlsprint ... 2>err; cat err`.
        super().__init__(" ".join(str(message).split()))
