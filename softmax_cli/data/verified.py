"""What this tool has verified in a data dir, so that later runs need not hash 55 MB again.

A file is the official one when its md5 is the official uncompressed file's
(softmax_cli.data.fashion_mnist.RAW_MD5), besides having a good IDX header and labels 0..9:
the checks are softmax_cli.data.checks', the md5s are passed in (the official ones by
default). Hashing the four files costs about a tenth of a second, so each verification is
recorded in a small stamp next to them (`.softmax-cli-verified.json`, written atomically):
per file its size, mtime (ns) and md5, and the md5 of the .gz it was extracted from. A later
run, reader or download alike, trusts a file whose size and mtime are still those it was
verified with and verifies again, by md5, any file that changed. Train and test files
swapped, a random payload or a damaged file are refused with one line naming the file;
`softmax download` replaces them.

The limit of the shortcut: a file rewritten in place with the same size *and* its old
mtime restored is not noticed; `softmax download --force` fetches everything afresh.

Standard library only, never prints; failures a user can act on are DataError.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from pathlib import Path

from softmax_cli.atomic import atomic_write
from softmax_cli.data.checks import IdxFile, check_file, file_problem
from softmax_cli.data.fashion_mnist import RAW_MD5
from softmax_cli.data.paths import raw_dir, regular_file
from softmax_cli.errors import DataError, DataFileRejected

STAMP_NAME = ".softmax-cli-verified.json"
STAMP_FORMAT = "softmax-cli verified dataset files"


class VerifiedStamp:
    """What this tool verified in one raw folder: per file its size, mtime (ns) and md5, and the
    md5 of the .gz it was extracted from, if any.

    A file whose size and mtime still match its entry is trusted without reading it. The
    stamp is housekeeping: when it cannot be read it counts as empty, when it cannot be
    written (a read-only data dir) the next run simply verifies again.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.entries = self._load()

    def matching(self, name: str, size: int, mtime_ns: int) -> dict | None:
        entry = self.entries.get(name)
        if entry is not None and entry["size"] == size and entry["mtime_ns"] == mtime_ns:
            return entry
        return None

    def record(self, name: str, size: int, mtime_ns: int, md5: str, gz_md5: str | None = None) -> None:
        entry = {"size": size, "mtime_ns": mtime_ns, "md5": md5, "gz_md5": gz_md5}
        # Re-read first: another process may have recorded another file meanwhile.
        self.entries = {**self._load(), name: entry}
        payload = {"format": STAMP_FORMAT, "version": 1, "files": self.entries}
        try:
            with atomic_write(self.folder / STAMP_NAME, "w") as out:
                json.dump(payload, out, indent=1, sort_keys=True)
        except OSError:
            pass

    def _load(self) -> dict[str, dict]:
        try:
            raw = json.loads((self.folder / STAMP_NAME).read_text(encoding="utf-8"))
            files = raw["files"] if raw.get("format") == STAMP_FORMAT else {}
            return {
                str(name): entry
                for name, entry in files.items()
                if isinstance(entry.get("size"), int)
                and isinstance(entry.get("mtime_ns"), int)
                and isinstance(entry.get("md5"), str)
            }
        except (OSError, ValueError, TypeError, AttributeError, KeyError):
            return {}


def record_verified(folder: Path, expected_md5s: Mapping[str, str]) -> None:
    """Verify the files of `folder` named in expected_md5s (IDX header, labels, md5; a .gz by md5) and record them.

    For a dataset other than the official one (a small synthetic set, say): its content is
    checked against the md5s given, and once recorded its readers accept it, as they accept
    a verified official copy. DataFileRejected if a file fails.
    """
    stamp = VerifiedStamp(folder)
    for name, expected in expected_md5s.items():
        problem = file_problem(folder / name, name, expected)
        if problem is not None:
            raise DataFileRejected(problem)
        record_written(stamp, folder / name, expected, None)


def repair_hint(data_dir: Path) -> str:
    return f"run `softmax download --data-dir {shlex.quote(str(data_dir))}` to repair it"


def read_verified(
    data_dir: Path, name: str, expected_md5s: Mapping[str, str] = RAW_MD5, count: int | None = None
) -> IdxFile:
    """Read the uncompressed file `name` of data_dir: a valid IDX file of verified content, else DataError.

    Verified: its stamp entry still matches its size and mtime, or its md5 is the one in
    expected_md5s (then it is recorded, so the next run need not hash it). count: how many
    items it must hold (a labels file: as many as its images).
    """
    folder = raw_dir(data_dir)
    try:
        return check_file(folder / name, name, expected_md5s[name], stamp=VerifiedStamp(folder), count=count)
    except DataError as exc:
        raise type(exc)(f"{exc}; {repair_hint(data_dir)}") from None


def verify_dataset(data_dir: Path, expected_md5s: Mapping[str, str] = RAW_MD5) -> None:
    """Check the four files before any work starts (before a run folder or a table appears).

    Files recorded as verified cost a stat each; any other is read and verified now against
    expected_md5s (the readers will find it recorded). DataError naming the first file that fails.
    """
    folder = raw_dir(data_dir)
    stamp = VerifiedStamp(folder)
    for name in RAW_MD5:
        try:
            status = regular_file(folder / name)
        except DataError as exc:
            raise DataError(f"{exc}; {repair_hint(data_dir)}") from None
        if status is None or stamp.matching(name, status.st_size, status.st_mtime_ns) is None:
            read_verified(data_dir, name, expected_md5s)


def record_written(stamp: VerifiedStamp, path: Path, md5: str, gz_md5: str | None) -> None:
    """Record a file this run has just verified and renamed into place."""
    try:
        status = os.stat(path)
    except OSError:
        return
    stamp.record(path.name, status.st_size, status.st_mtime_ns, md5, gz_md5)
