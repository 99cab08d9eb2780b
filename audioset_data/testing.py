"""A loopback HTTP file server with Range support, for offline tests, benchmarks and the demo.

It serves files from memory or disk on ``127.0.0.1``, counts the bytes it sends per path, and
can misbehave on purpose (scripted status codes, stalls, truncated bodies, paced sending) so the
fetch and download code can be exercised exactly as it runs against real servers.
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from .config import PathLike
from .loopback import LoopbackHTTP

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


@dataclass
class Behaviour:
    """How the server misbehaves for one path.

    ``statuses`` are answered (one per request, in order; ``None`` serves the file) before
    the file is served;
    ``stall_s`` sleeps before answering; ``truncate_at`` announces the full length but stops
    sending after that many bytes of the body; ``trickle_bytes_per_s`` sends the body one byte
    at a time at that rate (a server that stalls without ever going silent long enough for a
    socket timeout).
    """

    statuses: list[int | None] = field(default_factory=list)
    stall_s: float = 0.0
    truncate_at: int | None = None
    #: answer ``until_status`` to every request until this ``time.monotonic()`` instant
    until: float | None = None
    until_status: int = 429
    trickle_bytes_per_s: float | None = None


class LoopbackServer:
    """Serve files on ``http://127.0.0.1:<port>/``; use as a context manager."""

    def __init__(self, *, pace_bytes_per_s: float | None = None, chunk: int = 16384):
        self.files: dict[str, bytes | Path] = {}
        self.behaviour: dict[str, Behaviour] = {}
        self.bytes_sent: defaultdict[str, int] = defaultdict(int)
        self.requests: defaultdict[str, int] = defaultdict(int)
        self.error_statuses: defaultdict[int, int] = defaultdict(int)
        #: ``(path, headers)`` of every request, in arrival order
        self.request_log: list[tuple[str, dict[str, str]]] = []
        self.pace_bytes_per_s = pace_bytes_per_s
        self.chunk = chunk
        self._lock = threading.Lock()
        self._server: LoopbackHTTP | None = None

    def add(self, path: str, content: bytes | PathLike) -> str:
        """Serve ``content`` (bytes or a file) at ``/path``; return its full URL."""
        path = "/" + path.lstrip("/")
        self.files[path] = content if isinstance(content, bytes) else Path(content)
        return self.url(path)

    def url(self, path: str = "/") -> str:
        """Full address of ``path`` on this server."""
        if self._server is None:
            raise RuntimeError("server is not running")
        return f"http://127.0.0.1:{self._server.port}/" + path.lstrip("/")

    def total_bytes(self) -> int:
        """Bytes of bodies sent so far, over all paths."""
        with self._lock:
            return sum(self.bytes_sent.values())

    def reset_counters(self) -> None:
        """Zero the byte and request counters."""
        with self._lock:
            self.bytes_sent.clear()
            self.requests.clear()
            self.error_statuses.clear()
            self.request_log.clear()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                return

            def handle(self) -> None:
                try:
                    super().handle()
                except (ConnectionResetError, BrokenPipeError, TimeoutError):
                    self.close_connection = True

            def do_HEAD(self) -> None:
                self._serve(head=True)

            def do_GET(self) -> None:
                self._serve(head=False)

            def _serve(self, head: bool) -> None:
                path = self.path.split("?", 1)[0]
                with server._lock:
                    server.requests[path] += 1
                    server.request_log.append((path, dict(self.headers.items())))
                    beh = server.behaviour.get(path)
                    status = beh.statuses.pop(0) if beh and beh.statuses else None
                    if status is None and beh and beh.until and time.monotonic() < beh.until:
                        status = beh.until_status
                if beh and beh.stall_s:
                    time.sleep(beh.stall_s)
                if status is not None:
                    self._empty(status)
                    return
                content = server.files.get(path)
                if content is None:
                    self._empty(404)
                    return
                data = content if isinstance(content, bytes) else content.read_bytes()
                size = len(data)
                start, end = 0, size - 1
                code = 200
                rng = self.headers.get("Range")
                if rng:
                    m = _RANGE.match(rng.strip())
                    if m and (m.group(1) or m.group(2)):
                        if m.group(1):
                            start = int(m.group(1))
                            end = int(m.group(2)) if m.group(2) else size - 1
                        else:
                            start = max(0, size - int(m.group(2)))
                        end = min(end, size - 1)
                        if start >= size or start > end:
                            self.send_response(416)
                            self.send_header("Content-Range", f"bytes */{size}")
                            self.send_header("Content-Length", "0")
                            self.end_headers()
                            return
                        code = 206
                body = data[start : end + 1]
                self.send_response(code)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(body)))
                if code == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.end_headers()
                if head:
                    return
                limit = len(body)
                if beh and beh.truncate_at is not None:
                    limit = min(limit, max(0, beh.truncate_at - start))
                self._send(path, body[:limit], beh)
                if limit < len(body):
                    self.close_connection = True

            def _send(self, path: str, body: bytes, beh: Behaviour | None = None) -> None:
                pace = server.pace_bytes_per_s
                chunk = server.chunk
                if beh is not None and beh.trickle_bytes_per_s:
                    pace, chunk = beh.trickle_bytes_per_s, 1
                t0 = time.monotonic()
                sent = 0
                try:
                    for i in range(0, len(body), chunk):
                        piece = body[i : i + chunk]
                        self.wfile.write(piece)
                        sent += len(piece)
                        with server._lock:
                            server.bytes_sent[path] += len(piece)
                        if pace:
                            ahead = sent / pace - (time.monotonic() - t0)
                            if ahead > 0:
                                time.sleep(ahead)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def _empty(self, status: int) -> None:
                with server._lock:
                    server.error_statuses[status] += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler

    def start(self) -> LoopbackServer:
        """Start serving in a daemon thread."""
        self._server = LoopbackHTTP(self._handler(), name="audioset-loopback-files",
                                    poll_interval=0.05)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def serve_folder(folder: PathLike, **kwargs: object) -> Iterator[LoopbackServer]:
    """Serve every file under ``folder`` (recursively) at its relative path."""
    folder = Path(folder)
    with LoopbackServer(**kwargs) as server:  # type: ignore[arg-type]
        for p in folder.rglob("*"):
            if p.is_file():
                server.add(p.relative_to(folder).as_posix(), p)
        yield server


__all__ = ["Behaviour", "LoopbackServer", "serve_folder"]
