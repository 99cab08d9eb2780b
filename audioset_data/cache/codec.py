"""The store's compact formats, FLAC and Ogg Opus, encoded and decoded in process.

Decoding a compact clip with :func:`audioset_data.audio.memory.decode_audio` starts one ffmpeg
process per clip (23-33 ms a clip, most of it the process start). These functions call the same
FFmpeg libraries through PyAV instead: the same demuxers, decoders and resampler as the ffmpeg
command line, so the samples are the ones ``decode_audio`` returns (bit for bit for FLAC; for Opus
too with PyAV 14 and 18 against the bundled ffmpeg 9, though another FFmpeg build may round
differently), at a fraction of the cost. ``benchmarks/bench_codec.py`` has the
figures and the comparison with soundfile (libsndfile), which reads FLAC a little faster but
cannot read the FLAC that ffmpeg streams to a pipe through its public API, and reads Opus no
faster than the subprocess once the 48 kHz output is resampled.

Both directions are interchangeable with the subprocess: bytes written by
:func:`~audioset_data.audio.memory.encode_audio` decode here, and bytes written here decode with
ffmpeg, so caches written before and after the switch read the same way.

Every call builds its own demuxer, codec and resampler and runs them on one thread, so the
functions can be called from several threads at once and from DataLoader worker processes.
"""

from __future__ import annotations

import io

import av
import numpy as np

from audioset_data.errors import CacheError, ConfigError, DownloadError

#: Compact formats: format name -> (container, codec the container must hold).
FORMATS: dict[str, tuple[str, str]] = {
    "flac": ("flac", "flac"),
    "opus": ("ogg", "opus"),
}

#: Opus bit rate in bit/s, as the store's disk-space estimate assumes.
OPUS_BIT_RATE = 64_000
#: FLAC compression level, as :data:`audioset_data.audio.ranges.CODECS` uses (ffmpeg's default).
FLAC_COMPRESSION_LEVEL = 5
#: Sample rates the Opus encoder takes; other rates are resampled to 48 kHz first.
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
#: Samples a lossy stream may fall short of ``num_samples``, per second of sample rate (1 ms),
#: before it counts as truncated: resampling to and from 48 kHz rounds the length.
_LOSSY_SHORTFALL = 0.001


def _check_format(fmt: str) -> tuple[str, str]:
    try:
        return FORMATS[fmt]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown compact format {fmt!r}; choose one of {', '.join(FORMATS)}"
        ) from None


def decode_clip(data: bytes, fmt: str, *, sample_rate: int, num_samples: int) -> np.ndarray:
    """Decode one stored clip to mono int16 at ``sample_rate``, exactly ``num_samples`` long.

    Reads what both writers produce: FLAC streamed by ffmpeg to a pipe (no sample count in its
    header) or written whole by :func:`encode_clip`, and Ogg Opus, which decodes at 48 kHz and
    is resampled here with FFmpeg's resampler, as the ffmpeg command line does.

    Parameters
    ----------
    data
        The encoded clip (``bytes`` or any buffer, e.g. the uint8 row an HDF5 vlen dataset
        returns).
    fmt
        ``"flac"`` or ``"opus"``.
    sample_rate
        Output rate in Hz.
    num_samples
        The clip's true length (the store's ``length``). Longer streams are cut; a stream may
        fall short only by rounding (none for FLAC, up to 1 ms for Opus), which is zero-padded.

    Returns
    -------
    numpy.ndarray
        int16, shape ``(num_samples,)``.

    Raises
    ------
    CacheError
        The bytes are empty, are not a ``fmt`` stream, are damaged, or end early.
    ConfigError
        ``fmt`` is not a compact format, or ``sample_rate``/``num_samples`` are out of range.

    Examples
    --------
    >>> pcm = (np.arange(3200) % 200 * 100 - 10000).astype(np.int16)
    >>> data = encode_clip(pcm, 32000, "flac")
    >>> bool((decode_clip(data, "flac", sample_rate=32000, num_samples=3200) == pcm).all())
    True
    """
    container_format, codec_name = _check_format(fmt)
    if int(sample_rate) <= 0 or int(num_samples) < 0:
        raise ConfigError(
            f"decode_clip needs sample_rate > 0 and num_samples >= 0, got {sample_rate} and "
            f"{num_samples}"
        )
    sample_rate, num_samples = int(sample_rate), int(num_samples)
    size = memoryview(data).nbytes
    what = f"{fmt} clip of {size} bytes"
    if size == 0:
        raise CacheError(f"{what}: empty, nothing to decode")
    out = np.zeros(num_samples, dtype=np.int16)
    have = 0
    try:
        with av.open(io.BytesIO(data), format=container_format) as container:
            if not container.streams.audio:
                raise CacheError(f"{what}: the {container_format} container has no audio stream")
            stream = container.streams.audio[0]
            if stream.codec_context.name != codec_name:
                raise CacheError(
                    f"{what}: holds {stream.codec_context.name!r} audio, not {codec_name!r}"
                )
            stream.codec_context.thread_count = 1
            if fmt == "flac":
                # FLAC frames carry a CRC that FFmpeg checks only when asked to; a frame that
                # fails it is dropped, and the sample count below notices the gap.
                stream.codec_context.options = {"err_detect": "crccheck+explode"}
            resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
            for frame in container.decode(stream):
                for chunk in resampler.resample(frame):
                    have = _put(out, have, chunk)
                if have >= num_samples:
                    break
            else:
                for chunk in resampler.resample(None):
                    have = _put(out, have, chunk)
    except CacheError:
        raise
    except av.FFmpegError as exc:
        reason = exc.strerror or str(exc)
        raise CacheError(f"{what} cannot be decoded (damaged or not {fmt}): {reason}") from exc
    except (ValueError, EOFError, OSError) as exc:
        raise CacheError(f"{what} cannot be decoded (damaged or not {fmt}): {exc}") from exc
    slack = 0 if fmt == "flac" else int(sample_rate * _LOSSY_SHORTFALL)
    if have == 0 and num_samples > 0:
        raise CacheError(f"{what} holds no decodable audio (damaged or not {fmt})")
    if have < num_samples - slack:
        raise CacheError(
            f"{what} ends early: it holds {have} samples at {sample_rate} Hz, the clip has "
            f"{num_samples} (truncated or damaged)"
        )
    return out


