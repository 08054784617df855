"""Give up on a download that is too slow: a minimum rate over a sliding window, enforced from a timer thread.

Why by hand: urllib's `timeout` applies to each socket operation, so a mirror that sends
one byte every few seconds is never timed out, and http.client reads the status line and
headers inside `urlopen`, where no caller code runs between reads. So the watch owns the
sockets of its transfer (urllib's HTTP and HTTPS handlers, with connection classes that
hand their socket over) and, when fewer than `min_rate` bytes per second arrived over the
last `window_s` seconds, shuts them down: the blocked read returns at once, and the
download reports `watch.abandoned` instead of whatever the read made of it.

Standard library only, never prints.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.request
from collections import deque
from contextlib import suppress


class TransferWatch:
    """Counts a transfer's bytes and abandons it when it falls below min_rate over window_s seconds.

    Use as a context manager around one transfer: `opener()` fetches through it, and
    `advance(n)` counts body bytes. `abandoned` is None, or the one-line reason.
    """

    def __init__(self, min_rate: float, window_s: float) -> None:
        self.min_rate = min_rate
        self.window_s = window_s
        self.abandoned: str | None = None
        self._received = 0
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="softmax-transfer-watch", daemon=True)

    def __enter__(self) -> TransferWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop watching (the body has arrived: checking and extracting it is no transfer)."""
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()

    def advance(self, n_bytes: int) -> None:
        with self._lock:
            self._received += n_bytes

    def attach(self, sock: socket.socket) -> None:
        """Watch a socket of this transfer (each connection, a redirect's included)."""
        with self._lock:
            self._sockets.append(sock)
            late = self.abandoned is not None
        if late:
            _shut(sock)

    def opener(self) -> urllib.request.OpenerDirector:
        """An opener like urllib's default (proxies, redirects, file://) whose HTTP(S) sockets this watch owns."""
        watch = self

        class HTTPConnection(http.client.HTTPConnection):
            def connect(self) -> None:
                super().connect()
                watch.attach(self.sock)

        class HTTPSConnection(http.client.HTTPSConnection):
            def connect(self) -> None:
                super().connect()
                watch.attach(self.sock)

        class HTTPHandler(urllib.request.HTTPHandler):
            def http_open(self, req):
                return self.do_open(HTTPConnection, req)

        class HTTPSHandler(urllib.request.HTTPSHandler):
            def https_open(self, req):
                return self.do_open(HTTPSConnection, req, context=self._context)

        return urllib.request.build_opener(HTTPHandler, HTTPSHandler)

    def _watch(self) -> None:
        started = time.monotonic()
        samples: deque[tuple[float, int]] = deque([(started, 0)])
        tick = min(1.0, self.window_s / 4)
        while not self._done.wait(tick):
            now = time.monotonic()
            with self._lock:
                received = self._received
            samples.append((now, received))
            # Keep the newest sample that is at least a window old as the start of the window.
            while len(samples) > 1 and now - samples[1][0] >= self.window_s:
                samples.popleft()
            since, received_then = samples[0]
            span = now - since
            if span >= self.window_s and received - received_then < self.min_rate * span:
                self._abandon(received - received_then, span)
                return

    def _abandon(self, n_bytes: int, span: float) -> None:
        reason = f"too slow: {n_bytes:,} bytes in the last {span:.0f} s, under the minimum of {_rate(self.min_rate)}"
        with self._lock:
            self.abandoned = reason
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    """Wake any read blocked on sock: shutdown, unlike close, interrupts it on every POSIX system."""
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _rate(bytes_per_s: float) -> str:
    return f"{bytes_per_s / 1000:g} kB/s" if bytes_per_s >= 1000 else f"{bytes_per_s:g} bytes/s"
