"""In-process FLAC and Ogg Opus: round trips, bytes ffmpeg wrote, length, alignment, damage."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest

from audioset_data.audio.memory import decode_audio, encode_audio
from audioset_data.cache.codec import decode_clip, encode_clip
from audioset_data.errors import AudioSetError, CacheError, ConfigError, DownloadError

SR = 32000
N = 10 * SR
#: Single-sample clicks at irregular times (samples at 32 kHz).
CLICKS = (1_234, 40_001, 99_999, 171_717, 250_003, 313_337)
FORMATS = ("flac", "opus")


def music(n: int = N, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Harmonic notes over quiet noise: something a lossy codec has to work on."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    f0 = 220.0 * 2 ** (np.floor(t * 3) % 12 / 12)  # a new note every third of a second
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(0.2 / k * np.sin(k * phase) for k in range(1, 5)) + rng.normal(0, 0.01, n)
    return (x * 32767).astype(np.int16)


def clicks(n: int = N) -> np.ndarray:
    x = np.zeros(n, dtype=np.int16)
    x[list(CLICKS)] = 20000
    return x


def click_positions(y: np.ndarray, window: int = 200) -> np.ndarray:
    """Where the peak near each click landed."""
    return np.array([c - window + int(np.argmax(np.abs(y[c - window : c + window].astype(int))))
                     for c in CLICKS])


def snr_db(y: np.ndarray, ref: np.ndarray) -> float:
    err = np.sum((y.astype(float) - ref) ** 2)
    return np.inf if err == 0 else 10 * np.log10(np.sum(ref.astype(float) ** 2) / err)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(float), b.astype(float))[0, 1])


@pytest.fixture(scope="module")
def ffmpeg_written() -> dict[tuple[str, str], bytes]:
    """Bytes as caches hold them today: ``encode_audio`` (ffmpeg writing to a pipe)."""
    return {(fmt, name): encode_audio(signal, SR, fmt)
            for fmt in FORMATS for name, signal in (("music", music()), ("clicks", clicks()))}


# --- round trips ---------------------------------------------------------------------------

@pytest.mark.parametrize("sr", [32000, 16000, 22050, 48000])
def test_flac_round_trip_is_lossless(sr):
    x = music(3 * sr + 17, sr)
    data = encode_clip(x, sr, "flac")
    assert data[:4] == b"fLaC" and len(data) < x.nbytes
    y = decode_clip(data, "flac", sample_rate=sr, num_samples=len(x))
    assert y.dtype == np.int16 and y.shape == x.shape
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("sr", [32000, 16000, 22050, 48000])
def test_opus_round_trip_is_close_and_exact_in_length(sr):
    x = music(3 * sr + 17, sr)
    data = encode_clip(x, sr, "opus")
    assert data[:4] == b"OggS" and b"OpusHead" in data[:64]
    y = decode_clip(data, "opus", sample_rate=sr, num_samples=len(x))
    assert y.dtype == np.int16 and y.shape == x.shape
    assert correlation(x, y) > 0.95


def test_flac_header_is_complete():
    """STREAMINFO holds the sample count and an MD5 (ffmpeg on a pipe leaves both zero)."""
    x = music()
    data = encode_clip(x, SR, "flac")
    info = data[8 : 8 + 34]
    packed = int.from_bytes(info[10:18], "big")
    assert packed >> 44 == SR
    assert packed & ((1 << 36) - 1) == N
    assert info[18:34] != bytes(16)


def test_opus_is_about_64_kbit_per_second():
    data = encode_clip(music(), SR, "opus")
    assert 0.75 * 80_000 < len(data) < 1.25 * 80_000


def test_accepts_the_uint8_row_an_hdf5_vlen_dataset_returns():
    x = music(SR)
    row = np.frombuffer(encode_clip(x, SR, "flac"), dtype=np.uint8)
    np.testing.assert_array_equal(decode_clip(row, "flac", sample_rate=SR, num_samples=SR), x)


# --- interchangeable with the ffmpeg subprocess ------------------------------------------------

def test_flac_written_by_ffmpeg_decodes_bit_exact(ffmpeg_written):
    """ffmpeg's streamed FLAC has no sample count in its header; it is read to its end."""
    data = ffmpeg_written["flac", "music"]
    assert int.from_bytes(data[8 + 10 : 8 + 18], "big") & ((1 << 36) - 1) == 0
    y = decode_clip(data, "flac", sample_rate=SR, num_samples=N)
    ref, _ = decode_audio(data, sample_rate=SR, num_samples=N)
    np.testing.assert_array_equal(y, ref)
    np.testing.assert_array_equal(y, music())


