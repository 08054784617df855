"""Fetch the four Fashion-MNIST files into the data dir, each verified before it is accepted.

The file names, their md5s and the default mirror are torchvision's
(`FashionMNIST.resources` / `.mirrors`), written down in softmax_cli.data.fashion_mnist so
that a no-op download imports neither torchvision nor torch. torchvision's downloader
lacks what a CLI needs, so this module adds it by hand: connect/read timeouts, a minimum
transfer rate (softmax_cli.data.transfer_watch: urllib's timeout is per read, so a trickling
mirror would never end), a retry with backoff on transient failures, byte progress
reported through a callback, and one-line errors that say what to try. What a file must
be is checked in softmax_cli.data.checks; the atomic writes that never leave a partial or
unverified file under a final name, and the import from a local folder, live in
softmax_cli.data.store and softmax_cli.data.verified; the names callers use are re-exported here.

Library code only: no Typer, no Rich, no torch, never prints. Every failure a user can
act on is raised as `DataError`.
"""

from __future__ import annotations

import errno
import http.client
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from softmax_cli.data.fashion_mnist import GZ_RESOURCES, MIRRORS, RAW_MD5
from softmax_cli.data.paths import raw_dir
from softmax_cli.data.store import (
    STATUS_DOWNLOADED,
    STATUS_IMPORTED,
    STATUS_PRESENT,
    STATUS_REPAIRED,
    DownloadProgress,
    FileResult,
    LocalWriteError,
    Rejected,
    check_gz,
    data_file,
    dataset_present,
    describe_repairs,
    extract_checked,
    holds_dataset_files,
    import_file,
    plan_import,
    present_file,
    stream_to_file,
    uncompressed_name,
)
from softmax_cli.data.transfer_watch import TransferWatch
from softmax_cli.data.verified import VerifiedStamp, record_written
from softmax_cli.errors import DataError

__all__ = [
    "STATUS_DOWNLOADED",
    "STATUS_IMPORTED",
    "STATUS_PRESENT",
    "STATUS_REPAIRED",
    "DownloadProgress",
    "FileResult",
    "dataset_present",
    "describe_repairs",
    "ensure_dataset",
    "fetch_dataset",
    "holds_dataset_files",
    "mirror_problem",
    "raw_dir",
]

SUPPORTED_SCHEMES = ("http://", "https://", "file://")
RETRY_BACKOFF_S = 0.5  # waits 0.5 s, then 1 s, ... between tries of one mirror
# A mirror that delivers under MIN_RATE_BYTES_PER_S over RATE_WINDOW_S seconds is abandoned
# (not retried: a slow mirror stays slow) and the next one tried. 10 kB/s still fetches the
# 26 MB train images in 45 minutes; a mirror that has sent almost nothing is left after 30 s.
MIN_RATE_BYTES_PER_S = 10_000.0
RATE_WINDOW_S = 30.0
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
    min_rate: float | None = None,
    rate_window: float | None = None,
) -> list[FileResult]:
    """Put every resource's verified .gz and its extracted IDX file into raw_dir(data_dir).

    mirrors: base URLs tried in order (default: torchvision's); each file is URL + name.
    source_dir: import from a local folder instead (the .gz files, or the uncompressed
    IDX files). resources: (gz name, gz md5) pairs, default torchvision's.
    uncompressed_md5s: md5 per uncompressed name for uncompressed imports (default: the
    official table). A file already present and
    verified is reported "present" and left alone unless force; one found wrong is
    replaced: "repaired" when extracted again from its verified .gz (describe_repairs
    says what was wrong), else downloaded or imported again. retries: extra tries per mirror
    on transient failures. min_rate (bytes/s)
    and rate_window (s): a mirror slower than that is abandoned (defaults: the module's
    MIN_RATE_BYTES_PER_S and RATE_WINDOW_S). Raises DataError with a one-line message on
    any failure.
    """
    if mirrors and source_dir is not None:
        raise DataError("give either --mirror URL or --from DIR, not both")
    report = progress if progress is not None else _SilentProgress()
    resource_list = list(resources) if resources is not None else list(GZ_RESOURCES)
    expected_raw_md5 = uncompressed_md5s if uncompressed_md5s is not None else RAW_MD5
    base_urls = [] if source_dir is not None else _base_urls(mirrors)
    import_plan = plan_import(source_dir, resource_list) if source_dir is not None else {}
    limits = _Limits(
        timeout,
        retries,
        MIN_RATE_BYTES_PER_S if min_rate is None else min_rate,
        RATE_WINDOW_S if rate_window is None else rate_window,
    )

    folder = raw_dir(data_dir)
    _make_folder(folder)
    stamp = VerifiedStamp(folder)
    results = []
    for gz_name, gz_md5 in resource_list:
        present = None if force else present_file(folder, gz_name, gz_md5, expected_raw_md5, report, stamp)
        if present is not None:
            report.file_finished(present.name, present.status)
            results.append(present)
        elif source_dir is not None:
            source = import_plan[gz_name]
            results.append(import_file(source, folder, gz_name, gz_md5, expected_raw_md5, report, stamp))
        else:
            results.append(_download_file(base_urls, folder, (gz_name, gz_md5), limits, report, stamp))
    return results


