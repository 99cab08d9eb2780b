"""ffmpeg: where it is, and reading a time range of any media address as mono int16 PCM,
sample-exact (whole clips encoded or decoded in memory through ffmpeg are in
:mod:`audioset_data.ffmpeg_codecs`, re-exported here).

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
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import PathLike
from .errors import ConfigError, DownloadError

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
#: :class:`~audioset_data.clip_fetcher.ClipFetcher` sends such requests through a loopback
#: forwarder instead (:mod:`audioset_data.media_proxy`).
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
                "it over loopback (audioset_data.media_proxy)")
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
_SEEK_MARGIN = 0.3
#: Decoded past the end of the clip: the resampler holds back a few ms that ``-t`` would cut.
_TAIL = 0.1
_MATROSKA_MAGIC = b"\x1a\x45\xdf\xa3"
_MATROSKA_SUFFIXES = (".webm", ".mka", ".mkv", ".mk3d")


def _seek_margin(source: PathLike) -> float:
    """The pre-roll margin to seek with: ``_SEEK_MARGIN``, or 0 for Matroska/WebM.

    The margin costs little where the demuxer lands on the wanted packet (MP4, MP3) or near it
    (Ogg), and it is what gives the decoder its pre-roll there. A WebM seek lands on the start
    of the cluster (about 5 s of audio) that holds the target and decodes from there, so the
    pre-roll comes free, except within 80 ms of a cluster's start; a margin reaching back over
    that start would fetch the whole previous cluster, and round starts (AudioSet's) sit just
    after cluster starts in files cut every 5 s. WebM is recognised by its magic bytes (local
    files) or by the address: a ``.webm``/``.mka``/``.mkv`` path or a ``mime=audio/webm``
    query (YouTube's media addresses). A miss only costs bytes or pre-roll, never alignment.
    """
    text = os.fspath(source)
    inp, network = _input_arg(text)
    if network:
        parts = urllib.parse.urlsplit(text)
        mimes = urllib.parse.parse_qs(parts.query).get("mime", [])
        webm = parts.path.lower().endswith(_MATROSKA_SUFFIXES) or any(
            m.lower().split(";")[0].strip() in ("audio/webm", "video/webm", "audio/x-matroska",
                                                "video/x-matroska") for m in mimes)
    else:
        try:
            with open(inp[5:], "rb") as fh:
                webm = fh.read(4) == _MATROSKA_MAGIC
        except OSError:
            webm = False
    return 0.0 if webm else _SEEK_MARGIN


def _range_args(
    inp: str,
    start: float,
    duration: float,
    sample_rate: int,
    *,
    manual_skip: bool,
    margin: float = _SEEK_MARGIN,
) -> list[str]:
    """ffmpeg input, filter and output arguments that cut ``start`` to the sample.

    Near the beginning (``start <= _SEEK_MARGIN``) nothing is sought: the file is decoded from
    its first sample, as a whole-file decode does, and the first ``round(start * sr)`` output
    samples are dropped by count. Further in, ffmpeg seeks to ``start - margin`` (see
    :func:`_seek_margin`) and the cut is made on decoded timestamps, which ffmpeg keeps
    relative to the seek target: what the decoder produces before ``start`` (its pre-roll, and
    whatever a demuxer or decoder drops or mis-times right after a seek) is thrown away.

    ``manual_skip`` (``-flags2 +skip_manual``) stops the decoder from dropping the samples it
    is told to skip (encoder delay, end padding). After a seek, the Opus decoder drops its
    pre-skip again from the first packet it sees and moves that frame's timestamp by 6.5 ms
    rounded to the container's time base; in WebM (1 ms) that put the clip 0.5 ms further out.
    """
    sr = int(sample_rate)
    if start <= _SEEK_MARGIN:
        seek: list[str] = []
        trim = f"atrim=start_sample={int(round(start * sr))}"
    else:
        seek = ["-flags2", "+skip_manual"] if manual_skip else []
        seek += ["-ss", f"{start - margin:.6f}"]
        trim = f"atrim=start={margin:.6f}"
    # resample first, cut second: the resampler then sees the input a whole-file decode gives
    # it, and the cut falls on an output sample
    chain = f"aresample={sr},{trim},asetpts=PTS-STARTPTS"
    return [*seek, "-i", inp, "-t", f"{duration + _TAIL:.6f}", "-vn", "-sn", "-dn",
            "-af", chain, "-ac", "1", "-ar", str(sr), "-c:a", "pcm_s16le", "-f", "s16le",
            "pipe:1"]


@dataclass
class _Run:
    """One ffmpeg run of :func:`decode_pcm`."""

    out: bytes
    stderr: str
    code: int
    stop: str | None

    @property
    def bytes_read(self) -> int | None:
        m = _BYTES_READ.findall(self.stderr)
        return int(m[-1]) if m else None


def decode_pcm(
    source: PathLike,
    *,
    start: float,
    duration: float,
    sample_rate: int,
    ffmpeg: PathLike | None = None,
    timeout: float = 60.0,
    max_bytes: int | None = None,
    headers: Mapping[str, str] | None = None,
    rw_timeout: float | None = None,
    details: list[DecodeResult] | None = None,
) -> np.ndarray:
    """Decode ``[start, start + duration)`` of a URL or file to mono int16 PCM.

    The samples equal those of the whole file decoded from its beginning and cut at
    ``[round(start * sample_rate), round((start + duration) * sample_rate))``, to within
    0.5 ms (the residual of WebM's millisecond timestamps; other containers: one sample), while
    over HTTP ffmpeg still reads only the container index and the byte ranges around the clip:
    ``-ss`` is given before ``-i`` (input seeking), 0.3 s before ``start`` so the decoder has
    its pre-roll (WebM: at ``start``, its cluster gives the pre-roll), and the cut is made on
    decoded timestamps (see ``docs/download-internals.md``, "Exact clips").

    Parameters
    ----------
    source
        ``http(s)://`` address or local path.
    start, duration
        Seconds.
    sample_rate
        Output rate in Hz (ffmpeg resamples and downmixes to one channel).
    ffmpeg
        Binary to run; ``None`` uses :func:`find_ffmpeg`.
    timeout
        Wall-clock limit in seconds for the whole run; ffmpeg is killed after it.
    max_bytes
        Most PCM bytes accepted before ffmpeg is killed; default: the expected size plus 1 s.
    headers
        HTTP request headers (e.g. yt-dlp's ``http_headers``), sent for network inputs.
    rw_timeout
        Seconds without network progress before ffmpeg gives up (default: ``timeout``).
    details
        If a list is given, a :class:`DecodeResult` is appended to it.

    Returns
    -------
    numpy.ndarray
        int16 samples; shorter than ``duration * sample_rate`` when the source ends earlier.

    Raises
    ------
    FFmpegError
        ffmpeg failed (message carries its log tail), timed out, produced too much output, or
        the input ended before its announced duration (``kind="truncated"``).
    """
    if duration <= 0 or start < 0:
        raise DownloadError(f"bad time range start={start} duration={duration} for {source!r}")
    exe = find_ffmpeg(ffmpeg)
    inp, network = _input_arg(source)
    sr = int(sample_rate)
    expected = int(round(duration * sr))
    cap = max_bytes if max_bytes is not None else 2 * (expected + sr)
    base = [exe, "-nostdin", "-hide_banner", "-loglevel", "level+verbose"]
    if network:
        rw = rw_timeout if rw_timeout is not None else timeout
        base += ["-rw_timeout", str(int(rw * 1_000_000))]
        base += list(http_read_options(exe))
        base += _headers_arg(headers)
    where = f"{source!s} [{start:.3f}s +{duration:.3f}s]"
    margin = _seek_margin(source)
    t0 = time.monotonic()

    def run(at: float, span: float, manual_skip: bool, limit: float) -> _Run:
        args = base + _range_args(inp, at, span, sr, manual_skip=manual_skip, margin=margin)
        out, stderr, code, stop = _run_capped(args, timeout=limit, max_output=cap)
        return _Run(out[: len(out) - len(out) % 2], stderr, code, stop)

    seeks = start > _SEEK_MARGIN
    first = run(start, duration, seeks, timeout)
    stderr, tail = first.stderr, _tail(first.stderr)
    bytes_read = first.bytes_read
    d = _DURATION.search(stderr)
    src_duration = (int(d[1]) * 3600 + int(d[2]) * 60 + float(d[3])) if d else None
    result = DecodeResult(bytes_read, src_duration, tail)
    if details is not None:
        details.append(result)
    if first.stop == "timeout":
        raise FFmpegError(
            f"ffmpeg timed out after {timeout:.1f}s reading {where}", stderr=tail, kind="timeout"
        )
    if first.stop == "too_large":
        raise FFmpegError(
            f"ffmpeg produced more than {cap} bytes for {where}", stderr=tail, kind="too_large"
        )
    if first.code != 0:
        s = _HTTP_STATUS.search(stderr)
        status = int(s[1] or s[2]) if s else None
        kind = "timeout" if "timed out" in tail.lower() else "error"
        raise FFmpegError(
            f"ffmpeg failed (exit {first.code}) reading {where}:\n{tail}",
            stderr=tail,
            status=status,
            kind=kind,
        )
    out = first.out
    decoded = len(out) // 2
    hinted = any(h in stderr for h in _TRUNCATION_HINTS)
    ended = start + decoded / sr >= (src_duration or 0.0) - 0.25  # not cut short
    if seeks and decoded and ended and not hinted and decoded < round((duration + _TAIL) * sr):
        # The file ended within the clip or just after it, and manual skipping kept the
        # encoder's end padding (up to a frame or two). A second run without it, over the last
        # second only, says where the audio ends; should it fail, the padding stays.
        back = max(0.0, decoded / sr - 1.0)
        limit = timeout - (time.monotonic() - t0)
        end = run(start + back, decoded / sr - back + 1.0, False, limit) if limit > 1 else None
        if end is not None and end.code == 0 and end.stop is None and end.out:
            decoded = min(decoded, int(round(back * sr)) + len(end.out) // 2)
            if bytes_read is not None and end.bytes_read is not None:
                result.bytes_read = bytes_read + end.bytes_read
        else:
            logger.info("%s: could not find the end of the audio; keeping %d samples", where,
                        decoded)
    pcm = np.frombuffer(out, dtype="<i2")[: min(expected, decoded)].astype(np.int16)
    got = len(pcm) / sr
    # ffmpeg exits 0 when a body stops short; compare with the announced duration.
    if got < duration - 0.25:
        reachable = min(start + duration, src_duration) if src_duration else None
        if hinted or (reachable is not None and start + got < reachable - 0.25):
            raise FFmpegError(
                f"input ended early reading {where}: got {got:.2f}s, the source announces "
                f"{src_duration}s",
                stderr=tail,
                kind="truncated",
            )
        if len(pcm) == 0:
            raise FFmpegError(
                f"no audio in {where} (source duration {src_duration}s)",
                stderr=tail,
                kind="no_audio",
            )
    logger.debug("decoded %s: %d samples in %.2fs", where, len(pcm), time.monotonic() - t0)
    return pcm


# in-memory encoding and decoding through ffmpeg live in ffmpeg_codecs (which imports this
# module); they are re-exported lazily so either module can be imported first
_CODEC_NAMES = ("CODECS", "decode_audio", "encode_audio")


def __getattr__(name: str) -> Any:
    if name in _CODEC_NAMES:
        from . import ffmpeg_codecs

        return getattr(ffmpeg_codecs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FFMPEG_ENV",
    "DecodeResult",
    "FFmpegError",
    "decode_pcm",
    "find_ffmpeg",
]
