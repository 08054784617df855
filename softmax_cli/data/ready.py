"""The dataset made ready for a command: fetched when missing, then verified.

The one way `train`, `eval`, `predict`, `bench`, `compare`, `sweep` and the Python API get their
data. Nothing prints: the caller passes a `note` for the one line that says what is happening
and, for a progress bar, a `progress` factory (a context manager yielding a DownloadProgress),
entered only when something must be fetched. The download code (urllib, ssl) is imported only then.
"""

from __future__ import annotations

import shlex
from contextlib import nullcontext
from pathlib import Path

from softmax_cli.data.paths import raw_dir
from softmax_cli.data.store import dataset_present, holds_dataset_files
from softmax_cli.data.verified import verify_dataset
from softmax_cli.errors import DataError


def ready_dataset(data_dir: Path, note=lambda message: None, progress=None) -> None:
    """Fetch the dataset from the default mirrors when it is missing (import the four files when
    data_dir holds them itself: a natural mistake), then verify it before any work."""
    if not dataset_present(data_dir):
        from softmax_cli.data import download as dl

        with progress() if progress is not None else nullcontext() as bar:
            if holds_dataset_files(data_dir):
                note(f"{data_dir} holds the dataset files themselves; importing them into {raw_dir(data_dir)}")
                dl.fetch_dataset(data_dir, source_dir=data_dir, progress=bar)
            else:
                note(f"Fashion-MNIST not found in {data_dir}; downloading it")
                try:
                    dl.ensure_dataset(data_dir, progress=bar)
                except DataError as exc:
                    # Ready to paste: only DIR, the folder holding the four .gz files, is the user's to fill in.
                    raise DataError(
                        f"{exc}; --mirror and --from are options of `softmax download`: with the four .gz files "
                        f"in a folder DIR, run `softmax download --from DIR --data-dir {shlex.quote(str(data_dir))}` "
                        "first"
                    ) from None
    verify_dataset(data_dir)
