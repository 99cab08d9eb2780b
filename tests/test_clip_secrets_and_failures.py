"""Secrets never reach a command line, and failures are classified from the real messages
(yt-dlp and the bundled ffmpeg against a loopback server)."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import numpy as np
import pytest

from audioset_data.audio import ranges as audio
from audioset_data.audio.ffmpeg import FFmpegError, find_ffmpeg
from audioset_data.audio.ranges import decode_pcm
from audioset_data.downloader.failures import RULES, ClipFailure, classify_error
from audioset_data.downloader.fetcher import ClipFetcher
from audioset_data.errors import DownloadError
from audioset_data.testing import Behaviour

YTID = "-dashStart0"
SECRET = "s3cret-cookie-value"


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """20 s of tone as WebM/Opus, and as an m4a whose index (moov) sits at the end."""
    folder = tmp_path_factory.mktemp("secrets_media")
    out = {"webm": folder / "tone.webm", "m4a": folder / "tail-moov.m4a"}
    for path, codec in ((out["webm"], "libopus"), (out["m4a"], "aac")):
        subprocess.run([find_ffmpeg(), "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                        "sine=frequency=440:duration=20", "-c:a", codec, str(path)], check=True)
    return out


@pytest.fixture
def ffmpeg_args(monkeypatch) -> list[list[str]]:
    """Every ffmpeg command line that decode_pcm runs."""
    seen: list[list[str]] = []
    real = audio._run_capped

    def spy(args, **kwargs):
        seen.append(list(args))
        return real(args, **kwargs)

    monkeypatch.setattr(audio, "_run_capped", spy)
    return seen


def _cookies(tmp_path: Path) -> Path:
    path = tmp_path / "cookies.txt"
    path.write_text("# Netscape HTTP Cookie File\n"
                    f"127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\t{SECRET}\n")
    return path


def _fetcher(server, ext: str = "webm", **kw) -> ClipFetcher:
    kw.setdefault("socket_timeout", 3.0)
    kw.setdefault("ffmpeg_timeout", 20.0)
    return ClipFetcher(url_template=server.url("media/") + "{ytid}." + ext, sample_rate=16000,
                       **kw)


# -- secrets -----------------------------------------------------------------------------------
def test_cookies_reach_the_server_but_never_ffmpegs_command_line(media, http_server, tmp_path,
                                                                 ffmpeg_args):
    http_server.add(f"media/{YTID}.webm", media["webm"])
    clip = _fetcher(http_server, cookiefile=_cookies(tmp_path)).fetch(YTID, 12.0, 17.0)
    assert clip.num_samples == 5 * 16000 and np.abs(clip.waveform).mean() > 100
    assert ffmpeg_args, "ffmpeg did not run"
    for args in ffmpeg_args:
        assert not any(SECRET in a for a in args), args
        assert "-headers" not in args and "-cookies" not in args
    media_requests = [h for p, h in http_server.request_log if p == f"/media/{YTID}.webm"]
    ranged = [h for h in media_requests
              if h.get("Range", "bytes=0-").split("=")[1].split("-")[0] not in ("", "0")]
    assert ranged, "ffmpeg never sought into the file"
    assert all(SECRET in h.get("Cookie", "") for h in media_requests)


def test_credentials_in_the_address_stay_off_the_command_line(media, http_server, ffmpeg_args):
    http_server.add(f"media/{YTID}.webm", media["webm"])
    template = http_server.url("media/").replace("http://", "http://user:pa55word@") \
        + "{ytid}.webm"
    clip = ClipFetcher(url_template=template, sample_rate=16000, socket_timeout=3.0,
                       ffmpeg_timeout=20.0).fetch(YTID, 2.0, 4.0)
    assert clip.num_samples == 2 * 16000
    assert ffmpeg_args and not any("pa55word" in a for args in ffmpeg_args for a in args)
    auth = "Basic " + base64.b64encode(b"user:pa55word").decode()
    assert any(h.get("Authorization") == auth for _, h in http_server.request_log)


@pytest.mark.parametrize("status,reason", [(404, "http_404"), (503, "http_5xx"),
                                           (403, "http_403")])
def test_a_failure_behind_the_forwarder_keeps_the_servers_status(media, http_server, tmp_path,
                                                                 status, reason):
    http_server.add(f"media/{YTID}.webm", media["webm"])
    # the first request resolves the address (yt-dlp), the next ones are ffmpeg's
    http_server.behaviour[f"/media/{YTID}.webm"] = Behaviour(statuses=[None, *[status] * 5])
    with pytest.raises(ClipFailure) as info:
        _fetcher(http_server, cookiefile=_cookies(tmp_path)).fetch(YTID, 12.0, 17.0)
    assert (info.value.reason, info.value.status) == (reason, status)


def test_decode_pcm_refuses_to_put_a_secret_header_on_the_command_line(media, ffmpeg_args):
    with pytest.raises(DownloadError, match="secret"):
        decode_pcm("http://127.0.0.1:1/x.webm", start=0, duration=1, sample_rate=16000,
                   headers={"User-Agent": "x", "cookie": SECRET})
    assert ffmpeg_args == []


# -- failures from the real messages -----------------------------------------------------------
def test_moov_atom_not_found_is_a_decode_error_not_a_404(media, http_server):
    data = media["m4a"].read_bytes()
    assert data.rfind(b"moov") > len(data) // 2  # the index is at the end...
    http_server.add(f"media/{YTID}.m4a", data[: int(len(data) * 0.8)])  # ...and cut off
    with pytest.raises(ClipFailure) as info:
        _fetcher(http_server, "m4a", use_range_fallback=False).fetch(YTID, 1.0, 5.0)
    assert "moov atom not found" in info.value.detail
    assert (info.value.reason, info.value.permanent) == ("decode_error", True)
    with pytest.raises(ClipFailure) as info:  # the range download cannot say more
        _fetcher(http_server, "m4a").fetch(YTID, 1.0, 5.0)
    assert (info.value.reason, info.value.permanent) == ("decode_error", True)


def test_ffmpegs_server_returned_5xx_is_http_5xx(http_server):
    http_server.add("media/x.webm", b"x")
    http_server.behaviour["/media/x.webm"] = Behaviour(statuses=[503] * 5)
    proc = subprocess.run([find_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error",
                           "-i", http_server.url("media/x.webm"), "-f", "null", "-"],
                          capture_output=True, text=True, timeout=60)
    assert "Server returned 5XX" in proc.stderr  # ffmpeg's own words, no status number
    failure = classify_error(FFmpegError("ffmpeg failed", stderr=proc.stderr))
    assert (failure.reason, failure.permanent) == ("http_5xx", False)
    with pytest.raises(FFmpegError) as info:  # the decoder's log level gives the status too
        decode_pcm(http_server.url("media/x.webm"), start=0, duration=1, sample_rate=16000)
    assert (classify_error(info.value).reason, info.value.status) == ("http_5xx", 503)


def test_a_failed_name_lookup_is_a_connection_failure():
    with pytest.raises(FFmpegError) as info:
        decode_pcm("http://no-such-host.invalid/x.webm", start=0, duration=1, sample_rate=16000,
                   timeout=30)
    failure = classify_error(info.value)
    assert (failure.reason, failure.permanent) == ("connection", False)
    with pytest.raises(ClipFailure) as info:  # yt-dlp's wording of the same
        ClipFetcher(url_template="http://no-such-host.invalid/{ytid}.webm",
                    socket_timeout=5.0).fetch(YTID, 0, 10)
    assert info.value.reason == "connection"


def test_the_rules_are_one_ordered_table():
    reasons = [r.reason for r in RULES]
    # statuses before ffmpeg's media wording, which comes before the generic 404 wording
    assert reasons.index("http_5xx") < reasons.index("decode_error")
    generic_404 = max(i for i, r in enumerate(RULES) if r.reason == "http_404" and r.words)
    assert reasons.index("decode_error") < generic_404
    assert classify_error(FFmpegError("x", stderr="[error] moov atom not found")).reason \
        == "decode_error"
    assert classify_error(FFmpegError("x", stderr="Server returned 4XX Client Error, but not "
                                                  "one of 40{0,1,3,4}")).reason == "unknown"
