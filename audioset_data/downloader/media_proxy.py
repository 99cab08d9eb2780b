"""A loopback forwarder that keeps secrets off ffmpeg's command line.

ffmpeg takes request headers only as a command-line option (``-headers``, ``-cookies``), and a
command line is readable by every user of the machine (``ps``, ``/proc/PID/cmdline``). Recent
ffmpeg builds can read an option's value from a file (``-/option FILE``), but only for
ffmpeg's own options, not for the http protocol's ``headers`` (the bundled ffmpeg 9 answers
"Unrecognized option '/headers'"). So when a clip's request carries a secret (a ``Cookie`` or
``Authorization`` header, or credentials in the address), ffmpeg reads
``http://127.0.0.1:PORT/TOKEN`` instead, and this forwarder sends each of its requests (with
its ``Range``) to the real address with the headers added, streaming the answer back.

A route lives only while one clip is read; its random token reaches nothing else, and what a
request through it gets is the media, never the secret. The upstream error (an HTTP status, a
failed name lookup, a timeout) is kept on the route so the fetcher reports the real cause
rather than what ffmpeg made of the forwarded answer.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import secrets
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

from audioset_data.audio.ffmpeg import SECRET_HEADERS
from audioset_data.errors import DownloadError
from audioset_data.loopback import LoopbackHTTP

logger = logging.getLogger(__name__)

#: Response headers passed back to ffmpeg.
_PASSED_BACK = ("Content-Type", "Content-Length", "Content-Range", "Accept-Ranges",
                "Last-Modified", "ETag")


def has_secret(url: str, headers: Mapping[str, str] | None) -> bool:
    """Whether a request to ``url`` with ``headers`` carries a secret."""
    parts = urlsplit(url)
    return bool(parts.username or parts.password) or any(
        k.lower() in SECRET_HEADERS for k in (headers or {}))


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but send secrets only to the host they were meant for."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urlsplit(newurl).hostname != urlsplit(req.full_url).hostname:
            for name in list(new.headers):
                if name.lower() in SECRET_HEADERS:
                    del new.headers[name]
        return new


@dataclass
class Route:
    """One media address reachable through the forwarder while a clip is read."""

    url: str
    headers: dict[str, str]
    timeout: float
    local_url: str = ""
    #: the first upstream failure (``urllib.error.HTTPError``, ``URLError``, a timeout...)
    error: BaseException | None = None
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def note(self, exc: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = exc


class MediaProxy:
    """A loopback HTTP server forwarding ``GET /TOKEN`` to the route registered under TOKEN.

    Use :func:`media_proxy` for this process's instance; it starts on first use.
    """

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        self._opener = urllib.request.build_opener(_SameHostRedirects())
        self._server = LoopbackHTTP(self._handler(), name="audioset-media-proxy")

    @contextlib.contextmanager
    def route(self, url: str, headers: Mapping[str, str], timeout: float) -> Iterator[Route]:
        """Make ``url`` (fetched with ``headers``) readable at ``route.local_url`` inside the
        ``with`` block."""
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https"):
            raise DownloadError(f"the media forwarder reads http(s) addresses only, not {url!r}")
        headers = dict(headers)
        if parts.username or parts.password:  # credentials in the address: send them as auth
            user = f"{parts.username or ''}:{parts.password or ''}".encode()
            headers.setdefault("Authorization", "Basic " + base64.b64encode(user).decode())
            host = parts.hostname or ""
            netloc = f"[{host}]" if ":" in host else host
            netloc += f":{parts.port}" if parts.port else ""
            url = urlunsplit(parts._replace(netloc=netloc))
        token = secrets.token_urlsafe(18)
        port = self._server.port
        # the file name and a mime parameter tell ffmpeg's reader what container to expect
        local = f"http://127.0.0.1:{port}/{token}/{quote(parts.path.rsplit('/', 1)[-1])}"
        mime = parse_qs(parts.query).get("mime")
        if mime:
            local += f"?mime={quote(mime[0])}"
        route = Route(url, headers, timeout, local_url=local)
        with self._lock:
            self._routes[token] = route
        try:
            yield route
        finally:
            with self._lock:
                self._routes.pop(token, None)

    def _lookup(self, path: str) -> Route | None:
        with self._lock:
            return self._routes.get(path.lstrip("/").split("?", 1)[0].split("/", 1)[0])

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                return

            def do_GET(self) -> None:
                route = proxy._lookup(self.path)
                if route is None:
                    self._answer(404)
                    return
                route.requests += 1
                headers = dict(route.headers)
                if self.headers.get("Range"):
                    headers["Range"] = self.headers["Range"]
                # route() admits http(s) addresses only
                request = urllib.request.Request(route.url, headers=headers)  # noqa: S310
                try:
                    upstream = proxy._opener.open(request, timeout=route.timeout)
                except urllib.error.HTTPError as exc:
                    if exc.code != 416:  # a read past the end is ffmpeg's business, not a fault
                        route.note(exc)
                    self._answer(exc.code, exc.headers)
                    exc.close()
                    return
                except Exception as exc:  # noqa: BLE001 - kept for the fetcher to classify
                    route.note(exc)
                    self._answer(502)
                    return
                with contextlib.closing(upstream):
                    self.send_response(upstream.status)
                    for name in _PASSED_BACK:
                        if upstream.headers.get(name) is not None:
                            self.send_header(name, upstream.headers[name])
                    if upstream.headers.get("Content-Length") is None:
                        self.send_header("Connection", "close")  # the body ends when we close
                        self.close_connection = True
                    self.end_headers()
                    try:
                        while chunk := upstream.read(1 << 16):
                            self.wfile.write(chunk)
                    except (BrokenPipeError, ConnectionResetError):
                        self.close_connection = True  # ffmpeg moved on (a seek): stop reading
                    except Exception as exc:  # noqa: BLE001 - an upstream read failed
                        route.note(exc)
                        self.close_connection = True

            def _answer(self, status: int, headers: Mapping[str, str] | None = None) -> None:
                self.send_response(status)
                for name in ("Content-Range", "Retry-After"):
                    if headers is not None and headers.get(name) is not None:
                        self.send_header(name, headers[name])
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler


_PROXY: MediaProxy | None = None
_PROXY_PID = 0
_PROXY_LOCK = threading.Lock()


def media_proxy() -> MediaProxy:
    """This process's forwarder (a forked worker starts its own)."""
    global _PROXY, _PROXY_PID
    with _PROXY_LOCK:
        if _PROXY is None or _PROXY_PID != os.getpid():
            _PROXY, _PROXY_PID = MediaProxy(), os.getpid()
        return _PROXY


__all__ = [
    "MediaProxy",
    "Route",
    "has_secret",
    "media_proxy",
]
