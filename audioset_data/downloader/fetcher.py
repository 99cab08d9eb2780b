"""Fetch one AudioSet segment (YouTube id, start, end) as mono int16 PCM: :class:`ClipFetcher`.

yt-dlp (as a library) resolves the best audio-only format of the video to a media address and
its request headers; ffmpeg then seeks *before* opening the input, so only the container index
and the byte ranges that hold ``[start, end)`` cross the network. Streaming-manifest formats, or
a direct read that fails because the source cannot seek, fall back to yt-dlp's own range
download into a temporary folder. A request that carries a secret (cookies, credentials) goes
through a loopback forwarder (:mod:`audioset_data.downloader.media_proxy`), so no secret ever
reaches a command line.

Failures are raised as :class:`~audioset_data.downloader.failures.ClipFailure` with a short stable
``reason`` and a ``permanent`` flag; :meth:`ClipFetcher.fetch` never retries by itself.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from audioset_data.audio.ffmpeg import DecodeResult, FFmpegError, find_ffmpeg
from audioset_data.audio.ranges import decode_pcm
from audioset_data.cache.codec import encode_clip
from audioset_data.config import PathLike
from audioset_data.errors import AudioSetError, ConfigError
from audioset_data.segments.ids import DEFAULT_URL_TEMPLATE, check_url_template

from .failures import ClipFailure, classify_error, validate_ytid
from .media_proxy import has_secret, media_proxy

logger = logging.getLogger(__name__)


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
        ffmpeg binary; None uses :func:`audioset_data.audio.ranges.find_ffmpeg`.
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
        cookies.txt (it must exist), or a browser spec such as ``"firefox"`` or
        ``"chrome:Profile 1"``. Cookies that apply to a media address reach ffmpeg through a
        loopback forwarder, never on its command line.
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
        check_url_template(self.url_template)
        if not (self.sample_rate > 0 and self.clip_seconds > 0):
            raise ConfigError(
                f"sample_rate={self.sample_rate} and clip_seconds={self.clip_seconds} must be > 0"
            )
        if self.cookiefile is not None and not Path(self.cookiefile).expanduser().is_file():
            raise ConfigError(f"cookies file {str(self.cookiefile)!r} does not exist "
                              "(cookiefile= / --cookies)")
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
        """The request headers of a media address: the format's, plus the cookies that apply
        to that address."""
        headers = dict(fmt.get("http_headers") or {})
        cookie = self._cookie_header(url)
        if cookie:
            headers["Cookie"] = cookie
        return headers

    def _cookie_header(self, url: str) -> str | None:
        try:
            return self._ydl().cookiejar.get_cookie_header(url) or None
        except Exception:  # noqa: BLE001 - cookies are optional
            return None

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
                try:
                    return self._range_download(ytid, start, duration, info, fmt)
                except ClipFailure as second:
                    if second.reason != "unknown":
                        raise
                    # the fallback could not say why; the direct read could
                    raise ClipFailure(failure.reason, f"{failure.detail}\nrange download: "
                                      f"{second.detail}", ytid=ytid, status=failure.status,
                                      permanent=failure.permanent) from cause
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
        headers = self._headers(fmt, url)
        if not has_secret(url, headers):
            pcm, d = self._decode(ytid, url, start, duration, headers=headers,
                                  rw_timeout=self.socket_timeout)
        else:  # ffmpeg reads through the loopback forwarder, which adds the secrets
            with media_proxy().route(url, headers, self.socket_timeout) as route:
                try:
                    pcm, d = self._decode(ytid, route.local_url, start, duration,
                                          rw_timeout=self.socket_timeout)
                except ClipFailure:
                    if route.error is None:
                        raise
                    # what the real server answered, not what ffmpeg made of the forwarding
                    raise classify_error(route.error, ytid=ytid) from route.error
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
        media_url = str(fmt.get("url") or "")
        if has_secret(media_url, dict(fmt.get("http_headers") or {})) or (
                media_url and self._cookie_header(media_url)):
            # yt-dlp's range download hands cookies and headers to ffmpeg on its command line
            raise ClipFailure(
                "unknown", f"format {fmt.get('format_id')} needs a range download, which would "
                f"put the cookies or credentials for {urlsplit(media_url).hostname} on "
                "ffmpeg's command line, readable by every user of this machine; refused",
                ytid=ytid, permanent=True)
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
            audio = encode_clip(clip.waveform, fetcher.sample_rate, fmt)
        return "ok", (audio, int(clip.num_samples))
    except ClipFailure as exc:
        return "failed", (exc.reason, bool(exc.permanent), str(exc.detail or exc))
    except AudioSetError as exc:
        return "failed", ("unknown", False, f"{type(exc).__name__}: {exc}")



def _seek_trouble(exc: BaseException | None) -> bool:
    """Did a direct ffmpeg read fail in a way a range download might avoid?"""
    if not isinstance(exc, FFmpegError) or exc.kind != "error" or exc.status is not None:
        return False
    text = exc.stderr.lower()
    return any(k in text for k in ("seek", "moov atom not found"))



__all__ = [
    "DIRECT_PROTOCOLS",
    "ClipAudio",
    "ClipFetcher",
    "fetch_task",
]
