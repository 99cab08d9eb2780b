"""Fetching one clip through yt-dlp + ffmpeg against a loopback server, and failure classes."""

from __future__ import annotations

import pickle
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
from yt_dlp.utils import DownloadError as YtdlDownloadError
from yt_dlp.utils import ExtractorError, GeoRestrictedError

from audioset_data.audio.ffmpeg import FFmpegError, find_ffmpeg
from audioset_data.downloader.failures import (
    REASONS,
    ClipFailure,
    InvalidIdError,
    classify_error,
    validate_ytid,
)
from audioset_data.downloader.fetcher import ClipFetcher
from audioset_data.errors import ConfigError, DownloadError
from audioset_data.segments.ids import check_url_template
from audioset_data.testing import Behaviour, LoopbackServer

SECONDS = 60
FREQS = 300.0 + 211.0 * (np.arange(SECONDS) % 13)
YTID = "-dashStart0"  # valid: ids may start with '-'


def tone(sr: int, t0: float, seconds: float) -> np.ndarray:
    t = t0 + np.arange(int(round(seconds * sr))) / sr
    t = t[t < SECONDS]
    k = np.floor(t).astype(int)
    phase0 = np.concatenate([[0.0], np.cumsum(FREQS)])[k]
    return 0.3 * np.sin(2 * np.pi * (phase0 + FREQS[k] * (t - k)))


def correlation(expected: np.ndarray, got: np.ndarray, sr: int) -> float:
    lag_max = int(0.03 * sr)
    n = min(len(expected), len(got))
    e, g = expected[lag_max : n - lag_max], got[:n].astype(float)
    lag = int(np.argmax(scipy.signal.correlate(g, e, mode="valid", method="fft")))
    return float(np.corrcoef(e, g[lag : lag + len(e)])[0, 1])


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    """The test signal as YouTube-like audio files: webm/opus (48 kHz stereo), m4a/aac."""
    folder = tmp_path_factory.mktemp("clip_media")
    out = {}
    for ext, sr, enc in [
        ("webm", 48000, ["-c:a", "libopus", "-b:a", "128k"]),
        ("m4a", 44100, ["-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart"]),
    ]:
        x = (tone(sr, 0, SECONDS) * 32767).astype("<i2")
        stereo = np.stack([x, x], axis=1)
        out[ext] = folder / f"source.{ext}"
        subprocess.run(
            [find_ffmpeg(), "-nostdin", "-loglevel", "error", "-y", "-f", "s16le", "-ar",
             str(sr), "-ac", "2", "-i", "pipe:0", *enc, str(out[ext])],
            input=stereo.tobytes(), check=True,
        )
    return out


def fetcher(server: LoopbackServer, ext: str = "webm", **kw) -> ClipFetcher:
    kw.setdefault("socket_timeout", 2.0)
    kw.setdefault("ffmpeg_timeout", 15.0)
    return ClipFetcher(url_template=server.url("media/") + "{ytid}." + ext, **kw)


@pytest.mark.parametrize("ext", ["webm", "m4a"])
@pytest.mark.parametrize("sr", [32000, 16000])
def test_fetch_matches_source_segment(media, http_server, ext, sr):
    http_server.add(f"media/{YTID}.{ext}", media[ext])
    clip = fetcher(http_server, ext, sample_rate=sr).fetch(YTID, 12.25, 22.25)
    assert clip.method == "direct" and clip.sample_rate == sr
    assert clip.waveform.dtype == np.int16 and clip.num_samples == 10 * sr
    assert correlation(tone(sr, 12.25, 10), clip.waveform, sr) > 0.9
    assert clip.bytes_read and clip.bytes_read < media[ext].stat().st_size / 2


def test_short_clip_reads_a_fraction_of_the_file(media):
    size = media["webm"].stat().st_size
    with LoopbackServer(pace_bytes_per_s=8e6, chunk=4096) as server:
        server.add(f"media/{YTID}.webm", media["webm"])
        clip = fetcher(server).fetch(YTID, 30, 32)
        time.sleep(0.2)
        assert clip.num_samples == 2 * 32000
        assert server.bytes_sent[f"/media/{YTID}.webm"] < 0.3 * size


def test_short_video_keeps_true_length(media, http_server):
    http_server.add(f"media/{YTID}.m4a", media["m4a"])
    clip = fetcher(http_server, "m4a").fetch(YTID, 55.0, 65.0)
    assert abs(clip.num_samples - 5 * 32000) < 0.02 * 32000
    assert clip.duration < 5.1


def test_segment_after_the_end_is_no_audio(media, http_server):
    http_server.add(f"media/{YTID}.m4a", media["m4a"])
    with pytest.raises(ClipFailure) as info:
        fetcher(http_server, "m4a").fetch(YTID, 70.0, 80.0)
    assert info.value.reason == "no_audio" and info.value.permanent


