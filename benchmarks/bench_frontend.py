"""The batched log-mel front end against librosa called clip by clip, with the same number of
threads on both sides.

For each case, clips per second of ``LogMel`` on a batch of 10-s int16 clips (noise, fixed
seed) against the baseline of ``librosa.feature.melspectrogram`` called on each clip of the
same batch with the same settings, followed by the same log (and preceded, for 32-kHz input,
by ``librosa.resample`` with its default resampler, soxr "HQ"; the int16 scaling is in both).
Each contender runs once to warm up, then the two alternate ``--repeat`` times; medians are
reported. Cases:

* ``vggish@16k``: the VGGish front end on 16-kHz input (no resampling);
* ``vggish@32k``: the VGGish front end on 32-kHz input (the cache's rate), resampled to 16 kHz;
* ``panns@32k``: the PANNs front end (power, Slaney mel, dB) on 32-kHz input.

Threads, for each count N of ``--threads`` (default ``1,2``): ours runs with
``torch.set_num_threads(N)``; librosa, which is single-threaded per clip, runs in N processes
(a fork pool started before the timing, each process taking a contiguous share of the clips and
sending its spectrograms back), or in this process for N = 1. NumPy's OpenBLAS is held to one
thread in every process (``OPENBLAS_NUM_THREADS=1`` unless set): librosa's fastest setting here.
``OMP_WAIT_POLICY`` (libgomp's idle-thread policy, read once when torch loads) is recorded:
with the default, torch's idle OpenMP threads spin after each parallel region, which on cores
shared with other jobs makes a two-thread run collapse; ``PASSIVE`` lets them sleep.

``--device cuda`` times the module on the GPU (input already on the device, and separately
with the host-to-device copy of the int16 batch), against the CPU baseline measured on the
first ``--baseline-clips`` clips.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_frontend.py [--batch 64] [--repeat 5]
    python benchmarks/bench_frontend.py --device cuda --batch 2048 --threads 1
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import librosa  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import load_average  # noqa: E402

from audioset_data.loaders.frontend import PANNS, VGGISH, FrontEndConfig, LogMel  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "frontend.md"
CASES = {"vggish@16k": (VGGISH, 16000), "vggish@32k": (VGGISH, 32000),
         "panns@32k": (PANNS, 32000)}


def librosa_clip(pcm: np.ndarray, config: FrontEndConfig, rate: int) -> np.ndarray:
    """The baseline for one int16 clip: scale, resample if needed, mel spectrogram, log."""
    y = pcm.astype(np.float32) / 32768.0
    if rate != config.sample_rate:
        y = librosa.resample(y, orig_sr=rate, target_sr=config.sample_rate)
    if not config.center:  # librosa centres the window in an n_fft frame, as torch.stft does
        side = (config.n_fft - config.win_length) // 2
        y = np.pad(y, (side, config.n_fft - config.win_length - side))
    mel = librosa.feature.melspectrogram(
        y=y, sr=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
        win_length=config.win_length, window="hann", center=config.center, pad_mode="reflect",
        power=config.power, n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax,
        htk=config.mel_scale == "htk", norm=None if config.mel_scale == "htk" else "slaney")
    if config.log == "offset":
        return np.log(mel + config.log_offset).T
    return 10.0 * np.log10(np.maximum(mel, config.log_offset)).T


_POOL_CLIPS: np.ndarray | None = None
_POOL_CASE: tuple[FrontEndConfig, int] | None = None


def _pool_share(bounds: tuple[int, int]) -> list[np.ndarray]:
    """A pool process's share of the baseline: clips ``lo..hi-1`` of the inherited batch."""
    config, rate = _POOL_CASE
    return [librosa_clip(clip, config, rate) for clip in _POOL_CLIPS[bounds[0]:bounds[1]]]


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_case(name: str, threads: int, args: argparse.Namespace, report) -> None:
    global _POOL_CLIPS, _POOL_CASE
    config, rate = CASES[name]
    rng = np.random.default_rng(0)
    pcm = (rng.standard_normal((args.batch, rate * args.seconds)) * 3000).astype(np.int16)
    device = torch.device(args.device)
    torch.set_num_threads(threads)
    module = LogMel(config, input_rate=rate).to(device)
    host = torch.from_numpy(pcm)
    on_device = host.to(device)
    base = pcm[: min(args.batch, args.baseline_clips)]
    procs = threads if device.type == "cpu" else 1
    pool = None
    if procs > 1:  # the clips and the case reach the workers by fork, not by pickling
        _POOL_CLIPS, _POOL_CASE = base, (config, rate)
        pool = multiprocessing.get_context("fork").Pool(procs)
    edges = np.linspace(0, len(base), procs + 1).astype(int)
    shares = list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def ours() -> None:
        with torch.inference_mode():
            module(on_device)
        sync()

    def ours_with_copy() -> None:
        with torch.inference_mode():
            module(host.to(device, non_blocking=True))
        sync()

    def baseline() -> None:
        if pool is not None:
            pool.map(_pool_share, shares)
        else:
            for clip in base:
                librosa_clip(clip, config, rate)

    with torch.inference_mode():
        got = module(on_device[:2]).cpu().numpy()
    want = np.stack([librosa_clip(clip, config, rate) for clip in pcm[:2]])
    agree = float(np.abs(got - want).max())
    contenders = {"ours": ours, "baseline": baseline}
    if device.type == "cuda":
        contenders["ours incl. copy"] = ours_with_copy
    times: dict[str, list[float]] = {k: [] for k in contenders}
    try:
        for fn in contenders.values():
            fn()
        for _ in range(args.repeat):
            for key, fn in contenders.items():
                times[key].append(timed(fn))
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    rate_of = {k: (len(base) if k == "baseline" else args.batch) / statistics.median(v)
               for k, v in times.items()}
    ours_threads = "GPU" if device.type == "cuda" else f"{threads} torch thread" + (
        "s" if threads > 1 else "")
    base_procs = f"{procs} process" + ("es" if procs > 1 else "")
    for key in contenders:
        if key == "baseline":
            continue
        report(f"| {name} | {key} | {ours_threads} | {base_procs} | {args.batch} | "
               f"{rate_of[key]:,.0f} | {rate_of['baseline']:,.0f} | "
               f"{rate_of[key] / rate_of['baseline']:.2f}x | {agree:.2g} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", default="1,2",
                        help="thread counts to run: torch threads for ours, librosa processes "
                             "for the baseline")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--baseline-clips", type=int, default=64,
                        help="clips the librosa baseline runs on (its rate is per clip)")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--no-write", action="store_true", help="do not write the results file")
    parser.add_argument("--out", default=None,
                        help="results file (default results/frontend.md, or frontend_cuda.md "
                             "on a GPU)")
    args = parser.parse_args(argv)
    thread_counts = [int(t) for t in str(args.threads).split(",")]
    wait = os.environ.get("OMP_WAIT_POLICY")
    command = ("" if wait is None else f"OMP_WAIT_POLICY={wait} ")
    command += "python benchmarks/bench_frontend.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    lines: list[str] = []

    def report(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    device_name = (torch.cuda.get_device_name() if args.device.startswith("cuda")
                   else f"CPU, {os.cpu_count()} cores")
    report(f"Command: `{command.strip()}`")
    report()
    report(f"Machine: {platform.machine()}, {device_name}, Python {platform.python_version()}, "
           f"torch {torch.__version__}, librosa {librosa.__version__} "
           f"(OpenBLAS threads: {os.environ['OPENBLAS_NUM_THREADS']} per process), "
           f"OMP_WAIT_POLICY {wait or 'unset (libgomp default: idle threads spin)'}.")
    report()
    load_before = load_average()
    report("| case | ours | ours threads | librosa | batch | ours clips/s | librosa clips/s "
           "| ratio | max abs diff |")
    report("|---|---|---|---|---|---|---|---|---|")
    for threads in thread_counts:
        for name in args.cases.split(","):
            run_case(name, threads, args, report)
    report()
    report(f"Load average (1 min) before and after: {load_before:.2f}, {load_average():.2f}.")
    report()
    report("Ours: `LogMel(config, input_rate)` on the whole int16 batch with N torch threads. "
           "Baseline: per clip, in N processes (each a share of the clips), int16 scaling, "
           "`librosa.resample` (soxr HQ) when the input is at 32 kHz, "
           "`librosa.feature.melspectrogram` with the same FFT, window, hop, power and mel "
           "settings, the same log. Clips/s are batch (or baseline clips) over the median of "
           f"{args.repeat} interleaved timings after a warm-up. Max abs diff: our first two "
           "clips against librosa's, in log units (dB for PANNs); for VGGish it comes from "
           "the mel triangles (drawn in mel space by VGGish, in Hz by librosa) and, at 32 kHz, "
           "from the two resamplers near the 7.5-kHz top band edge.")
    report()
    report("Threads: one torch thread against librosa in one process is the per-core "
           "comparison and holds under load; two threads against two processes uses both "
           "cores on each side. Where other jobs share the cores, run the front end with one "
           "torch thread per process (DataLoader workers already do) or start the process with "
           "`OMP_WAIT_POLICY=PASSIVE`: with libgomp's default, idle threads spin and a "
           "two-thread run on busy cores can fall far below one thread.")
    if not args.no_write:
        path = Path(args.out) if args.out else (
            RESULTS.with_name("frontend_cuda.md") if args.device.startswith("cuda") else RESULTS)
        path.write_text("# Log-mel front end\n\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
