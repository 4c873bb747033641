"""Exceptions that mean "the user's input is wrong" (bad file, bad option), not "the library is broken".

The CLI prints these as one line and exits with code 2; the Python API raises them as they are.
"""


class UserError(ValueError):
    """Bad input from the user: an unknown name, an unreadable or mismatched file, a wrong shape."""


class CheckpointError(UserError):
    """A weights file that cannot be read, is not a supported format, or does not fit the model."""


class VideoError(UserError):
    """A video that cannot be opened or decoded (missing, empty, truncated, no video stream, timeout)."""