@dataclass(frozen=True)
class _Limits:
    """How long one transfer may take: per socket operation, tries per mirror, and the minimum rate."""

    timeout: float
    retries: int
    min_rate: float
    rate_window: float


# --------------------------------------------------------------------------- sources


def mirror_problem(mirror: str) -> str | None:
    """Why `mirror` cannot be used as a base URL, or None when it can: checked before any work."""
    if not mirror.strip():
        return "an empty mirror URL; give a base URL such as https://example.org/fashion-mnist/"
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in mirror):
        return f"mirror URL {mirror!r} contains spaces or control characters"
    if not mirror.lower().startswith(SUPPORTED_SCHEMES):
        local = " (a local folder: file:///path/to/folder, or --from DIR)" if "://" not in mirror else ""
        return f"unsupported mirror URL {mirror!r}: use an http://, https:// or file:// URL{local}"
    try:
        parts = urllib.parse.urlsplit(mirror)
        parts.port  # noqa: B018 (parses the port: "http://host:x/" raises here)
    except ValueError as exc:
        return f"invalid mirror URL {mirror!r} ({exc})"
    if parts.scheme.lower() == "file":
        if parts.netloc not in ("", "localhost") or not parts.path:
            return f"invalid mirror URL {mirror!r}: a file:// URL names a local folder, as in file:///path/to/folder"
    elif not parts.hostname:
        return f"invalid mirror URL {mirror!r}: no host name"
    return None


def _base_urls(mirrors: Sequence[str] | None) -> list[str]:
    """The mirrors to try, each ending in '/', checked (mirror_problem) before anything is fetched."""
    urls = []
    for mirror in mirrors or MIRRORS:
        problem = mirror_problem(mirror)
        if problem is not None:
            raise DataError(f"{problem}; check the --mirror URL")
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
    file: tuple[str, str],
    limits: _Limits,
    report: DownloadProgress,
    stamp: VerifiedStamp,
) -> FileResult:
    """Fetch one (gz name, gz md5) from the first mirror that serves a verified copy; DataError when none does."""
    gz_name = file[0]
    failures = []
    for index, base_url in enumerate(base_urls):
        url = base_url + gz_name
        try:
            _download_with_retries(url, folder, file, limits, report, stamp)
        except Rejected as rejection:
            failures.append(f"{url}: {rejection}")
            if index + 1 < len(base_urls):
                report.note(f"{gz_name}: {url} failed ({rejection}); trying the next mirror")
            continue
        report.file_finished(gz_name, STATUS_DOWNLOADED)
        return FileResult(gz_name, STATUS_DOWNLOADED, url)
    raise DataError(f"could not download {gz_name}: {'; '.join(failures)}; {MIRROR_HINT}, or {FROM_HINT}")


def _download_with_retries(
    url: str,
    folder: Path,
    file: tuple[str, str],
    limits: _Limits,
    report: DownloadProgress,
    stamp: VerifiedStamp,
) -> None:
    """Try one mirror up to 1 + retries times, waiting a little longer after each transient failure."""
    attempts = 1 + max(0, limits.retries)
    for attempt in range(1, attempts + 1):
        try:
            _download_once(url, folder, file, limits, report, stamp)
            return
        except Rejected as rejection:
            if not rejection.transient or attempt == attempts:
                raise
            report.note(f"{file[0]}: {rejection}; retrying ({attempt + 1}/{attempts})")
            time.sleep(RETRY_BACKOFF_S * attempt)


