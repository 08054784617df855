"""softmax_cli.data.download: real transfers over loopback HTTP and file://, imports, and every failure path.

No urllib mocks: a ThreadingHTTPServer on 127.0.0.1 plays the mirror and can be told to
misbehave (truncate, corrupt, answer 503 once). Synthetic .gz files keep the logic tested
without the real data; the real-data tests skip where it is absent (tests/helpers.py: REAL_DATA_ENV).
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import socket
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from softmax_cli.data import download as dl
from softmax_cli.data.fashion_mnist import GZ_RESOURCES, RAW_MD5
from softmax_cli.data.verified import STAMP_NAME, record_verified
from softmax_cli.errors import DataError
from tests import helpers
from tests.helpers import REAL_FILES, md5_of

OFFICIAL_GZ_MD5 = dict(GZ_RESOURCES)


# --------------------------------------------------------------------------- helpers


class RecordingProgress:
    """A DownloadProgress that remembers every call."""

    def __init__(self) -> None:
        self.started: list[tuple[str, int | None, str]] = []
        self.advanced = 0
        self.finished: list[tuple[str, str]] = []
        self.notes: list[str] = []

    def file_started(self, name: str, total_bytes: int | None, source: str) -> None:
        self.started.append((name, total_bytes, source))

    def advance(self, n_bytes: int) -> None:
        self.advanced += n_bytes

    def file_finished(self, name: str, status: str) -> None:
        self.finished.append((name, status))

    def note(self, message: str) -> None:
        self.notes.append(message)


@dataclass
class SyntheticSource:
    """Small synthetic Fashion-MNIST lookalikes, as .gz and as uncompressed files, with their md5s."""

    gz_folder: Path
    plain_folder: Path
    resources: list[tuple[str, str]]
    uncompressed_md5s: dict[str, str]

    @property
    def gz_sizes(self) -> int:
        return sum((self.gz_folder / name).stat().st_size for name, _ in self.resources)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> SyntheticSource:
    base = tmp_path_factory.mktemp("synthetic")
    gz_folder = helpers.write_synthetic_dataset(base / "gz", n_train=60, n_test=20, gz=True)
    plain_folder = helpers.write_synthetic_dataset(base / "plain", n_train=60, n_test=20, gz=False)
    resources = [(name, md5_of(gz_folder / name)) for name in REAL_FILES]
    uncompressed_md5s = {path.name: md5_of(path) for path in plain_folder.iterdir() if path.name != STAMP_NAME}
    return SyntheticSource(gz_folder, plain_folder, resources, uncompressed_md5s)


class MirrorHandler(BaseHTTPRequestHandler):
    """Serves files from server.root; server.behaviour[name] makes one file misbehave."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        server = self.server
        name = self.path.lstrip("/")
        server.requests.append(name)
        behaviour = server.behaviour.get(name, "serve")
        if behaviour == "503-once" and name not in server.failed_once:
            server.failed_once.add(name)
            self.send_error(503, "Busy")
            return
        path = server.root / name
        if not path.is_file():
            self.send_error(404, "Not Found")
            return
        body = path.read_bytes()
        announced = len(body)
        if behaviour == "truncate":
            body = body[: len(body) // 2]  # announce the full size, send half, hang up
        elif behaviour == "corrupt":
            body = body[:-1] + bytes([body[-1] ^ 0xFF])
        self.send_response(200)
        self.send_header("Content-Length", str(announced))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, format, *args) -> None:  # keep pytest output clean
        pass


