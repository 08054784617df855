"""Fetch the four Fashion-MNIST files into the data dir, each verified before it is accepted.

torchvision supplies what it knows: the file names, their md5s and the default mirror
(`torchvision.datasets.FashionMNIST.resources` / `.mirrors`). Its own downloader lacks
what a CLI needs, so this module adds it by hand: connect/read timeouts, a retry with
backoff on transient failures, atomic writes through a temporary file (no partial or
unverified file is ever left under a final name), byte progress reported through a
callback, an IDX header check, and one-line errors that say what to try.

Library code only: no Typer, no Rich, never prints. Every failure a user can act on is
raised as `DataError`.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import secrets
import ssl
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from softmax_cli.errors import DataError
from softmax_cli.paths import raw_dir

__all__ = [
    "DownloadProgress",
    "FileResult",
    "OFFICIAL_UNCOMPRESSED_MD5",
    "dataset_present",
    "ensure_dataset",
    "fetch_dataset",
    "raw_dir",
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

SUPPORTED_SCHEMES = ("http://", "https://", "file://")
CHUNK_BYTES = 1 << 20
RETRY_BACKOFF_S = 0.5  # waits 0.5 s, then 1 s, ... between tries of one mirror
USER_AGENT = "softmax-cli (+https://github.com/zalandoresearch/fashion-mnist)"

IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801
IMAGE_SIDE = 28

FROM_HINT = "import local files with --from DIR"
MIRROR_HINT = "try another --mirror URL"


class DownloadProgress(Protocol):
    """What the fetch reports while it works; the CLI renders it (ui.DownloadProgressBar)."""

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


class _SilentProgress:
    """The progress sink used when the caller passes none."""

    def file_started(self, name: str, total_bytes: int | None, source: str) -> None:
        pass

    def advance(self, n_bytes: int) -> None:
        pass

    def file_finished(self, name: str, status: str) -> None:
        pass

    def note(self, message: str) -> None:
        pass


class _Rejected(Exception):
    """The fetched bytes are wrong (md5, length, header): this source cannot serve the file."""

    def __init__(self, reason: str, transient: bool = False) -> None:
        super().__init__(reason)
        self.transient = transient


# --------------------------------------------------------------------------- public API


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


def ensure_dataset(data_dir: Path, progress: DownloadProgress | None = None) -> list[FileResult] | None:
    """Fetch from the default mirrors unless the dataset is already there; None when nothing was done."""
    if dataset_present(data_dir):
        return None
    return fetch_dataset(data_dir, progress=progress)


def fetch_dataset(
    data_dir: Path,
    *,
    mirrors: Sequence[str] | None = None,
    source_dir: Path | None = None,
    force: bool = False,
    progress: DownloadProgress | None = None,
    resources: Sequence[tuple[str, str]] | None = None,
    timeout: float = 30.0,
    retries: int = 2,
    uncompressed_md5s: Mapping[str, str] | None = None,
) -> list[FileResult]:
    """Put every resource's verified .gz and its extracted IDX file into raw_dir(data_dir).

    mirrors: base URLs tried in order (default: torchvision's); each file is URL + name.
    source_dir: import from a local folder instead (the .gz files, or the uncompressed
    IDX files). resources: (gz name, gz md5) pairs, default torchvision's.
    uncompressed_md5s: md5 per uncompressed name for uncompressed imports (default: the
    official table). A file already present and valid is reported "present" and left
    alone unless force. retries: extra tries per mirror on transient failures.
    Raises DataError with a one-line message on any failure.
    """
    if mirrors and source_dir is not None:
        raise DataError("give either --mirror URL or --from DIR, not both")
    report = progress if progress is not None else _SilentProgress()
    resource_list = list(resources) if resources is not None else _official_resources()
    expected_raw_md5 = uncompressed_md5s if uncompressed_md5s is not None else OFFICIAL_UNCOMPRESSED_MD5
    base_urls = [] if source_dir is not None else _base_urls(mirrors)
    import_plan = _plan_import(source_dir, resource_list) if source_dir is not None else {}

    folder = raw_dir(data_dir)
    _make_folder(folder)
    results = []
    for gz_name, gz_md5 in resource_list:
        present = None if force else _present_file(folder, gz_name, gz_md5, expected_raw_md5, report)
        if present is not None:
            report.file_finished(present.name, present.status)
            results.append(present)
        elif source_dir is not None:
            results.append(_import_file(import_plan[gz_name], folder, gz_name, gz_md5, expected_raw_md5, report))
        else:
            results.append(_download_file(base_urls, folder, gz_name, gz_md5, timeout, retries, report))
    return results


# --------------------------------------------------------------------------- sources


def _official_resources() -> list[tuple[str, str]]:
    """torchvision's (gz name, md5) list for Fashion-MNIST."""
    from torchvision.datasets import FashionMNIST

    return [(name, md5) for name, md5 in FashionMNIST.resources]


def _base_urls(mirrors: Sequence[str] | None) -> list[str]:
    """The mirrors to try, each ending in '/', checked for a supported scheme."""
    if not mirrors:
        from torchvision.datasets import FashionMNIST

        mirrors = FashionMNIST.mirrors
    urls = []
    for mirror in mirrors:
        if not mirror.lower().startswith(SUPPORTED_SCHEMES):
            raise DataError(f"unsupported mirror URL {mirror!r}: use an http://, https:// or file:// --mirror URL")
        try:
            parts = urllib.parse.urlsplit(mirror)
        except ValueError as exc:
            raise DataError(f"invalid mirror URL {mirror!r} ({exc}); check the --mirror URL") from None
        if parts.scheme.lower() != "file" and not parts.hostname:
            raise DataError(f"invalid mirror URL {mirror!r}: no host name; check the --mirror URL")
        urls.append(mirror if mirror.endswith("/") else mirror + "/")
    return urls


def _plan_import(source_dir: Path, resources: Sequence[tuple[str, str]]) -> dict[str, Path]:
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
        gz_path, uncompressed_path = source_dir / gz_name, source_dir / _uncompressed_name(gz_name)
        if gz_path.is_file():
            plan[gz_name] = gz_path
        elif uncompressed_path.is_file():
            plan[gz_name] = uncompressed_path
        else:
            missing.append(gz_name)
    if missing:
        raise DataError(
            f"--from folder {source_dir} is missing {', '.join(missing)} (or the uncompressed file); "
            "it must hold the four .gz files or the four uncompressed IDX files, or download with --mirror URL"
        )
    return plan


def _uncompressed_name(gz_name: str) -> str:
    return gz_name.removesuffix(".gz")


# --------------------------------------------------------------------------- present check


def _present_file(
    folder: Path, gz_name: str, gz_md5: str, expected_raw_md5: Mapping[str, str], report: DownloadProgress
) -> FileResult | None:
    """A "present" result when a valid copy is already in folder, else None.

    Valid: the .gz has the right md5 and its extracted file has a good IDX header (the
    extracted file is rebuilt from the verified .gz if it is missing or damaged), or,
    after an uncompressed-only import, the uncompressed file has its known md5.
    """
    gz_path = folder / gz_name
    uncompressed_name = _uncompressed_name(gz_name)
    uncompressed_path = folder / uncompressed_name
    if gz_path.is_file() and _md5_of(gz_path) == gz_md5:
        if not _has_valid_idx_header(uncompressed_path):
            report.note(f"re-extracting {uncompressed_name} from the verified {gz_name}")
            try:
                with _staging(folder) as new_temp:
                    temp = _extract_checked(gz_path, folder, uncompressed_name, new_temp, str(gz_path))
                    _place(temp, uncompressed_path)
            except _Rejected:
                return None  # a fresh fetch will say what is wrong
        return FileResult(gz_name, STATUS_PRESENT, str(gz_path))
    known_md5 = expected_raw_md5.get(uncompressed_name)
    if known_md5 and uncompressed_path.is_file() and _md5_of(uncompressed_path) == known_md5:
        return FileResult(uncompressed_name, STATUS_PRESENT, str(uncompressed_path))
    return None


def _md5_of(path: Path) -> str:
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
        _check_idx(path.name, head, path.stat().st_size)
    except (OSError, _Rejected):
        return False
    return True


# --------------------------------------------------------------------------- download


def _download_file(
    base_urls: Sequence[str],
    folder: Path,
    gz_name: str,
    gz_md5: str,
    timeout: float,
    retries: int,
    report: DownloadProgress,
) -> FileResult:
    """Fetch gz_name from the first mirror that serves a verified copy; DataError when none does."""
    failures = []
    for index, base_url in enumerate(base_urls):
        url = base_url + gz_name
        try:
            _download_with_retries(url, folder, gz_name, gz_md5, timeout, retries, report)
        except _Rejected as rejection:
            failures.append(f"{url}: {rejection}")
            if index + 1 < len(base_urls):
                report.note(f"{gz_name}: {url} failed ({rejection}); trying the next mirror")
            continue
        report.file_finished(gz_name, STATUS_DOWNLOADED)
        return FileResult(gz_name, STATUS_DOWNLOADED, url)
    raise DataError(f"could not download {gz_name}: {'; '.join(failures)}; {MIRROR_HINT}, or {FROM_HINT}")


def _download_with_retries(
    url: str, folder: Path, gz_name: str, gz_md5: str, timeout: float, retries: int, report: DownloadProgress
) -> None:
    """Try one mirror up to 1 + retries times, waiting a little longer after each transient failure."""
    attempts = 1 + max(0, retries)
    for attempt in range(1, attempts + 1):
        try:
            _download_once(url, folder, gz_name, gz_md5, timeout, report)
            return
        except _Rejected as rejection:
            if not rejection.transient or attempt == attempts:
                raise
            report.note(f"{gz_name}: {rejection}; retrying ({attempt + 1}/{attempts})")
            time.sleep(RETRY_BACKOFF_S * attempt)


def _download_once(url: str, folder: Path, gz_name: str, gz_md5: str, timeout: float, report: DownloadProgress) -> None:
    """One transfer: stream to a temp file, verify, extract, then rename both into place."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with _staging(folder) as new_temp:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                total = _content_length(response)
                report.file_started(gz_name, total, url)
                temp_gz = new_temp(gz_name)
                received, actual_md5 = _stream_to_file(response, temp_gz, report)
        except _LocalWriteError as exc:
            raise exc.as_data_error() from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise _Rejected(_describe_network_error(exc, timeout), _is_transient(exc)) from None
        except ValueError as exc:  # urllib's answer to a URL it cannot parse
            raise _Rejected(f"invalid URL ({exc})") from None
        if total is not None and received != total:
            raise _Rejected(f"truncated transfer: received {received} of {total} bytes", transient=True)
        _check_md5(gz_name, gz_md5, actual_md5)
        temp_uncompressed = _extract_checked(temp_gz, folder, _uncompressed_name(gz_name), new_temp, url)
        _place(temp_gz, folder / gz_name)
        _place(temp_uncompressed, folder / _uncompressed_name(gz_name))


def _content_length(response) -> int | None:
    """The announced size in bytes, or None when the server does not say."""
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _is_transient(exc: BaseException) -> bool:
    """Worth another try on the same mirror: timeouts, dropped connections, HTTP 5xx; not 404 or a missing file."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500
    if isinstance(exc, urllib.error.URLError):
        permanent = (
            FileNotFoundError,
            IsADirectoryError,
            NotADirectoryError,
            PermissionError,
            ssl.SSLCertVerificationError,
        )
        return not isinstance(exc.reason, permanent)
    return isinstance(exc, (TimeoutError, ConnectionError, http.client.HTTPException))


def _describe_network_error(exc: BaseException, timeout: float) -> str:
    """A short phrase for what went wrong with the transfer."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}".rstrip()
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (mirror down or unreachable)"
    if isinstance(reason, FileNotFoundError):
        return "no such file"
    if isinstance(reason, ConnectionError):
        return f"connection lost ({reason})"
    if isinstance(reason, http.client.HTTPException):
        return f"bad HTTP response ({type(reason).__name__}: {reason})"
    return f"unreachable ({reason})"


def _check_md5(name: str, expected: str, actual: str) -> None:
    if actual != expected:
        raise _Rejected(f"md5 mismatch for {name}: expected {expected}, got {actual}")


# --------------------------------------------------------------------------- import


def _import_file(
    source: Path,
    folder: Path,
    gz_name: str,
    gz_md5: str,
    expected_raw_md5: Mapping[str, str],
    report: DownloadProgress,
) -> FileResult:
    """Copy one file from the --from folder through a temp file, verify it and rename it into place."""
    is_gz = source.name == gz_name
    name = gz_name if is_gz else _uncompressed_name(gz_name)
    expected_md5 = gz_md5 if is_gz else expected_raw_md5.get(name)
    if not expected_md5:
        raise DataError(
            f"no md5 known for uncompressed {name}, so it cannot be verified; put the .gz files in --from DIR instead"
        )
    try:
        with _staging(folder) as new_temp:
            try:
                with source.open("rb") as reader:
                    report.file_started(name, source.stat().st_size, str(source))
                    temp = new_temp(name)
                    _, actual_md5 = _stream_to_file(reader, temp, report)
            except _LocalWriteError as exc:
                raise exc.as_data_error() from None
            except OSError as exc:
                raise DataError(f"cannot read {source}: {exc.strerror or exc}; check the --from DIR folder") from None
            _check_md5(name, expected_md5, actual_md5)
            if is_gz:
                temp_uncompressed = _extract_checked(temp, folder, _uncompressed_name(gz_name), new_temp, str(source))
                _place(temp, folder / gz_name)
                _place(temp_uncompressed, folder / _uncompressed_name(gz_name))
            else:
                _check_idx_file(temp, name)
                _place(temp, folder / name)
    except _Rejected as rejection:
        raise DataError(
            f"cannot import {source}: {rejection}; check the files in --from DIR, or download with --mirror URL"
        ) from None
    report.file_finished(name, STATUS_IMPORTED)
    return FileResult(name, STATUS_IMPORTED, str(source))


# --------------------------------------------------------------------------- files


class _LocalWriteError(OSError):
    """Writing into the data dir failed (permissions, full disk): no mirror can fix that."""

    def __init__(self, path: Path, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror)
        self.path = path
        self.cause = cause

    def as_data_error(self) -> DataError:
        return DataError(f"cannot write {self.path}: {self.cause.strerror or self.cause}; choose a writable --data-dir")


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or exc
        raise DataError(f"cannot create data folder {folder}: {reason}; choose a writable --data-dir") from None


@contextmanager
def _staging(folder: Path) -> Iterator:
    """Yield new_temp(name) -> a fresh hidden temp file in folder; on exit remove those not renamed away.

    Temp files live in the destination folder so that os.replace is an atomic rename,
    and they are removed whatever happens, so no partial or unverified file stays behind.
    """
    created: list[Path] = []

    def new_temp(name: str) -> Path:
        path = _create_temp_file(folder, name)
        created.append(path)
        return path

    try:
        yield new_temp
    finally:
        for path in created:
            with suppress(OSError):  # already renamed into place, or gone
                path.unlink()


def _create_temp_file(folder: Path, name: str) -> Path:
    """An empty, exclusively created `.name.partial-XXXXXXXX` in folder.

    Not tempfile.mkstemp: that creates the file 0600, and the renamed data file should
    get the usual permissions (0666 less the umask).
    """
    while True:
        path = folder / f".{name}.partial-{secrets.token_hex(4)}"
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            raise DataError(f"cannot write in {folder}: {exc.strerror or exc}; choose a writable --data-dir") from None


def _stream_to_file(reader: BinaryIO, path: Path, report: DownloadProgress) -> tuple[int, str]:
    """Copy reader into path chunk by chunk, reporting progress; return (bytes, md5 hex).

    Errors from reader propagate as they are; errors writing path become _LocalWriteError.
    """
    digest = hashlib.md5(usedforsecurity=False)
    received = 0
    try:
        out = path.open("wb")
    except OSError as exc:
        raise _LocalWriteError(path, exc) from exc
    with out:
        while chunk := reader.read(CHUNK_BYTES):
            digest.update(chunk)
            try:
                out.write(chunk)
            except OSError as exc:
                raise _LocalWriteError(path, exc) from exc
            received += len(chunk)
            report.advance(len(chunk))
    return received, digest.hexdigest()


def _extract_checked(gz_path: Path, folder: Path, name: str, new_temp, source: str) -> Path:
    """Decompress gz_path into a new temp file, check its IDX header, and return the temp path."""
    temp = new_temp(name)
    head = b""
    size = 0
    try:
        with gzip.open(gz_path, "rb") as reader, temp.open("wb") as out:
            while chunk := reader.read(CHUNK_BYTES):
                if len(head) < 16:
                    head += chunk[: 16 - len(head)]
                out.write(chunk)
                size += len(chunk)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise _Rejected(f"{gz_path.name} from {source} is not a valid gzip file ({exc})") from None
    except OSError as exc:
        raise _LocalWriteError(temp, exc).as_data_error() from None
    _check_idx(name, head, size)
    return temp


def _check_idx_file(path: Path, name: str) -> None:
    """Check the IDX header of an uncompressed file against its name and length."""
    with path.open("rb") as file:
        head = file.read(16)
    _check_idx(name, head, path.stat().st_size)


def _check_idx(name: str, head: bytes, size: int) -> None:
    """Raise _Rejected unless head is an IDX header for name's kind whose payload fills size bytes.

    Images ("idx3" in the name): magic 0x00000803, N, 28, 28, then N*28*28 bytes.
    Labels ("idx1"): magic 0x00000801, N, then N bytes.
    """
    wants_images = "idx3" in name
    expected_magic = IDX_IMAGES_MAGIC if wants_images else IDX_LABELS_MAGIC
    header_len = 16 if wants_images else 8
    if len(head) < header_len:
        raise _Rejected(f"{name} has a wrong IDX header: only {size} bytes long")
    magic, count = struct.unpack(">II", head[:8])
    if magic != expected_magic:
        raise _Rejected(f"{name} has a wrong IDX header: magic 0x{magic:08x}, expected 0x{expected_magic:08x}")
    item_bytes = 1
    if wants_images:
        rows, cols = struct.unpack(">II", head[8:16])
        if (rows, cols) != (IMAGE_SIDE, IMAGE_SIDE):
            raise _Rejected(f"{name} has a wrong IDX header: images are {rows}x{cols}, expected 28x28")
        item_bytes = rows * cols
    expected_size = header_len + count * item_bytes
    if size != expected_size:
        raise _Rejected(
            f"{name} has a wrong IDX header: it announces {count} items ({expected_size} bytes) but holds {size} bytes"
        )


def _place(temp: Path, final: Path) -> None:
    """Atomically rename a verified temp file onto its final name."""
    try:
        os.replace(temp, final)
    except OSError as exc:
        raise DataError(f"cannot write {final}: {exc.strerror or exc}; choose a writable --data-dir") from None
