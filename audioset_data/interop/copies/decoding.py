"""Decoding a copy's clips, and whether the cache can hold a clip's bytes as they are.

Audio formats. The cache holds mono 16-bit audio at one sample rate per cache, as raw PCM
(``pcm16``) or as FLAC or Ogg Opus bytes that the reader decodes at read time
(:mod:`audioset_data.cache.codec`). A copy's clip is stored **as it is** when its bytes are
already what the cache would hold: the same codec as the cache's format (FLAC into a ``flac``
cache, Ogg Opus into an ``opus`` one), one channel, and the cache's sample rate. The bytes are
decoded once anyway, to find the clip's length and to refuse damaged ones, and the reader's own
decoder must return the very samples the import checked. Everything else is decoded and
resampled once, with the same FFmpeg libraries the reader uses, and stored in the cache's
format: MP3 (PaSST, EfficientAT), stereo or 44.1 kHz FLAC (some Hugging Face rows), WAV, or
any clip at another rate than the cache's. MP3 is not made a cache format of its own: every
reader, the repair and the downloader would have to learn a fourth format that only imports
could write, and MP3's encoder delay makes a clip's sample count depend on how the file was
made; stored as FLAC, a cache holds exactly the samples PaSST's loader decodes, losslessly.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import numpy as np

from audioset_data.cache.codec import FORMATS as ENCODED_FORMATS
from audioset_data.cache.codec import decode_clip
from audioset_data.errors import CacheError


@dataclass
class Decoded:
    """One clip decoded to mono int16, and what its bytes hold."""

    pcm: np.ndarray
    sample_rate: int
    container: str
    codec: str
    channels: int
    source_rate: int


def decode_any(data: bytes, sample_rate: int | None, max_samples: int | None = None
               ) -> Decoded:
    """Decode any encoded clip (FLAC, MP3, WAV, Ogg...) to mono int16 at ``sample_rate`` (its
    own rate when None), through FFmpeg's decoders and resampler as the cache's reader does;
    decoding stops once ``max_samples`` are had. Raises :class:`CacheError` naming the reason
    when the bytes do not decode."""
    what = f"clip of {len(data)} bytes"
    chunks: list[np.ndarray] = []
    have = 0
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.audio:
                raise CacheError(f"{what}: the {container.format.name} file has no audio stream")
            stream = container.streams.audio[0]
            ctx = stream.codec_context
            ctx.thread_count = 1
            if ctx.name == "flac":  # check each frame's CRC, as the cache's reader does
                ctx.options = {"err_detect": "crccheck+explode"}
            source_rate = int(ctx.sample_rate or 0)
            rate = int(sample_rate or source_rate)
            if rate <= 0:
                raise CacheError(f"{what}: the stream names no sample rate")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
            done = False
            expected = 0  # FLAC numbers its frames by sample: a frame failing its CRC leaves a gap
            for frame in container.decode(stream):
                if ctx.name == "flac" and frame.pts is not None and frame.time_base:
                    at = round(frame.pts * frame.time_base * source_rate)
                    if at != expected:
                        raise CacheError(f"{what}: the FLAC frames at samples {expected}.."
                                         f"{at} fail their checksum (damaged bytes)")
                expected += frame.samples
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1).copy())
                    have += len(chunks[-1])
                if max_samples is not None and have >= max_samples:
                    done = True
                    break
            if not done:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray().reshape(-1).copy())
            info = (container.format.name, ctx.name, int(ctx.channels or 0), source_rate)
    except CacheError:
        raise
    except (av.FFmpegError, ValueError, EOFError, OSError, IndexError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise CacheError(f"{what} cannot be decoded: {reason}") from exc
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    if max_samples is not None:
        pcm = pcm[:max_samples]
    if not len(pcm):
        raise CacheError(f"{what} holds no audio samples")
    return Decoded(pcm.astype(np.int16, copy=False), rate, *info)


def _as_is(data: bytes, dec: Decoded, fmt: str, length: int) -> bool:
    """Whether the cache can hold ``data`` unchanged: the cache's codec, one channel, the
    cache's rate, and the reader's decoder returns exactly the samples checked."""
    if fmt not in ENCODED_FORMATS:
        return False
    container, codec = ENCODED_FORMATS[fmt]
    if (dec.container.split(",")[0], dec.codec) != (container, codec) or dec.channels != 1:
        return False
    if fmt == "flac" and dec.source_rate != dec.sample_rate:
        return False
    try:
        served = decode_clip(data, fmt, sample_rate=dec.sample_rate, num_samples=length)
    except CacheError:
        return False
    return bool(np.array_equal(served, dec.pcm[:length]))


__all__ = ["Decoded", "decode_any"]
