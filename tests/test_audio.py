"""ffmpeg helpers: binary lookup, range decoding (local and loopback HTTP), store codecs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.signal

from audioset_data.audio.ffmpeg import FFMPEG_ENV, DecodeResult, FFmpegError, find_ffmpeg
from audioset_data.audio.memory import decode_audio, encode_audio
from audioset_data.audio.ranges import decode_pcm
from audioset_data.errors import ConfigError, DownloadError
from audioset_data.testing import Behaviour, LoopbackServer

SOURCE_SECONDS = 60
FREQS = 250.0 + 173.0 * (np.arange(SOURCE_SECONDS) % 17)  # Hz, changes every second


def tone(sr: int, t0: float = 0.0, seconds: float = SOURCE_SECONDS) -> np.ndarray:
    """The test signal (phase-continuous sine, new frequency every second) at any rate."""
    t = t0 + np.arange(int(round(seconds * sr))) / sr
    t = t[t < SOURCE_SECONDS]
    k = np.floor(t).astype(int)
    phase0 = np.concatenate([[0.0], np.cumsum(FREQS)])[k]
    return 0.3 * np.sin(2 * np.pi * (phase0 + FREQS[k] * (t - k)))


def best_correlation(expected: np.ndarray, got: np.ndarray, sr: int, max_lag_s=0.03) -> float:
    """Correlation at the best lag within ``max_lag_s`` (codecs add a few ms of delay)."""
    n = min(len(expected), len(got))
    lag_max = int(max_lag_s * sr)
    e = np.asarray(expected[lag_max : n - lag_max], float)
    g = np.asarray(got[:n], float)
    xc = scipy.signal.correlate(g, e, mode="valid", method="fft")  # lags 0 .. 2*lag_max
    lag = int(np.argmax(xc))
    return float(np.corrcoef(e, g[lag : lag + len(e)])[0, 1])


# (name, source rate, channels, encoder args)
FORMATS = [
    ("webm", 48000, 2, ["-c:a", "libopus", "-b:a", "128k"]),
    ("m4a", 44100, 1, ["-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart"]),
    ("mp3", 44100, 2, ["-c:a", "libmp3lame", "-b:a", "128k"]),
    ("wav", 48000, 1, ["-c:a", "pcm_s16le"]),
]


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    """60-s copies of the test signal in several containers, codecs, rates and layouts."""
    ffmpeg = find_ffmpeg()
    folder = tmp_path_factory.mktemp("media")
    out = {}
    for ext, sr, ch, enc in FORMATS:
        x = (tone(sr) * 32767).astype("<i2")
        if ch == 2:  # right channel at half level: the mono downmix is still the signal
            x = np.stack([x, x // 2], axis=1)
        path = folder / f"source.{ext}"
        subprocess.run(
            [ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-f", "s16le", "-ar", str(sr),
             "-ac", str(ch), "-i", "pipe:0", *enc, str(path)],
            input=x.tobytes(), check=True,
        )
        out[ext] = path
    return out


def test_find_ffmpeg_order(tmp_path, monkeypatch):
    bundled = find_ffmpeg()
    assert os.access(bundled, os.X_OK)
    with pytest.raises(ConfigError, match="nope"):
        find_ffmpeg(tmp_path / "nope")
    monkeypatch.setenv(FFMPEG_ENV, str(tmp_path / "missing-env"))
    with pytest.raises(ConfigError, match=FFMPEG_ENV):
        find_ffmpeg()
    assert find_ffmpeg(bundled) == str(Path(bundled).resolve())  # argument beats env
    monkeypatch.setenv(FFMPEG_ENV, bundled)
    assert find_ffmpeg() == str(Path(bundled).resolve())
    monkeypatch.delenv(FFMPEG_ENV)
    # a binary called ffmpeg on PATH wins over the bundled one
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "ffmpeg").symlink_to(bundled)
    monkeypatch.setenv("PATH", str(folder) + os.pathsep + os.environ.get("PATH", ""))
    assert find_ffmpeg() == str(folder / "ffmpeg")


@pytest.mark.parametrize("ext", [f[0] for f in FORMATS])
@pytest.mark.parametrize("sr", [32000, 16000])
def test_decode_pcm_local_matches_source(media, ext, sr):
    pcm = decode_pcm(media[ext], start=23.5, duration=4.0, sample_rate=sr, timeout=30)
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    assert len(pcm) == 4 * sr
    assert best_correlation(tone(sr, 23.5, 4.0), pcm, sr) > 0.9


@pytest.mark.parametrize("ext", ["webm", "m4a"])  # the formats YouTube serves
def test_decode_pcm_over_http_reads_a_fraction(media, ext):
    with LoopbackServer(pace_bytes_per_s=8e6, chunk=4096) as server:
        url = server.add(f"media/x.{ext}", media[ext])
        details: list[DecodeResult] = []
        pcm = decode_pcm(url, start=40.0, duration=2.0, sample_rate=16000, timeout=30,
                         headers={"User-Agent": "audioset-data-test"}, details=details)
        size = media[ext].stat().st_size
        assert best_correlation(tone(16000, 40.0, 2.0), pcm, 16000) > 0.9
        assert server.bytes_sent[f"/media/x.{ext}"] < 0.3 * size
        assert details[0].bytes_read < 0.2 * size
        assert abs(details[0].source_duration - SOURCE_SECONDS) < 0.1


def test_short_source_returns_true_length(media):
    pcm = decode_pcm(media["wav"], start=55.0, duration=10.0, sample_rate=16000)
    assert len(pcm) == 5 * 16000


def test_segment_beyond_end_is_no_audio(media):
    with pytest.raises(FFmpegError) as info:
        decode_pcm(media["m4a"], start=70.0, duration=10.0, sample_rate=16000)
    assert info.value.kind == "no_audio"


def test_http_errors_carry_status_and_log(media, http_server):
    http_server.add("a.m4a", media["m4a"])
    http_server.behaviour["/a.m4a"] = Behaviour(statuses=[403])
    with pytest.raises(FFmpegError) as info:
        decode_pcm(http_server.url("a.m4a"), start=1, duration=1, sample_rate=16000)
    assert info.value.status == 403 and "403" in str(info.value)
    with pytest.raises(FFmpegError) as info:
        decode_pcm(http_server.url("missing.m4a"), start=1, duration=1, sample_rate=16000)
    assert info.value.status == 404


def test_truncated_body_is_an_error_not_a_short_clip(media, http_server):
    size = media["webm"].stat().st_size
    http_server.add("t.webm", media["webm"])
    http_server.behaviour["/t.webm"] = Behaviour(truncate_at=size // 2)
    with pytest.raises(FFmpegError) as info:
        decode_pcm(http_server.url("t.webm"), start=45, duration=10, sample_rate=16000)
    assert info.value.kind == "truncated"


def test_stall_times_out(media, http_server):
    http_server.add("s.m4a", media["m4a"])
    http_server.behaviour["/s.m4a"] = Behaviour(stall_s=6)
    with pytest.raises(FFmpegError) as info:
        decode_pcm(http_server.url("s.m4a"), start=1, duration=1, sample_rate=16000,
                   timeout=10, rw_timeout=1.5)
    assert info.value.kind == "timeout"


def test_wall_clock_timeout_kills_ffmpeg(media, http_server):
    http_server.add("s.m4a", media["m4a"])
    http_server.behaviour["/s.m4a"] = Behaviour(stall_s=6)
    with pytest.raises(FFmpegError, match="timed out after 1.0s") as info:
        decode_pcm(http_server.url("s.m4a"), start=1, duration=1, sample_rate=16000,
                   timeout=1.0, rw_timeout=30)
    assert info.value.kind == "timeout"


def test_output_cap(media):
    with pytest.raises(FFmpegError) as info:
        decode_pcm(media["wav"], start=0, duration=5, sample_rate=16000, max_bytes=1000)
    assert info.value.kind == "too_large"


def test_random_bytes_fail_to_decode(tmp_path):
    junk = tmp_path / "junk.webm"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, np.uint8).tobytes())
    with pytest.raises(FFmpegError, match="Invalid data|EBML"):
        decode_pcm(junk, start=0, duration=1, sample_rate=16000)


def test_dash_named_file_is_not_an_option(media, tmp_path):
    odd = tmp_path / "-i"
    odd.write_bytes(media["wav"].read_bytes())
    pcm = decode_pcm(odd, start=1, duration=1, sample_rate=8000)
    assert len(pcm) == 8000


def test_header_injection_is_refused(media, http_server):
    url = http_server.add("a.m4a", media["m4a"])
    with pytest.raises(DownloadError, match="line break"):
        decode_pcm(url, start=0, duration=1, sample_rate=8000, headers={"X": "a\r\nB: c"})


@pytest.mark.parametrize("codec", ["flac", "opus", "mp3"])
@pytest.mark.parametrize("sr", [32000, 16000])
def test_encode_decode_round_trip(codec, sr):
    x = (tone(sr, 3.0, 10.0) * 32767).astype(np.int16)
    data = encode_audio(x, sr, codec)
    assert 0 < len(data) < x.nbytes
    y, rate = decode_audio(data, sample_rate=sr, num_samples=len(x))
    assert rate == sr and len(y) == len(x) and y.dtype == np.int16
    if codec == "flac":
        np.testing.assert_array_equal(x, y)
    else:
        assert best_correlation(x.astype(float), y, sr) > 0.95
        assert len(data) < x.nbytes / 2


def test_decode_audio_native_rate_and_errors():
    x = (tone(32000, 0, 2.0) * 32767).astype(np.int16)
    y, rate = decode_audio(encode_audio(x, 32000, "flac"))
    assert rate == 32000 and len(y) == len(x)
    y, rate = decode_audio(encode_audio(x, 32000, "opus"))
    assert rate == 48000 and abs(len(y) - 3 * len(x) // 2) < 1000
    with pytest.raises(DownloadError):
        decode_audio(b"not audio at all" * 10)
    with pytest.raises(ConfigError, match="codec"):
        encode_audio(x, 32000, "wma")


def test_http_options_unknown_to_an_older_ffmpeg_are_left_out(tmp_path):
    import stat

    from audioset_data.audio.ffmpeg import _HTTP_READ_OPTIONS, find_ffmpeg, http_read_options

    assert http_read_options(find_ffmpeg()) == _HTTP_READ_OPTIONS  # the bundled build has all
    old = tmp_path / "ffmpeg-old"
    old.write_text("#!/bin/sh\necho 'http AVOptions:'\necho '  -seekable   <boolean>  .D.'\n"
                   "echo '  -request_size <int64> .D.'\n")
    old.chmod(old.stat().st_mode | stat.S_IEXEC)
    assert http_read_options(str(old)) == ("-request_size", "65536")


def test_loopback_addresses_bypass_an_http_proxy(monkeypatch):
    from audioset_data.audio.ffmpeg import _ffmpeg_env

    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    assert _ffmpeg_env() is None
    monkeypatch.setenv("http_proxy", "http://proxy.example:3128")
    monkeypatch.setenv("no_proxy", "intranet.example")
    env = _ffmpeg_env()
    assert env["no_proxy"].split(",") == ["intranet.example", "127.0.0.1", "localhost", "::1"]