@pytest.mark.parametrize("status,reason,permanent", [
    (404, "http_404", True), (403, "http_403", False), (429, "http_429", False),
    (503, "http_5xx", False),
])
def test_http_status_is_classified(http_server, status, reason, permanent):
    http_server.add(f"media/{YTID}.webm", b"x")
    http_server.behaviour[f"/media/{YTID}.webm"] = Behaviour(statuses=[status])
    with pytest.raises(ClipFailure) as info:
        fetcher(http_server).fetch(YTID, 0, 10)
    assert (info.value.reason, info.value.permanent, info.value.status) == (
        reason, permanent, status)


def test_rate_limit_then_ok_succeeds_on_retry(media, http_server):
    http_server.add(f"media/{YTID}.webm", media["webm"])
    http_server.behaviour[f"/media/{YTID}.webm"] = Behaviour(statuses=[429])
    f = fetcher(http_server)
    with pytest.raises(ClipFailure) as info:
        f.fetch(YTID, 0, 10)
    assert info.value.reason == "http_429" and not info.value.permanent
    assert f.fetch(YTID, 0, 10).num_samples == 320000


@pytest.mark.slow
def test_stall_is_a_timeout_within_the_limit(media, http_server):
    http_server.add(f"media/{YTID}.webm", media["webm"])
    http_server.behaviour[f"/media/{YTID}.webm"] = Behaviour(stall_s=6)
    t0 = time.monotonic()
    with pytest.raises(ClipFailure) as info:
        fetcher(http_server, socket_timeout=1.5).fetch(YTID, 0, 10)
    assert info.value.reason == "timeout" and not info.value.permanent
    assert time.monotonic() - t0 < 4.5


