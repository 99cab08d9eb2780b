"""Reading a time range of any media address as mono int16 PCM, sample-exact.

ffmpeg seeks to just before the range and the exact samples are cut from what it decodes, so
the clip starts on the right sample whatever the container's seek granularity.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from audioset_data.config import PathLike
from audioset_data.errors import DownloadError

from .ffmpeg import (
    _BYTES_READ,
    _DURATION,
    _HTTP_STATUS,
    _TRUNCATION_HINTS,
    DecodeResult,
    FFmpegError,
    _headers_arg,
    _input_arg,
    _run_capped,
    _tail,
    find_ffmpeg,
    http_read_options,
)

logger = logging.getLogger(__name__)

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


__all__ = ["decode_pcm"]
