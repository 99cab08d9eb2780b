"""Fetch one AudioSet segment (YouTube id, start, end) as mono int16 PCM.

yt-dlp (as a library) resolves the best audio-only format of the video to a media address and
its request headers; ffmpeg then seeks *before* opening the input, so only the container index
and the byte ranges that hold ``[start, end)`` cross the network. Streaming-manifest formats, or
a direct read that fails because the source cannot seek, fall back to yt-dlp's own range
download into a temporary folder.

Failures are classified into :class:`ClipFailure` with a short stable ``reason`` and a
``permanent`` flag, so the caller can record dead videos once and retry only transient errors
(with its own backoff): :meth:`ClipFetcher.fetch` never retries by itself.

Every fetch can run in a :class:`ClipWorkerPool`: worker processes that are killed, with the
ffmpeg they started, when a clip runs past its time limit, so a server that trickles bytes
cannot hold a download.

Permanent vs transient
----------------------
Permanent means a retry gives the same answer: the video is gone, private, blocked, needs an
account (age, membership), is geo-blocked, answers 404/410, or its media holds no decodable
audio in the range. Transient means the network or the site's rate limiting got in the way:
HTTP 403 (YouTube answers 403 when a signed media address expires or a client is throttled),
429, 5xx, timeouts, connection resets and bodies that stop short. ``bot_check`` ("Sign in to
confirm you're not a bot") is transient: it lifts with time or with cookies.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import itertools
import logging
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .audio import DecodeResult, FFmpegError, decode_pcm, find_ffmpeg
from .config import PathLike
from .errors import AudioSetError, DownloadError

logger = logging.getLogger(__name__)

#: YouTube ids are 11 characters of the URL-safe base64 alphabet (a leading '-' is valid).
YTID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{11}$")

#: Default address of a video; ``{ytid}`` is replaced by the id.
DEFAULT_URL_TEMPLATE = "https://www.youtube.com/watch?v={ytid}"

#: Every failure reason: whether it is permanent, and what it means.
REASONS: dict[str, tuple[bool, str]] = {
    "unavailable": (True, "the video is unavailable (deleted or never existed)"),
    "private": (True, "the video is private"),
    "removed": (True, "the video was removed (terms of service, uploader)"),
    "terminated": (True, "the uploader's account was terminated"),
    "copyright": (True, "the video was blocked by a copyright claim"),
    "age_restricted": (True, "the video needs a signed-in adult account"),
    "sign_in": (True, "the video needs a signed-in account (members only, etc.)"),
    "bot_check": (False, "the site asks to sign in to prove this is not a bot; use cookies"),
    "geo": (True, "the video is not available from this country"),
    "http_403": (False, "HTTP 403: expired media address or throttling"),
    "http_429": (False, "HTTP 429: too many requests"),
    "http_404": (True, "HTTP 404/410: no such media"),
    "http_5xx": (False, "HTTP 5xx: server error"),
    "timeout": (False, "no progress within the timeout"),
    "connection": (False, "connection refused, reset or name lookup failed"),
    "no_audio": (True, "no audio stream, or nothing in the requested time range"),
    "decode_error": (True, "the media could not be decoded"),
    "truncated": (False, "the media stopped before its announced end"),
    "too_large": (True, "the download would exceed the byte limit"),
    "invalid_id": (True, "not a valid YouTube id"),
    "unknown": (False, "an unclassified error"),
}

# (reason, pattern) tried in order on the lower-cased message; the first match wins.
_MESSAGE_RULES: list[tuple[str, re.Pattern[str]]] = [
    (r, re.compile(p))
    for r, p in [
        ("terminated", r"account associated with this video has been terminated"),
        ("copyright", r"copyright"),
        ("removed", r"video has been removed|removed for violating|removed by the uploader"),
        ("private", r"private video|video is private"),
        ("age_restricted", r"confirm your age|age[- ]restricted|inappropriate for some users"),
        ("bot_check", r"not a bot"),
        ("geo", r"not (?:made this video )?available in your country|geo[- ]?restrict"),
        ("sign_in", r"sign in|members[- ]only|join this channel|login required"),
        ("no_audio", r"requested format is not available|no audio|does not contain any stream"
                     r"|matches no streams|output file is empty"),
        ("unavailable", r"video unavailable|video is unavailable|video is not available"
                        r"|unsupported url|incomplete youtube id|not a valid url"),
        ("http_429", r"\b429\b|too many requests"),
        ("http_403", r"\b403\b|forbidden"),
        ("http_404", r"\b(?:404|410)\b|not found"),
        ("http_5xx", r"\b5\d\d\b|internal server error|bad gateway|service unavailable"),
        ("truncated", r"incompleteread|ends prematurely|content-length|ended after"),
        ("timeout", r"timed out|timeout"),
        ("connection", r"connection (?:refused|reset|aborted)|remote end closed|broken pipe"
                       r"|name resolution|network is unreachable|nodename nor servname"
                       r"|unable to connect|errno 111|errno 104"),
        ("decode_error", r"invalid data found|could not find codec|error while decoding"
                         r"|ebml header|moov atom not found|invalid argument"),
    ]
]


class ClipFailure(DownloadError):
    """A clip could not be fetched; ``reason`` is a stable short code from :data:`REASONS`.

    Attributes
    ----------
    reason
        e.g. ``"private"``, ``"http_429"``, ``"timeout"``.
    permanent
        True when retrying cannot help (record the clip as dead).
    status
        HTTP status when one was seen, else None.
    detail
        The underlying message (yt-dlp's or ffmpeg's log tail).
    ytid
        The video id, when known.
    """

    def __init__(
        self,
        reason: str,
        detail: str = "",
        *,
        ytid: str | None = None,
        status: int | None = None,
        permanent: bool | None = None,
    ):
        if reason not in REASONS:
            reason = "unknown"
        self.reason = reason
        self.permanent = REASONS[reason][0] if permanent is None else permanent
        self.status = status
        self.detail = detail
        self.ytid = ytid
        kind = "permanent" if self.permanent else "transient"
        who = f"{ytid}: " if ytid else ""
        first = detail.strip().splitlines()[0] if detail.strip() else REASONS[reason][1]
        super().__init__(f"{who}{reason} ({kind}): {first}")

    def __reduce__(self):  # keep attributes across processes (dask, multiprocessing)
        return (
            _rebuild_failure,
            (type(self), self.reason, self.detail, self.ytid, self.status, self.permanent),
        )


def _rebuild_failure(cls, reason, detail, ytid, status, permanent):  # noqa: ANN001, ANN202
    return cls(reason, detail, ytid=ytid, status=status, permanent=permanent)


class InvalidIdError(ClipFailure, ValueError):
    """The string is not a YouTube id; raised before any request is made."""

    def __init__(self, ytid: object, detail: str = ""):
        super().__init__(
            "invalid_id",
            detail or f"{ytid!r} is not a YouTube id (11 characters of A-Z a-z 0-9 _ -)",
            ytid=None,
        )
        self.ytid = ytid  # type: ignore[assignment]

    def __reduce__(self):
        return (type(self), (self.ytid, self.detail))


def validate_ytid(ytid: object) -> str:
    """Return ``ytid`` if it is a valid YouTube id, else raise :class:`InvalidIdError`.

    >>> validate_ytid("-0SdAVK79lg")
    '-0SdAVK79lg'
    >>> validate_ytid("../../etc/pa")
    Traceback (most recent call last):
    ...
    audioset_data.clip.InvalidIdError: invalid_id (permanent): '../../etc/pa' is not a YouTube id (11 characters of A-Z a-z 0-9 _ -)
    """  # noqa: E501
    if not isinstance(ytid, str) or not YTID_PATTERN.match(ytid):
        raise InvalidIdError(ytid)
    return ytid


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and everything it wraps (yt-dlp keeps the cause in ``exc_info``/``cause``)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or any(e is s for s in seen) or len(seen) > 20:
            continue
        seen.append(e)
        info = getattr(e, "exc_info", None)
        if isinstance(info, tuple) and len(info) > 1 and isinstance(info[1], BaseException):
            todo.append(info[1])
        cause = getattr(e, "cause", None)
        if isinstance(cause, BaseException):
            todo.append(cause)
        todo += [e.__cause__, e.__context__]
    return seen


def _status_of(chain: list[BaseException]) -> int | None:
    for e in chain:
        for attr in ("status", "code"):
            value = getattr(e, attr, None)
            if isinstance(value, int) and 100 <= value <= 599:
                return value
    return None


def _reason_for_status(status: int) -> str:
    if status == 429:
        return "http_429"
    if status == 403:
        return "http_403"
    if status in (404, 410):
        return "http_404"
    if 500 <= status <= 599:
        return "http_5xx"
    return "unknown"


def classify_error(exc: BaseException, *, ytid: str | None = None) -> ClipFailure:
    """Turn any exception met while fetching a clip into a :class:`ClipFailure`.

    Looks, in order, at: an existing :class:`ClipFailure`; yt-dlp's geo-restriction error; the
    text of the messages (YouTube's wording, e.g. "Private video", "Sign in to confirm you're
    not a bot"); ffmpeg's failure kind; HTTP statuses anywhere in the exception chain; timeouts
    and connection errors by type.

    >>> from yt_dlp.utils import DownloadError
    >>> classify_error(DownloadError("ERROR: [youtube] abc: Private video")).reason
    'private'
    >>> f = classify_error(DownloadError("ERROR: unable to download: HTTP Error 429"))
    >>> f.reason, f.permanent, f.status
    ('http_429', False, 429)
    """
    if isinstance(exc, ClipFailure):
        if ytid and not exc.ytid:
            exc.ytid = ytid
        return exc
    chain = _exception_chain(exc)
    status = _status_of(chain)
    texts = []
    for e in chain:
        texts.append(str(getattr(e, "orig_msg", "") or ""))
        texts.append(str(e))
        if isinstance(e, FFmpegError):
            texts.append(e.stderr)
    message = "\n".join(t for t in texts if t)
    detail = str(exc) if not isinstance(exc, FFmpegError) else f"{exc}"
    lowered = message.lower()

    try:
        from yt_dlp.utils import GeoRestrictedError

        if any(isinstance(e, GeoRestrictedError) for e in chain):
            return ClipFailure("geo", detail, ytid=ytid, status=status)
    except ImportError:  # pragma: no cover - yt-dlp is a dependency
        pass

    ffmpeg_err = next((e for e in chain if isinstance(e, FFmpegError)), None)
    if ffmpeg_err is not None and ffmpeg_err.kind in ("timeout", "too_large", "truncated",
                                                      "no_audio"):
        return ClipFailure(ffmpeg_err.kind, detail, ytid=ytid, status=status)

    # YouTube's own wording first (it is specific), HTTP status next, generic wording last.
    for reason, pattern in _MESSAGE_RULES[:9]:
        if pattern.search(lowered):
            return ClipFailure(reason, detail, ytid=ytid, status=status)
    if ffmpeg_err is not None and ffmpeg_err.status is not None:
        status = ffmpeg_err.status
    if status is not None:
        reason = _reason_for_status(status)
        if reason != "unknown":
            return ClipFailure(reason, detail, ytid=ytid, status=status)
    for reason, pattern in _MESSAGE_RULES[9:]:
        if pattern.search(lowered):
            m = re.search(r"\b([45]\d\d)\b", lowered) if reason.startswith("http_") else None
            return ClipFailure(reason, detail, ytid=ytid, status=int(m[1]) if m else status)
    if any(isinstance(e, TimeoutError) for e in chain):
        return ClipFailure("timeout", detail, ytid=ytid, status=status)
    if any(isinstance(e, ConnectionError) for e in chain):
        return ClipFailure("connection", detail, ytid=ytid, status=status)
    if status is not None and 400 <= status < 500:
        return ClipFailure("unknown", detail, ytid=ytid, status=status, permanent=True)
    return ClipFailure("unknown", detail, ytid=ytid, status=status)


@dataclass
class ClipAudio:
    """The decoded audio of one segment.

    ``waveform`` holds at most ``(end - start) * sample_rate`` samples; fewer means the video
    ends early (``num_samples`` is that true length; padding is the store's job).
    """

    ytid: str
    start: float
    end: float
    waveform: np.ndarray
    sample_rate: int
    num_samples: int
    bytes_read: int | None = None
    method: str = "direct"  # "direct" (ffmpeg range reads) or "range_download" (yt-dlp)
    format_id: str | None = None
    source_duration: float | None = None

    @property
    def duration(self) -> float:
        """True length in seconds."""
        return self.num_samples / self.sample_rate


class _YtdlLogger:
    """Send yt-dlp's output to this module's logger instead of the terminal."""

    def debug(self, msg: str) -> None:
        logger.debug("yt-dlp: %s", msg)

    def info(self, msg: str) -> None:
        logger.debug("yt-dlp: %s", msg)

    def warning(self, msg: str) -> None:
        logger.debug("yt-dlp warning: %s", msg)

    def error(self, msg: str) -> None:
        logger.debug("yt-dlp error: %s", msg)


def _with_ffmpeg_location(ffmpeg: str, fn: Any, *args: Any) -> Any:
    """Run ``fn`` with yt-dlp's ffmpeg lookup pointed at ``ffmpeg`` (this call only).

    yt-dlp decides whether its ffmpeg range downloader is available before it sees the
    ``ffmpeg_location`` option, by a lookup that reads a context variable or ``PATH``; setting
    the variable in a copied context leaves other threads and ``PATH`` untouched.
    """

    def run() -> Any:
        try:
            from yt_dlp.postprocessor.ffmpeg import FFmpegPostProcessor

            var = getattr(FFmpegPostProcessor, "_ffmpeg_location", None)
            if isinstance(var, contextvars.ContextVar):
                var.set(ffmpeg)
        except ImportError:  # pragma: no cover - yt-dlp is a dependency
            pass
        return fn(*args)

    return contextvars.copy_context().run(run)


#: Format protocols ffmpeg can read and seek directly.
DIRECT_PROTOCOLS = ("http", "https", "m3u8", "m3u8_native")


@dataclass
class ClipFetcher:
    """How to fetch clips; call :meth:`fetch` per segment. Safe to share between threads.

    Parameters
    ----------
    url_template
        Video address with ``{ytid}``; point it at a mirror or a test server.
    sample_rate, clip_seconds
        Output rate (Hz) and the longest segment returned (seconds).
    ffmpeg
        ffmpeg binary; None uses :func:`audioset_data.audio.find_ffmpeg`.
    socket_timeout
        Seconds without network progress, for yt-dlp and ffmpeg (``-rw_timeout``).
    ffmpeg_timeout
        Wall-clock limit for one ffmpeg run.
    max_bytes
        Limit for a fallback range download (yt-dlp ``max_filesize`` and a check of the file).
        Direct reads are bounded by ``-t``, the PCM output cap and the timeouts instead: they
        read only the index and the wanted ranges, whatever the size of the whole file.
    cookiefile, cookies_from_browser
        Cookies for sites that ask to sign in ("confirm you're not a bot"): a Netscape
        cookies.txt, or a browser spec such as ``"firefox"`` or ``"chrome:Profile 1"``.
    ytdl_options
        Extra ``yt_dlp.YoutubeDL`` options, applied last (e.g. ``extractor_args``, ``proxy``).
    format
        yt-dlp format selector: best audio-only, else the best format with audio.
    use_range_fallback
        Allow the yt-dlp range download when a direct read cannot work.
    direct_protocols
        Format protocols read directly by ffmpeg; others go through the fallback.
    """

    url_template: str = DEFAULT_URL_TEMPLATE
    sample_rate: int = 32000
    clip_seconds: float = 10.0
    ffmpeg: str | None = None
    socket_timeout: float = 20.0
    ffmpeg_timeout: float = 60.0
    max_bytes: int = 64 * 1024**2
    cookiefile: PathLike | None = None
    cookies_from_browser: str | tuple | None = None
    ytdl_options: dict[str, Any] = field(default_factory=dict)
    format: str = "bestaudio/best"
    use_range_fallback: bool = True
    direct_protocols: tuple[str, ...] = DIRECT_PROTOCOLS

    def __post_init__(self) -> None:
        if "{ytid}" not in self.url_template:
            raise DownloadError(f"url_template {self.url_template!r} has no '{{ytid}}' field")
        if self.sample_rate <= 0 or self.clip_seconds <= 0:
            raise DownloadError(
                f"sample_rate={self.sample_rate} and clip_seconds={self.clip_seconds} must be > 0"
            )
        self._ffmpeg_path = find_ffmpeg(self.ffmpeg)
        self._local = threading.local()

    # -- yt-dlp -------------------------------------------------------------------------
    def url_for(self, ytid: str) -> str:
        """The video address of a (validated) id."""
        return self.url_template.replace("{ytid}", validate_ytid(ytid))

    def ytdl_params(self, **extra: Any) -> dict[str, Any]:
        """The ``YoutubeDL`` options used for resolving formats (plus ``extra``)."""
        params: dict[str, Any] = {
            "quiet": True,
            "no_warnings": True,
            "noprogress": True,
            "noplaylist": True,
            "format": self.format,
            "socket_timeout": self.socket_timeout,
            "logger": _YtdlLogger(),
            "ffmpeg_location": self._ffmpeg_path,
            "extractor_retries": 0,
            "retries": 0,
            "fragment_retries": 0,
            "cachedir": False,
            "color": {"stdout": "no_color", "stderr": "no_color"},
        }
        if self.cookiefile is not None:
            params["cookiefile"] = str(self.cookiefile)
        if self.cookies_from_browser:
            spec = self.cookies_from_browser
            if isinstance(spec, str):
                browser, _, profile = spec.partition(":")
                spec = (browser, profile or None, None, None)
            params["cookiesfrombrowser"] = tuple(spec)
        params.update(extra)
        params.update(self.ytdl_options)
        return params

    def _ydl(self):  # noqa: ANN202 - yt_dlp.YoutubeDL
        ydl = getattr(self._local, "ydl", None)
        if ydl is None:
            import yt_dlp

            ydl = yt_dlp.YoutubeDL(self.ytdl_params())
            self._local.ydl = ydl
        return ydl

    def resolve(self, ytid: str) -> dict[str, Any]:
        """Run yt-dlp's extractor for ``ytid`` and return its info dict (no media download).

        Raises
        ------
        ClipFailure
            Classified from yt-dlp's error.
        """
        url = self.url_for(ytid)
        try:
            info = self._ydl().extract_info(url, download=False)
        except Exception as exc:  # noqa: BLE001 - every failure gets classified
            raise classify_error(exc, ytid=ytid) from exc
        if not isinstance(info, dict):
            raise ClipFailure("unknown", f"yt-dlp returned no information for {url}", ytid=ytid)
        return info

    @staticmethod
    def _audio_format(info: Mapping[str, Any]) -> Mapping[str, Any]:
        for fmt in info.get("requested_formats") or ():
            if fmt.get("acodec") != "none":
                return fmt
        return info

    def _headers(self, fmt: Mapping[str, Any], url: str) -> dict[str, str]:
        headers = dict(fmt.get("http_headers") or {})
        try:
            cookie = self._ydl().cookiejar.get_cookie_header(url)
        except Exception:  # noqa: BLE001 - cookies are optional
            cookie = None
        if cookie:
            headers["Cookie"] = cookie
        return headers

    # -- fetching -----------------------------------------------------------------------
    def fetch(self, ytid: str, start: float, end: float | None = None) -> ClipAudio:
        """Fetch ``[start, end)`` of video ``ytid`` as mono int16 at :attr:`sample_rate`.

        ``end`` defaults to ``start + clip_seconds``; spans longer than ``clip_seconds`` are
        cut to it. Nothing is retried here: a transient :class:`ClipFailure` is for the caller
        to retry with backoff.

        Raises
        ------
        InvalidIdError
            Before any request, when ``ytid`` is not an id.
        ClipFailure
            Any other failure, classified.
        """
        validate_ytid(ytid)
        if end is None:
            end = start + self.clip_seconds
        if not (start >= 0 and end > start):
            raise ClipFailure(
                "invalid_id", f"bad time range [{start}, {end}) for {ytid}", ytid=ytid
            )
        duration = min(end - start, self.clip_seconds)
        info = self.resolve(ytid)
        fmt = self._audio_format(info)
        video_duration = info.get("duration")
        if isinstance(video_duration, (int, float)) and video_duration > 0:
            if start >= video_duration:
                raise ClipFailure(
                    "no_audio",
                    f"segment starts at {start}s but the video lasts {video_duration}s",
                    ytid=ytid,
                )
        media_url = fmt.get("url")
        protocol = str(fmt.get("protocol") or "")
        if media_url and protocol in self.direct_protocols:
            try:
                return self._direct(ytid, start, duration, fmt, media_url)
            except ClipFailure as failure:
                cause = failure.__cause__
                if not (self.use_range_fallback and _seek_trouble(cause)):
                    raise
                logger.info("%s: direct read failed (%s); trying a range download", ytid,
                            failure.reason)
        elif not self.use_range_fallback:
            raise ClipFailure(
                "decode_error",
                f"format {fmt.get('format_id')} uses protocol {protocol!r}, which needs "
                "use_range_fallback=True",
                ytid=ytid,
            )
        return self._range_download(ytid, start, duration, info, fmt)

    def _direct(
        self, ytid: str, start: float, duration: float, fmt: Mapping[str, Any], url: str
    ) -> ClipAudio:
        pcm, d = self._decode(ytid, url, start, duration, headers=self._headers(fmt, url),
                              rw_timeout=self.socket_timeout)
        if d.bytes_read is not None and d.bytes_read > self.max_bytes:
            logger.warning("%s: read %d bytes, over max_bytes=%d", ytid, d.bytes_read,
                           self.max_bytes)
        return ClipAudio(
            ytid=ytid,
            start=start,
            end=start + duration,
            waveform=pcm,
            sample_rate=self.sample_rate,
            num_samples=len(pcm),
            bytes_read=d.bytes_read,
            method="direct",
            format_id=fmt.get("format_id"),
            source_duration=d.source_duration,
        )

    def _decode(self, ytid: str, source: PathLike, start: float, duration: float,
                **extra: Any) -> tuple[np.ndarray, DecodeResult]:
        """``decode_pcm`` with this fetcher's settings; any failure becomes a ClipFailure."""
        details: list[DecodeResult] = []
        try:
            pcm = decode_pcm(source, start=start, duration=duration,
                             sample_rate=self.sample_rate, ffmpeg=self._ffmpeg_path,
                             timeout=self.ffmpeg_timeout, details=details, **extra)
        except Exception as exc:  # noqa: BLE001 - every failure gets classified
            raise classify_error(exc, ytid=ytid) from exc
        return pcm, details[-1] if details else DecodeResult(None, None, "")

    def _range_download(
        self,
        ytid: str,
        start: float,
        duration: float,
        info: Mapping[str, Any],
        fmt: Mapping[str, Any],
    ) -> ClipAudio:
        """yt-dlp's own section download into a temp folder, then decode the file."""
        from yt_dlp.utils import download_range_func

        size = fmt.get("filesize") or fmt.get("filesize_approx")
        protocol = str(fmt.get("protocol") or "")
        if size and protocol in ("http", "https") and size > self.max_bytes:
            # a plain file that cannot be read by ranges would be read whole
            raise ClipFailure(
                "too_large", f"format is {size} bytes, over max_bytes={self.max_bytes}",
                ytid=ytid,
            )
        with tempfile.TemporaryDirectory(prefix=f"audioset-clip-{ytid}-") as tmp:
            params = self.ytdl_params(
                download_ranges=download_range_func(None, [(start, start + duration)]),
                force_keyframes_at_cuts=False,
                outtmpl={"default": str(Path(tmp) / "clip.%(ext)s")},
                paths={"home": tmp, "temp": tmp},
                max_filesize=self.max_bytes,
                overwrites=True,
                skip_download=False,
            )
            try:
                import yt_dlp

                def run() -> None:
                    with yt_dlp.YoutubeDL(params) as ydl:
                        ydl.extract_info(self.url_for(ytid), download=True)

                _with_ffmpeg_location(self._ffmpeg_path, run)
            except Exception as exc:  # noqa: BLE001 - every failure gets classified
                raise classify_error(exc, ytid=ytid) from exc
            files = [
                p for p in Path(tmp).iterdir()
                if p.is_file() and not p.name.endswith((".part", ".ytdl"))
            ]
            if not files:
                raise ClipFailure(
                    "too_large" if size and size > self.max_bytes else "unknown",
                    "the range download produced no file",
                    ytid=ytid,
                )
            path = max(files, key=lambda p: p.stat().st_size)
            nbytes = path.stat().st_size
            if nbytes > self.max_bytes:
                raise ClipFailure(
                    "too_large", f"downloaded {nbytes} bytes, over {self.max_bytes}", ytid=ytid
                )
            pcm, _ = self._decode(ytid, path, 0.0, duration)
        return ClipAudio(
            ytid=ytid,
            start=start,
            end=start + duration,
            waveform=pcm,
            sample_rate=self.sample_rate,
            num_samples=len(pcm),
            bytes_read=nbytes,
            method="range_download",
            format_id=fmt.get("format_id"),
            source_duration=info.get("duration"),
        )

    def _prepare_worker(self) -> None:
        """Run once in a :class:`ClipWorkerPool`'s helper process before it forks the workers:
        import yt-dlp, build its instance and compile the extractors' address patterns, so
        every worker starts warm instead of spending half a second on it."""
        ydl = self._ydl()
        url = self.url_template.replace("{ytid}", "aaaaaaaaaaa")
        with contextlib.suppress(Exception):
            for ie in ydl._ies.values():
                ie.suitable(url)

    def __getstate__(self) -> dict[str, Any]:  # picklable for process pools / dask
        state = dict(self.__dict__)
        state.pop("_local", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def close(self) -> None:
        """Close this thread's yt-dlp instance (saves cookies to ``cookiefile``)."""
        ydl = getattr(self._local, "ydl", None)
        if ydl is not None:
            ydl.close()
            self._local.ydl = None


def fetch_task(fetcher: ClipFetcher, ytid: str, start: float, end: float,
               fmt: str = "pcm16") -> tuple[str, Any]:
    """One attempt at one clip, as a task for any executor; returns plain data.

    ``("ok", (audio, length))`` with int16 samples (``fmt="pcm16"``) or the encoded bytes, or
    ``("failed", (reason, permanent, detail))``.
    """
    try:
        clip = fetcher.fetch(ytid, start, end)
        audio: np.ndarray | bytes = clip.waveform
        if fmt != "pcm16":
            from .codec import encode_clip

            audio = encode_clip(clip.waveform, fetcher.sample_rate, fmt)
        return "ok", (audio, int(clip.num_samples))
    except ClipFailure as exc:
        return "failed", (exc.reason, bool(exc.permanent), str(exc.detail or exc))
    except AudioSetError as exc:
        return "failed", ("unknown", False, f"{type(exc).__name__}: {exc}")


# -- killable worker processes ----------------------------------------------------------------
_FRAME = struct.Struct("!Q")


def _frame(data: bytes) -> bytes:
    return _FRAME.pack(len(data)) + data


def _read_frame(fh: Any) -> bytes | None:
    """One length-prefixed message from a blocking file, or None when the writer is gone."""
    head = fh.read(_FRAME.size)
    if len(head) < _FRAME.size:
        return None
    (n,) = _FRAME.unpack(head)
    data = fh.read(n)
    return data if len(data) == n else None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _Frames:
    """Splits bytes read from a non-blocking pipe into length-prefixed messages."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        out = []
        while len(self.buf) >= _FRAME.size:
            (n,) = _FRAME.unpack_from(self.buf)
            if len(self.buf) < _FRAME.size + n:
                break
            out.append(bytes(self.buf[_FRAME.size: _FRAME.size + n]))
            del self.buf[: _FRAME.size + n]
        return out


class _SharedPickler(pickle.Pickler):
    """Pickles ``shared`` objects as references the workers already hold."""

    def __init__(self, fh: Any, shared: tuple[Any, ...]):
        super().__init__(fh, protocol=pickle.HIGHEST_PROTOCOL)
        self._shared = shared

    def persistent_id(self, obj: Any) -> int | None:
        for i, s in enumerate(self._shared):
            if obj is s:
                return i
        return None


class _SharedUnpickler(pickle.Unpickler):
    def __init__(self, fh: Any, shared: tuple[Any, ...]):
        super().__init__(fh)
        self._shared = shared

    def persistent_load(self, pid: Any) -> Any:
        return self._shared[pid]


class _KeepRecords(logging.Handler):
    """Collects a worker's log records so they travel back with the task's result."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        record.msg = record.getMessage()
        record.args = None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        self.records.append(record)


def _watch_parent(parent: int) -> None:
    """End this process's group (a worker and its ffmpeg) when its parent is gone."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os.killpg(0, signal.SIGKILL)


def _serve_tasks(tasks: int, results: int, shared: tuple[Any, ...], keep: _KeepRecords) -> None:
    """A forked worker: run each task read from ``tasks``, answer on ``results``."""
    with os.fdopen(tasks, "rb") as inp:
        while (frame := _read_frame(inp)) is not None:
            fn, args, kwargs = _SharedUnpickler(io.BytesIO(frame), shared).load()
            try:
                reply: tuple[str, Any] = ("ok", fn(*args, **kwargs))
            except Exception as exc:  # noqa: BLE001 - sent back to the caller's future
                reply = ("error", exc)
            records, keep.records = keep.records, []
            try:
                data = pickle.dumps((*reply, records), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # noqa: BLE001 - an unpicklable result must still answer
                data = pickle.dumps(("error", DownloadError(f"result cannot be sent: {exc!r}"),
                                     records))
            _write_all(results, _frame(data))


@dataclass
class _Child:
    pid: int
    tasks: int  # write end
    results: int  # read end
    frames: _Frames = field(default_factory=_Frames)
    task: int | None = None
    deadline: float = float("inf")


def _hub_main() -> None:
    """The process behind a :class:`ClipWorkerPool` (``python -c``; reads stdin, writes
    stdout): it imports and warms up the fetcher once, then forks the workers from itself
    (one thread, so forking is safe), hands them tasks, kills a worker's process group at the
    time limit and forks a fresh one. It ends every worker and exits when stdin closes."""
    import selectors

    out = os.dup(1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the replies
    sys.stdout = sys.stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent; it ends us
    from_parent = _Frames()
    frames: list[bytes] = []
    while not frames:  # unbuffered: what follows the first message stays in from_parent
        data = os.read(0, 1 << 16)
        if not data:
            return
        frames = from_parent.feed(data)
    workers, time_limit, shared, level = pickle.loads(frames[0])  # noqa: S301 - parent's pipe
    keep = _KeepRecords()
    root = logging.getLogger()
    root.handlers[:] = [keep]
    root.setLevel(level)
    for obj in shared:
        prepare = getattr(obj, "_prepare_worker", None)
        if callable(prepare):
            prepare()
    keep.records = []
    hub = os.getpid()
    children: dict[int, _Child] = {}  # by results fd
    queue_: deque[tuple[int, bytes]] = deque()
    sel = selectors.DefaultSelector()
    os.set_blocking(0, False)
    sel.register(0, selectors.EVENT_READ)
    queue_.extend(pickle.loads(f) for f in frames[1:])  # noqa: S301 - our parent's pipe

    def send(kind: str, task: int, payload: bytes | None = None) -> None:
        _write_all(out, _frame(pickle.dumps((kind, task, payload),
                                            protocol=pickle.HIGHEST_PROTOCOL)))

    def fork() -> _Child:
        task_r, task_w = os.pipe()
        res_r, res_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                os.setpgid(0, 0)
                for fd in (0, out, task_w, res_r, *[c.tasks for c in children.values()],
                           *children):
                    os.close(fd)
                threading.Thread(target=_watch_parent, args=(hub,), daemon=True).start()
                _serve_tasks(task_r, res_w, shared, keep)
            except BaseException:  # noqa: BLE001
                code = 1
            finally:
                os._exit(code)
        os.close(task_r)
        os.close(res_w)
        child = _Child(pid, task_w, res_r)
        children[res_r] = child
        sel.register(res_r, selectors.EVENT_READ)
        return child

    def end(child: _Child) -> int:
        """Kill a worker's group, reap it, forget it; return its exit status."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
        _, status = os.waitpid(child.pid, 0)
        sel.unregister(child.results)
        os.close(child.results)
        os.close(child.tasks)
        del children[child.results]
        return os.waitstatus_to_exitcode(status)

    def fail(task: int, reason: str, detail: str) -> None:
        send("done", task, pickle.dumps(("error", ClipFailure(reason, detail), [])))

    def dispatch() -> None:
        while queue_:
            idle = next((c for c in children.values() if c.task is None), None)
            if idle is None:
                if len(children) >= workers:
                    return
                idle = fork()
            task, payload = queue_.popleft()
            idle.task = task
            idle.deadline = time.monotonic() + time_limit if time_limit else float("inf")
            send("start", task)
            try:
                _write_all(idle.tasks, _frame(payload))
            except OSError:
                code = end(idle)
                fail(task, "unknown", f"the worker process died (exit {code})")

    try:
        while True:
            now = time.monotonic()
            for child in [c for c in children.values() if c.deadline <= now]:
                task = child.task
                end(child)
                fail(task, "timeout", f"the clip was stopped at the time limit of "
                                      f"{time_limit:g} s (its worker and ffmpeg killed)")
            dispatch()
            soonest = min((c.deadline for c in children.values()), default=float("inf"))
            for key, _ in sel.select(None if soonest == float("inf")
                                     else max(0.0, soonest - time.monotonic())):
                fd = key.fd
                try:
                    data = os.read(fd, 1 << 20)
                except BlockingIOError:
                    continue
                if fd == 0:
                    if not data:
                        return
                    for frame in from_parent.feed(data):
                        queue_.append(pickle.loads(frame))  # noqa: S301 - our parent's pipe
                    continue
                child = children[fd]
                if not data:  # the worker died
                    task = child.task
                    code = end(child)
                    if task is not None:
                        fail(task, "unknown", f"the worker process died (exit {code})")
                    continue
                for frame in child.frames.feed(data):
                    send("done", child.task, frame)  # type: ignore[arg-type]
                    child.task, child.deadline = None, float("inf")
    finally:
        for child in list(children.values()):
            end(child)


class ClipWorkerPool(Executor):
    """An executor whose tasks run in worker processes that are killed at a time limit.

    One helper process imports yt-dlp and prepares the ``shared`` objects (the fetcher) once,
    then forks ``workers`` worker processes from itself. A task still running after
    ``time_limit`` seconds is ended by killing its worker's process group (the worker and any
    ffmpeg it started); its future then holds a transient ``timeout`` :class:`ClipFailure`,
    and a fresh worker takes the next task. A worker that dies gives a transient ``unknown``
    failure. Tasks that pass a ``shared`` object refer to the workers' own copy (it is not
    sent again), so a worker keeps its yt-dlp instance from one clip to the next.

    The processes ignore Ctrl-C (the pool's owner decides), and end when the owner process
    disappears. Tasks must be importable functions (they are pickled by reference); their log
    records are replayed in this process.
    """

    def __init__(self, workers: int, *, time_limit: float | None = None,
                 shared: tuple[Any, ...] = ()):
        if workers < 1:
            raise DownloadError(f"a worker pool needs at least one worker, not {workers}")
        if time_limit is not None and not time_limit > 0:
            raise DownloadError(f"time_limit={time_limit!r} must be a positive number of seconds")
        self.workers = workers
        self.time_limit = time_limit
        self.shared = tuple(shared)
        package_parent = str(Path(__file__).resolve().parents[1])
        code = (
            "import importlib.util, sys\n"
            f"p = {package_parent!r}\n"
            "s = importlib.util.find_spec('audioset_data')\n"
            "if s is None or not str(s.origin).startswith(p): sys.path.insert(0, p)\n"
            "from audioset_data.clip import _hub_main\n"
            "_hub_main()\n"
        )
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            start_new_session=True,
        )
        self._lock = threading.Lock()  # the futures table
        self._write_lock = threading.Lock()  # the helper's stdin
        self._futures: dict[int, Future] = {}
        self._ids = itertools.count()
        self._accepting = True
        level = logging.getLogger("audioset_data").getEffectiveLevel()
        self._send(pickle.dumps((workers, time_limit, self.shared, level)))
        self._reader = threading.Thread(target=self._read, name="audioset-worker-pool",
                                        daemon=True)
        self._reader.start()

    def _send(self, data: bytes) -> None:
        self._proc.stdin.write(_frame(data))  # type: ignore[union-attr]
        self._proc.stdin.flush()  # type: ignore[union-attr]

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Schedule ``fn(*args, **kwargs)`` in a worker process."""
        buf = io.BytesIO()
        _SharedPickler(buf, self.shared).dump((fn, args, kwargs))
        fut: Future = Future()
        with self._lock:
            if not self._accepting:
                raise RuntimeError("cannot submit to a worker pool after shutdown")
            if self._proc.poll() is not None:
                raise DownloadError(f"the worker processes are gone (exit {self._proc.poll()})")
            task = next(self._ids)
            self._futures[task] = fut
        try:  # not under self._lock: the reader thread must keep draining the replies
            with self._write_lock:
                self._send(pickle.dumps((task, buf.getvalue())))
        except OSError as exc:
            with self._lock:
                self._futures.pop(task, None)
            raise DownloadError(f"the worker processes are gone: {exc}") from exc
        return fut

    def _read(self) -> None:
        fh = self._proc.stdout
        try:
            while (frame := _read_frame(fh)) is not None:
                kind, task, payload = pickle.loads(frame)  # noqa: S301 - our own helper
                with self._lock:
                    fut = self._futures.get(task)
                if fut is None:
                    continue
                if kind == "start":
                    fut.set_running_or_notify_cancel()
                    continue
                with self._lock:
                    del self._futures[task]
                outcome, value, records = pickle.loads(payload)  # noqa: S301
                for rec in records:
                    log = logging.getLogger(rec.name)
                    if log.isEnabledFor(rec.levelno):
                        log.handle(rec)
                if fut.cancelled():
                    continue
                if fut.running() is False and not fut.set_running_or_notify_cancel():
                    continue
                if outcome == "ok":
                    fut.set_result(value)
                else:
                    fut.set_exception(value)
        finally:
            code = self._proc.wait()
            with self._lock:
                left, self._futures = self._futures, {}
            for fut in left.values():
                if fut.cancel() or fut.done():
                    continue
                fut.set_exception(ClipFailure(
                    "unknown", "the worker pool was shut down" if not self._accepting
                    else f"the worker processes exited (code {code})"))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking tasks. ``wait=False`` ends every worker at once (running tasks end with
        a failure) and returns; ``wait=True`` lets running and, unless ``cancel_futures``,
        queued tasks finish first."""
        with self._lock:
            self._accepting = False
            pending = list(self._futures.values())
        if cancel_futures or not wait:
            for fut in pending:
                fut.cancel()
        if wait:
            for fut in pending:
                if not fut.cancelled():
                    with contextlib.suppress(BaseException):
                        fut.exception()
        with self._write_lock, contextlib.suppress(OSError):
            self._proc.stdin.close()  # type: ignore[union-attr]
        if wait:
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._kill()
            self._reader.join()
        else:
            timer = threading.Timer(2.0, self._kill)
            timer.daemon = True
            timer.start()

    def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)


def _seek_trouble(exc: BaseException | None) -> bool:
    """Did a direct ffmpeg read fail in a way a range download might avoid?"""
    if not isinstance(exc, FFmpegError) or exc.kind != "error" or exc.status is not None:
        return False
    text = exc.stderr.lower()
    return any(k in text for k in ("seek", "moov atom not found"))


__all__ = [
    "DEFAULT_URL_TEMPLATE",
    "DIRECT_PROTOCOLS",
    "REASONS",
    "ClipAudio",
    "ClipFailure",
    "ClipFetcher",
    "ClipWorkerPool",
    "InvalidIdError",
    "YTID_PATTERN",
    "classify_error",
    "fetch_task",
    "validate_ytid",
]