@dataclass
class Mirror:
    url: str
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def serve():
    """serve(root, behaviour) starts a loopback HTTP mirror of root; all are stopped after the test."""
    servers = []

    def start(root: Path, behaviour: dict[str, str] | None = None) -> Mirror:
        server = ThreadingHTTPServer(("127.0.0.1", 0), MirrorHandler)
        server.root = root
        server.behaviour = behaviour or {}
        server.requests = []
        server.failed_once = set()
        # A short poll interval so that shutdown() at teardown returns at once.
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers.append(server)
        return Mirror(f"http://127.0.0.1:{server.server_address[1]}/", server.requests)

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def dead_mirror_url() -> str:
    """An http URL on a loopback port where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def files_in(folder: Path) -> list[str]:
    """Every name in folder, hidden temp files included, but for the record of what was verified."""
    return sorted(path.name for path in folder.iterdir() if path.name != STAMP_NAME) if folder.exists() else []


def assert_complete(raw: Path, synthetic: SyntheticSource) -> None:
    """The four verified .gz files and their extracted IDX files, and nothing else."""
    for name, md5 in synthetic.resources:
        assert md5_of(raw / name) == md5
        plain = name.removesuffix(".gz")
        assert md5_of(raw / plain) == synthetic.uncompressed_md5s[plain]
    assert len(files_in(raw)) == 8


# --------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_download_over_http_then_present(real_data_dir, serve, tmp_path):
    mirror = serve(real_data_dir)
    data_dir = tmp_path / "data"
    progress = RecordingProgress()

    results = dl.fetch_dataset(data_dir, mirrors=[mirror.url], progress=progress, timeout=10)

    raw = dl.raw_dir(data_dir)
    assert [r.status for r in results] == ["downloaded"] * 4
    assert {r.name: r.source for r in results} == {name: mirror.url + name for name in REAL_FILES}
    for name in REAL_FILES:
        assert md5_of(raw / name) == OFFICIAL_GZ_MD5[name]
        plain = name.removesuffix(".gz")
        assert md5_of(raw / plain) == RAW_MD5[plain]
    assert progress.advanced == sum((real_data_dir / name).stat().st_size for name in REAL_FILES)
    assert dl.dataset_present(data_dir)

    # torchvision reads the same layout.
    from torchvision.datasets import FashionMNIST

    assert len(FashionMNIST(root=data_dir, train=False, download=False)) == 10000

    again = dl.fetch_dataset(data_dir, mirrors=[mirror.url], timeout=10)
    assert [r.status for r in again] == ["present"] * 4
    assert len(mirror.requests) == 4  # nothing fetched the second time


@pytest.mark.realdata
def test_real_import_of_uncompressed_files(real_data_dir, tmp_path):
    source = tmp_path / "plain"
    source.mkdir()
    for name in REAL_FILES:
        with gzip.open(real_data_dir / name, "rb") as reader, (source / name.removesuffix(".gz")).open("wb") as out:
            shutil.copyfileobj(reader, out)

    results = dl.fetch_dataset(tmp_path / "data", source_dir=source)

    assert [r.status for r in results] == ["imported"] * 4
    assert dl.dataset_present(tmp_path / "data")
    again = dl.fetch_dataset(tmp_path / "data", source_dir=source)
    assert [r.status for r in again] == ["present"] * 4


# --------------------------------------------------------------------------- success paths (synthetic)


def test_http_download_verifies_extracts_and_reports(synthetic, serve, tmp_path):
    mirror = serve(synthetic.gz_folder)
    progress = RecordingProgress()

    results = dl.fetch_dataset(
        tmp_path / "data", mirrors=[mirror.url], resources=synthetic.resources, progress=progress
    )

    assert [(r.name, r.status) for r in results] == [(name, "downloaded") for name, _ in synthetic.resources]
    assert_complete(dl.raw_dir(tmp_path / "data"), synthetic)
    assert [(name, total) for name, total, _ in progress.started] == [
        (name, (synthetic.gz_folder / name).stat().st_size) for name, _ in synthetic.resources
    ]
    assert progress.advanced == synthetic.gz_sizes
    assert progress.finished == [(name, "downloaded") for name, _ in synthetic.resources]


def test_second_fetch_reports_present_without_requests(synthetic, serve, tmp_path):
    mirror = serve(synthetic.gz_folder)
    dl.fetch_dataset(tmp_path / "data", mirrors=[mirror.url], resources=synthetic.resources)
    progress = RecordingProgress()

    results = dl.fetch_dataset(
        tmp_path / "data", mirrors=[mirror.url], resources=synthetic.resources, progress=progress
    )

    assert [r.status for r in results] == ["present"] * 4
    assert progress.finished == [(name, "present") for name, _ in synthetic.resources]
    assert progress.started == []
    assert len(mirror.requests) == 4


def test_force_fetches_again(synthetic, serve, tmp_path):
    mirror = serve(synthetic.gz_folder)
    dl.fetch_dataset(tmp_path / "data", mirrors=[mirror.url], resources=synthetic.resources)

    results = dl.fetch_dataset(tmp_path / "data", mirrors=[mirror.url], resources=synthetic.resources, force=True)

    assert [r.status for r in results] == ["downloaded"] * 4
    assert len(mirror.requests) == 8
    assert_complete(dl.raw_dir(tmp_path / "data"), synthetic)


def test_file_url_mirror_without_trailing_slash(synthetic, tmp_path):
    url = synthetic.gz_folder.as_uri()
    assert not url.endswith("/")

    results = dl.fetch_dataset(tmp_path / "data", mirrors=[url], resources=synthetic.resources)

    assert [r.status for r in results] == ["downloaded"] * 4
    assert results[0].source == f"{url}/{synthetic.resources[0][0]}"
    assert_complete(dl.raw_dir(tmp_path / "data"), synthetic)


def test_missing_extracted_file_is_rebuilt_from_verified_gz(synthetic, tmp_path):
    dl.fetch_dataset(tmp_path / "data", source_dir=synthetic.gz_folder, resources=synthetic.resources)
    raw = dl.raw_dir(tmp_path / "data")
    (raw / "t10k-labels-idx1-ubyte").unlink()
    progress = RecordingProgress()

    results = dl.fetch_dataset(
        tmp_path / "data", source_dir=synthetic.gz_folder, resources=synthetic.resources, progress=progress
    )

    assert [r.status for r in results] == ["present"] * 3 + ["repaired"]
    assert any("re-extracting t10k-labels-idx1-ubyte" in note for note in progress.notes)
    assert dl.describe_repairs(results) == [
        f"{raw / 't10k-labels-idx1-ubyte'} was missing; extracted again from the verified t10k-labels-idx1-ubyte.gz"
    ]
    assert_complete(raw, synthetic)


def test_corrupted_local_gz_is_fetched_again(synthetic, serve, tmp_path):
    mirror = serve(synthetic.gz_folder)
    dl.fetch_dataset(tmp_path / "data", mirrors=[mirror.url], resources=synthetic.resources)
    raw = dl.raw_dir(tmp_path / "data")
    (raw / "train-labels-idx1-ubyte.gz").write_bytes(b"damaged")

    results = dl.fetch_dataset(tmp_path / "data", mirrors=[mirror.url], resources=synthetic.resources)

    assert [r.status for r in results] == ["present", "downloaded", "present", "present"]
    assert_complete(raw, synthetic)


def test_transient_503_is_retried(synthetic, serve, tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "RETRY_BACKOFF_S", 0.01)
    mirror = serve(synthetic.gz_folder, {"train-labels-idx1-ubyte.gz": "503-once"})
    progress = RecordingProgress()

    results = dl.fetch_dataset(
        tmp_path / "data", mirrors=[mirror.url], resources=synthetic.resources, progress=progress, retries=1
    )

    assert [r.status for r in results] == ["downloaded"] * 4
    assert mirror.requests.count("train-labels-idx1-ubyte.gz") == 2
    assert any("HTTP 503" in note and "retrying (2/2)" in note for note in progress.notes)


def test_next_mirror_is_tried_when_one_is_dead(synthetic, serve, tmp_path):
    good = serve(synthetic.gz_folder)
    progress = RecordingProgress()

    results = dl.fetch_dataset(
        tmp_path / "data",
        mirrors=[dead_mirror_url(), good.url],
        resources=synthetic.resources,
        progress=progress,
        retries=0,
        timeout=2,
    )

    assert [r.status for r in results] == ["downloaded"] * 4
    assert all(r.source.startswith(good.url) for r in results)
    assert any("trying the next mirror" in note for note in progress.notes)


def test_import_of_gz_files(synthetic, tmp_path):
    results = dl.fetch_dataset(tmp_path / "data", source_dir=synthetic.gz_folder, resources=synthetic.resources)

    assert [(r.name, r.status) for r in results] == [(name, "imported") for name, _ in synthetic.resources]
    assert results[0].source == str(synthetic.gz_folder / synthetic.resources[0][0])
    assert_complete(dl.raw_dir(tmp_path / "data"), synthetic)


def test_import_of_uncompressed_files_then_present(synthetic, tmp_path):
    def fetch():
        return dl.fetch_dataset(
            tmp_path / "data",
            source_dir=synthetic.plain_folder,
            resources=synthetic.resources,
            uncompressed_md5s=synthetic.uncompressed_md5s,
        )

    results = fetch()

    assert [(r.name, r.status) for r in results] == [
        (name.removesuffix(".gz"), "imported") for name, _ in synthetic.resources
    ]
    raw = dl.raw_dir(tmp_path / "data")
    assert files_in(raw) == sorted(synthetic.uncompressed_md5s)
    assert dl.dataset_present(tmp_path / "data")
    assert [r.status for r in fetch()] == ["present"] * 4


def test_dataset_present_and_ensure_dataset(synthetic_data_dir, tmp_path):
    assert dl.dataset_present(synthetic_data_dir)
    assert dl.ensure_dataset(synthetic_data_dir) is None  # nothing to do, no network
    assert not dl.dataset_present(tmp_path / "empty")


# --------------------------------------------------------------------------- failures


def test_truncated_transfer_fails_and_leaves_nothing(synthetic, serve, tmp_path):
    mirror = serve(synthetic.gz_folder, {"train-images-idx3-ubyte.gz": "truncate"})

    with pytest.raises(DataError, match="truncated transfer") as info:
        dl.fetch_dataset(tmp_path / "data", mirrors=[mirror.url], resources=synthetic.resources, retries=0)

    assert "train-images-idx3-ubyte.gz" in str(info.value)
    assert "--mirror URL" in str(info.value) and "--from DIR" in str(info.value)
    assert files_in(dl.raw_dir(tmp_path / "data")) == []


def test_md5_mismatch_names_file_and_both_md5s(synthetic, serve, tmp_path):
    name, expected = synthetic.resources[1]
    mirror = serve(synthetic.gz_folder, {name: "corrupt"})
    body = (synthetic.gz_folder / name).read_bytes()
    actual = hashlib.md5(body[:-1] + bytes([body[-1] ^ 0xFF])).hexdigest()

    with pytest.raises(DataError) as info:
        dl.fetch_dataset(tmp_path / "data", mirrors=[mirror.url], resources=synthetic.resources, retries=0)

    message = str(info.value)
    assert f"md5 mismatch for {name}: expected {expected}, got {actual}" in message
    assert "\n" not in message
    # The file before it was accepted; the corrupted one left no trace.
    assert files_in(dl.raw_dir(tmp_path / "data")) == sorted([synthetic.resources[0][0], "train-images-idx3-ubyte"])


def test_dead_mirror_fails_clearly(synthetic, tmp_path):
    url = dead_mirror_url()

    with pytest.raises(DataError, match="connection refused") as info:
        dl.fetch_dataset(tmp_path / "data", mirrors=[url], resources=synthetic.resources, retries=0, timeout=2)

    assert url in str(info.value)
    assert files_in(dl.raw_dir(tmp_path / "data")) == []


def test_silent_mirror_times_out_and_is_retried(synthetic, tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "RETRY_BACKOFF_S", 0.01)
    progress = RecordingProgress()
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"

        with pytest.raises(DataError, match="timed out after 0.2 s"):
            dl.fetch_dataset(
                tmp_path / "data",
                mirrors=[url],
                resources=synthetic.resources,
                progress=progress,
                retries=1,
                timeout=0.2,
            )

    assert progress.notes == ["train-images-idx3-ubyte.gz: timed out after 0.2 s; retrying (2/2)"]
    assert files_in(dl.raw_dir(tmp_path / "data")) == []


def test_http_404_names_status_and_is_not_retried(synthetic, serve, tmp_path):
    mirror = serve(tmp_path / "empty-mirror")

    with pytest.raises(DataError, match="HTTP 404") as info:
        dl.fetch_dataset(tmp_path / "data", mirrors=[mirror.url], resources=synthetic.resources, retries=2)

    assert "train-images-idx3-ubyte.gz" in str(info.value)
    assert mirror.requests == ["train-images-idx3-ubyte.gz"]


def test_file_url_missing_file(synthetic, tmp_path):
    with pytest.raises(DataError, match="no such file"):
        dl.fetch_dataset(tmp_path / "data", mirrors=[(tmp_path / "nowhere").as_uri()], resources=synthetic.resources)


def test_unsupported_mirror_scheme(synthetic, tmp_path):
    with pytest.raises(DataError, match="unsupported mirror URL 'ftp://example.org/'"):
        dl.fetch_dataset(tmp_path / "data", mirrors=["ftp://example.org/"], resources=synthetic.resources)


@pytest.mark.parametrize("url", ["http://", "http://[bad/"])
def test_malformed_mirror_url(synthetic, tmp_path, url):
    with pytest.raises(DataError, match="invalid mirror URL"):
        dl.fetch_dataset(tmp_path / "data", mirrors=[url], resources=synthetic.resources)


def test_from_folder_that_does_not_exist(synthetic, tmp_path):
    with pytest.raises(DataError, match="--from folder .*nowhere does not exist"):
        dl.fetch_dataset(tmp_path / "data", source_dir=tmp_path / "nowhere", resources=synthetic.resources)


def test_from_folder_missing_a_file_names_it_and_imports_nothing(synthetic, tmp_path):
    source = tmp_path / "partial"
    shutil.copytree(synthetic.gz_folder, source)
    (source / "t10k-labels-idx1-ubyte.gz").unlink()

    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte.gz"):
        dl.fetch_dataset(tmp_path / "data", source_dir=source, resources=synthetic.resources)

    assert files_in(dl.raw_dir(tmp_path / "data")) == []


def test_uncompressed_import_is_checked_against_official_md5s_by_default(synthetic, tmp_path):
    expected = "md5 mismatch for train-images-idx3-ubyte: expected f4a8712d7a061bf5bd6d2ca38dc4d50a"
    with pytest.raises(DataError, match=expected):
        dl.fetch_dataset(tmp_path / "data", source_dir=synthetic.plain_folder, resources=synthetic.resources)

    assert files_in(dl.raw_dir(tmp_path / "data")) == []


def test_bad_idx_header_in_downloaded_gz(synthetic, serve, tmp_path):
    mirror_root = tmp_path / "mirror"
    shutil.copytree(synthetic.gz_folder, mirror_root)
    bad = gzip.compress(struct.pack(">II", 0x00000802, 3) + b"abc", mtime=0)
    (mirror_root / "train-labels-idx1-ubyte.gz").write_bytes(bad)
    resources = [
        (name, hashlib.md5(bad).hexdigest() if "train-labels" in name else md5) for name, md5 in synthetic.resources
    ]
    mirror = serve(mirror_root)

    expected = "train-labels-idx1-ubyte has a wrong IDX header: magic 0x00000802, expected 0x00000801"
    with pytest.raises(DataError, match=expected):
        dl.fetch_dataset(tmp_path / "data", mirrors=[mirror.url], resources=resources, retries=0)

    assert "train-labels" not in " ".join(files_in(dl.raw_dir(tmp_path / "data")))


def test_bad_idx_length_in_imported_uncompressed_file(synthetic, tmp_path):
    source = tmp_path / "plain"
    shutil.copytree(synthetic.plain_folder, source)
    images = source / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-5])  # one image short of what the header announces
    md5s = dict(synthetic.uncompressed_md5s, **{images.name: md5_of(images)})

    with pytest.raises(DataError, match="t10k-images-idx3-ubyte has a wrong IDX header: it announces 20 items"):
        dl.fetch_dataset(tmp_path / "data", source_dir=source, resources=synthetic.resources, uncompressed_md5s=md5s)

    assert "t10k-images-idx3-ubyte" not in files_in(dl.raw_dir(tmp_path / "data"))
    assert not any(name.startswith(".") for name in files_in(dl.raw_dir(tmp_path / "data")))


def test_unwritable_data_dir(synthetic, tmp_path):
    # A path under a regular file fails for every user, root included (chmod would not stop root).
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")

    with pytest.raises(DataError, match="cannot create data folder .*--data-dir"):
        dl.fetch_dataset(blocker / "sub", source_dir=synthetic.gz_folder, resources=synthetic.resources)


def test_mirror_and_from_together_is_refused(synthetic, tmp_path):
    with pytest.raises(DataError, match="either --mirror URL or --from DIR"):
        dl.fetch_dataset(
            tmp_path / "data", mirrors=["http://x/"], source_dir=synthetic.gz_folder, resources=synthetic.resources
        )


# --------------------------------------------------------------------------- CLI


@pytest.mark.realdata
def test_cli_import_of_real_files_then_already_present(real_data_dir, tmp_path):
    args = ["--from", real_data_dir, "--data-dir", tmp_path / "data"]

    first = helpers.invoke("download", *args)
    assert first.exit_code == 0, first.output
    assert "Fashion-MNIST ready" in helpers.flat(first.output)

    second = helpers.invoke("download", *args)
    assert second.exit_code == 0, second.output
    assert "already present" in helpers.flat(second.output)


def test_cli_corrupted_copy_exits_1_with_md5_message(synthetic, tmp_path):
    # The synthetic .gz files carry the official names but not the official bytes.
    result = helpers.invoke("download", "--from", synthetic.gz_folder, "--data-dir", tmp_path / "data")

    assert result.exit_code == 1
    shown = helpers.flat(result.output)
    assert "md5 mismatch" in shown
    assert OFFICIAL_GZ_MD5["train-images-idx3-ubyte.gz"] in shown
    assert synthetic.resources[0][1] in shown
    assert "Traceback" not in shown
    assert not isinstance(result.exception, DataError)  # caught and shown, not raised
    assert files_in(dl.raw_dir(tmp_path / "data")) == []


def recorded_synthetic(synthetic: SyntheticSource, data_dir: Path) -> Path:
    """The synthetic .gz files and their extracted files in data_dir, recorded as verified: each checked
    against its own md5 (record_verified, the honest way to have `softmax download` accept files that
    are not the official ones), so that download leaves them alone while unchanged and repairs a
    changed one locally from its recorded .gz; returns the raw folder."""
    raw = dl.raw_dir(data_dir)
    shutil.copytree(synthetic.gz_folder, raw)
    for name in synthetic.uncompressed_md5s:
        shutil.copy2(synthetic.plain_folder / name, raw / name)
    record_verified(raw, {**synthetic.uncompressed_md5s, **dict(synthetic.resources)})
    return raw


def swap(folder: Path, a: str, b: str) -> None:
    (folder / a).rename(folder / "swap")
    (folder / b).rename(folder / a)
    (folder / "swap").rename(folder / b)


def test_cli_download_says_which_swapped_files_it_repaired(synthetic, tmp_path):
    data_dir = tmp_path / "data"
    raw = recorded_synthetic(synthetic, data_dir)
    unchanged = helpers.invoke("download", "--data-dir", data_dir)
    assert unchanged.exit_code == 0, unchanged.output
    assert "All four files already present and valid" in helpers.flat(unchanged.stderr)
    assert "Repaired" not in unchanged.output

    swap(raw, "train-images-idx3-ubyte", "t10k-images-idx3-ubyte")  # renames keep the mtimes
    result = helpers.invoke("download", "--data-dir", data_dir, "--mirror", dead_mirror_url())  # no network needed
    assert result.exit_code == 0, result.output
    shown = helpers.flat(result.stderr)
    assert (
        "Repaired: train-images-idx3-ubyte and t10k-images-idx3-ubyte were swapped; "
        "both extracted again from their verified .gz files"
    ) in shown
    assert "already present and valid" not in shown and f"Fashion-MNIST ready in {raw}" in shown
    assert shown.count("Repaired") == 1  # one swap, said once; the labels were never touched
    assert_complete(raw, synthetic)

    again = helpers.invoke("download", "--data-dir", data_dir)
    assert "All four files already present and valid" in helpers.flat(again.stderr)


def test_cli_download_says_what_it_repaired_that_was_no_swap(synthetic, tmp_path):
    data_dir = tmp_path / "data"
    raw = recorded_synthetic(synthetic, data_dir)
    (raw / "train-labels-idx1-ubyte").unlink()
    shutil.copy(raw / "t10k-images-idx3-ubyte", raw / "train-images-idx3-ubyte")  # a copy, not a swap
    result = helpers.invoke("download", "--data-dir", data_dir, "--mirror", dead_mirror_url())
    assert result.exit_code == 0, result.output
    shown = helpers.flat(result.stderr)
    assert f"Repaired: {raw / 'train-images-idx3-ubyte'} is not the official Fashion-MNIST file" in shown
    assert f"Repaired: {raw / 'train-labels-idx1-ubyte'} was missing; extracted again from the verified" in shown
    assert "swapped;" not in shown and "already present and valid" not in shown
    assert_complete(raw, synthetic)


def test_cli_missing_from_folder_exits_1(tmp_path):
    result = helpers.invoke("download", "--from", tmp_path / "nowhere", "--data-dir", tmp_path / "data")

    assert result.exit_code == 1
    assert "does not exist" in helpers.flat(result.output)
    assert "Traceback" not in result.output


def test_cli_mirror_and_from_together_exits_2(tmp_path):
    result = helpers.invoke(
        "download", "--mirror", "http://127.0.0.1:9/", "--from", tmp_path, "--data-dir", tmp_path / "d"
    )

    assert result.exit_code == 2
    assert "either --mirror or --from" in helpers.flat(result.output)
