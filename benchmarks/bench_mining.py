"""Mining search throughput: the exact batched torch search of ``FrameIndex`` against a naive
loop, and against faiss's exact flat index when faiss-cpu is installed.

The corpus is random unit vectors (seeded) persisted as a real
:class:`~audioset_data.baselines.embedding_index.FrameIndex` (10 frames per clip, read
memory-mapped as in use), searched with 30 query frames, at two widths: 128-d (the untrained
fallback's size, rounded up) and 1000-d (the fc model's embedding). Throughput is query frames
× corpus frames compared per second. Measured (warmed up, interleaved, medians):

* **ours, k-NN**: ``FrameIndex.search(queries, k=10)`` (centred cosine, blocks of 65,536
  frames, top-k merged across blocks).
* **ours, per clip**: ``FrameIndex.clip_distances(queries)``, what ``mine`` runs: the distance
  to the nearest frame of every clip.
* **faiss flat**: ``faiss.IndexFlatIP`` over the same vectors, centred and normalised before the
  timing (its build is not timed), ``search(queries, 10)``.
* **naive loop**: per query, per corpus frame, one NumPy dot product of two rows in Python,
  then ``argpartition`` for the top 10; timed on a slice of the corpus and a few queries and
  scaled to the whole (it is linear in both), as the table says.

Every contender uses the same number of threads (``--threads``, default 1: the machine's two
cores are shared with other jobs, and spinning threads lose more than they gain there).

Usage::

    python benchmarks/bench_mining.py [--frames 400000] [--wide-frames 80000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from audioset_data.baselines.embedding_index import FrameIndex

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work" / "mining"
QUERIES = 30
K = 10
FRAMES_PER_CLIP = 10


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def build_index(folder: Path, vectors: np.ndarray) -> FrameIndex:
    shutil.rmtree(folder, ignore_errors=True)
    index = FrameIndex(folder)
    n_clips = len(vectors) // FRAMES_PER_CLIP
    keys = [f"c{i:010d}_0" for i in range(n_clips)]
    index.add(keys, np.full(n_clips, FRAMES_PER_CLIP), vectors[: n_clips * FRAMES_PER_CLIP])
    return FrameIndex(folder)


def naive_search(queries: np.ndarray, corpus: np.ndarray, k: int) -> np.ndarray:
    out = np.empty((len(queries), k), dtype=np.int64)
    for qi, q in enumerate(queries):
        dist = np.empty(len(corpus), dtype=np.float32)
        for j in range(len(corpus)):
            dist[j] = 1.0 - float(np.dot(q, corpus[j]))
        out[qi] = np.argpartition(dist, k)[:k]
    return out


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run_width(dim: int, n: int, repeat: int, naive_frames: int, naive_queries: int,
              rng: np.random.Generator) -> list[tuple[str, str, float, float]]:
    corpus = unit_rows(rng, n, dim)
    queries = unit_rows(rng, QUERIES, dim)
    index = build_index(WORK / f"d{dim}", corpus)
    n = index.n_frames
    contenders: dict[str, Callable[[], object]] = {
        "ours, k-NN (FrameIndex.search)": lambda: index.search(queries, K),
        "ours, per clip (FrameIndex.clip_distances)": lambda: index.clip_distances(queries),
    }
    try:
        import faiss

        faiss.omp_set_num_threads(torch.get_num_threads())
        mu = index.mean()
        centred = corpus[:n] - mu
        centred /= np.linalg.norm(centred, axis=1, keepdims=True)
        flat = faiss.IndexFlatIP(dim)
        flat.add(centred)
        qc = queries - mu
        qc /= np.linalg.norm(qc, axis=1, keepdims=True)
        contenders["faiss IndexFlatIP, k-NN"] = lambda: flat.search(qc, K)
        _, ours = index.search(queries, K)
        _, theirs = flat.search(qc, K)
        agree = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(ours, theirs,
                                                                        strict=True)]))
        print(f"  d={dim}: faiss and ours agree on {agree:.1%} of the top-{K} frames")
    except ImportError:
        print("  faiss-cpu not installed: faiss not measured")
    part_q, part_n = queries[:naive_queries], corpus[:naive_frames]
    contenders["naive loop (scaled)"] = lambda: naive_search(part_q, part_n, K)
    scale = {"naive loop (scaled)": (QUERIES / naive_queries) * (n / naive_frames)}
    for fn in contenders.values():  # warm up
        fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeat):
        for name, fn in contenders.items():
            times[name].append(timed(fn) * scale.get(name, 1.0))
    rows = []
    for name, ts in times.items():
        sec = statistics.median(ts)
        rows.append((f"{dim}", name, sec, QUERIES * n / sec))
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=400_000, help="corpus frames at 128-d")
    p.add_argument("--wide-frames", type=int, default=80_000, help="corpus frames at 1000-d")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--naive-frames", type=int, default=20_000)
    p.add_argument("--naive-queries", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"torch {torch.__version__}, numpy {np.__version__}, threads {args.threads}; "
          f"{QUERIES} queries, top {K}")
    rows = []
    for dim, n in ((128, args.frames), (1000, args.wide_frames)):
        rows += run_width(dim, n, args.repeat, min(args.naive_frames, n), args.naive_queries,
                          rng)
    shutil.rmtree(WORK, ignore_errors=True)
    print("\n| dim | contender | seconds (median) | query×frame / s |")
    print("|---|---|---|---|")
    for dim, name, sec, rate in rows:
        print(f"| {dim} | {name} | {sec:.3f} | {rate:,.0f} |")
    print("\n| dim | ours vs | ratio (their s / our k-NN s) |")
    print("|---|---|---|")
    for dim in ("128", "1000"):
        ours = next(s for d, nm, s, _ in rows if d == dim and nm.startswith("ours, k-NN"))
        for d, name, sec, _ in rows:
            if d == dim and not name.startswith("ours"):
                print(f"| {dim} | {name} | {sec / ours:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
