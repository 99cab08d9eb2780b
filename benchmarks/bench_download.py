"""Clips per second of the whole download job with 1, 2 and 4 workers, on loopback.

A paced loopback server (about 20 MB/s per connection, 16 KiB writes, plus a fixed delay per
request standing in for network latency) serves one 5-minute WebM/Opus stand-in video under
many ids. Each run downloads the same segment list into a fresh cache through the production
path (yt-dlp's generic extractor, ffmpeg range reads, the HDF5 writer).

One untimed warm-up run comes first (it pays for the first imports, the page cache of the
ffmpeg binary and of the media file); then every worker count runs once per round, the order
rotated from round to round so that no setting always runs first, and each figure is the
median of its rounds. The baseline is the 1-worker median of the same invocation; the ratios
are speed-ups over it.

Run: ``python benchmarks/bench_download.py [--clips 24] [--rounds 3]
[--out benchmarks/results/download.md]``
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from audioset_data.downloader.demo import make_tone_file
from audioset_data.downloader.job import download
from audioset_data.segments.labels import LabelIndex
from audioset_data.testing import Behaviour, LoopbackServer

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "segments"


def segment_list(n: int) -> pd.DataFrame:
    """The first ``n`` real eval segments, with start times moved inside the 5-minute file."""
    rows = []
    with open(SHARED / "eval_segments.csv") as fh:
        for row in csv.reader(fh, skipinitialspace=True):
            if not row[0].startswith("#"):
                rows.append(row)
            if len(rows) == n:
                break
    frame = pd.DataFrame(rows, columns=["ytid", "start", "end", "labels"])
    frame["start"] = [float((i * 37) % 280) for i in range(n)]
    frame["end"] = frame["start"] + 10.0
    return frame


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--latency", type=float, default=0.05, help="seconds added per request")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--rounds", type=int, default=3, help="timed runs per worker count")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    labels = LabelIndex.from_file(SHARED / "class_labels_indices.csv")
    frame = segment_list(args.clips)
    counts = [int(w) for w in args.workers.split(",")]
    walls: dict[int, list[float]] = {w: [] for w in counts}
    served: dict[int, list[float]] = {w: [] for w in counts}
    with tempfile.TemporaryDirectory() as tmp, LoopbackServer(pace_bytes_per_s=20e6) as srv:
        video = make_tone_file(Path(tmp) / "v.webm", 300.0)
        for ytid in frame["ytid"]:
            path = srv.add(f"v/{ytid}.webm", video)
            srv.behaviour["/" + path.split("/", 3)[3]] = Behaviour(stall_s=args.latency)
        url = srv.url("v/") + "{ytid}.webm"

        def run(name: str, workers: int) -> tuple[float, float]:
            srv.reset_counters()
            t0 = time.perf_counter()
            report = download(name, segments=frame, url_template=url,
                              root=Path(tmp) / name, label_index=labels, workers=workers,
                              progress=False, check_space=False)
            wall = time.perf_counter() - t0
            if report.ok != len(frame):
                sys.exit(f"only {report.ok}/{len(frame)} clips arrived: {report.by_reason}")
            return wall, srv.total_bytes() / len(frame)

        wall, _ = run("warm-up", max(counts))
        print(f"warm-up ({max(counts)} workers, not counted): {wall:.2f} s", flush=True)
        for r in range(args.rounds):
            order = counts[r % len(counts):] + counts[: r % len(counts)]
            for workers in order:
                wall, per_clip = run(f"r{r}-w{workers}", workers)
                walls[workers].append(wall)
                served[workers].append(per_clip)
                print(f"round {r + 1}, {workers} workers: {wall:.2f} s", flush=True)
    base = len(frame) / statistics.median(walls[counts[0]])
    lines = [
        f"| workers | wall s, median of {args.rounds} (min-max) | clips/s | speed-up vs "
        f"{counts[0]} worker | bytes served per clip |",
        "|---:|---:|---:|---:|---:|",
    ]
    for workers in counts:
        med = statistics.median(walls[workers])
        rate = len(frame) / med
        lines.append(f"| {workers} | {med:.2f} ({min(walls[workers]):.2f}-"
                     f"{max(walls[workers]):.2f}) | {rate:.2f} | {rate / base:.2f}x | "
                     f"{statistics.median(served[workers]) / 1e3:.0f} kB |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        cmd = "python benchmarks/bench_download.py " + " ".join(sys.argv[1:])
        load = os.getloadavg()[1]
        args.out.write_text(
            "# Download throughput on loopback\n\n"
            f"Command: `{cmd}`\n\n"
            f"Machine: {platform.machine()}, Python {platform.python_version()}, "
            f"{os.cpu_count()} cores shared with other work (load average {load:.1f} over the "
            f"last 5 minutes of the run). {args.clips} segments of the real eval list, each "
            "served as a 5-minute WebM/Opus stand-in by a loopback server paced at 20 MB/s per "
            f"connection with {args.latency * 1000:.0f} ms added per request. Full job: yt-dlp "
            "generic extractor, ffmpeg range reads, decoding to 32 kHz int16, HDF5 writer; "
            "each run starts its own worker processes, as a real run does.\n\n"
            f"Method: one untimed warm-up run ({max(counts)} workers), then {args.rounds} "
            "rounds, each running every worker count once into a fresh cache, in an order "
            "rotated from round to round; the figures are medians over the rounds. Baseline: "
            f"the {counts[0]}-worker median of the same invocation.\n\n" + table + "\n"
        )


if __name__ == "__main__":
    main()
