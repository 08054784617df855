"""Errors a user can act on.

Library code raises these with a one-line message that says what failed and what to
try; the CLI prints that line and exits non-zero instead of showing a traceback.
"""


class SoftmaxError(Exception):
    """Base class: the message is shown to the user as is (exit 1)."""


class UsageError(SoftmaxError):
    """An option value that only the body can judge (it needs the file system or the data):
    a usage error like any bad option value, so exit 2, naming the option."""

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


class DataError(SoftmaxError):
    """The dataset could not be fetched, imported, verified or read."""


class DataFileRejected(DataError):
    """A data file's content failed a check (its IDX header, its labels, its md5); the message names the file."""


class CheckpointError(SoftmaxError):
    """A checkpoint file is missing, unreadable, not ours, or inconsistent."""


class CheckpointInUse(CheckpointError):
    """Another live run is writing the same checkpoint path (it holds the lock beside it)."""


class TrainingDiverged(SoftmaxError):
    """The training loss became NaN or infinite."""


class ExportError(SoftmaxError):
    """A model could not be exported: an optional package missing, the exporter failed, or the file not written."""


class PictureError(SoftmaxError):
    """A user's picture (predict --image) is not a picture, is damaged, too large, or shows no object."""
