"""Interop: stratified splits, PANNs import and the datasets export, each against a named
baseline in the same run (warmed up, the contenders alternated, medians).

* **split** the real balanced list (22,160 clips, 527 classes) 90/10: ``stratified_split``
  against the paper's rule (Sechidis et al. 2011: each clip to the part that wants the most of
  the class being dealt), written here plainly, and a plain random split. Time, and how far
  each class's clips in the 10 % part lie from 10 % of its clips.
* **PANNs import**: clips/s of ``import_panns`` (10-s 32 kHz int16 rows into a pcm16 cache)
  against the floor of any import: reading the same rows with h5py and writing them into one
  new HDF5 dataset.
* **datasets export**: clips/s of ``to_hf_dataset`` (WAV audio) against the way without this
  package: the same WAV bytes gathered in memory, ``datasets.Dataset.from_dict`` with the
  ``Audio`` storage type, then ``save_to_disk``.

Usage::

    python benchmarks/bench_interop.py [--clips 256] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work" / "interop"
SHARED = HERE.parent.parent / "shared" / "data" / "segments"
SR = 32000
CLIP = 10 * SR


def _paper_split(y, fraction: float, seed: int) -> np.ndarray:
    """The paper's iterative stratification for two parts; returns the second part."""
    rng = np.random.default_rng(seed)
    frac = np.array([1 - fraction, fraction])
    n, n_labels = y.shape
    counts = np.asarray(y.sum(axis=0)).ravel().astype(float)
    demand = frac[:, None] * counts[None, :]
    overall = frac * n
    remaining = counts.copy()
    part = np.full(n, -1)
    csc = y.tocsc()
    while (remaining > 0).any():
        live = np.where(remaining > 0, remaining, np.inf)
        label = int(np.lexsort((rng.random(n_labels), live))[0])
        rows = csc.indices[csc.indptr[label]:csc.indptr[label + 1]]
        rows = rows[part[rows] < 0]
        for r in rows[rng.permutation(len(rows))]:
            labels = y.indices[y.indptr[r]:y.indptr[r + 1]]
            j = int(np.lexsort((rng.random(2), overall, demand[:, label]))[-1])
            part[r] = j
            demand[j, labels] -= 1
            remaining[labels] -= 1
            overall[j] -= 1
    rest = np.flatnonzero(part < 0)
    part[rest] = (rng.random(len(rest)) < fraction).astype(int)
    return np.flatnonzero(part == 1)


