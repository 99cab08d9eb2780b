"""ffmpeg itself: where the binary is, its errors, and running it with capped output.

Every call runs ffmpeg as a subprocess with an argument list (never a shell). Inputs are full
URLs or ``file:`` absolute paths and outputs are ``pipe:`` streams, so no id or path can ever be
read as an option, even one that starts with ``-``.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from audioset_data.config import PathLike
from audioset_data.errors import ConfigError, DownloadError

logger = logging.getLogger(__name__)

#: Environment variable naming the ffmpeg binary to use.
FFMPEG_ENV = "AUDIOSET_FFMPEG"


_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_BYTES_READ = re.compile(r"Statistics: (\d+) bytes read")
_HTTP_STATUS = re.compile(r"Server returned (\d{3})|HTTP error (\d{3})")
#: ffmpeg http options for network inputs, chosen by ``benchmarks/bench_bytes.py``. Range
#: requests are bounded, so what a server pushes past the bytes ffmpeg needs (before a seek or
#: at the end of the clip) is at most one request: 32 KiB for the first request and the first
#: one after each seek (the webm/mp4 header and index of an hour of audio fit in it), 64 KiB
#: after that. A forward skip of more than 32 KiB (e.g. from an mp4 fragment header to the
#: wanted sample) becomes a new range request instead of a read-through; by default ffmpeg
#: reads through gaps up to the TCP receive window (often 200 KiB or more).
_HTTP_READ_OPTIONS = (
    "-initial_request_size", "32768",
    "-request_size", "65536",
    "-short_seek_size", "32768",
)


@functools.lru_cache(maxsize=8)
def http_read_options(ffmpeg: str) -> tuple[str, ...]:
    """The part of :data:`_HTTP_READ_OPTIONS` that this ffmpeg build knows.

    The request-size options are recent (older builds, such as a distribution's ffmpeg found on
    ``PATH``, reject them and would fail every clip); unknown ones are left out, with a log line.
    """
    try:
        proc = subprocess.run([ffmpeg, "-hide_banner", "-h", "protocol=http"],
                              capture_output=True, text=True, timeout=30, check=False)
        known = set(re.findall(r"^\s+-(\w+)\s", proc.stdout + proc.stderr, re.MULTILINE))
    except (OSError, subprocess.SubprocessError):
        known = set()
    keep: list[str] = []
    pairs = zip(_HTTP_READ_OPTIONS[::2], _HTTP_READ_OPTIONS[1::2], strict=True)
    for flag, value in pairs:
        if flag.lstrip("-") in known:
            keep += [flag, value]
        else:
            logger.info("%s does not know the http option %s; reading without it", ffmpeg, flag)
    return tuple(keep)


#: Log lines that show the input ended before the server said it would.
_TRUNCATION_HINTS = ("Stream ends prematurely", "Will reconnect", "Connection reset")


def find_ffmpeg(explicit: PathLike | None = None) -> str:
    """Return the path of the ffmpeg binary to use.

    Resolution order: ``explicit``, then the ``AUDIOSET_FFMPEG`` environment variable, then
    ``ffmpeg`` on ``PATH``, then the static binary bundled with ``imageio-ffmpeg`` (a
    dependency, so this always succeeds on a normal install).

    yt-dlp's own range download (used only as a fallback for streaming-manifest formats) looks
    for ffmpeg through its ``ffmpeg_location`` setting or ``PATH``; the bundled binary has a
    versioned file name, so the clip fetcher hands the chosen path to yt-dlp explicitly instead
    of relying on ``PATH``.

    Raises
    ------
    ConfigError
        If an explicit path (argument or environment variable) does not exist, or no ffmpeg
        can be found at all.
    """
    for value, origin in ((explicit, "argument ffmpeg"), (os.environ.get(FFMPEG_ENV), FFMPEG_ENV)):
        if value:
            path = Path(value).expanduser()
            if not path.is_file():
                found = shutil.which(str(value))
                if found:
                    return found
                raise ConfigError(f"{origin}={str(value)!r}: no ffmpeg binary at that path")
            return str(path.resolve())
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        raise ConfigError(
            f"no ffmpeg found: set {FFMPEG_ENV}, put ffmpeg on PATH or install imageio-ffmpeg "
            f"({exc})"
        ) from exc


@dataclass
class DecodeResult:
    """What :func:`decode_pcm` learned besides the samples."""

    bytes_read: int | None
    source_duration: float | None
    stderr_tail: str


class FFmpegError(DownloadError):
    """ffmpeg failed; ``stderr`` holds the tail of its log, ``status`` an HTTP status if any."""

    def __init__(
        self,
        message: str,
        *,
        stderr: str = "",
        status: int | None = None,
        kind: str = "error",
    ):
        super().__init__(message)
        self.stderr = stderr
        self.status = status
        self.kind = kind  # "error", "timeout", "too_large", "truncated", "no_audio"


def _input_arg(source: PathLike) -> tuple[str, bool]:
    """``(ffmpeg input argument, is_network)`` for a URL or a local path."""
    text = os.fspath(source)
    if re.match(r"^(https?|ftp)://", text, re.IGNORECASE):
        return text, True
    if text.startswith("file:"):
        text = text[5:]
    return "file:" + str(Path(text).resolve()), False


#: Request headers whose values are secrets: they never go on ffmpeg's command line, which
#: every user of the machine can read (``ps``). This ffmpeg takes ``-headers`` only there (its
#: ``-/option FILE`` form reads ffmpeg's own options from a file, not the http protocol's), so
#: :class:`~audioset_data.downloader.fetcher.ClipFetcher` sends such requests through a loopback
#: forwarder instead (:mod:`audioset_data.downloader.media_proxy`).
SECRET_HEADERS = frozenset({"cookie", "authorization", "proxy-authorization"})


def _headers_arg(headers: Mapping[str, str] | None) -> list[str]:
    if not headers:
        return []
    lines = []
    for key, value in headers.items():
        if "\r" in key or "\n" in key or "\r" in str(value) or "\n" in str(value):
            raise DownloadError(f"HTTP header {key!r} contains a line break")
        if key.strip().lower() in SECRET_HEADERS:
            raise DownloadError(
                f"HTTP header {key!r} is a secret and would be readable on ffmpeg's command "
                "line by every user of this machine; fetch through ClipFetcher, which forwards "
                "it over loopback (audioset_data.downloader.media_proxy)")
        lines.append(f"{key}: {value}\r\n")
    return ["-headers", "".join(lines)]


def _tail(text: str, lines: int = 12) -> str:
    """The error-level lines of an ffmpeg log (or its last lines when there are none)."""
    all_lines = [ln for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in all_lines if "[error]" in ln or "[fatal]" in ln or "[warning]" in ln]
    return "\n".join((errors or all_lines)[-lines:])


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _ffmpeg_env() -> dict[str, str] | None:
    """ffmpeg's environment: where an HTTP proxy is set, loopback addresses (the local media
    forwarder that adds cookies) bypass it; None (inherit as is) where none is set."""
    if not any(os.environ.get(k) for k in ("http_proxy", "HTTP_PROXY")):
        return None
    env = dict(os.environ)
    have = [h for h in (env.get("no_proxy") or env.get("NO_PROXY") or "").split(",") if h]
    env["no_proxy"] = env["NO_PROXY"] = ",".join([*have, *(h for h in _LOOPBACK
                                                          if h not in have)])
    return env


def _run_capped(
    args: list[str],
    *,
    timeout: float,
    max_output: int,
    stdin_data: bytes | None = None,
) -> tuple[bytes, str, int, str | None]:
    """Run ffmpeg, read stdout up to ``max_output`` bytes, kill it on timeout.

    Returns ``(stdout, stderr, returncode, stop_reason)`` where ``stop_reason`` is ``None``,
    ``"timeout"`` or ``"too_large"``.
    """
    proc = subprocess.Popen(
        args,
        stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_ffmpeg_env(),
    )
    stop: list[str] = []
    err_chunks: list[bytes] = []

    def read_stderr() -> None:
        for chunk in iter(lambda: proc.stderr.read(65536), b""):  # type: ignore[union-attr]
            err_chunks.append(chunk)
            if len(err_chunks) > 64:  # keep the tail only
                del err_chunks[:32]

    def feed_stdin() -> None:
        try:
            proc.stdin.write(stdin_data)  # type: ignore[union-attr]
            proc.stdin.close()  # type: ignore[union-attr]
        except (BrokenPipeError, OSError):
            pass

    def on_timeout() -> None:
        stop.append("timeout")
        proc.kill()

    threads = [threading.Thread(target=read_stderr, daemon=True)]
    if stdin_data is not None:
        threads.append(threading.Thread(target=feed_stdin, daemon=True))
    for t in threads:
        t.start()
    timer = threading.Timer(timeout, on_timeout)
    timer.daemon = True
    timer.start()
    out = bytearray()
    try:
        while True:
            chunk = proc.stdout.read1(1 << 16)  # type: ignore[union-attr]
            if not chunk:
                break
            out += chunk
            if len(out) > max_output:
                stop.append("too_large")
                proc.kill()
                break
        proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for t in threads:
            t.join(timeout=5)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    stderr = b"".join(err_chunks).decode("utf-8", "replace")
    return bytes(out), stderr, proc.returncode, (stop[0] if stop else None)


#: Seconds decoded before ``start`` and thrown away when ffmpeg seeks (see :func:`decode_pcm`).
#: Covers the pre-roll a decoder needs after a seek (Opus: 80 ms; AAC and Vorbis: a frame or
#: two; MP3: its bit reservoir, about 0.25 s at 24 kbit/s) with room to spare; a start within
#: it is decoded from the beginning of the file.


__all__ = [
    "FFMPEG_ENV",
    "DecodeResult",
    "FFmpegError",
    "find_ffmpeg",
    "http_read_options",
]
