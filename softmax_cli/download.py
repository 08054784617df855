"""Fetch the four Fashion-MNIST files into the data dir, each verified before it is accepted.

torchvision supplies what it knows: the file names, their md5s and the default mirror
(`torchvision.datasets.FashionMNIST.resources` / `.mirrors`). Its own downloader lacks
what a CLI needs, so this module adds it by hand: connect/read timeouts, a retry with
backoff on transient failures, byte progress reported through a callback, and one-line
errors that say what to try. What a file must be (md5, IDX header), the atomic writes
that never leave a partial or unverified file under a final name, and the import from
a local folder live in softmax_cli.dataset_files; the names callers use are re-exported
here.

Library code only: no Typer, no Rich, no torch at import time, never prints. Every
failure a user can act on is raised as `DataError`.
"""

from __future__ import annotations

import http.client
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from softmax_cli.dataset_files import (
    IMAGE_SIDE,
    OFFICIAL_UNCOMPRESSED_MD5,
    STATUS_DOWNLOADED,
    STATUS_IMPORTED,
    STATUS_PRESENT,
    DownloadProgress,
    FileResult,
    LocalWriteError,
    Rejected,
    check_md5,
    data_file,
    dataset_present,
    extract_checked,
    holds_dataset_files,
    import_file,
    plan_import,
    present_file,
    stream_to_file,
    uncompressed_name,
)
from softmax_cli.errors import DataError
from softmax_cli.paths import raw_dir

__all__ = [
    "IMAGE_SIDE",
    "OFFICIAL_UNCOMPRESSED_MD5",
    "STATUS_DOWNLOADED",
    "STATUS_IMPORTED",
    "STATUS_PRESENT",
    "DownloadProgress",
    "FileResult",
    "dataset_present",
    "ensure_dataset",
    "fetch_dataset",
    "holds_dataset_files",
    "raw_dir",
]

SUPPORTED_SCHEMES = ("http://", "https://", "file://")
RETRY_BACKOFF_S = 0.5  # waits 0.5 s, then 1 s, ... between tries of one mirror
USER_AGENT = "softmax-cli (+https://github.com/zalandoresearch/fashion-mnist)"

FROM_HINT = "import local files with --from DIR"
MIRROR_HINT = "try another --mirror URL"


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


# --------------------------------------------------------------------------- public API


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
    import_plan = plan_import(source_dir, resource_list) if source_dir is not None else {}

    folder = raw_dir(data_dir)
    _make_folder(folder)
    results = []
    for gz_name, gz_md5 in resource_list:
        present = None if force else present_file(folder, gz_name, gz_md5, expected_raw_md5, report)
        if present is not None:
            report.file_finished(present.name, present.status)
            results.append(present)
        elif source_dir is not None:
            results.append(import_file(import_plan[gz_name], folder, gz_name, gz_md5, expected_raw_md5, report))
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


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or exc
        raise DataError(f"cannot create data folder {folder}: {reason}; choose a writable --data-dir") from None


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
        except Rejected as rejection:
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
        except Rejected as rejection:
            if not rejection.transient or attempt == attempts:
                raise
            report.note(f"{gz_name}: {rejection}; retrying ({attempt + 1}/{attempts})")
            time.sleep(RETRY_BACKOFF_S * attempt)


def _download_once(url: str, folder: Path, gz_name: str, gz_md5: str, timeout: float, report: DownloadProgress) -> None:
    """One transfer: stream to a temp file, verify, extract, then rename both into place."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    raw_name = uncompressed_name(gz_name)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        raise _network_rejection(exc, timeout) from None
    with response:
        total = _content_length(response)
        report.file_started(gz_name, total, url)
        # The .gz is renamed into place before its extracted file (see data_file).
        with data_file(folder / raw_name) as raw_out, data_file(folder / gz_name) as gz_out:
            try:
                received, actual_md5 = stream_to_file(response, gz_out, report)
            except LocalWriteError as exc:
                raise exc.as_data_error() from None
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
                raise _network_rejection(exc, timeout) from None
            if total is not None and received != total:
                raise Rejected(f"truncated transfer: received {received} of {total} bytes", transient=True)
            check_md5(gz_name, gz_md5, actual_md5)
            gz_out.flush()  # extract_checked reads the .gz back from its temp path
            extract_checked(Path(gz_out.name), raw_out, raw_name, url)


def _network_rejection(exc: Exception, timeout: float) -> Rejected:
    """What a failed request or transfer says about this mirror."""
    if isinstance(exc, ValueError):  # urllib's answer to a URL it cannot parse
        return Rejected(f"invalid URL ({exc})")
    return Rejected(_describe_network_error(exc, timeout), _is_transient(exc))


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
