"""Decoding a 10-s segment to mono int16: bundled ffmpeg subprocess vs PyAV in-process.

PyAV is not a dependency; install it (``pip install av``) to run this comparison. Both decode
the same segment from a local file and from the loopback HTTP server, seeking before reading.

Run: ``python benchmarks/bench_decoder.py [--repeat 10] [--out benchmarks/results/decoder.md]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from audioset_data.audio.ffmpeg import find_ffmpeg
from audioset_data.audio.ranges import decode_pcm
from audioset_data.testing import LoopbackServer

SR = 32000
START, DURATION = 120.0, 10.0


def with_pyav(source: str, start: float, duration: float, sr: int) -> np.ndarray:
    import av

    with av.open(source, timeout=20) as container:
        stream = container.streams.audio[0]
        container.seek(int(start / stream.time_base), stream=stream)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=sr)
        out, have, need = [], 0, int(duration * sr)
        skip = None
        for frame in container.decode(stream):
            if skip is None:  # samples before `start` in the first decoded frame
                t = float(frame.pts * stream.time_base) if frame.pts is not None else start
                skip = max(0, int(round((start - t) * sr)))
            for f in resampler.resample(frame):
                a = f.to_ndarray().reshape(-1)
                if skip:
                    drop = min(skip, len(a))
                    a, skip = a[drop:], skip - drop
                out.append(a)
                have += len(a)
            if have >= need:
                break
    return np.concatenate(out)[:need]


def timed(fn, repeat: int) -> tuple[float, np.ndarray]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir, LoopbackServer() as server:
        tmp = Path(tmpdir)
        for ext, enc in [
            ("webm", ["-c:a", "libopus", "-b:a", "128k", "-cues_to_front", "1"]),
            ("m4a", ["-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart"]),
        ]:
            path = tmp / f"a.{ext}"
            subprocess.run(
                [find_ffmpeg(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                 "anoisesrc=d=300:c=pink:r=48000:a=0.2", "-ac", "2", *enc, str(path)],
                check=True,
            )
            url = server.add(f"a.{ext}", path)
            for where, src in [("local file", str(path)), ("loopback HTTP", url)]:
                t_ff, a = timed(
                    lambda s=src: decode_pcm(s, start=START, duration=DURATION, sample_rate=SR),
                    args.repeat,
                )
                t_av, b = timed(lambda s=src: with_pyav(s, START, DURATION, SR), args.repeat)
                n = min(len(a), len(b))
                lag = int(np.argmax(np.correlate(a[2000:6000].astype(float),
                                                 b[1000:7000].astype(float), "valid"))) - 1000
                rows.append((ext, where, t_ff, t_av, t_ff / t_av, len(a), len(b), lag, n))
                print(f"{ext:4} {where:13}: ffmpeg subprocess {t_ff * 1000:6.1f} ms, "
                      f"PyAV {t_av * 1000:6.1f} ms, ratio {t_ff / t_av:.2f}x "
                      f"(samples {len(a)} vs {len(b)}, alignment lag {lag} samples)")
    if args.out:
        import av

        lines = [
            "# 10-s segment decode: ffmpeg subprocess vs PyAV",
            "",
            f"Command: `python benchmarks/bench_decoder.py --repeat {args.repeat} --out "
            f"{args.out}` (PyAV {av.__version__} installed only for this measurement)",
            "",
            f"Segment [{START:.0f}s, {START + DURATION:.0f}s) of a 5-min 128 kbit/s stereo "
            f"file, decoded to mono int16 at {SR} Hz; median of {args.repeat} runs on a "
            "2-core machine. Ratio > 1 means the subprocess is slower.",
            "",
            "| format | source | ffmpeg subprocess ms | PyAV ms | ratio | samples (ff / av) "
            "| lag |",
            "|---|---|---|---|---|---|---|",
        ]
        for ext, where, t_ff, t_av, ratio, na, nb, lag, _ in rows:
            lines.append(f"| {ext} | {where} | {t_ff * 1000:.1f} | {t_av * 1000:.1f} | "
                         f"{ratio:.2f} | {na} / {nb} | {lag} |")
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
