"""The four Fashion-MNIST files in the data dir: what is there, and putting a verified file in place.

Every path that puts a file into the data dir (a download, an import with `--from DIR`,
the re-extraction of a damaged file from its verified .gz) shares this module: it writes
through softmax_cli.atomic and checks md5, IDX header and labels (softmax_cli.data.checks,
which also judges the files found in place) *before* the rename, so
no partial or unverified file is ever left under a final name, and it records what it
verified (softmax_cli.data.verified) so that later runs need not hash the files again. A file
found wrong in place (not the official content, damaged, a symlink loop, unreadable) is
replaced; the network code is in softmax_cli.data.download.

Library code only: no Typer, no Rich, no torch, never prints. Every failure a user can act
on is raised as `DataError`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Protocol

from softmax_cli.atomic import atomic_write
from softmax_cli.data import paths
from softmax_cli.data.checks import check_file, file_problem
from softmax_cli.data.fashion_mnist import RAW_MD5
from softmax_cli.data.paths import os_reason, raw_dir, regular_file
from softmax_cli.data.verified import VerifiedStamp, record_written, repair_hint
from softmax_cli.errors import DataError, DataFileRejected

__all__ = [
    "DownloadProgress",
    "FileResult",
    "dataset_present",
    "describe_repairs",
    "holds_dataset_files",
]

STATUS_PRESENT = "present"
STATUS_DOWNLOADED = "downloaded"
STATUS_IMPORTED = "imported"
STATUS_REPAIRED = "repaired"  # the uncompressed file was wrong or missing: extracted again from its verified .gz

CHUNK_BYTES = 1 << 20


class DownloadProgress(Protocol):
    """What the fetch reports while it works; the CLI renders it (a byte progress bar per file)."""

    def file_started(self, name: str, total_bytes: int | None, source: str) -> None: ...

    def advance(self, n_bytes: int) -> None: ...

    def file_finished(self, name: str, status: str) -> None:
        """status: "present" | "downloaded" | "imported" | "repaired"."""

    def note(self, message: str) -> None:
        """A side remark, e.g. "retrying X after timeout (2/3)"."""


@dataclass(frozen=True)
class FileResult:
    """One file of the dataset: its name, how it got there, and where it came from.

    A "repaired" one also says what was wrong (`problem`), the md5 of what was found in the
    uncompressed file's place (`found_md5`, None when nothing readable was) and of what is
    there now (`raw_md5`): describe_repairs tells swapped files apart by them.
    """

    name: str
    status: str
    source: str
    problem: str | None = None
    found_md5: str | None = None
    raw_md5: str | None = None


class Rejected(Exception):
    """The fetched bytes are wrong (md5, length, header): this source cannot serve the file."""

    def __init__(self, reason: str, transient: bool = False) -> None:
        super().__init__(reason)
        self.transient = transient


class LocalWriteError(OSError):
    """Writing into the data dir failed (permissions, full disk): no mirror can fix that."""

    def __init__(self, path: Path, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror)
        self.path = path
        self.cause = cause

    def as_data_error(self) -> DataError:
        return DataError(f"cannot write {self.path}: {self.cause.strerror or self.cause}; choose a writable --data-dir")


# --------------------------------------------------------------------------- what is there


def dataset_present(data_dir: Path) -> bool:
    """True when the four uncompressed IDX files are in raw_dir(data_dir), False when one is missing.

    Cheap on purpose (stat only, no torch): train/eval call it before reading, and the
    readers verify the files themselves. A file that is there but unusable (a symlink
    loop, a folder, unreadable) is a DataError saying so, not "missing".
    """
    folder = raw_dir(data_dir)
    present = True
    for name in RAW_MD5:
        try:
            if regular_file(folder / name) is None:
                present = False
        except DataError as exc:
            raise DataError(f"{exc}; {repair_hint(data_dir)}") from None
    return present


def holds_dataset_files(folder: Path) -> bool:
    """True when `folder` itself holds the four files, gzipped or not: something `--from` can import."""
    return all(_is_file(folder / name) or _is_file(folder / f"{name}.gz") for name in RAW_MD5)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def uncompressed_name(gz_name: str) -> str:
    return gz_name.removesuffix(".gz")


def present_file(
    folder: Path,
    gz_name: str,
    gz_md5: str,
    expected_raw_md5: Mapping[str, str],
    report: DownloadProgress,
    stamp: VerifiedStamp,
) -> FileResult | None:
    """A "present" result when a verified copy of the uncompressed file is in folder, else None.

    Verified: its stamp entry matches (no read at all), or it has its expected md5, or it
    can be rebuilt from a .gz with the right md5 that is already there. A .gz kept beside
    it must be the right one too. Anything else found in their place is reported in a
    note and left for the caller to replace.
    """
    raw_name = uncompressed_name(gz_name)
    raw_path, gz_path = folder / raw_name, folder / gz_name
    expected = expected_raw_md5.get(raw_name)
    problem = None
    try:
        status = regular_file(raw_path)
    except DataError as exc:  # a symlink loop, a folder, ...: replaced like a wrong file
        status, problem = None, str(exc)
    if status is not None:
        if expected or stamp.matching(raw_name, status.st_size, status.st_mtime_ns) is not None:
            problem = file_problem(raw_path, raw_name, expected, stamp=stamp)
        else:
            problem = f"{raw_path} is unverified"
        if problem is None:
            problem = _gz_problem(gz_path, gz_md5, stamp)
            if problem is None:
                return _present_result(folder, gz_name)
            report.note(f"{problem}; fetching it again")
            return None
    if _gz_problem(gz_path, gz_md5, stamp) is None and _is_file(gz_path):
        what = f"{problem}; re-extracting it" if problem else f"re-extracting {raw_name}"
        report.note(f"{what} from the verified {gz_name}")
        found_md5 = (md5_of(raw_path) or None) if status is not None else None  # before it is replaced
        try:
            with data_file(raw_path) as out:
                raw_md5 = extract_checked(gz_path, out, raw_name, str(gz_path))
        except Rejected:
            return None  # a fresh fetch will say what is wrong
        record_written(stamp, raw_path, raw_md5, gz_md5)
        return FileResult(
            gz_name, STATUS_REPAIRED, str(gz_path), problem or f"{raw_path} was missing", found_md5, raw_md5
        )
    if problem:
        report.note(f"{problem}; replacing it")
    return None


def describe_repairs(results: Sequence[FileResult]) -> list[str]:
    """One sentence per repair of a fetch: two files that held each other's content as one swap."""
    repaired = [result for result in results if result.status == STATUS_REPAIRED]
    sentences, told = [], set()
    for result in repaired:
        if result.name in told:
            continue
        told.add(result.name)
        partner = next(
            (
                other
                for other in repaired
                if other.name not in told
                and result.found_md5 is not None
                and result.found_md5 == other.raw_md5
                and other.found_md5 == result.raw_md5
            ),
            None,
        )
        if partner is not None:
            told.add(partner.name)
            first, second = uncompressed_name(result.name), uncompressed_name(partner.name)
            sentences.append(f"{first} and {second} were swapped; both extracted again from their verified .gz files")
        else:
            sentences.append(f"{result.problem}; extracted again from the verified {result.name}")
    return sentences


