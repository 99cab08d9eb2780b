"""Reading a time range of any media address as mono int16 PCM, sample-exact.

ffmpeg seeks to just before the range and the exact samples are cut from what it decodes, so
the clip starts on the right sample whatever the container's seek granularity, and the
resampler starts on a sample the whole-file decode also has, so it runs at the same phase.
"""

from __future__ import annotations

import logging
import math
import os
import re
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
#: Seek and cut points lie on multiples of 40 ms: whole samples at every rate that is a
#: multiple of 25 Hz (8, 11.025, 16, 22.05, 32, 44.1, 48, 96 kHz...).
_SEEK_GRID = 0.04
#: The resampler restarts at least this long before the clip, to be warm by its start.
_LEAD = 0.02
#: The rate Opus always decodes at.
_OPUS_RATE = 48000
#: Decoded past the end of the clip: the resampler holds back a few ms that ``-t`` would cut.
_TAIL = 0.1
_MATROSKA_MAGIC = b"\x1a\x45\xdf\xa3"
#: The codec of the first audio stream, as ffmpeg's log names it.
_AUDIO_CODEC = re.compile(r"Stream #\d+:\d+\S*: Audio: (\w+)")
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


def _seek_point(start: float, sample_rate: int, margin: float) -> tuple[float, float] | None:
    """``(seek, lead)``: where ffmpeg seeks and where the decoded input is cut before it is
    resampled, both on the :data:`_SEEK_GRID`, or None where the file is decoded from its
    first sample (near its beginning).

    ``lead`` lies 20-60 ms before ``start`` (:data:`_LEAD` rounded down to the grid), so the
    resampler is warm again by ``start``; ``seek`` lies ``margin`` (rounded up to the grid)
    before ``lead``. On the grid, both are whole numbers of samples at every common source
    rate (any multiple of 25 Hz) and at the output rate, so the resampler starts on a sample
    that the whole-file decode also puts out, at the same phase.
    """
    sr = int(sample_rate)
    grid = _SEEK_GRID if sr % 25 == 0 else 1.0
    lead = math.floor(round((start - _LEAD) / grid, 6)) * grid
    if margin > 0:
        seek = lead - math.ceil(round(margin / grid, 6)) * grid
    else:  # Matroska: decoding starts at the cluster holding ``seek`` anyway (see _seek_margin)
        seek = math.floor(round(start / grid, 6)) * grid
    if start <= _SEEK_MARGIN or seek <= 0 or lead < 0:
        return None
    return round(seek, 6), round(lead, 6)


def _timeline(opus_grid: bool) -> str:
    """An ``asetpts`` filter that times the decoded samples as the whole-file decode does:
    one offset for every sample, from its count since the seek.

    Frame timestamps after a seek are not all right. ffmpeg's Ogg Vorbis reader times the first
    frame after a seek and the frame of every long-to-short block switch 448 samples (at 44.1
    kHz) off, while the samples themselves run on without a gap; timing the cut or the
    resampler by such a frame put clips 7-10 ms early. A frame's offset (its timestamp minus
    the samples before it) is taken only when it equals the previous frame's, which a lone
    mistimed frame never does. Matroska times are whole milliseconds, 0.5 ms off for Opus,
    whose frames (multiples of 120 samples at 48 kHz) start 312 samples (the pre-skip) before
    a multiple of 120 in the whole decode: with ``opus_grid`` the offset is moved to the nearest
    such sample.
    """
    offset = "round((ld(0)-48)/120)*120+48" if opus_grid else "ld(0)"
    # ld(2): this frame's offset, ld(3): the previous frame's, ld(4): set after the first
    # frame, ld(0): the offset in use; in samples of the decoded rate (TB*SR is 1 there)
    return ("asetpts='st(2,round(PTS*TB*SR)-N);"
            "if(eq(ld(2),ld(3))+eq(ld(4),0),st(0,ld(2));st(4,1),0);st(3,ld(2));"
            f"round((N+{offset})/(TB*SR))'")


