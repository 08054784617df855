"""What this tool has verified in a data dir, so that later runs need not hash 55 MB again.

A file is the official one when its md5 is the official uncompressed file's
(softmax_cli.data.fashion_mnist.RAW_MD5), besides having a good IDX header and labels 0..9.
Hashing the four files costs about a tenth of a second, so each verification is recorded
in a small stamp next to them (`.softmax-cli-verified.json`, written atomically): per file
its size, mtime (ns) and md5, and the md5 of the .gz it was extracted from. A later run
trusts a file whose size and mtime are still those it was verified with and verifies
again, by md5, any file that changed. Train and test files swapped, a random payload or a
damaged file are refused with one line naming the file; `softmax download` replaces them.

The limit of the shortcut: a file rewritten in place with the same size *and* its old
mtime restored is not noticed; `softmax download --force` fetches everything afresh.

Standard library only, never prints; failures a user can act on are DataError.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from collections.abc import Mapping
from pathlib import Path

from softmax_cli.atomic import atomic_write
from softmax_cli.data.fashion_mnist import RAW_MD5, SPLIT_FILES, SPLIT_SIZES
from softmax_cli.data.idx import IdxError, IdxFile, check_payload, holds_images, read_idx_file, regular_file
from softmax_cli.data.paths import raw_dir
from softmax_cli.errors import DataError

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
    """Verify the files of `folder` named in expected_md5s (IDX header, labels, md5) and record them.

    For a dataset other than the official one (a small synthetic set, say): its readers
    then accept it as they accept a verified official copy. DataError if a file fails.
    """
    for name, expected in expected_md5s.items():
        idx_file = _read_checked(folder / name, name)
        actual = hashlib.md5(idx_file.data, usedforsecurity=False).hexdigest()
        if actual != expected:
            raise DataError(f"{folder / name}: md5 {actual}, expected {expected}")
        VerifiedStamp(folder).record(name, idx_file.size, idx_file.mtime_ns, actual)


def repair_hint(data_dir: Path) -> str:
    return f"run `softmax download --data-dir {shlex.quote(str(data_dir))}` to repair it"


def read_verified(data_dir: Path, name: str) -> IdxFile:
    """Read the uncompressed file `name` of data_dir: a valid IDX file of verified content, else DataError.

    Verified: its stamp entry still matches its size and mtime, or its md5 is the official
    one (then it is recorded, so the next run need not hash it).
    """
    folder = raw_dir(data_dir)
    path = folder / name
    try:
        idx_file = _read_checked(path, name)
    except DataError as exc:
        raise DataError(f"{exc}; {repair_hint(data_dir)}") from None
    stamp = VerifiedStamp(folder)
    if stamp.matching(name, idx_file.size, idx_file.mtime_ns) is None:
        actual = hashlib.md5(idx_file.data, usedforsecurity=False).hexdigest()
        expected = RAW_MD5[name]
        if actual != expected:
            raise DataError(f"{_not_official(path, name, actual, expected, idx_file.count)}; {repair_hint(data_dir)}")
        stamp.record(name, idx_file.size, idx_file.mtime_ns, actual)
    return idx_file


def verify_dataset(data_dir: Path) -> None:
    """Check the four files before any work starts (before a run folder or a table appears).

    Files recorded as verified cost a stat each; any other is read and verified now (the
    readers will find it recorded). DataError naming the first file that fails.
    """
    folder = raw_dir(data_dir)
    stamp = VerifiedStamp(folder)
    for name in RAW_MD5:
        try:
            status = regular_file(folder / name)
        except DataError as exc:
            raise DataError(f"{exc}; {repair_hint(data_dir)}") from None
        if status is None or stamp.matching(name, status.st_size, status.st_mtime_ns) is None:
            read_verified(data_dir, name)


def _read_checked(path: Path, name: str) -> IdxFile:
    """read_idx_file, with a bad header or label as a DataError naming the file."""
    try:
        idx_file = read_idx_file(path, name)
        check_payload(name, idx_file.payload)
    except IdxError as exc:  # its message starts with the name: make that the whole path
        raise DataError(str(path) + str(exc).removeprefix(name)) from None
    return idx_file


def _not_official(path: Path, name: str, actual: str, expected: str, count: int) -> str:
    """Why a file is refused, with the likeliest cause when its size tells (train and test swapped)."""
    reason = f"{path} is not the official Fashion-MNIST file (md5 {actual}, expected {expected})"
    split = next((split for split, files in SPLIT_FILES.items() if name in files), None)
    if split is not None and count != SPLIT_SIZES[split]:
        what = "images" if holds_images(name) else "labels"
        others = [other for other, size in SPLIT_SIZES.items() if size == count and other != split]
        guess = f" (as the {others[0]} split's does: train and test swapped?)" if others else ""
        reason += f"; it holds {count:,} {what} where the official one holds {SPLIT_SIZES[split]:,}{guess}"
    return reason


def raw_problem(path: Path, name: str, expected: str, stamp: VerifiedStamp) -> str | None:
    """None when path holds the expected content (then recorded in stamp), else a sentence saying what is wrong."""
    try:
        idx_file = _read_checked(path, name)
    except DataError as exc:
        return str(exc)
    actual = hashlib.md5(idx_file.data, usedforsecurity=False).hexdigest()
    if actual != expected:
        return _not_official(path, name, actual, expected, idx_file.count)
    stamp.record(name, idx_file.size, idx_file.mtime_ns, actual)
    return None


def record_written(stamp: VerifiedStamp, path: Path, md5: str, gz_md5: str | None) -> None:
    """Record a file this run has just verified and renamed into place."""
    try:
        status = os.stat(path)
    except OSError:
        return
    stamp.record(path.name, status.st_size, status.st_mtime_ns, md5, gz_md5)
