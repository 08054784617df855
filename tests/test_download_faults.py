"""Mirrors that misbehave and mirror URLs that cannot work: a bounded wait, one line, the right exit code.

Loopback servers only (127.0.0.1), each serving loop bounded in time. The too-slow limits
are parameters (and module constants for the CLI), so a trickling mirror is abandoned here
in about a second instead of the 30 s a user would wait.
"""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from softmax_cli.data import download as dl
from softmax_cli.errors import DataError
from tests import helpers

TRICKLE_GAP_S = 0.05  # one byte this often: 20 bytes/s
TRICKLE_FOR_S = 20.0  # the server gives up after this long whatever happens: no test can hang on it


class TrickleServer:
    """A raw-socket HTTP server on 127.0.0.1 that sends one byte every TRICKLE_GAP_S seconds.

    what: "body" (status and headers at once, announcing 1 MB, then the body byte by byte)
    or "headers" (the status line itself byte by byte, so urlopen never returns on its own).
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TRICKLE_FOR_S)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/"
        self.stop = threading.Event()
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        deadline = time.monotonic() + TRICKLE_FOR_S
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n"
                if self.what == "body":
                    conn.sendall(head)
                    payload = b"\x1f" * 1_000_000
                else:
                    payload = head
                for byte in payload:
                    if self.stop.is_set() or time.monotonic() > deadline:
                        break
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:  # the client hung up: it gave up, as it should
                        break
                    time.sleep(TRICKLE_GAP_S)

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(timeout=TRICKLE_FOR_S)


@pytest.fixture
def trickle():
    servers = []

    def start(what: str) -> TrickleServer:
        servers.append(TrickleServer(what))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.mark.parametrize("what", ["body", "headers"])
def test_a_trickling_mirror_is_abandoned(trickle, tmp_path, what):
    server = trickle(what)

    started = time.monotonic()
    with pytest.raises(DataError) as info:
        dl.fetch_dataset(tmp_path / "data", mirrors=[server.url], min_rate=1000, rate_window=0.5, retries=2)
    waited = time.monotonic() - started

    message = str(info.value)
    assert "\n" not in message
    assert (
        f"could not download train-images-idx3-ubyte.gz: {server.url}train-images-idx3-ubyte.gz: too slow:" in message
    )
    assert "under the minimum of 1 kB/s" in message
    # Abandoned by the watch (not retried, not ended by the server giving up after TRICKLE_FOR_S).
    assert waited < TRICKLE_FOR_S
    assert not [p for p in (tmp_path / "data").rglob("*") if p.is_file()]


def test_a_trickling_mirror_is_one_line_from_the_cli(trickle, tmp_path, monkeypatch):
    server = trickle("body")
    monkeypatch.setattr(dl, "MIN_RATE_BYTES_PER_S", 1000.0)
    monkeypatch.setattr(dl, "RATE_WINDOW_S", 0.5)

    result = helpers.invoke("download", "--mirror", server.url, "--data-dir", tmp_path / "data")

    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "too slow" in errors[0], result.stderr


def test_a_slow_mirror_gives_way_to_the_next(trickle, tmp_path):
    slow = trickle("body")
    good = helpers.write_synthetic_dataset(tmp_path / "good", n_train=20, n_test=10, gz=True)
    resources = [(path.name, helpers.md5_of(path)) for path in sorted(good.glob("*.gz"))]

    results = dl.fetch_dataset(
        tmp_path / "data", mirrors=[slow.url, good.as_uri()], resources=resources, min_rate=1000, rate_window=0.5
    )

    assert [r.status for r in results] == ["downloaded"] * 4
    assert all(r.source.startswith(good.as_uri()) for r in results)


class RedirectLoop(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.send_response(308)
        self.send_header("Location", self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args) -> None:
        pass


def test_a_redirect_loop_is_one_line(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), RedirectLoop)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        result = helpers.invoke("download", "--mirror", url, "--data-dir", tmp_path / "data")
    finally:
        server.shutdown()
        server.server_close()

    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "HTTP 308: too many redirects, or a redirect loop" in errors[0]


def test_foreign_multi_line_texts_become_one_line(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("first line\nsecond line\n\tthird")

    monkeypatch.setattr(dl.TransferWatch, "opener", lambda self: type("O", (), {"open": refuse})())
    result = helpers.invoke("download", "--mirror", "http://127.0.0.1:9/", "--data-dir", tmp_path / "data")

    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(errors) == 1, result.stderr
    assert "first line second line third" in errors[0]


@pytest.mark.parametrize(
    ("mirror", "says"),
    [
        ("ftp://example.org/fashion/", "unsupported mirror URL 'ftp://example.org/fashion/'"),
        ("", "an empty mirror URL"),
        ("   ", "an empty mirror URL"),
        ("/srv/fashion-mnist", "file:///path/to/folder, or --from DIR"),
        ("mirror.example.org/fashion", "use an http://, https:// or file:// URL"),
        ("http://", "no host name"),
        ("http://example.org:http/", "invalid mirror URL"),
        ("http://exa mple.org/", "spaces or control characters"),
        ("file://", "a file:// URL names a local folder"),
        ("file://otherhost/srv/x", "a file:// URL names a local folder"),
    ],
)
def test_a_mirror_that_cannot_work_is_a_usage_error_before_any_work(tmp_path, mirror, says):
    data_dir = tmp_path / "data"

    result = helpers.invoke("download", "--mirror", mirror, "--data-dir", data_dir)

    assert result.exit_code == 2, result.output
    assert "Invalid value for '--mirror'" in result.output and says in helpers.flat(result.output)
    assert not data_dir.exists()


def test_the_library_refuses_the_same_mirrors(tmp_path):
    with pytest.raises(DataError, match="unsupported mirror URL 'ftp://x/'"):
        dl.fetch_dataset(tmp_path / "data", mirrors=["ftp://x/"])
    assert dl.mirror_problem("https://example.org/fm") is None
    assert dl.mirror_problem("file:///srv/fm") is None
    assert dl.mirror_problem("file://localhost/srv/fm") is None


def test_ctrl_c_during_a_download_is_one_line_and_leaves_nothing_partial(tmp_path, monkeypatch):
    source = helpers.write_synthetic_dataset(tmp_path / "mirror", n_train=20, n_test=10, gz=True)
    real_stream = dl.stream_to_file

    def interrupted(reader, out, report):
        out.write(reader.read(10))  # part of the file is in the temporary file when Ctrl-C comes
        raise KeyboardInterrupt

    monkeypatch.setattr(dl, "stream_to_file", interrupted)
    result = helpers.invoke("download", "--mirror", source.as_uri(), "--data-dir", tmp_path / "data")
    monkeypatch.setattr(dl, "stream_to_file", real_stream)

    assert result.exit_code == 130 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "interrupted" in errors[0], result.stderr
    assert list((tmp_path / "data" / "FashionMNIST" / "raw").iterdir()) == []