def _range_args(
    inp: str,
    start: float,
    duration: float,
    sample_rate: int,
    *,
    manual_skip: bool,
    margin: float = _SEEK_MARGIN,
    opus_grid: bool = False,
) -> list[str]:
    """ffmpeg input, filter and output arguments that cut ``start`` to the sample.

    Near the beginning (see :func:`_seek_point`) nothing is sought: the file is decoded from
    its first sample, as a whole-file decode does, and the first ``round(start * sr)`` output
    samples are dropped by count. Further in, ffmpeg seeks to a grid point ``margin`` (the
    decoder's pre-roll; 0 for Matroska, see :func:`_seek_margin`) before the lead point 20-60
    ms before ``start``, and passes on everything it decodes from there (``-noaccurate_seek``).
    The samples are timed from their count (:func:`_timeline`), cut at the lead point at the
    source rate, resampled, and cut at ``start`` on the output's sample timestamps.

    ``manual_skip`` (``-flags2 +skip_manual``) stops the decoder from dropping the samples it
    is told to skip (encoder delay, end padding): after a seek the Opus decoder would drop its
    pre-skip again from the first packet it sees.
    """
    sr = int(sample_rate)
    point = _seek_point(start, sr, margin)
    if point is None:
        seek: list[str] = []
        # resample first, cut second: the same samples as the reference, bit for bit
        chain = f"aresample={sr},atrim=start_sample={int(round(start * sr))}"
    else:
        at, lead = point
        seek = ["-flags2", "+skip_manual"] if manual_skip else []
        seek += ["-noaccurate_seek", "-ss", f"{at:.6f}"]
        cut = int(round(start * sr)) - int(round(at * sr))
        resample = f"aresample={sr}"
        if opus_grid:
            # Opus decodes at 48 kHz. Where decoding starts after ``lead`` (a cluster starting
            # between it and ``start``), silence is put before the first frame so the
            # resampler still starts on ``lead`` at the reference's phase
            resample += (f":async=1:min_hard_comp=0.00001:"
                         f"first_pts={int(round((lead - at) * _OPUS_RATE))}")
        chain = (f"{_timeline(opus_grid)},atrim=start={lead - at:.6f},{resample},"
                 f"atrim=start_pts={cut}")
    chain += ",asetpts=PTS-STARTPTS"
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
    ``[round(start * sample_rate), round((start + duration) * sample_rate))``, while over HTTP
    ffmpeg still reads only the container index and the byte ranges around the clip: ``-ss`` is
    given before ``-i`` (input seeking), 0.34-0.38 s before ``start`` so the decoder has its
    pre-roll (WebM: at ``start``, its cluster gives the pre-roll), the decoded samples are timed
    by their count, and the cuts fall on whole samples of the source and of the output (see
    ``docs/download-internals.md``, "Exact clips"). Two exceptions: WebM/Opus clips starting
    just after a cluster start converge over their first 80-160 ms (the decoder starts cold),
    and AAC bands coded as noise (PNS) hold other random noise than a decode from the file's
    start.

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

    opus_grid = [margin == 0.0]  # Matroska: WebM audio is Opus (checked after the first run)

    def run(at: float, span: float, manual_skip: bool, limit: float) -> _Run:
        args = base + _range_args(inp, at, span, sr, manual_skip=manual_skip, margin=margin,
                                  opus_grid=opus_grid[0])
        out, stderr, code, stop = _run_capped(args, timeout=limit, max_output=cap)
        return _Run(out[: len(out) - len(out) % 2], stderr, code, stop)

    seeks = _seek_point(start, sr, margin) is not None
    first = run(start, duration, seeks, timeout)
    codec = _AUDIO_CODEC.search(first.stderr)
    if seeks and opus_grid[0] and codec and codec[1] != "opus" and first.code == 0:
        # Matroska holding another codec (Vorbis, AAC): its frames are not on Opus' grid
        opus_grid[0] = False
        first = run(start, duration, seeks, timeout - (time.monotonic() - t0))
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
