"""Cache to batches: the torch DataLoader and NumpyBatches against a raw h5py read.

For each storage format, one epoch over every clip of a cache written by the project's writer
(10-s noise-like clips at 32 kHz, skewed labels), in cache order, batches of 32:

* **raw h5py** (the baseline): the shard files opened with h5py once, then the audio and target
  rows read in order, 32 rows per slice: the same bytes the loader reads. For flac and opus
  the baseline also decodes every clip with the same in-process decoder (``decode_clip``),
  since no loader can hand out audio without decoding it; the undecoded read is reported too.
  The baseline stops at int16 arrays; the loaders also convert to float32 (and torch tensors).
  A second row adds the float32 scaling to the baseline, for comparison with the float32
  loaders.
* **DataLoader, N workers** (N = 0, 1, 2): ``AudioSetDataset.loader(batch_size=32,
  shuffle=False)``, persistent workers (forked), batches through ``__getitems__``; float32
  (default) and, for pcm16, int16 (``dtype="int16"``: the same bytes as the baseline).
* **NumpyBatches**, prefetch 0 and 2, float32, and int16.

Each contender is warmed up by one epoch, then the contenders alternate for ``--repeat``
rounds; the table gives medians. A last table measures whether NumpyBatches' prefetch thread
helps a consumer that spends a fixed time per batch (a sleep, standing in for an accelerator
step that releases the GIL).

Usage::

    python benchmarks/bench_loader.py [--clips 1024] [--compressed-clips 192] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work"
SR = 32000
BATCH = 32


def _mids() -> list[str]:
    import csv

    path = HERE.parent.parent / "shared" / "data" / "segments" / "class_labels_indices.csv"
    with open(path, newline="") as fh:
        return [row["mid"] for row in csv.DictReader(fh)]


def build(fmt: str, n: int) -> Path:
    """A cache of ``n`` noise-like 10-s clips written by the project's writer."""
    from audioset_data.cache.codec import encode_clip
    from audioset_data.cache.manifest import clip_key
    from audioset_data.cache.store import CacheWriter, open_manifest

    folder = WORK / f"loader-{fmt}-{n}" / "c"
    if (folder / "READY").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for p in folder.iterdir():
        p.unlink()
    mids = _mids()
    rng = np.random.default_rng(7)
    weights = 1.0 / np.arange(1, len(mids) + 1) ** 1.1
    weights /= weights.sum()
    manifest = open_manifest(folder, fmt=fmt, sample_rate=SR, clip_samples=10 * SR,
                             label_mids=mids)
    rows = [(clip_key(f"ldr{i:08d}", 0.0), f"ldr{i:08d}", 0.0, 10.0, "") for i in range(n)]
    manifest.add_segments(rows)
    writer = CacheWriter(folder, manifest, fmt=fmt, sample_rate=SR, clip_samples=10 * SR,
                         label_mids=mids, batch_size=64, shard_size=256)
    t0 = time.perf_counter()
    for key, ytid, *_ in rows:
        pcm = np.clip(rng.normal(0, 3000, 10 * SR), -32768, 32767).astype(np.int16)
        audio: np.ndarray | bytes = pcm if fmt == "pcm16" else encode_clip(pcm, SR, fmt)
        target = np.zeros(len(mids), dtype=bool)
        target[rng.choice(len(mids), size=1 + rng.poisson(1.7), p=weights)] = True
        writer.add(key, ytid, 0.0, 10.0, audio, len(pcm), target)
    writer.close()
    manifest.close()
    (folder / "READY").write_text("ok")
    print(f"built {n} {fmt} clips in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return folder


def raw_reader(folder: Path, fmt: str, decode: bool, to_float: bool = False
               ) -> Callable[[], int]:
    """One epoch of raw h5py reads in row order (files opened once, as a loader keeps them);
    ``decode`` decodes compressed clips, ``to_float`` also scales each batch to float32."""
    from audioset_data.cache.codec import decode_clip

    files = [h5py.File(p, "r") for p in sorted(folder.glob("shard-*.h5"))]

    def epoch() -> int:
        n = 0
        for h5 in files:
            rows = h5["target"].shape[0]
            for lo in range(0, rows, BATCH):
                hi = min(rows, lo + BATCH)
                h5["target"][lo:hi]
                if fmt == "pcm16":
                    out = h5["waveform"][lo:hi]
                else:
                    enc = h5["audio"][lo:hi]
                    if decode:
                        out = np.zeros((hi - lo, 10 * SR), dtype=np.int16)
                        for j, data in enumerate(enc):
                            pcm = decode_clip(bytes(data), fmt, sample_rate=SR,
                                              num_samples=10 * SR)
                            out[j, : len(pcm)] = pcm
                if to_float:
                    np.multiply(out, np.float32(1 / 32768), dtype=np.float32)
                n += hi - lo
        return n

    return epoch


def iterate(batches) -> Callable[[], int]:
    def epoch() -> int:
        return sum(len(b["key"]) for b in batches)

    return epoch


def _base(fmt: str) -> str:
    return "raw h5py" + (" + decode" if fmt != "pcm16" else "")


def contenders(folder: Path, fmt: str) -> dict[str, Callable[[], int]]:
    from audioset_data.loaders.batches import NumpyBatches
    from audioset_data.loaders.dataset import AudioSetDataset

    # the loaders come first: their workers fork (in the warm-up) before the baseline opens
    # its h5py files in this process
    out: dict[str, Callable[[], int]] = {}
    kinds = [(2, "float32"), (1, "float32"), (0, "float32")]
    if fmt == "pcm16":
        kinds += [(2, "int16"), (0, "int16")]
    for w, dtype in kinds:
        ds = AudioSetDataset(folder, dtype=dtype)
        out[f"DataLoader, {w} workers, {dtype}"] = iterate(
            ds.loader(batch_size=BATCH, shuffle=False, num_workers=w))
    out[_base(fmt)] = raw_reader(folder, fmt, True)
    out[_base(fmt) + ", then float32"] = raw_reader(folder, fmt, True, to_float=True)
    if fmt != "pcm16":
        out["raw h5py, bytes only (no decode)"] = raw_reader(folder, fmt, False)
    for p, dtype in ((0, "float32"), (2, "float32"), (0, "int16")):
        nb = NumpyBatches(folder, batch_size=BATCH, sampler=range(len(ds)), prefetch=p,
                          dtype=dtype)  # type: ignore[arg-type]
        out[f"NumpyBatches, prefetch {p}, {dtype}"] = iterate(nb)
    return out


def measure(runs: dict[str, Callable[[], int]], repeat: int) -> dict[str, float]:
    """Clips/s per contender: one warm-up epoch each, then interleaved rounds, medians."""
    for fn in runs.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeat):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            n = fn()
            times[name].append(n / (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in times.items()}


def consumer(folder: Path, step: float, repeat: int) -> dict[str, float]:
    """Seconds per epoch for a consumer that spends ``step`` seconds per batch."""
    from audioset_data.loaders.batches import NumpyBatches

    n = len(NumpyBatches(folder).positions)
    runs = {}
    for p in (0, 2):
        nb = NumpyBatches(folder, batch_size=BATCH, sampler=range(n), prefetch=p)

        def epoch(nb=nb) -> int:
            k = 0
            for b in nb:
                time.sleep(step)
                k += len(b["key"])
            return k

        runs[f"prefetch {p}"] = epoch
    rates = measure(runs, repeat)
    return {k: n / v for k, v in rates.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=1024, help="pcm16 clips")
    ap.add_argument("--compressed-clips", type=int, default=192, help="flac and opus clips")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--step-ms", type=float, default=40.0)
    ap.add_argument("--out", default=str(HERE / "results" / "loader.md"))
    args = ap.parse_args()

    results = {}
    for fmt in ("pcm16", "flac", "opus"):
        n = args.clips if fmt == "pcm16" else args.compressed_clips
        folder = build(fmt, n)
        results[fmt] = (n, measure(contenders(folder, fmt), args.repeat))
        print(fmt, results[fmt], file=sys.stderr)
    pcm_folder = build("pcm16", args.clips)
    step = consumer(pcm_folder, args.step_ms / 1000, args.repeat)

    lines = [
        "# Cache to batches: DataLoader and NumpyBatches against raw h5py",
        "",
        f"Command: `python benchmarks/bench_loader.py --clips {args.clips} --compressed-clips "
        f"{args.compressed_clips} --repeat {args.repeat}` on {platform.machine()}, "
        f"{os.cpu_count()} CPU cores (shared with other jobs), no GPU, Python "
        f"{platform.python_version()}. One epoch in cache order, batches of {BATCH}, "
        "10-s noise-like clips at 32 kHz, page cache warm; each contender warmed up by one "
        f"epoch, then {args.repeat} interleaved rounds, medians.",
        "",
    ]
    for fmt, (n, rates) in results.items():
        base_name = _base(fmt)
        base = rates[base_name]
        lines += [f"## {fmt} ({n} clips)", "",
                  f"| contender | clips/s | vs {base_name} |", "|---|---|---|"]
        order = [base_name, *(k for k in rates if k.startswith("raw") and k != base_name),
                 *sorted(k for k in rates if k.startswith("DataLoader")),
                 *(k for k in rates if k.startswith("Numpy"))]
        for name in order:
            r = rates[name]
            lines.append(f"| {name} | {r:.0f} | {r / base:.2f} |")
        lines.append("")
    lines += [
        f"## NumpyBatches with a consumer that takes {args.step_ms:.0f} ms per batch "
        f"(pcm16, {args.clips} clips)",
        "",
        "| prefetch | seconds per epoch | consumer time alone |",
        "|---|---|---|",
    ]
    alone = -(-args.clips // BATCH) * args.step_ms / 1000
    for name, s in step.items():
        lines.append(f"| {name} | {s:.2f} | {alone:.2f} |")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
