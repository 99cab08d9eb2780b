"""Bytes fetched per 10-s clip: ClipFetcher (seek + range reads) vs download-whole-then-trim.

A paced loopback server (about 20 MB/s, 4 KiB writes) serves 5-minute and 60-minute audio files
encoded like YouTube's audio-only formats (webm/opus and m4a/aac at ~128 kbit/s). For several
start offsets it counts the body bytes the server sent for one clip, with the fetcher and with
the usual research-script method (GET the whole file, then trim it with ffmpeg).

Run: ``python benchmarks/bench_bytes.py [--out benchmarks/results/bytes.md]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from audioset_data.audio import decode_pcm, find_ffmpeg
from audioset_data.clip import ClipFetcher
from audioset_data.testing import LoopbackServer

FORMATS = {
    # YouTube's audio-only webm has its Cues before the clusters; m4a is served with moov first
    "webm": ["-c:a", "libopus", "-b:a", "128k", "-cues_to_front", "1"],
    "m4a": ["-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart"],
}
GOALS = {300: 10, 3600: 100}


def make(folder: Path, ext: str, seconds: int) -> Path:
    path = folder / f"a{seconds}.{ext}"
    src = f"anoisesrc=d={seconds}:c=pink:r=48000:a=0.2,lowpass=f=9000"
    subprocess.run(
        [find_ffmpeg(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", src,
         "-ac", "2", *FORMATS[ext], str(path)],
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="write a markdown report here")
    ap.add_argument("--formats", default="webm,m4a")
    ap.add_argument("--pace", type=float, default=20e6, help="server bytes per second")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        with LoopbackServer(pace_bytes_per_s=args.pace, chunk=4096) as server:
            for ext in args.formats.split(","):
                for seconds, goal in GOALS.items():
                    path = make(tmp, ext, seconds)
                    size = path.stat().st_size
                    ytid = f"{ext}{seconds:08d}"[:11].ljust(11, "x")
                    server.add(f"media/{ytid}.{ext}", path)
                    fetcher = ClipFetcher(url_template=server.url("media/") + "{ytid}." + ext)
                    starts = [0.0, seconds * 0.25, seconds * 0.5, seconds * 0.9]
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
                    worst = max(ours)
                    rows.append({
                        "format": ext, "length": f"{seconds // 60} min", "file_bytes": size,
                        "ours_median": int(statistics.median(ours)), "ours_max": worst,
                        "baseline": base, "ratio": worst / base, "goal": f"<= 1/{goal}",
                        "met": worst / base <= 1 / goal,
                        "ours_s": statistics.median(times), "base_s": base_time,
                        "probe": probe, "ratio_media": (worst - probe) / base,
                    })
                    r = rows[-1]
                    print(f"{ext} {r['length']:>6}: ours median {r['ours_median']:>9,} B "
                          f"(max {worst:,}) vs whole+trim {base:>11,} B -> ratio "
                          f"{r['ratio']:.4f} (1/{1 / r['ratio']:.0f}), goal {r['goal']} "
                          f"{'met' if r['met'] else 'MISSED'}; without the probe "
                          f"({probe:,} B) 1/{1 / r['ratio_media']:.0f}; time {r['ours_s']:.2f}s vs "
                          f"{base_time:.2f}s")
    if args.out:
        lines = [
            "# Bytes per 10-s clip: range reads vs whole download",
            "",
            f"Command: `python benchmarks/bench_bytes.py --out {args.out}`",
            "",
            f"Loopback server paced at {args.pace / 1e6:.0f} MB/s in 4 KiB writes; pink noise "
            "encoded at 128 kbit/s (webm/opus with Cues in front, m4a/aac with moov in front, "
            "as YouTube serves them). Bytes are the body bytes the server wrote for one clip, "
            "including the yt-dlp probe request and read-ahead ffmpeg discards. Starts: 0, 25%, "
            "50% and 90% of the file; the ratio uses the worst start.",
            "",
            "| format | length | file bytes | ours (median) | ours (max) | whole+trim | ratio "
            "| goal | met | probe bytes | ratio without probe | ours s | whole+trim s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['format']} | {r['length']} | {r['file_bytes']:,} | {r['ours_median']:,} "
                f"| {r['ours_max']:,} | {r['baseline']:,} | 1/{1 / r['ratio']:.0f} | "
                f"{r['goal']} | {'yes' if r['met'] else 'no'} | {r['probe']:,} | "
                f"1/{1 / r['ratio_media']:.0f} | {r['ours_s']:.2f} | "
                f"{r['base_s']:.2f} |"
            )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