def test_opus_written_by_ffmpeg_matches_the_subprocess(ffmpeg_written):
    data = ffmpeg_written["opus", "music"]
    y = decode_clip(data, "opus", sample_rate=SR, num_samples=N)
    ref, _ = decode_audio(data, sample_rate=SR, num_samples=N)
    assert snr_db(y, ref) > 40  # the same decoder and resampler: bit-exact with PyAV's FFmpeg
    assert correlation(y, music()) > 0.95


@pytest.mark.parametrize("fmt", FORMATS)
def test_ffmpeg_reads_what_encode_clip_wrote(fmt):
    x = music()
    data = encode_clip(x, SR, fmt)
    ref, _ = decode_audio(data, sample_rate=SR, num_samples=N)
    y = decode_clip(data, fmt, sample_rate=SR, num_samples=N)
    if fmt == "flac":
        np.testing.assert_array_equal(ref, x)
        np.testing.assert_array_equal(y, x)
    else:
        assert snr_db(y, ref) > 40
        assert correlation(ref, x) > 0.95


@pytest.mark.parametrize("writer", ["encode_audio", "encode_clip"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_clicks_land_where_they_were(fmt, writer, ffmpeg_written):
    data = ffmpeg_written[fmt, "clicks"] if writer == "encode_audio" else (
        encode_clip(clicks(), SR, fmt))
    y = decode_clip(data, fmt, sample_rate=SR, num_samples=N)
    got = click_positions(y)
    if fmt == "flac":
        np.testing.assert_array_equal(y, clicks())
    assert np.all(np.abs(got - CLICKS) <= 32), got - CLICKS
    ref, _ = decode_audio(data, sample_rate=SR, num_samples=N)
    assert np.all(np.abs(got - click_positions(ref)) <= 1)  # same offset as the subprocess


# --- length ------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_result_has_exactly_num_samples(fmt, ffmpeg_written):
    data = ffmpeg_written[fmt, "music"]
    for n in (0, 1, 12_345, N):
        y = decode_clip(data, fmt, sample_rate=SR, num_samples=n)
        assert y.shape == (n,) and y.dtype == np.int16
    full = decode_clip(data, fmt, sample_rate=SR, num_samples=N)
    np.testing.assert_array_equal(decode_clip(data, fmt, sample_rate=SR, num_samples=777),
                                  full[:777])


def test_opus_at_another_rate_is_resampled_to_the_asked_rate(ffmpeg_written):
    y = decode_clip(ffmpeg_written["opus", "music"], "opus", sample_rate=16000, num_samples=N // 2)
    ref, _ = decode_audio(ffmpeg_written["opus", "music"], sample_rate=16000, num_samples=N // 2)
    assert y.shape == (N // 2,) and snr_db(y, ref) > 40


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_stream_shorter_than_the_clip_raises(fmt):
    data = encode_clip(music(N // 2), SR, fmt)
    with pytest.raises(CacheError, match="ends early"):
        decode_clip(data, fmt, sample_rate=SR, num_samples=N)


# --- errors ------------------------------------------------------------------------------------

def _damaged(data: bytes) -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    cases = {
        "empty": b"",
        "garbage": b"not audio at all" * 10,
        "header only": data[:60],
        "first half": data[: len(data) // 2],
        "last byte cut": data[:-1],
    }
    for where in (len(data) // 3, len(data) // 2, 2 * len(data) // 3):
        flipped = bytearray(data)
        flipped[where : where + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
        cases[f"8 bytes changed at {where}"] = bytes(flipped)
    return cases


@pytest.mark.parametrize("writer", ["encode_audio", "encode_clip"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_damaged_bytes_raise_cache_error(fmt, writer, ffmpeg_written):
    data = ffmpeg_written[fmt, "music"] if writer == "encode_audio" else (
        encode_clip(music(), SR, fmt))
    for case, damaged in _damaged(data).items():
        with pytest.raises(CacheError, match=fmt) as info:
            decode_clip(damaged, fmt, sample_rate=SR, num_samples=N)
        assert isinstance(info.value, AudioSetError), case
        assert type(info.value.__cause__).__module__.split(".")[0] != "soundfile"


def test_error_messages_say_what_is_wrong(ffmpeg_written):
    with pytest.raises(CacheError, match="empty"):
        decode_clip(b"", "flac", sample_rate=SR, num_samples=N)
    with pytest.raises(CacheError, match="not opus"):
        decode_clip(ffmpeg_written["flac", "music"], "opus", sample_rate=SR, num_samples=N)
    with pytest.raises(CacheError, match="no decodable audio|not flac"):
        decode_clip(ffmpeg_written["opus", "music"], "flac", sample_rate=SR, num_samples=N)
    with pytest.raises(CacheError, match=r"ends early.*holds \d+ samples.*has 320000"):
        data = ffmpeg_written["opus", "music"]
        decode_clip(data[: len(data) // 2], "opus", sample_rate=SR, num_samples=N)


def test_bad_arguments():
    x = music(SR)
    with pytest.raises(ConfigError, match="mp3"):
        decode_clip(b"x", "mp3", sample_rate=SR, num_samples=1)
    with pytest.raises(ConfigError, match="wav"):
        encode_clip(x, SR, "wav")
    with pytest.raises(ConfigError, match="sample_rate"):
        decode_clip(b"x", "flac", sample_rate=0, num_samples=1)
    with pytest.raises(ConfigError, match="sample_rate"):
        encode_clip(x, -1, "flac")
    for bad in (x.reshape(2, -1), x[:0], x.astype(np.float32) / 32768,
                x.astype(np.int32) * 4):
        with pytest.raises(DownloadError, match="encode_clip"):
            encode_clip(bad, SR, "flac")
    np.testing.assert_array_equal(
        decode_clip(encode_clip(x.astype(np.int64), SR, "flac"), "flac", sample_rate=SR,
                    num_samples=SR), x)


# --- concurrency -------------------------------------------------------------------------------

def _decode_all(items: list[tuple[bytes, str]]) -> list[np.ndarray]:
    return [decode_clip(d, fmt, sample_rate=SR, num_samples=N) for d, fmt in items]


def test_threads_decode_at_once(ffmpeg_written):
    items = [(ffmpeg_written[fmt, name], fmt) for fmt in FORMATS for name in ("music", "clicks")]
    expected = _decode_all(items)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: _decode_all([items[i % 4]])[0], range(16)))
        encoded = list(pool.map(lambda fmt: encode_clip(music(), SR, fmt), FORMATS * 3))
    for i, y in enumerate(results):
        np.testing.assert_array_equal(y, expected[i % 4])
    assert encoded[0] == encoded[2] == encoded[4] and encoded[1] == encoded[3] == encoded[5]


@pytest.mark.parametrize("fmt", FORMATS)
def test_same_samples_give_the_same_bytes(fmt):
    x = music(SR)
    assert encode_clip(x, SR, fmt) == encode_clip(x.copy(), SR, fmt)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork")
def test_forked_worker_processes_decode(ffmpeg_written):
    """DataLoader workers fork after the parent has decoded (and loaded FFmpeg) already."""
    items = [(ffmpeg_written[fmt, "music"], fmt) for fmt in FORMATS]
    expected = _decode_all(items)
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        results = list(pool.map(_decode_all, [items, items[::-1]]))
    for y, e in zip(results[0] + results[1][::-1], expected + expected, strict=True):
        np.testing.assert_array_equal(y, e)
