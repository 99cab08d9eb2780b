"""Compact store formats: clips/s to read a 10-s 32 kHz clip, ffmpeg subprocess vs in process.

For FLAC and Ogg Opus written the way caches are written today (``encode_audio``: ffmpeg
streaming to a pipe), each method reads one clip's bytes from an HDF5 vlen ``audio`` row laid
out as the store lays it out and decodes it to mono int16 at 32 kHz:

* ``ffmpeg subprocess``: :func:`audioset_data.audio.memory.decode_audio` (one process per
  clip);
* ``PyAV``: :func:`audioset_data.cache.codec.decode_clip`;
* ``soundfile``: libsndfile. Its public ``read`` cannot take the FLAC that ffmpeg streams (no
  sample count in the header: ``sf.read`` fails with "array is too big" and block reads fail
  on the final seek), so FLAC is read in blocks through soundfile's private ``_snd`` binding;
  Opus decodes at 48 kHz and is resampled with ``scipy.signal.resample_poly``.

The baseline is reading a ``pcm16`` row (``waveform``, chunked one clip per chunk). Encoding is
timed too (``encode_audio`` vs :func:`audioset_data.cache.codec.encode_clip`, and soundfile for
FLAC). Every method is warmed up, then the methods run in turn, in a rotating order, for
``--repeat`` rounds; the figure is the median over rounds. Fidelity is checked against the
subprocess: bit-exact or SNR, and the sample offset of single-sample clicks.

Run: ``python benchmarks/bench_codec.py [--repeat 5] [--out benchmarks/results/codec.md]``
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import h5py
import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from audioset_data.audio.ffmpeg import find_ffmpeg
from audioset_data.audio.memory import decode_audio, encode_audio
from audioset_data.cache.codec import decode_clip, encode_clip

SR = 32000
N = 10 * SR
CLICKS = (1234, 40_001, 99_999, 171_717, 250_003, 313_337)


def synth(seed: int) -> np.ndarray:
    """10 s of something like a recording: pink-ish noise, a few harmonic notes, transients."""
    rng = np.random.default_rng(seed)
    t = np.arange(N) / SR
    spec = np.fft.rfft(rng.normal(size=N))
    spec[1:] /= np.sqrt(np.arange(1, len(spec)))
    x = np.fft.irfft(spec, N)
    x *= 0.05 / x.std()
    for _ in range(6):
        f0, t0, d = rng.uniform(110, 880), rng.uniform(0, 9), rng.uniform(0.3, 1.5)
        env = np.exp(-np.clip(t - t0, 0, None) * 3 / d) * (t >= t0)
        x += sum(0.1 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 6)) * env
    return np.clip(x * 32767, -32768, 32767).astype(np.int16)


def click_signal() -> np.ndarray:
    x = np.zeros(N, dtype=np.int16)
    x[list(CLICKS)] = 20000
    return x


# --- soundfile readers -----------------------------------------------------------------------

def sf_flac(data: bytes) -> np.ndarray:
    from soundfile import _ffi, _snd  # private: the public read fails on streamed FLAC

    out = np.zeros(N, dtype=np.int16)
    with sf.SoundFile(io.BytesIO(data)) as f:
        have = 0
        while have < N:
            ptr = _ffi.cast("short *", out[have:].ctypes.data)
            got = _snd.sf_readf_short(f._file, ptr, N - have)  # noqa: SLF001
            if got <= 0:
                break
            have += got
    return out


def sf_opus(data: bytes) -> np.ndarray:
    with sf.SoundFile(io.BytesIO(data)) as f:
        pcm48 = f.read(dtype="float32")
    y = resample_poly(pcm48, 2, 3) * 32768
    out = np.zeros(N, dtype=np.int16)
    y = np.clip(np.rint(y[:N]), -32768, 32767)
    out[: len(y)] = y
    return out


def sf_encode_flac(pcm: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, pcm, SR, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


# --- measurement -----------------------------------------------------------------------------

def rounds(methods: dict[str, Callable[[int], object]], n_items: int, repeat: int
           ) -> dict[str, float]:
    """Median clips/s of each method: warm-up, then ``repeat`` rounds in rotating order."""
    names = list(methods)
    for name in names:
        methods[name](0)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeat):
        for name in names[r % len(names):] + names[: r % len(names)]:
            t0 = time.perf_counter()
            for i in range(n_items):
                methods[name](i)
            rates[name].append(n_items / (time.perf_counter() - t0))
    return {name: statistics.median(v) for name, v in rates.items()}


def snr_db(y: np.ndarray, ref: np.ndarray) -> float:
    err = float(np.sum((y.astype(np.float64) - ref) ** 2))
    return float("inf") if err == 0 else 10 * np.log10(float(np.sum(ref.astype(np.float64) ** 2))
                                                         / err)


def click_offsets(y: np.ndarray, ref: np.ndarray) -> list[int]:
    """Sample offset of each click's peak in ``y`` relative to its peak in ``ref``."""
    out = []
    for c in CLICKS:
        lo, hi = max(0, c - 200), min(N, c + 200)
        out.append(int(np.argmax(np.abs(y[lo:hi].astype(np.int32))))
                   - int(np.argmax(np.abs(ref[lo:hi].astype(np.int32)))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=4, help="distinct clips per round")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    clips = [synth(seed) for seed in range(args.clips)]
    enc = {fmt: [encode_audio(c, SR, fmt) for c in clips] for fmt in ("flac", "opus")}
    readers: dict[str, dict[str, Callable[[bytes], np.ndarray]]] = {
        "flac": {
            "ffmpeg subprocess": lambda d: decode_audio(d, sample_rate=SR, num_samples=N)[0],
            "PyAV": lambda d: decode_clip(d, "flac", sample_rate=SR, num_samples=N),
            "soundfile": sf_flac,
        },
        "opus": {
            "ffmpeg subprocess": lambda d: decode_audio(d, sample_rate=SR, num_samples=N)[0],
            "PyAV": lambda d: decode_clip(d, "opus", sample_rate=SR, num_samples=N),
            "soundfile": sf_opus,
        },
    }

    # fidelity against the subprocess, on a test clip and on single-sample clicks
    fidelity: dict[tuple[str, str], str] = {}
    for fmt, methods in readers.items():
        data, clicks = enc[fmt][0], encode_audio(click_signal(), SR, fmt)
        ref, ref_clicks = methods["ffmpeg subprocess"](data), methods["ffmpeg subprocess"](clicks)
        for name, fn in methods.items():
            y, yc = fn(data), fn(clicks)
            same = np.array_equal(y, ref) and np.array_equal(yc, ref_clicks)
            offsets = click_offsets(yc, ref_clicks)
            fidelity[fmt, name] = (
                ("bit-exact" if same else f"SNR {snr_db(y, ref):.1f} dB")
                + f", click offset {min(offsets)}..{max(offsets)}"
            )

    rows: list[tuple[str, str, str, float, float | None, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for fmt in ("pcm16", "flac", "opus"):
            path = Path(tmp) / f"{fmt}.h5"
            with h5py.File(path, "w") as h5:
                if fmt == "pcm16":
                    h5.create_dataset("waveform", data=np.stack(clips), chunks=(1, N))
                else:
                    ds = h5.create_dataset("audio", shape=(len(clips),),
                                           dtype=h5py.vlen_dtype(np.uint8))
                    for i, d in enumerate(enc[fmt]):
                        ds[i] = np.frombuffer(d, dtype=np.uint8)
            files[fmt] = h5py.File(path, "r")
        try:
            k = len(clips)
            methods: dict[str, Callable[[int], object]] = {
                "pcm16 row": lambda i: files["pcm16"]["waveform"][i % k],
            }
            for fmt, fmts in readers.items():
                for name, fn in fmts.items():
                    methods[f"{fmt}|{name}"] = (
                        lambda i, fn=fn, fmt=fmt: fn(files[fmt]["audio"][i % k].tobytes())
                    )
            rates = rounds(methods, k, args.repeat)
        finally:
            for h5 in files.values():
                h5.close()
    pcm_rate = rates.pop("pcm16 row")
    rows.append(("read", "pcm16", "h5py row", pcm_rate, None, "baseline"))
    for key, rate in rates.items():
        fmt, name = key.split("|")
        base = rates[f"{fmt}|ffmpeg subprocess"]
        rows.append(("read", fmt, name, rate, rate / base, fidelity[fmt, name]))

    writers: dict[str, Callable[[int], object]] = {
        "flac|ffmpeg subprocess": lambda i: encode_audio(clips[i], SR, "flac"),
        "flac|PyAV": lambda i: encode_clip(clips[i], SR, "flac"),
        "flac|soundfile": lambda i: sf_encode_flac(clips[i]),
        "opus|ffmpeg subprocess": lambda i: encode_audio(clips[i], SR, "opus"),
        "opus|PyAV": lambda i: encode_clip(clips[i], SR, "opus"),
    }
    enc_rates = rounds(writers, len(clips), args.repeat)
    for key, rate in enc_rates.items():
        fmt, name = key.split("|")
        base = enc_rates[f"{fmt}|ffmpeg subprocess"]
        size = statistics.mean(len(writers[key](i)) for i in range(len(clips)))  # type: ignore[arg-type]
        rows.append(("write", fmt, name, rate, rate / base, f"{size / 1000:.0f} kB a clip"))

    ffmpeg_version = subprocess.run([find_ffmpeg(), "-version"], capture_output=True, text=True,
                                    check=False).stdout.split("\n")[0]
    lavc = ".".join(map(str, av.library_versions["libavcodec"]))
    env = (f"Python {platform.python_version()}, {os.cpu_count()} CPUs; PyAV {av.__version__} "
           f"(libavcodec {lavc}); soundfile {sf.__version__} (libsndfile "
           f"{sf.__libsndfile_version__}); subprocess: {ffmpeg_version}")
    header = "| step | format | method | clips/s | ms a clip | × subprocess | check |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    for step, fmt, name, rate, ratio, note in rows:
        r = "" if ratio is None else f"{ratio:.1f}"
        lines.append(f"| {step} | {fmt} | {name} | {rate:.0f} | {1000 / rate:.1f} | {r} | {note} |")
    table = "\n".join(lines)
    print(env)
    print(table)
    if args.out:
        command = "python benchmarks/bench_codec.py " + " ".join(sys.argv[1:])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            "# Compact formats: decode and encode a 10-s 32 kHz clip, ffmpeg subprocess vs in "
            f"process\n\nCommand: `{command.strip()}`\n\n{env}.\n\n"
            f"{args.clips} distinct synthetic clips (pink noise, harmonic notes, decays) written "
            "the way caches are written today (`encode_audio`, ffmpeg to a pipe); each read "
            "takes one clip's bytes from an HDF5 vlen row and decodes it to mono int16 at "
            f"32 kHz. Median of {args.repeat} interleaved rounds after a warm-up. "
            "× subprocess: speed relative to the ffmpeg subprocess for the same format and "
            "step. check: agreement with the subprocess's samples, and the offset of six "
            "single-sample clicks (peak position relative to the subprocess).\n\n"
            f"{table}\n"
        )
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
