"""Encoding and decoding whole clips held in memory through an ffmpeg process.

The store decodes its compact formats in process (:mod:`audioset_data.cache.codec`); these are the
ffmpeg-based equivalents, kept as the reference the in-process codec is checked against and
for codecs it does not write (MP3).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from audioset_data.config import PathLike
from audioset_data.errors import ConfigError, DownloadError

from .ffmpeg import FFmpegError, _run_capped, _tail, find_ffmpeg

#: Codecs :func:`encode_audio` can write: (ffmpeg encoder arguments, container format).
CODECS: dict[str, tuple[tuple[str, ...], str]] = {
    "flac": (("-c:a", "flac", "-compression_level", "5"), "flac"),
    "opus": (("-c:a", "libopus", "-b:a", "64k", "-application", "audio"), "ogg"),
    "mp3": (("-c:a", "libmp3lame", "-q:a", "2"), "mp3"),
}

#: Sample rates the Opus encoder accepts; others are resampled to 48 kHz before encoding.
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


def encode_audio(
    pcm: np.ndarray,
    sample_rate: int,
    codec: str = "flac",
    *,
    ffmpeg: PathLike | None = None,
    timeout: float = 60.0,
) -> bytes:
    """Encode mono int16 samples with ``codec`` ("flac", "opus" or "mp3") and return the file.

    FLAC is lossless; Opus (Ogg) and MP3 are lossy and several times smaller. Opus only runs at
    8/12/16/24/48 kHz, so other rates are resampled to 48 kHz; pass ``sample_rate`` to
    :func:`decode_audio` to get the original rate back. MP3 goes through a temporary file so the
    encoder-delay header is written and the decoded length matches.
    """
    if codec not in CODECS:
        raise ConfigError(f"unknown codec {codec!r}; choose one of {', '.join(CODECS)}")
    samples = np.ascontiguousarray(np.asarray(pcm), dtype="<i2")
    if samples.ndim != 1:
        raise DownloadError(f"encode_audio expects mono samples, got shape {samples.shape}")
    exe = find_ffmpeg(ffmpeg)
    enc, fmt = CODECS[codec]
    args = [exe, "-nostdin", "-hide_banner", "-loglevel", "error"]
    args += ["-f", "s16le", "-ac", "1", "-ar", str(int(sample_rate)), "-i", "pipe:0"]
    if codec == "opus" and sample_rate not in _OPUS_RATES:
        args += ["-ar", "48000"]
    args += [*enc, "-map_metadata", "-1", "-f", fmt]
    if codec == "mp3":
        with tempfile.TemporaryDirectory(prefix="audioset-enc-") as tmp:
            path = Path(tmp) / "clip.mp3"
            _, stderr, code, stop = _run_capped(
                [*args, "file:" + str(path)],
                timeout=timeout,
                max_output=1 << 30,
                stdin_data=samples.tobytes(),
            )
            data = path.read_bytes() if path.exists() and code == 0 else b""
    else:
        data, stderr, code, stop = _run_capped(
            [*args, "pipe:1"],
            timeout=timeout,
            max_output=1 << 30,
            stdin_data=samples.tobytes(),
        )
    if code != 0 or stop:
        raise FFmpegError(
            f"encoding {len(samples)} samples as {codec} failed ({stop or code}):\n"
            f"{_tail(stderr)}",
            stderr=_tail(stderr),
        )
    return data


def decode_audio(
    data: bytes,
    *,
    sample_rate: int | None = None,
    num_samples: int | None = None,
    ffmpeg: PathLike | None = None,
    timeout: float = 60.0,
) -> tuple[np.ndarray, int]:
    """Decode an encoded file (FLAC, Ogg/Opus, MP3, WAV, ...) held in memory to mono int16.

    Parameters
    ----------
    data
        The whole encoded file.
    sample_rate
        Resample to this rate; ``None`` keeps the codec's rate (48 kHz for Opus).
    num_samples
        Trim or zero-pad the result to exactly this many samples (lossy codecs may differ by a
        few samples).

    Returns
    -------
    (samples, sample_rate)
    """
    if not data:
        raise DownloadError("decode_audio got an empty byte string")
    exe = find_ffmpeg(ffmpeg)
    args = [exe, "-nostdin", "-hide_banner", "-loglevel", "level+info", "-i", "pipe:0"]
    args += ["-vn", "-ac", "1"]
    if sample_rate:
        args += ["-ar", str(int(sample_rate))]
    args += ["-c:a", "pcm_s16le", "-f", "wav", "pipe:1"]
    out, stderr, code, stop = _run_capped(
        args, timeout=timeout, max_output=1 << 31, stdin_data=bytes(data)
    )
    if code != 0 or stop or len(out) < 44:
        raise FFmpegError(
            f"decoding {len(data)} bytes failed ({stop or code}):\n{_tail(stderr)}",
            stderr=_tail(stderr),
        )
    pcm, rate = _parse_wav(out)
    if num_samples is not None:
        if len(pcm) >= num_samples:
            pcm = pcm[:num_samples]
        else:
            pcm = np.concatenate([pcm, np.zeros(num_samples - len(pcm), np.int16)])
    return pcm, rate


def _parse_wav(buf: bytes) -> tuple[np.ndarray, int]:
    """Parse the streamed WAV ffmpeg writes to a pipe (sizes may be left unset)."""
    if buf[:4] != b"RIFF" or buf[8:12] != b"WAVE":
        raise DownloadError("ffmpeg did not write a WAV stream")
    pos = 12
    rate = 0
    while pos + 8 <= len(buf):
        tag = buf[pos : pos + 4]
        size = int.from_bytes(buf[pos + 4 : pos + 8], "little")
        if tag == b"fmt ":
            rate = int.from_bytes(buf[pos + 12 : pos + 16], "little")
        if tag == b"data":
            body = buf[pos + 8 :]
            if 0 < size < len(body):
                body = body[:size]
            body = body[: len(body) - len(body) % 2]
            return np.frombuffer(body, dtype="<i2").astype(np.int16), rate
        pos += 8 + size + (size & 1)
    raise DownloadError("ffmpeg's WAV stream has no data chunk")


__all__ = ["CODECS", "decode_audio", "encode_audio"]