def _put(out: np.ndarray, have: int, frame: av.AudioFrame) -> int:
    """Copy what fits of a mono s16 frame into ``out`` at ``have``; return samples seen."""
    # the plane's buffer, not to_ndarray(): a clip is ~150 frames and that copy adds 10% a clip
    samples = np.frombuffer(frame.planes[0], dtype=np.int16)[: frame.samples]
    room = len(out) - have
    if room > 0:
        take = min(room, len(samples))
        out[have : have + take] = samples[:take]
    return have + len(samples)


def encode_clip(pcm: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """Encode mono int16 samples as a whole FLAC file or Ogg Opus stream (about 64 kbit/s).

    The FLAC header is complete (sample count and MD5 filled in), and the same samples always
    give the same bytes. Opus takes only 8, 12, 16, 24
    or 48 kHz, so other rates are resampled to 48 kHz first (as
    :func:`~audioset_data.audio.memory.encode_audio` does); :func:`decode_clip` brings them back.

    Parameters
    ----------
    pcm
        1-D integer samples in the int16 range.
    sample_rate
        Their rate in Hz.
    fmt
        ``"flac"`` or ``"opus"``.

    Returns
    -------
    bytes
        The encoded file, readable by :func:`decode_clip` and by ffmpeg.

    Raises
    ------
    ConfigError
        ``fmt`` is not a compact format or ``sample_rate`` is not positive.
    DownloadError
        The samples are not 1-D integers in the int16 range, there are none, or the encoder
        failed (the same class :func:`~audioset_data.audio.memory.encode_audio` raises, so a
        download counts the clip as failed).
    """
    container_format, _ = _check_format(fmt)
    if int(sample_rate) <= 0:
        raise ConfigError(f"encode_clip needs a positive sample_rate, got {sample_rate}")
    sample_rate = int(sample_rate)
    samples = _as_int16(pcm)
    if fmt == "flac":
        codec, rate = "flac", sample_rate
        options = {"compression_level": str(FLAC_COMPRESSION_LEVEL)}
    else:
        codec = "libopus"
        rate = sample_rate if sample_rate in _OPUS_RATES else 48000
        options = {"application": "audio"}
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = sample_rate
    frame.pts = 0
    buf = io.BytesIO()
    try:
        # bitexact: no random Ogg serial number, no library version in the header, so the
        # same samples always give the same bytes
        with av.open(buf, "w", format=container_format,
                     options={"fflags": "+bitexact"}) as container:
            stream = container.add_stream(codec, rate=rate, options=options)
            stream.codec_context.layout = "mono"
            stream.codec_context.format = "s16"
            stream.codec_context.thread_count = 1
            if fmt == "opus":
                stream.codec_context.bit_rate = OPUS_BIT_RATE
            frames = [frame]
            if rate != sample_rate:
                resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
                frames = [*resampler.resample(frame), *resampler.resample(None)]
            for f in [*frames, None]:
                container.mux(stream.encode(f))
    except (av.FFmpegError, ValueError) as exc:
        raise DownloadError(
            f"encoding {len(samples)} samples at {sample_rate} Hz as {fmt} failed: {exc}"
        ) from exc
    return buf.getvalue()


def _as_int16(pcm: np.ndarray) -> np.ndarray:
    samples = np.asarray(pcm)
    if samples.ndim != 1 or samples.size == 0:
        raise DownloadError(
            f"encode_clip expects non-empty mono samples, got shape {samples.shape}"
        )
    if samples.dtype == np.int16:
        return np.ascontiguousarray(samples)
    if not np.issubdtype(samples.dtype, np.integer):
        raise DownloadError(f"encode_clip expects int16 samples, got {samples.dtype}")
    if samples.min() < -32768 or samples.max() > 32767:
        raise DownloadError("encode_clip got samples outside the int16 range")
    return samples.astype(np.int16)


__all__ = ["FLAC_COMPRESSION_LEVEL", "FORMATS", "OPUS_BIT_RATE", "decode_clip", "encode_clip"]
