"""Errors a user can act on.

Library code raises these with a one-line message that says what failed and what to
try; the CLI prints that line and exits non-zero instead of showing a traceback.
"""


class SoftmaxError(Exception):
    """Base class: the message is shown to the user as is."""


class DataError(SoftmaxError):
    """The dataset could not be fetched, imported, verified or read."""


class CheckpointError(SoftmaxError):
    """A checkpoint file is missing, unreadable, not ours, or inconsistent."""


class TrainingDiverged(SoftmaxError):
    """The training loss became NaN or infinite."""
