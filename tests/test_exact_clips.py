"""Decoded clips start on the listed second, to the sample, in every container.

The reference is what whole-video research scripts compute: the file decoded from its
beginning, then cut at ``[round(start * sr), round(end * sr))``. The test signal is sparse
single-sample clicks at irregular times (a tone is periodic and would hide a shift), encoded in
the containers YouTube, mirrors and other sites serve, read over loopback HTTP by
:func:`audioset_data.audio.ranges.decode_pcm` at a start of 0, a few seconds in and minutes in.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import find_peaks

from audioset_data.audio.ffmpeg import DecodeResult, find_ffmpeg
from audioset_data.audio.ranges import _SEEK_MARGIN, _seek_margin, decode_pcm
from audioset_data.downloader.fetcher import ClipFetcher
from audioset_data.testing import LoopbackServer

SR = 32000
SECONDS = 140
STARTS = [0.0, 3.3, 125.0]
#: 1 ms at 32 kHz: how far a click may land from its sample
TOLERANCE = 32
YTID = "exactClip01"

#: click times in seconds: irregular gaps of 0.23-0.61 s, never on a round number
CLICKS = 0.0113 + np.cumsum(np.random.default_rng(2024).uniform(0.23, 0.61, 600))
CLICKS = CLICKS[CLICKS < SECONDS - 0.3]

#: name -> (file name, source rate, ffmpeg encoder and muxer arguments); small files
MEDIA = {
    # YouTube itag 251-like; Opus pre-skip 312 samples, Matroska times in 1 ms
    "webm": ("clicks.webm", 48000, ["-c:a", "libopus", "-b:a", "24k"]),
    # YouTube itag 140-like fragmented DASH m4a. delay_moov lets the muxer write the edit list
    # that skips the AAC encoder's 1024 priming samples; without one the priming is part of
    # the file's timeline and every decoder puts the audio 23.2 ms late
    "m4a": ("clicks.m4a", 44100, ["-c:a", "aac", "-b:a", "32k", "-movflags",
                                  "+dash+global_sidx+skip_trailer+delay_moov",
                                  "-frag_duration", "10000000"]),
    "mp4": ("flat.mp4", 44100, ["-c:a", "aac", "-b:a", "32k", "-movflags", "+faststart"]),
    "mp3cbr": ("cbr.mp3", 22050, ["-c:a", "libmp3lame", "-b:a", "24k"]),
    "mp3vbr": ("vbr.mp3", 22050, ["-c:a", "libmp3lame", "-q:a", "9"]),
    "ogg": ("clicks.ogg", 44100, ["-c:a", "libvorbis", "-q:a", "0"]),
}


def click_signal(rate: int) -> np.ndarray:
    """The clicks at ``rate``: one full-scale sample each, silence between them."""
    x = np.zeros(SECONDS * rate, "<i2")
    x[np.round(CLICKS * rate).astype(int)] = 29000
    return x


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("exact")
    out = {}
    for name, (filename, rate, encode) in MEDIA.items():
        out[name] = folder / filename
        subprocess.run(
            [find_ffmpeg(), "-nostdin", "-loglevel", "error", "-y", "-f", "s16le", "-ar",
             str(rate), "-ac", "1", "-i", "pipe:0", *encode, str(out[name])],
            input=click_signal(rate).tobytes(), check=True,
        )
    return out


@pytest.fixture(scope="module")
def server(media):
    with LoopbackServer() as srv:
        for name, path in media.items():
            srv.add(f"media/{name}/{path.name}", path)
        yield srv


def url(server: LoopbackServer, media: dict[str, Path], name: str) -> str:
    return server.url(f"media/{name}/{media[name].name}")


def whole_decode(path: Path) -> np.ndarray:
    """The reference: the whole file decoded from its beginning, mono, at SR."""
    out = subprocess.run(
        [find_ffmpeg(), "-nostdin", "-loglevel", "error", "-i", str(path), "-ac", "1", "-ar",
         str(SR), "-f", "s16le", "pipe:1"],
        capture_output=True, check=True,
    ).stdout
    return np.frombuffer(out, "<i2")


def click_errors(pcm: np.ndarray, start: float) -> np.ndarray:
    """Sample offset of every click found in ``pcm`` from where ``start`` puts it.

    Clicks are peaks of the magnitude (lossy codecs spread a click over a few samples and may
    flip its sign); every click written in the span must be found, and nothing else.
    """
    x = np.abs(pcm.astype(float))
    found, _ = find_peaks(x, height=0.4 * x.max(), distance=int(0.1 * SR))
    expected = np.round(CLICKS * SR).astype(int) - round(start * SR)
    edge = 2 * TOLERANCE  # a click this close to either end may fall on either side of it
    inner = expected[(expected >= edge) & (expected < len(pcm) - edge)]
    found = found[(found >= TOLERANCE) & (found < len(pcm) - TOLERANCE)]
    nearest = expected[np.abs(found[:, None] - expected[None, :]).argmin(axis=1)]
    missing = set(inner.tolist()) - set(nearest.tolist())
    assert not missing, f"clicks at samples {sorted(missing)[:5]} not found"
    return found - nearest


@pytest.mark.parametrize("name", list(MEDIA))
def test_reference_has_the_clicks_where_they_were_written(media, name):
    ref = whole_decode(media[name])
    # at most a frame of the encoder's end padding is left where the container cannot say
    # where the audio ends (the fragmented m4a's edit list has no duration)
    assert 0 <= len(ref) - SECONDS * SR <= 0.03 * SR
    errors = click_errors(ref, 0.0)
    assert len(errors) == len(CLICKS)
    assert np.abs(errors).max() <= 2, errors


@pytest.mark.parametrize("start", STARTS)
@pytest.mark.parametrize("name", list(MEDIA))
def test_clip_over_http_starts_on_the_sample(media, server, name, start):
    details: list[DecodeResult] = []
    pcm = decode_pcm(url(server, media, name), start=start, duration=10, sample_rate=SR,
                     timeout=30, details=details)
    assert len(pcm) == 10 * SR
    errors = click_errors(pcm, start)
    assert np.abs(errors).max() <= TOLERANCE, f"clicks off by {errors.min()}..{errors.max()}"
    assert details[0].bytes_read


@pytest.mark.parametrize("name", ["webm", "m4a", "mp3cbr", "ogg"])
def test_clip_matches_the_whole_decode(media, server, name):
    """Apart from the shift measured above, the samples are those of the whole decode."""
    ref = whole_decode(media[name]).astype(float)
    pcm = decode_pcm(url(server, media, name), start=42.1, duration=3, sample_rate=SR)
    lag = int(np.median(click_errors(pcm, 42.1)))
    r0 = round(42.1 * SR) - lag
    near = ref[r0 : r0 + len(pcm)]
    assert np.abs(pcm - near).max() <= 0.02 * np.abs(near).max()


@pytest.mark.parametrize("name", list(MEDIA))
def test_clip_reaching_the_end_keeps_the_true_length(media, server, name):
    ref = whole_decode(media[name])
    start = SECONDS - 4.25
    pcm = decode_pcm(url(server, media, name), start=start, duration=10, sample_rate=SR)
    assert abs(len(pcm) - (len(ref) - round(start * SR))) <= TOLERANCE
    assert np.abs(click_errors(pcm, start)).max() <= TOLERANCE


def test_webm_is_sought_without_a_margin(media, tmp_path):
    """WebM decodes from the start of the cluster anyway; elsewhere the margin is the pre-roll."""
    youtube = "https://rr1---sn-x.googlevideo.com/videoplayback?expire=1&itag={}&mime={}&c=WEB"
    assert _seek_margin(youtube.format(251, "audio%2Fwebm")) == 0.0
    assert _seek_margin(youtube.format(140, "audio%2Fmp4")) == _SEEK_MARGIN
    assert _seek_margin("http://127.0.0.1:1/media/x.WebM") == 0.0
    assert _seek_margin("http://127.0.0.1:1/media/x.mp3?mime=audio/mpeg") == _SEEK_MARGIN
    unnamed = tmp_path / "media"  # local files are told by their first bytes
    unnamed.write_bytes(media["webm"].read_bytes())
    assert _seek_margin(unnamed) == 0.0
    assert _seek_margin(media["ogg"]) == _SEEK_MARGIN
    assert _seek_margin(tmp_path / "missing") == _SEEK_MARGIN


def test_local_file_is_cut_the_same_way(media):
    pcm = decode_pcm(media["mp4"], start=3.3, duration=10, sample_rate=SR)
    assert len(pcm) == 10 * SR and np.abs(click_errors(pcm, 3.3)).max() <= TOLERANCE


@pytest.mark.parametrize("name", ["webm", "m4a"])
def test_fetcher_clip_starts_on_the_sample(media, name):
    """The whole path: yt-dlp's generic extractor resolves the address, ffmpeg reads ranges."""
    ext = media[name].suffix
    with LoopbackServer() as srv:
        srv.add(f"media/{YTID}{ext}", media[name])
        fetcher = ClipFetcher(url_template=srv.url("media/") + "{ytid}" + ext, sample_rate=SR,
                              socket_timeout=5.0, ffmpeg_timeout=30.0)
        for start in (0.0, 125.0):
            clip = fetcher.fetch(YTID, start, start + 10)
            assert clip.method == "direct" and clip.num_samples == 10 * SR
            assert np.abs(click_errors(clip.waveform, start)).max() <= TOLERANCE
            assert 0 < clip.bytes_read < 0.5 * media[name].stat().st_size