def _gz_problem(gz_path: Path, gz_md5: str, stamp: VerifiedStamp) -> str | None:
    """None when no .gz is there or it is the expected one (then recorded), else what is wrong with it."""
    try:
        if regular_file(gz_path) is None:
            return None
    except DataError as exc:
        return str(exc)
    return file_problem(gz_path, gz_path.name, gz_md5, stamp=stamp)


def _present_result(folder: Path, gz_name: str) -> FileResult:
    """Named after the .gz when it is there too (a download), else after the uncompressed file (an import of those)."""
    path = folder / gz_name
    if not _is_file(path):
        path = folder / uncompressed_name(gz_name)
    return FileResult(path.name, STATUS_PRESENT, str(path))


def md5_of(path: Path) -> str:
    """md5 of a file, or "" when it cannot be read."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with path.open("rb") as file:
            while chunk := file.read(CHUNK_BYTES):
                digest.update(chunk)
    except OSError:
        return ""
    return digest.hexdigest()


# --------------------------------------------------------------------------- import from a folder


def plan_import(source_dir: Path, resources: Sequence[tuple[str, str]]) -> dict[str, Path]:
    """Map each gz name to the file to import from source_dir: the .gz, else the uncompressed file.

    Checked before anything is written, so a folder missing a file imports nothing.
    """
    try:
        is_folder = stat.S_ISDIR(os.stat(source_dir).st_mode)
    except FileNotFoundError:
        is_folder = False
    except OSError as exc:  # a symlink loop or an unreadable parent is not "does not exist"
        raise DataError(f"cannot read --from folder {source_dir}: {os_reason(exc)}") from None
    if not is_folder:
        raise DataError(
            f"--from folder {source_dir} does not exist or is not a folder; give the folder holding the four .gz files"
        )
    plan: dict[str, Path] = {}
    missing = []
    for gz_name, _ in resources:
        gz_path, raw_path = source_dir / gz_name, source_dir / uncompressed_name(gz_name)
        # regular_file: a FIFO, a folder or a symlink loop under the file's name is said to be one
        if regular_file(gz_path) is not None:
            plan[gz_name] = gz_path
        elif regular_file(raw_path) is not None:
            plan[gz_name] = raw_path
        else:
            missing.append(gz_name)
    if missing:
        raise DataError(
            f"--from folder {source_dir} is missing {', '.join(missing)} (or the uncompressed file); "
            "it must hold the four .gz files or the four uncompressed IDX files, or download with --mirror URL"
        )
    return plan


def import_file(
    source: Path,
    folder: Path,
    gz_name: str,
    gz_md5: str,
    expected_raw_md5: Mapping[str, str],
    report: DownloadProgress,
    stamp: VerifiedStamp,
) -> FileResult:
    """Copy one file from the --from folder through a temp file, verify it and rename it into place."""
    is_gz = source.name == gz_name
    raw_name = uncompressed_name(gz_name)
    name = gz_name if is_gz else raw_name
    expected_md5 = gz_md5 if is_gz else expected_raw_md5.get(name)
    if not expected_md5:
        raise DataError(
            f"no md5 known for uncompressed {name}, so it cannot be verified; put the .gz files in --from DIR instead"
        )
    try:
        with open_source(source) as reader:
            report.file_started(name, os.fstat(reader.fileno()).st_size, str(source))
            if is_gz:
                with data_file(folder / raw_name) as raw_out, data_file(folder / gz_name) as gz_out:
                    _copy_from_source(reader, gz_out, source, report)
                    check_gz(gz_out, gz_name, expected_md5)
                    raw_md5 = extract_checked(Path(gz_out.name), raw_out, raw_name, str(source))
            else:
                with data_file(folder / name) as out:
                    _copy_from_source(reader, out, source, report)
                    out.flush()  # checked from its temp path
                    raw_md5 = check_file(Path(out.name), name, expected_md5, shown=name).md5
    except OSError as exc:  # opening or sizing the source; reading it is handled in _copy_from_source
        raise _unreadable_source(source, exc) from None
    except (Rejected, DataFileRejected) as rejection:
        raise DataError(
            f"cannot import {source}: {rejection}; check the files in --from DIR, or download with --mirror URL"
        ) from None
    record_written(stamp, folder / raw_name, raw_md5, gz_md5 if is_gz else None)
    if is_gz:
        record_written(stamp, folder / gz_name, gz_md5, None)
    report.file_finished(name, STATUS_IMPORTED)
    return FileResult(name, STATUS_IMPORTED, str(source))


def open_source(source: Path) -> BinaryIO:
    """Open a --from file; only a regular file (a FIFO would block, a device never end)."""
    if regular_file(source) is None:
        raise FileNotFoundError(2, "No such file or directory", str(source))
    return paths.open_data_file(source)  # looked up at call time: the one place data files are opened


def _copy_from_source(reader: BinaryIO, out: IO[bytes], source: Path, report: DownloadProgress) -> int:
    """stream_to_file for an import: a read error names the source, a write error the data dir."""
    try:
        return stream_to_file(reader, out, report)
    except LocalWriteError as exc:
        raise exc.as_data_error() from None
    except OSError as exc:
        raise _unreadable_source(source, exc) from None


def _unreadable_source(source: Path, exc: OSError) -> DataError:
    return DataError(f"cannot read {source}: {os_reason(exc)}; check the --from DIR folder")


# --------------------------------------------------------------------------- writing and checking


@contextmanager
def data_file(final: Path) -> Iterator[IO[bytes]]:
    """atomic_write(final), with its own failures (creating the temp file, fsync, rename) as DataError.

    Errors raised by the block itself pass through untouched: the caller knows whether
    they come from the network, the source file or the checks. Nest two (uncompressed
    outside, .gz inside) to rename the .gz into place first: a crash between the two
    renames then leaves a verified .gz, which the next run re-extracts.
    """
    entered = finished = False
    try:
        with atomic_write(final) as handle:
            entered = True
            yield handle
            finished = True
    except OSError as exc:
        if entered and not finished:
            raise
        where = final if entered else f"in {final.parent}"
        raise DataError(f"cannot write {where}: {exc.strerror or exc}; choose a writable --data-dir") from None


def stream_to_file(reader: BinaryIO, out: IO[bytes], report: DownloadProgress) -> int:
    """Copy reader into out chunk by chunk, reporting progress; return how many bytes.

    read1 where the reader has it: one system call per chunk, so progress (and the
    download's too-slow watch) sees a trickle as it comes instead of waiting for a full
    chunk. Errors from reader propagate as they are; errors writing out become LocalWriteError.
    """
    read = getattr(reader, "read1", None) or reader.read
    received = 0
    while chunk := read(CHUNK_BYTES):
        try:
            out.write(chunk)
        except OSError as exc:
            raise LocalWriteError(Path(out.name), exc) from exc
        received += len(chunk)
        report.advance(len(chunk))
    return received


def check_gz(gz_out: IO[bytes], gz_name: str, gz_md5: str) -> None:
    """Check a .gz just written to its temp file (flushed first) by its md5; Rejected if it is not the one."""
    gz_out.flush()  # read back from its temp path, here and by extract_checked
    problem = file_problem(Path(gz_out.name), gz_name, gz_md5, shown=gz_name)
    if problem is not None:
        raise Rejected(problem)


def extract_checked(gz_path: Path, out: IO[bytes], name: str, source: str) -> str:
    """Decompress gz_path into out, check what came out (softmax_cli.data.checks); return its md5.

    The .gz was verified by its md5 before, which fixes what it extracts to; Rejected when
    it is no gzip file or what it holds is not a valid IDX file of name's kind.
    """
    try:
        with gzip.open(gz_path, "rb") as reader:
            while chunk := reader.read(CHUNK_BYTES):
                out.write(chunk)
        out.flush()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise Rejected(f"{gz_path.name} from {source} is not a valid gzip file ({exc})") from None
    except OSError as exc:
        raise LocalWriteError(Path(out.name), exc).as_data_error() from None
    try:
        return check_file(Path(out.name), name, shown=name).md5
    except DataFileRejected as exc:
        raise Rejected(str(exc)) from None