def test_truncated_file_is_a_failure_not_a_short_clip(media, http_server):
    path = f"/media/{YTID}.webm"
    http_server.add(path, media["webm"])
    http_server.behaviour[path] = Behaviour(truncate_at=media["webm"].stat().st_size // 3)
    with pytest.raises(ClipFailure) as info:
        fetcher(http_server).fetch(YTID, 40, 50)
    assert info.value.reason == "truncated" and not info.value.permanent


def test_random_bytes_are_a_decode_error(http_server):
    junk = np.random.default_rng(1).integers(0, 256, 300_000, np.uint8).tobytes()
    http_server.add(f"media/{YTID}.webm", junk)
    with pytest.raises(ClipFailure) as info:
        fetcher(http_server).fetch(YTID, 0, 10)
    assert info.value.reason in ("decode_error", "no_audio") and info.value.permanent


@pytest.mark.parametrize("bad", ["abc", "../../etc/pa", "-rf;rm -rf", "aaaaaaaaaaa?", "", None,
                                 "aaaaaaaaaa\n"])
def test_invalid_id_is_rejected_before_any_request(http_server, bad):
    f = fetcher(http_server)
    with pytest.raises(InvalidIdError) as info:
        f.fetch(bad, 0, 10)
    assert isinstance(info.value, ValueError) and isinstance(info.value, DownloadError)
    assert info.value.reason == "invalid_id" and repr(bad) in str(info.value)
    assert sum(http_server.requests.values()) == 0


def test_validate_ytid_accepts_leading_dash():
    assert validate_ytid("-0SdAVK79lg") == "-0SdAVK79lg"
    assert validate_ytid("__zE-7_8ldA") == "__zE-7_8ldA"


@pytest.mark.slow
def test_range_download_fallback(media, http_server):
    http_server.add(f"media/{YTID}.webm", media["webm"])
    clip = fetcher(http_server, direct_protocols=()).fetch(YTID, 20, 30)
    assert clip.method == "range_download"
    assert abs(clip.num_samples - 320000) < 0.02 * 32000
    assert correlation(tone(32000, 20, 10), clip.waveform, 32000) > 0.9
    with pytest.raises(ClipFailure, match="use_range_fallback"):
        fetcher(http_server, direct_protocols=(), use_range_fallback=False).fetch(YTID, 20, 30)


def test_fallback_respects_max_bytes(media, http_server):
    http_server.add(f"media/{YTID}.webm", media["webm"])
    with pytest.raises(ClipFailure) as info:
        fetcher(http_server, direct_protocols=(), max_bytes=10_000).fetch(YTID, 20, 30)
    assert info.value.reason == "too_large" and info.value.permanent


YOUTUBE_MESSAGES = [
    ("Video unavailable", "unavailable", True),
    ("Video unavailable. This video is no longer available because the YouTube account "
     "associated with this video has been terminated.", "terminated", True),
    ("Private video. Sign in if you've been granted access to this video", "private", True),
    ("This video has been removed for violating YouTube's Terms of Service", "removed", True),
    ("Video unavailable. This video is no longer available due to a copyright claim by X",
     "copyright", True),
    ("Sign in to confirm your age. This video may be inappropriate for some users.",
     "age_restricted", True),
    ("Sign in to confirm you\u2019re not a bot. Use --cookies-from-browser", "bot_check", False),
    ("Sign in to confirm you're not a bot", "bot_check", False),
    ("Join this channel to get access to members-only content", "sign_in", True),
    ("The uploader has not made this video available in your country", "geo", True),
    ("unable to download video data: HTTP Error 403: Forbidden", "http_403", False),
    ("Unable to download webpage: HTTP Error 429: Too Many Requests", "http_429", False),
    ("Unable to download webpage: HTTP Error 404: Not Found", "http_404", True),
    ("Unable to download webpage: HTTP Error 502: Bad Gateway", "http_5xx", False),
    ("Requested format is not available. Use --list-formats", "no_audio", True),
    ("Unable to download webpage: <urlopen error timed out>", "timeout", False),
    ("Unable to download webpage: [Errno 104] Connection reset by peer", "connection", False),
    ("something nobody has seen before", "unknown", False),
]


@pytest.mark.parametrize("message,reason,permanent", YOUTUBE_MESSAGES)
def test_classify_youtube_messages(message, reason, permanent):
    exc = YtdlDownloadError(f"ERROR: [youtube] dQw4w9WgXcQ: {message}")
    failure = classify_error(exc, ytid="dQw4w9WgXcQ")
    assert (failure.reason, failure.permanent) == (reason, permanent)
    assert failure.ytid == "dQw4w9WgXcQ" and "dQw4w9WgXcQ" in str(failure)
    assert REASONS[failure.reason][0] == failure.permanent


def test_classify_wrapped_and_typed_errors():
    geo = GeoRestrictedError("blocked", countries=["US"])
    assert classify_error(YtdlDownloadError("ERROR: blocked", exc_info=(None, geo, None))).reason \
        == "geo"
    inner = ExtractorError("Private video", expected=True)
    wrapped = YtdlDownloadError("ERROR: x", exc_info=(type(inner), inner, None))
    assert classify_error(wrapped).reason == "private"
    assert classify_error(TimeoutError("read")).reason == "timeout"
    assert classify_error(ConnectionResetError("reset")).reason == "connection"
    assert classify_error(FFmpegError("x", stderr="", status=403)).reason == "http_403"
    assert classify_error(FFmpegError("x", kind="truncated")).reason == "truncated"
    assert classify_error(FFmpegError("x", stderr="Invalid data found when processing input"))\
        .reason == "decode_error"
    same = ClipFailure("private", "x")
    assert classify_error(same) is same


def test_failures_and_fetcher_pickle(http_server):
    f = ClipFailure("http_429", "slow down", ytid=YTID, status=429)
    g = pickle.loads(pickle.dumps(f))
    assert (g.reason, g.permanent, g.status, g.ytid) == ("http_429", False, 429, YTID)
    bad = pickle.loads(pickle.dumps(InvalidIdError("abc")))
    assert bad.reason == "invalid_id"
    fetch = pickle.loads(pickle.dumps(fetcher(http_server)))
    assert fetch.url_for(YTID).endswith(f"/media/{YTID}.webm")


def test_bad_configuration(tmp_path):
    with pytest.raises(ConfigError, match="ytid"):
        ClipFetcher(url_template="https://example.org/watch")
    assert ClipFetcher().ytdl_params()["format"] == "bestaudio/best"
    cookies = tmp_path / "c.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n")
    params = ClipFetcher(cookies_from_browser="chrome:Profile 1", cookiefile=cookies,
                         ytdl_options={"proxy": "socks5://127.0.0.1:1"}).ytdl_params()
    assert params["cookiesfrombrowser"] == ("chrome", "Profile 1", None, None)
    assert params["cookiefile"] == str(cookies) and params["proxy"] == "socks5://127.0.0.1:1"


@pytest.mark.parametrize("template", ["{ytid}", "ftp://mirror.example/{ytid}.webm",
                                      "file:///srv/{ytid}.webm", "http://{ytid}.example/a",
                                      "https://mirror.example/watch"])
def test_url_template_must_be_an_http_address_with_the_id(template):
    with pytest.raises(ConfigError, match="url_template"):
        ClipFetcher(url_template=template)
    assert check_url_template("http://127.0.0.1:8000/v/{ytid}.webm")


def test_a_cookies_file_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="missing.txt.*does not exist"):
        ClipFetcher(cookiefile=tmp_path / "missing.txt")
