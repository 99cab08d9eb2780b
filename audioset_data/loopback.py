"""One loopback HTTP server in a daemon thread: the base of the media forwarder that keeps
secrets off ffmpeg's command line and of the file server that tests, benchmarks and the demo
serve from. Bound to 127.0.0.1 on a free port, never to another interface."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackHTTP:
    """A ``ThreadingHTTPServer`` on ``127.0.0.1:<free port>`` serving ``handler`` from a
    daemon thread (request threads are daemons too, so a stuck client never blocks exit)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], *, name: str,
                 poll_interval: float = 0.2) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": poll_interval}, name=name,
                                       daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.httpd.server_address[1])

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()


__all__ = ["LoopbackHTTP"]
