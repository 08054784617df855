"""The four Fashion-MNIST files: what they are, how to check them, and how to take them from a folder.

The facts (names, official md5s, IDX headers) and the checks built on them live here,
apart from the network code in softmax_cli.download, because every path that puts a
file into the data dir shares them: a download, an import with `--from DIR`, and the
re-extraction of a damaged file from its verified .gz. Each writes through
softmax_cli.atomic, and checks md5 and IDX header *before* the rename, so no partial
or unverified file is ever left under a final name.

Library code only: no Typer, no Rich, no torch at import time, never prints. Every
failure a user can act on is raised as `DataError`.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Protocol

from softmax_cli.atomic import atomic_write
from softmax_cli.errors import DataError
from softmax_cli.paths import raw_dir

__all__ = [
    "IMAGE_SIDE",
    "OFFICIAL_UNCOMPRESSED_MD5",
    "DownloadProgress",
    "FileResult",
    "dataset_present",
    "holds_dataset_files",
]

# md5 of the UNCOMPRESSED official files, used to verify an import of uncompressed IDX
# files (torchvision only lists the md5s of the .gz files). Origin: the official Zalando
# Research release, as recorded in shared/data/fashion-mnist/PROVENANCE.md. The keys also
# name the four files every reader of the dataset needs.
OFFICIAL_UNCOMPRESSED_MD5: Mapping[str, str] = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}

STATUS_PRESENT = "present"
STATUS_DOWNLOADED = "downloaded"
STATUS_IMPORTED = "imported"

CHUNK_BYTES = 1 << 20
IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801
IMAGE_SIDE = 28  # pixels per side of every image; softmax_cli.data reads it from here


class DownloadProgress(Protocol):
    """What the fetch reports while it works; the CLI renders it (a byte progress bar per file)."""

    def file_started(self, name: str, total_bytes: int | None, source: str) -> None: ...

    def advance(self, n_bytes: int) -> None: ...

    def file_finished(self, name: str, status: str) -> None:
        """status: "present" | "downloaded" | "imported"."""

    def note(self, message: str) -> None:
        """A side remark, e.g. "retrying X after timeout (2/3)"."""


@dataclass(frozen=True)
class FileResult:
    """One file of the dataset: its name, how it got there, and where it came from."""

    name: str
    status: str
    source: str


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
    """True when the four uncompressed IDX files exist in raw_dir(data_dir).

    Cheap on purpose (no md5, no torchvision import): train/eval call it before reading,
    and the readers check the headers themselves.
    """
    folder = raw_dir(data_dir)
    return all((folder / name).is_file() for name in OFFICIAL_UNCOMPRESSED_MD5)


def holds_dataset_files(folder: Path) -> bool:
    """True when `folder` itself holds the four files, gzipped or not: something `--from` can import."""
    return all((folder / name).is_file() or (folder / f"{name}.gz").is_file() for name in OFFICIAL_UNCOMPRESSED_MD5)


def uncompressed_name(gz_name: str) -> str:
    return gz_name.removesuffix(".gz")


def present_file(
    folder: Path, gz_name: str, gz_md5: str, expected_raw_md5: Mapping[str, str], report: DownloadProgress
) -> FileResult | None:
    """A "present" result when a valid copy is already in folder, else None.

    Valid: the .gz has the right md5 and its extracted file has a good IDX header (the
    extracted file is rebuilt from the verified .gz if it is missing or damaged), or,
    after an uncompressed-only import, the uncompressed file has its known md5.
    """
    gz_path = folder / gz_name
    raw_name = uncompressed_name(gz_name)
    raw_path = folder / raw_name
    if gz_path.is_file() and md5_of(gz_path) == gz_md5:
        if not _has_valid_idx_header(raw_path):
            report.note(f"re-extracting {raw_name} from the verified {gz_name}")
            try:
                with data_file(raw_path) as out:
                    extract_checked(gz_path, out, raw_name, str(gz_path))
            except Rejected:
                return None  # a fresh fetch will say what is wrong
        return FileResult(gz_name, STATUS_PRESENT, str(gz_path))
    known_md5 = expected_raw_md5.get(raw_name)
    if known_md5 and raw_path.is_file() and md5_of(raw_path) == known_md5:
        return FileResult(raw_name, STATUS_PRESENT, str(raw_path))
    return None


def md5_of(path: Path) -> str:
    """md5 of a file (torchvision's helper), or "" when it cannot be read."""
    from torchvision.datasets.utils import calculate_md5

    try:
        return calculate_md5(path)
    except OSError:
        return ""


def _has_valid_idx_header(path: Path) -> bool:
    """Whether path is an IDX file whose header matches its name and its length."""
    try:
        with path.open("rb") as file:
            head = file.read(16)
        check_idx(path.name, head, path.stat().st_size)
    except (OSError, Rejected):
        return False
    return True


# --------------------------------------------------------------------------- import from a folder


def plan_import(source_dir: Path, resources: Sequence[tuple[str, str]]) -> dict[str, Path]:
    """Map each gz name to the file to import from source_dir: the .gz, else the uncompressed file.

    Checked before anything is written, so a folder missing a file imports nothing.
    """
    if not source_dir.is_dir():
        raise DataError(
            f"--from folder {source_dir} does not exist or is not a folder; give the folder holding the four .gz files"
        )
    plan: dict[str, Path] = {}
    missing = []
    for gz_name, _ in resources:
        gz_path, raw_path = source_dir / gz_name, source_dir / uncompressed_name(gz_name)
        if gz_path.is_file():
            plan[gz_name] = gz_path
        elif raw_path.is_file():
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
        with source.open("rb") as reader:
            report.file_started(name, source.stat().st_size, str(source))
            if is_gz:
                with data_file(folder / raw_name) as raw_out, data_file(folder / gz_name) as gz_out:
                    _, actual_md5 = _copy_from_source(reader, gz_out, source, report)
                    check_md5(name, expected_md5, actual_md5)
                    gz_out.flush()  # extract_checked reads the .gz back from its temp path
                    extract_checked(Path(gz_out.name), raw_out, raw_name, str(source))
            else:
                with data_file(folder / name) as out:
                    _, actual_md5 = _copy_from_source(reader, out, source, report)
                    check_md5(name, expected_md5, actual_md5)
                    out.flush()
                    check_idx_file(Path(out.name), name)
    except OSError as exc:  # opening or sizing the source; reading it is handled in _copy_from_source
        raise _unreadable_source(source, exc) from None
    except Rejected as rejection:
        raise DataError(
            f"cannot import {source}: {rejection}; check the files in --from DIR, or download with --mirror URL"
        ) from None
    report.file_finished(name, STATUS_IMPORTED)
    return FileResult(name, STATUS_IMPORTED, str(source))


def _copy_from_source(reader: BinaryIO, out: IO[bytes], source: Path, report: DownloadProgress) -> tuple[int, str]:
    """stream_to_file for an import: a read error names the source, a write error the data dir."""
    try:
        return stream_to_file(reader, out, report)
    except LocalWriteError as exc:
        raise exc.as_data_error() from None
    except OSError as exc:
        raise _unreadable_source(source, exc) from None


def _unreadable_source(source: Path, exc: OSError) -> DataError:
    return DataError(f"cannot read {source}: {exc.strerror or exc}; check the --from DIR folder")


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


def stream_to_file(reader: BinaryIO, out: IO[bytes], report: DownloadProgress) -> tuple[int, str]:
    """Copy reader into out chunk by chunk, reporting progress; return (bytes, md5 hex).

    Errors from reader propagate as they are; errors writing out become LocalWriteError.
    """
    digest = hashlib.md5(usedforsecurity=False)
    received = 0
    while chunk := reader.read(CHUNK_BYTES):
        digest.update(chunk)
        try:
            out.write(chunk)
        except OSError as exc:
            raise LocalWriteError(Path(out.name), exc) from exc
        received += len(chunk)
        report.advance(len(chunk))
    return received, digest.hexdigest()


def extract_checked(gz_path: Path, out: IO[bytes], name: str, source: str) -> None:
    """Decompress gz_path into out and check the IDX header of what came out."""
    head = b""
    size = 0
    try:
        with gzip.open(gz_path, "rb") as reader:
            while chunk := reader.read(CHUNK_BYTES):
                if len(head) < 16:
                    head += chunk[: 16 - len(head)]
                out.write(chunk)
                size += len(chunk)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise Rejected(f"{gz_path.name} from {source} is not a valid gzip file ({exc})") from None
    except OSError as exc:
        raise LocalWriteError(Path(out.name), exc).as_data_error() from None
    check_idx(name, head, size)


def check_md5(name: str, expected: str, actual: str) -> None:
    if actual != expected:
        raise Rejected(f"md5 mismatch for {name}: expected {expected}, got {actual}")


def check_idx_file(path: Path, name: str) -> None:
    """Check the IDX header of an uncompressed file against its name and length."""
    with path.open("rb") as file:
        head = file.read(16)
    check_idx(name, head, path.stat().st_size)


def check_idx(name: str, head: bytes, size: int) -> None:
    """Raise Rejected unless head is an IDX header for name's kind whose payload fills size bytes.

    Images ("idx3" in the name): magic 0x00000803, N, 28, 28, then N*28*28 bytes.
    Labels ("idx1"): magic 0x00000801, N, then N bytes.
    """
    wants_images = "idx3" in name
    expected_magic = IDX_IMAGES_MAGIC if wants_images else IDX_LABELS_MAGIC
    header_len = 16 if wants_images else 8
    if len(head) < header_len:
        raise Rejected(f"{name} has a wrong IDX header: only {size} bytes long")
    magic, count = struct.unpack(">II", head[:8])
    if magic != expected_magic:
        raise Rejected(f"{name} has a wrong IDX header: magic 0x{magic:08x}, expected 0x{expected_magic:08x}")
    item_bytes = 1
    if wants_images:
        rows, cols = struct.unpack(">II", head[8:16])
        if (rows, cols) != (IMAGE_SIDE, IMAGE_SIDE):
            raise Rejected(f"{name} has a wrong IDX header: images are {rows}x{cols}, expected 28x28")
        item_bytes = rows * cols
    expected_size = header_len + count * item_bytes
    if size != expected_size:
        raise Rejected(
            f"{name} has a wrong IDX header: it announces {count} items ({expected_size} bytes) but holds {size} bytes"
        )