def _download_once(
    url: str,
    folder: Path,
    file: tuple[str, str],
    limits: _Limits,
    report: DownloadProgress,
    stamp: VerifiedStamp,
) -> None:
    """One transfer under a TransferWatch: stream to a temp file, verify, extract, then rename both into place."""
    with TransferWatch(limits.min_rate, limits.rate_window) as watch:
        raw_md5 = _transfer(url, folder, file, limits.timeout, _Counting(report, watch), watch)
    record_written(stamp, folder / uncompressed_name(file[0]), raw_md5, file[1])
    record_written(stamp, folder / file[0], file[1], None)


def _transfer(url: str, folder: Path, file: tuple[str, str], timeout: float, report: DownloadProgress, watch) -> str:
    """The transfer itself; returns the md5 of the extracted file. A too-slow transfer is Rejected as such."""
    gz_name, gz_md5 = file
    raw_name = uncompressed_name(gz_name)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        response = watch.opener().open(request, timeout=timeout)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        raise _network_rejection(exc, timeout, watch) from None
    with response:
        total = _content_length(response)
        report.file_started(gz_name, total, url)
        # The .gz is renamed into place before its extracted file (see data_file).
        with data_file(folder / raw_name) as raw_out, data_file(folder / gz_name) as gz_out:
            try:
                received = stream_to_file(response, gz_out, report)
            except LocalWriteError as exc:
                raise exc.as_data_error() from None
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
                raise _network_rejection(exc, timeout, watch) from None
            watch.stop()
            if watch.abandoned:
                raise Rejected(watch.abandoned)
            if total is not None and received != total:
                raise Rejected(f"truncated transfer: received {received} of {total} bytes", transient=True)
            check_gz(gz_out, gz_name, gz_md5)
            return extract_checked(Path(gz_out.name), raw_out, raw_name, url)


class _Counting:
    """The caller's progress sink, with every byte also counted by the transfer's watch."""

    def __init__(self, report: DownloadProgress, watch: TransferWatch) -> None:
        self.report = report
        self.watch = watch

    def file_started(self, name: str, total_bytes: int | None, source: str) -> None:
        self.report.file_started(name, total_bytes, source)

    def advance(self, n_bytes: int) -> None:
        self.watch.advance(n_bytes)
        self.report.advance(n_bytes)

    def file_finished(self, name: str, status: str) -> None:
        self.report.file_finished(name, status)

    def note(self, message: str) -> None:
        self.report.note(message)


def _network_rejection(exc: Exception, timeout: float, watch: TransferWatch) -> Rejected:
    """What a failed request or transfer says about this mirror (a too-slow one is abandoned, not retried)."""
    if watch.abandoned:  # the watch shut the socket down; whatever the read made of that is beside the point
        return Rejected(watch.abandoned)
    if isinstance(exc, ValueError):  # urllib's answer to a URL it cannot parse
        return Rejected(f"invalid URL ({one_line(str(exc))})")
    return Rejected(one_line(_describe_network_error(exc, timeout)), _is_transient(exc))


def one_line(text: str) -> str:
    """A foreign message (urllib's run over several lines) as one line."""
    return " ".join(str(text).split())


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
        if 300 <= exc.code < 400:  # urllib's own text for this one runs over three lines
            return f"HTTP {exc.code}: too many redirects, or a redirect loop"
        return f"HTTP {exc.code} {exc.reason}".rstrip()
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (mirror down or unreachable)"
    if isinstance(reason, OSError) and reason.errno == errno.ELOOP:
        return "a symlink loop (too many levels of symbolic links)"
    if isinstance(reason, FileNotFoundError):
        return "no such file"
    if isinstance(reason, ConnectionError):
        return f"connection lost ({reason})"
    if isinstance(reason, http.client.HTTPException):
        return f"bad HTTP response ({type(reason).__name__}: {reason})"
    return f"unreachable ({reason})"