def bench_split(repeat: int) -> dict:
    from audioset_data.segments.labels import LabelIndex
    from audioset_data.segments.stratify import stratified_split
    from audioset_data.segments.table import Segments

    index = LabelIndex.from_file(SHARED / "class_labels_indices.csv")
    y = Segments.from_file(SHARED / "balanced_train_segments.csv",
                           label_index=index).label_matrix
    y = y.tocsr()
    counts = np.asarray(y.sum(axis=0)).ravel()
    n = y.shape[0]

    contenders = {
        "ours": lambda s: stratified_split(y, (0.9, 0.1), seed=s)[1],
        "paper's rule": lambda s: _paper_split(y, 0.1, s),
        "random": lambda s: np.sort(np.random.default_rng(s).permutation(n)[: n // 10]),
    }
    times: dict[str, list[float]] = {k: [] for k in contenders}
    quality: dict[str, list[tuple[float, float, float, int]]] = {k: [] for k in contenders}
    for f in contenders.values():
        f(99)  # warm up
    for seed in range(repeat):
        for name, f in contenders.items():
            t = time.perf_counter()
            val = f(seed)
            times[name].append(time.perf_counter() - t)
            dev = np.abs(np.asarray(y[val].sum(axis=0)).ravel() - 0.1 * counts)
            quality[name].append((float(dev[counts < 100].max()), float(dev.max()),
                                  float(dev.mean()), len(val)))
    out = {}
    for name in contenders:
        q = np.array(quality[name])
        out[name] = {"seconds": statistics.median(times[name]),
                     "rare_max": float(np.median(q[:, 0])), "all_max": float(np.median(q[:, 1])),
                     "mean": float(np.median(q[:, 2])), "val_clips": int(np.median(q[:, 3]))}
    out["_rare_classes"] = int((counts < 100).sum())
    return out


def _panns_file(n: int) -> Path:
    path = WORK / f"panns-{n}.h5"
    if path.exists():
        return path
    WORK.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    tmp = path.with_suffix(".tmp")
    with h5py.File(tmp, "w") as h5:
        h5.create_dataset("audio_name", data=[f"Ybench{i:06d}_{i:d}.000.wav".encode()
                                              for i in range(n)], dtype="S30")
        wave = h5.create_dataset("waveform", shape=(n, CLIP), dtype=np.int16)
        target = np.zeros((n, 527), dtype=bool)
        for i in range(n):
            wave[i] = (rng.standard_normal(CLIP) * 3000).astype(np.int16)
            target[i, rng.choice(527, 3, replace=False)] = True
        h5.create_dataset("target", data=target)
        h5.attrs.create("sample_rate", data=SR, dtype=np.int32)
    tmp.rename(path)
    return path


def bench_panns(n: int, repeat: int) -> dict:
    from audioset_data.interop.panns import import_panns
    from audioset_data.segments.labels import LabelIndex

    index = LabelIndex.from_file(SHARED / "class_labels_indices.csv")
    src = _panns_file(n)

    def ours(i: int) -> float:
        folder = WORK / f"cache-{i}"
        shutil.rmtree(folder, ignore_errors=True)
        t = time.perf_counter()
        report = import_panns(src, folder=folder, label_index=index)
        took = time.perf_counter() - t
        if report.imported != n:
            raise RuntimeError(f"imported {report.imported} of {n}")
        shutil.rmtree(folder)
        return took

    def floor(i: int) -> float:
        dst = WORK / f"copy-{i}.h5"
        t = time.perf_counter()
        with h5py.File(src, "r") as a, h5py.File(dst, "w") as b:
            out = b.create_dataset("waveform", shape=(n, CLIP), dtype=np.int16,
                                   chunks=(1, CLIP))
            for lo in range(0, n, 64):
                out[lo:lo + 64] = a["waveform"][lo:lo + 64]
            b.create_dataset("target", data=a["target"][()])
            b.flush()
            os.fsync(b.id.get_vfd_handle())
        took = time.perf_counter() - t
        dst.unlink()
        return took

    return _interleave({"import_panns": ours, "h5py copy (floor)": floor}, repeat, n)


def bench_hf(n: int, repeat: int) -> dict:
    import datasets

    from audioset_data.cache.reader import AudioSetCache
    from audioset_data.interop import audio_bytes
    from audioset_data.interop.huggingface import to_hf_dataset

    folder = WORK / f"hf-cache-{n}"
    if not (folder / "READY").exists():
        from audioset_data.interop.panns import import_panns
        from audioset_data.segments.labels import LabelIndex

        shutil.rmtree(folder, ignore_errors=True)
        import_panns(_panns_file(n), folder=folder,
                     label_index=LabelIndex.from_file(SHARED / "class_labels_indices.csv"))
        (folder / "READY").touch()
    cache = AudioSetCache(folder)

    def ours(i: int) -> float:
        out = WORK / f"hf-{i}"
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        ds = to_hf_dataset(cache, out, audio_format="wav")
        took = time.perf_counter() - t
        if len(ds) != n:
            raise RuntimeError("short export")
        del ds
        shutil.rmtree(out)
        return took

    def plain(i: int) -> float:
        out = WORK / f"hf-plain-{i}"
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        rows: dict[str, list] = {"audio": [], "key": [], "labels": []}
        for p in range(len(cache)):
            item = cache[p]
            rows["audio"].append({"bytes": audio_bytes(item["waveform"][: item["length"]],
                                                       SR, "wav"), "path": None})
            rows["key"].append(item["key"])
            rows["labels"].append(np.flatnonzero(item["target"]).tolist())
        features = datasets.Features({
            "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
            "key": datasets.Value("string"),
            "labels": datasets.List(datasets.Value("int64"))})
        ds = datasets.Dataset.from_dict(rows, features=features)
        ds = ds.cast_column("audio", datasets.Audio(sampling_rate=SR))
        ds.save_to_disk(str(out))
        took = time.perf_counter() - t
        del ds
        shutil.rmtree(out)
        return took

    return _interleave({"to_hf_dataset": ours, "from_dict + save_to_disk": plain}, repeat, n)


def _interleave(contenders: dict, repeat: int, n: int) -> dict:
    for f in contenders.values():
        f(-1)  # warm up
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for i in range(repeat):
        for name, f in contenders.items():
            times[name].append(f(i))
    return {name: {"seconds": statistics.median(t), "clips_per_s": n / statistics.median(t)}
            for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "results" / "interop.md"))
    args = parser.parse_args()
    lines: list[str] = []

    def say(*parts: object, **kwargs: object) -> None:
        print(*parts, **kwargs)
        lines.append(" ".join(str(x) for x in parts))

    os.environ.setdefault("HF_DATASETS_CACHE", str(WORK / "hf-home"))
    import datasets

    datasets.disable_progress_bars()
    say(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f}")
    split = bench_split(args.repeat)
    rare = split.pop("_rare_classes")
    say(f"\nsplit of the balanced list, 90/10 (medians of {args.repeat} seeds; deviations "
        f"in clips from 10 % of each class; {rare} classes have under 100 clips)")
    say("\n| split | seconds | val clips | max dev, rare | max dev, all | mean dev |")
    say("|---|---|---|---|---|---|")
    for name, r in split.items():
        say(f"| {name} | {r['seconds']:.3f} | {r['val_clips']} | {r['rare_max']:.1f} | "
            f"{r['all_max']:.1f} | {r['mean']:.2f} |")
    say(f"\ntime ours / paper's rule: "
        f"{split['ours']['seconds'] / split['paper' + chr(39) + 's rule']['seconds']:.2f}")
    for title, result in (("PANNs import", bench_panns(args.clips, args.repeat)),
                          ("datasets export (WAV)", bench_hf(args.clips, args.repeat))):
        say(f"\n{title}, {args.clips} clips of 10 s at 32 kHz (medians of {args.repeat})")
        say("\n| contender | seconds | clips/s |")
        say("|---|---|---|")
        for name, r in result.items():
            say(f"| {name} | {r['seconds']:.2f} | {r['clips_per_s']:.0f} |")
        names = list(result)
        say(f"\nratio {names[0]} / {names[1]} clips/s: "
            f"{result[names[0]]['clips_per_s'] / result[names[1]]['clips_per_s']:.2f}")
    sys.stdout.flush()
    command = f"python benchmarks/bench_interop.py --clips {args.clips} --repeat {args.repeat}"
    title = "# Interop: stratified split, PANNs import, datasets export"
    Path(args.out).write_text(f"{title}\n\nCommand: `{command}`\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
