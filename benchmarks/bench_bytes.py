"""Bytes fetched per 10-s clip: ClipFetcher (seek + range reads) vs download-whole-then-trim.

A paced loopback server (about 20 MB/s, 4 KiB writes) serves 5-minute and 60-minute audio files
laid out like YouTube's audio-only formats: webm/opus (itag 251) at a constant 128 kbit/s with
the Cues index before the clusters, and fragmented DASH m4a/aac (itag 140) at 128 kbit/s with a
global ``sidx`` index and 10-s fragments. A non-fragmented mp4 with its ``moov`` in front is
measured too, as a pessimistic case YouTube does not serve, and so are the formats mirrors and
other sites serve: MP3 (constant and variable bit rate, LAME's Xing/Info header with its TOC)
and Ogg Vorbis. For several start offsets it counts the body bytes the server sent for one clip,
with the fetcher and with the usual research-script method (GET the whole file, then trim it
with ffmpeg).

Run: ``python benchmarks/bench_bytes.py [--sweep] [--out benchmarks/results/bytes.md]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
import scipy.signal

from audioset_data.audio.ffmpeg import _HTTP_READ_OPTIONS, find_ffmpeg
from audioset_data.audio.ranges import _range_args, _seek_margin, decode_pcm
from audioset_data.downloader.fetcher import ClipFetcher
from audioset_data.testing import LoopbackServer

#: name -> (file extension, ffmpeg encoder/muxer arguments, whether the spec's goal applies)
FORMATS: dict[str, tuple[str, list[str], bool]] = {
    # itag 251: opus in webm, Cues in front; constant bitrate, since VBR on noise drops to
    # ~90 kbit/s, well under what YouTube serves
    "webm": ("webm", ["-ar", "48000", "-c:a", "libopus", "-b:a", "128k", "-vbr", "off",
                      "-cues_to_front", "1"], True),
    # itag 140: AAC-LC 44.1 kHz in a fragmented DASH mp4 (ftyp, small moov, sidx, moof/mdat)
    "m4a": ("m4a", ["-ar", "44100", "-c:a", "aac", "-b:a", "128k", "-movflags",
                    "+dash+global_sidx+skip_trailer", "-frag_duration", "10000000"], True),
    # not served by YouTube: one moov holding the whole sample table, read before any seek
    "mp4flat": ("m4a", ["-ar", "44100", "-c:a", "aac", "-b:a", "128k", "-movflags",
                        "+faststart"], False),
    # not served by YouTube; mirrors and other sites do. LAME writes an Info (CBR) or Xing
    # (VBR) header with the frame count, the encoder delay and a 100-point TOC
    "mp3cbr": ("mp3", ["-ar", "44100", "-c:a", "libmp3lame", "-b:a", "128k"], False),
    "mp3vbr": ("mp3", ["-ar", "44100", "-c:a", "libmp3lame", "-q:a", "2"], False),
    # Ogg has no index: a seek is a search over page granule positions
    "ogg": ("ogg", ["-ar", "44100", "-c:a", "libvorbis", "-q:a", "5"], False),
}
GOALS = {300: 10, 3600: 100}
#: where the clips start, as fractions of the file (plus a clip at 0): round fractions, which
#: fall on or just after a cluster or fragment boundary in these files (AudioSet's starts are
#: round too), and two that do not
STARTS = (0.25, 0.371, 0.5, 0.713, 0.9)


def make(folder: Path, name: str, seconds: int) -> Path:
    ext, encode, _ = FORMATS[name]
    path = folder / f"{name}{seconds}.{ext}"
    src = f"anoisesrc=d={seconds}:c=pink:r=48000:a=0.2,lowpass=f=9000"
    subprocess.run(
        [find_ffmpeg(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", src,
         "-ac", "2", *encode, str(path)],
        check=True,
    )
    return path


def whole_then_trim(url: str, start: float, tmp: Path) -> int:
    """The baseline: download the whole file, then cut the clip locally."""
    dest = tmp / ("whole" + Path(url).suffix)
    with requests.get(url, stream=True, timeout=60) as resp, dest.open("wb") as fh:
        resp.raise_for_status()
        for block in resp.iter_content(1 << 16):
            fh.write(block)
    pcm = decode_pcm(dest, start=start, duration=10, sample_rate=32000)
    return len(pcm)


#: http option sets compared by ``--sweep`` (the first is what ffmpeg does by default)
SWEEP: dict[str, list[str]] = {
    "ffmpeg defaults": [],
    "64K first / 256K (previous)": ["-initial_request_size", "65536", "-request_size", "262144"],
    "64K / 128K": ["-initial_request_size", "65536", "-request_size", "131072"],
    "32K / 32K": ["-initial_request_size", "32768", "-request_size", "32768"],
    "32K / 64K": ["-initial_request_size", "32768", "-request_size", "65536"],
    "32K / 64K, probesize 32K": ["-initial_request_size", "32768", "-request_size", "65536",
                                 "-probesize", "32768", "-analyzeduration", "0"],
    "32K / 64K, nobuffer": ["-initial_request_size", "32768", "-request_size", "65536",
                            "-fflags", "+nobuffer"],
    "32K / 64K, seekable": ["-initial_request_size", "32768", "-request_size", "65536",
                           "-seekable", "1"],
    "32K / 64K, multiple_requests": ["-initial_request_size", "32768", "-request_size",
                                     "65536", "-multiple_requests", "1"],
    "32K / 64K, short_seek 32K (chosen)": list(_HTTP_READ_OPTIONS),
    "32K / 128K, short_seek 32K": ["-initial_request_size", "32768", "-request_size", "131072",
                                   "-short_seek_size", "32768"],
    "8K first / 64K, short_seek 32K": ["-initial_request_size", "8192", "-request_size",
                                       "65536", "-short_seek_size", "32768"],
    "16K first / 64K, short_seek 32K": ["-initial_request_size", "16384", "-request_size",
                                        "65536", "-short_seek_size", "32768"],
}


def run_clip(server: LoopbackServer, url: str, start: float, opts: list[str]
             ) -> tuple[int, int, np.ndarray]:
    """(bytes sent, requests, PCM) for one 10-s clip, ffmpeg run as decode_pcm runs it."""
    server.reset_counters()
    rng = _range_args(url, start, 10, 32000, manual_skip=True, margin=_seek_margin(url))
    cut = rng.index("-i")
    proc = subprocess.run(
        [find_ffmpeg(), "-nostdin", "-loglevel", "error", "-rw_timeout", "20000000",
         *rng[:cut], *opts, *rng[cut:]],
        capture_output=True,
    )
    time.sleep(0.3)
    if proc.returncode or len(proc.stdout) < 640000:
        sys.exit(f"{opts}: clip at {start}s failed: {proc.stderr[-300:]!r}")
    pcm = np.frombuffer(proc.stdout, "<i2")[:320000].astype(float)
    return server.total_bytes(), sum(server.requests.values()), pcm


def sweep_bytes(server: LoopbackServer, url: str, starts: list[float], opts: list[str]
                ) -> tuple[int, int]:
    """(most bytes, most requests) over ``starts`` for ffmpeg run as decode_pcm runs it."""
    worst = (0, 0)
    for start in starts:
        sent, requests_made, _ = run_clip(server, url, start, opts)
        worst = (max(worst[0], sent), max(worst[1], requests_made))
    return worst


#: MP3 seek modes compared by ``--sweep`` (extra demuxer options; the first is decode_pcm's)
MP3_MODES: dict[str, list[str]] = {
    "default (generic index)": [],
    "fast seek": ["-fflags", "+fastseek"],
    "TOC": ["-usetoc", "1"],
}


def whole_decode(path: Path) -> np.ndarray:
    """The reference: the whole file decoded from its beginning, mono, 32 kHz."""
    out = subprocess.run(
        [find_ffmpeg(), "-nostdin", "-loglevel", "error", "-i", str(path), "-ac", "1", "-ar",
         "32000", "-f", "s16le", "pipe:1"],
        capture_output=True, check=True,
    ).stdout
    return np.frombuffer(out, "<i2").astype(float)


def offset_ms(ref: np.ndarray, pcm: np.ndarray, start: float) -> float:
    """Where the clip starts against the reference (ms, + = late), within 5 s either way."""
    r0 = round(start * 32000)
    lo = max(0, r0 - 5 * 32000)
    window = ref[lo : r0 + 6 * 32000]
    head = pcm[:32000] - pcm[:32000].mean()
    xc = scipy.signal.correlate(window - window.mean(), head, mode="valid", method="fft")
    return (int(np.argmax(xc)) + lo - r0) / 32.0


def mp3_modes(server: LoopbackServer, url: str, path: Path, starts: list[float]
              ) -> dict[str, tuple[int, int, float]]:
    """Per mode: (most bytes, most requests, largest offset in ms) over ``starts``."""
    ref = whole_decode(path)
    out = {}
    for label, opts in MP3_MODES.items():
        worst = (0, 0, 0.0)
        for start in starts:
            sent, requests_made, pcm = run_clip(server, url, start,
                                                [*_HTTP_READ_OPTIONS, *opts])
            off = offset_ms(ref, pcm, start)
            worst = (max(worst[0], sent), max(worst[1], requests_made),
                     max(worst[2], abs(off), key=abs))
        out[label] = worst
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="write a markdown report here")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--lengths", default=",".join(map(str, GOALS)),
                    help="file lengths in seconds (of 300, 3600)")
    ap.add_argument("--sweep-formats", default="webm,m4a,mp4flat,ogg",
                    help="formats the --sweep compares option sets on")
    ap.add_argument("--pace", type=float, default=20e6, help="server bytes per second")
    ap.add_argument("--sweep", action="store_true",
                    help="also compare ffmpeg http option sets on the same files")
    args = ap.parse_args()
    rows = []
    sweep: dict[str, dict[str, tuple[int, int]]] = {}
    served: list[tuple[str, str, list[float]]] = []
    mp3: dict[str, dict[str, tuple[int, int, float]]] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        with LoopbackServer(pace_bytes_per_s=args.pace, chunk=4096) as server:
            for name in args.formats.split(","):
                ext, _, goal_applies = FORMATS[name]
                for seconds in map(int, args.lengths.split(",")):
                    goal = GOALS[seconds]
                    path = make(tmp, name, seconds)
                    size = path.stat().st_size
                    ytid = f"{name[:3]}{seconds:08d}"[:11].ljust(11, "x")
                    server.add(f"media/{ytid}.{ext}", path)
                    fetcher = ClipFetcher(url_template=server.url("media/") + "{ytid}." + ext)
                    starts = [0.0, *(round(seconds * f, 1) for f in STARTS)]
                    server.reset_counters()
                    fetcher.resolve(ytid)  # yt-dlp's generic-extractor probe of the media URL
                    time.sleep(0.3)
                    probe = server.total_bytes()
                    ours, times = [], []
                    for start in starts:
                        server.reset_counters()
                        t0 = time.monotonic()
                        clip = fetcher.fetch(ytid, start, start + 10)
                        times.append(time.monotonic() - t0)
                        time.sleep(0.3)  # let aborted writes finish counting
                        ours.append(server.total_bytes())
                        if clip.num_samples != 320000:
                            sys.exit(f"clip at {start}s has {clip.num_samples} samples")
                    server.reset_counters()
                    t0 = time.monotonic()
                    whole_then_trim(server.url(f"media/{ytid}.{ext}"), starts[1], tmp)
                    base_time = time.monotonic() - t0
                    base = server.total_bytes()
                    if name in args.sweep_formats.split(","):
                        served.append((f"{name} {seconds // 60} min",
                                       server.url(f"media/{ytid}.{ext}"), starts))
                    if args.sweep and ext == "mp3" and seconds == 300:
                        mp3[name] = mp3_modes(server, server.url(f"media/{ytid}.{ext}"), path,
                                              starts[1:])
                        for label, (b, n, off) in mp3[name].items():
                            print(f"{name} {label:24s} {b:,} B/{n} req, offset {off:+.1f} ms")
                    worst = max(ours)
                    rows.append({
                        "format": name, "length": f"{seconds // 60} min", "file_bytes": size,
                        "kbps": size * 8 / seconds / 1000,
                        "ours_median": int(statistics.median(ours)), "ours_max": worst,
                        "baseline": base, "ratio": worst / base,
                        "goal": f"<= 1/{goal}" if goal_applies else "none",
                        "met": (worst / base <= 1 / goal) if goal_applies else None,
                        "ours_s": statistics.median(times), "base_s": base_time,
                        "probe": probe, "ratio_media": (worst - probe) / base,
                    })
                    r = rows[-1]
                    met = {True: "met", False: "MISSED", None: "not applicable"}[r["met"]]
                    print(f"{name} {r['length']:>6}: ours median {r['ours_median']:>9,} B "
                          f"(max {worst:,}) vs whole+trim {base:>11,} B -> ratio "
                          f"{r['ratio']:.4f} (1/{1 / r['ratio']:.0f}), goal {r['goal']} "
                          f"{met}; without the probe "
                          f"({probe:,} B) 1/{1 / r['ratio_media']:.0f}; time {r['ours_s']:.2f}s vs "
                          f"{base_time:.2f}s")
            if args.sweep:
                for label, opts in SWEEP.items():
                    sweep[label] = {}
                    for case, url, starts in served:
                        sweep[label][case] = sweep_bytes(server, url, starts, opts)
                    print(f"{label:36s} " + "  ".join(
                        f"{case}: {b:,} B/{n} req" for case, (b, n) in sweep[label].items()))
    if args.out:
        version = subprocess.run([find_ffmpeg(), "-version"], capture_output=True, text=True)
        lines = [
            "# Bytes per 10-s clip: range reads vs whole download",
            "",
            f"Command: `python benchmarks/bench_bytes.py {' '.join(sys.argv[1:])}`",
            "",
            f"ffmpeg: `{version.stdout.splitlines()[0] if version.stdout else '?'}`; http "
            f"options used by `decode_pcm`: `{' '.join(_HTTP_READ_OPTIONS)}`.",
            "",
            f"Loopback server paced at {args.pace / 1e6:.0f} MB/s in 4 KiB writes; stereo pink "
            "noise. Bytes are the body bytes the server wrote for one clip, including the yt-dlp "
            "probe request and what the server pushed that ffmpeg discarded. Starts: 0 and "
            + ", ".join(f"{f:.1%}" for f in STARTS) + " of the file (rounded to 0.1 s); the ratio "
            "uses the worst start.",
            "",
            "File encodings (ffmpeg arguments after `-ac 2`):",
            "",
        ]
        for name in args.formats.split(","):
            ext, encode, applies = FORMATS[name]
            note = "" if applies else " (not how YouTube serves audio; no goal)"
            lines.append(f"- {name} (.{ext}): `{' '.join(encode)}`{note}")
        lines += [
            "",
            "| format | length | file bytes | kbit/s | ours (median) | ours (max) | whole+trim "
            "| ratio | goal | met | probe bytes | ratio without probe | ours s | whole+trim s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            met = {True: "yes", False: "no", None: "-"}[r["met"]]
            lines.append(
                f"| {r['format']} | {r['length']} | {r['file_bytes']:,} | {r['kbps']:.0f} "
                f"| {r['ours_median']:,} | {r['ours_max']:,} | {r['baseline']:,} "
                f"| 1/{1 / r['ratio']:.0f} | {r['goal']} | {met} | {r['probe']:,} | "
                f"1/{1 / r['ratio_media']:.0f} | {r['ours_s']:.2f} | {r['base_s']:.2f} |"
            )
        if sweep:
            cases = [case for case, _, _ in served]
            lines += [
                "",
                "## ffmpeg http options (`--sweep`)",
                "",
                "ffmpeg run directly with decode_pcm's arguments and each option set on the same "
                "files; most bytes the server wrote over the starts (no yt-dlp probe), and "
                "most HTTP requests for one clip.",
                "",
                "| options | " + " | ".join(cases) + " |",
                "|---|" + "---|" * len(cases),
            ]
            for label, opts in SWEEP.items():
                cells = [f"{b:,} ({n} req)" for b, n in (sweep[label][c] for c in cases)]
                lines.append(f"| {label}: `{' '.join(opts) or '-'}` | " + " | ".join(cells) + " |")
        if mp3:
            names = list(mp3)
            lines += [
                "",
                "## MP3 seek modes (`--sweep`, 5-minute files)",
                "",
                "decode_pcm's arguments plus each demuxer option, starts after 0; most bytes the "
                "server wrote, most requests, and the largest offset of the clip against the "
                "whole file decoded from its beginning (ms, by cross-correlation; + = late).",
                "",
                "| mode | " + " | ".join(names) + " |",
                "|---|" + "---|" * len(names),
            ]
            for label, opts in MP3_MODES.items():
                cells = [f"{b:,} ({n} req), {off:+.1f} ms"
                         for b, n, off in (mp3[name][label] for name in names)]
                lines.append(f"| {label}: `{' '.join(opts) or '-'}` | " + " | ".join(cells) + " |")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
