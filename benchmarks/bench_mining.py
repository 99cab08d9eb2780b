"""Mining search throughput: the exact batched torch search of ``FrameIndex`` against the
simplest NumPy search (the strongest fair baseline), faiss's exact flat index, and a naive loop.

The corpus is random unit vectors (seeded) persisted as a real
:class:`~audioset_data.baselines.embedding_index.FrameIndex` (10 frames per clip, read
memory-mapped as in use), searched with 30 query frames, at two widths: 128-d (the untrained
fallback's size, rounded up) and 1000-d (the fc model's embedding). Throughput is query frames
× corpus frames compared per second. Measured (warmed up, interleaved, medians):

* **ours, k-NN**: ``FrameIndex.search(queries, k=10)`` (centred cosine, blocks of 65,536
  frames read in place from the memory map, one matrix product per block, top-k merged).
* **ours, per clip**: ``FrameIndex.clip_distances(queries)``, what ``mine`` runs: the distance
  to the nearest frame of every clip.
* **NumPy matmul + argpartition**: the corpus centred on the index mean and normalised before
  the timing (held in memory, not timed), then ``queries @ corpus.T`` and ``argpartition`` +
  ``argsort`` of the top 10 per query.
* **faiss flat**: ``faiss.IndexFlatIP`` over the same centred, normalised vectors (its build is
  not timed), ``search(queries, 10)``; skipped when faiss-cpu is not installed.
* **naive loop**: per query, per corpus frame, one NumPy dot product of two rows in Python,
  then ``argpartition`` for the top 10; timed on a slice of the corpus and a few queries and
  scaled to the whole (it is linear in both), as the table says.

Every contender runs with the same number of threads (``--threads``, default 1): torch's
intra-op threads, NumPy's BLAS (``threadpoolctl``) and faiss's OpenMP threads.

Usage::

    python benchmarks/bench_mining.py [--frames 400000] [--wide-frames 80000] [--repeat 5]
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
from _common import load_average, thread_settings
from threadpoolctl import threadpool_limits

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


def numpy_search(queries: np.ndarray, corpus: np.ndarray, k: int) -> np.ndarray:
    """The top ``k`` rows of ``corpus`` by inner product with each query, nearest first."""
    sims = queries @ corpus.T
    top = np.argpartition(sims, -k, axis=1)[:, -k:]
    order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of the top-k frames two searches have in common, over the queries."""
    return float(np.mean([len(set(x) & set(y)) / K for x, y in zip(a, b, strict=True)]))


def run_width(dim: int, n: int, repeat: int, naive_frames: int, naive_queries: int,
              threads: int, rng: np.random.Generator) -> tuple[list, list[str]]:
    corpus = unit_rows(rng, n, dim)
    queries = unit_rows(rng, QUERIES, dim)
    index = build_index(WORK / f"d{dim}", corpus)
    n = index.n_frames
    mu = index.mean()
    centred = corpus[:n] - mu
    centred /= np.linalg.norm(centred, axis=1, keepdims=True)
    qc = queries - mu
    qc /= np.linalg.norm(qc, axis=1, keepdims=True)
    notes = []
    contenders: dict[str, Callable[[], object]] = {
        "ours, k-NN (FrameIndex.search)": lambda: index.search(queries, K),
        "ours, per clip (FrameIndex.clip_distances)": lambda: index.clip_distances(queries),
        "NumPy matmul + argpartition, k-NN": lambda: numpy_search(qc, centred, K),
    }
    _, ours = index.search(queries, K)
    same = agreement(ours, numpy_search(qc, centred, K))
    notes.append(f"d={dim}: NumPy and ours agree on {same:.1%} of the top-{K} frames")
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
        flat = faiss.IndexFlatIP(dim)
        flat.add(centred)
        contenders["faiss IndexFlatIP, k-NN"] = lambda: flat.search(qc, K)
        same = agreement(ours, flat.search(qc, K)[1])
        notes.append(f"d={dim}: faiss and ours agree on {same:.1%} of the top-{K} frames")
    except ImportError:
        notes.append("faiss-cpu not installed: faiss not measured")
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
        rows.append((f"{dim}", n, name, sec, QUERIES * n / sec))
    for note in notes:
        print("  " + note)
    return rows, notes


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=400_000, help="corpus frames at 128-d")
    p.add_argument("--wide-frames", type=int, default=80_000, help="corpus frames at 1000-d")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--naive-frames", type=int, default=20_000)
    p.add_argument("--naive-queries", type=int, default=2)
    p.add_argument("--out", default=str(HERE / "results" / "mining.md"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    load_before = load_average()
    rng = np.random.default_rng(0)
    try:
        import faiss

        faiss_version = f"faiss-cpu {faiss.__version__}"
    except ImportError:
        faiss_version = "faiss-cpu not installed"
    machine = (f"{platform.machine()}, {os.cpu_count()} cores (shared), no GPU, Python "
               f"{sys.version.split()[0]}, torch {torch.__version__}, numpy {np.__version__}, "
               f"{faiss_version}")
    print(machine)
    rows, notes = [], []
    with threadpool_limits(args.threads):
        for dim, n in ((128, args.frames), (1000, args.wide_frames)):
            r, nt = run_width(dim, n, args.repeat, min(args.naive_frames, n),
                              args.naive_queries, args.threads, rng)
            rows += r
            notes += nt
        threads = thread_settings()
    shutil.rmtree(WORK, ignore_errors=True)
    cmd = (f"python benchmarks/bench_mining.py --frames {args.frames} --wide-frames "
           f"{args.wide_frames} --repeat {args.repeat} --threads {args.threads}")
    lines = [
        "# Mining search throughput (query by example)",
        "",
        f"Command: `{cmd}` on {machine}; medians of {args.repeat} interleaved runs after a "
        f"warm-up. Threads: {args.threads} for every contender (torch intra-op, NumPy BLAS "
        f"through threadpoolctl, faiss OpenMP; {threads}). Load average (1 min) "
        f"{load_before:.2f} before, {load_average():.2f} after.",
        "",
        f"Corpus: random unit vectors (seed 0) stored as a real `FrameIndex` (10 frames per "
        f"clip, read memory-mapped), {args.frames:,} frames at 128-d and {args.wide_frames:,} "
        f"at 1000-d (the fc embedding's width); {QUERIES} query frames, top {K}. Throughput is "
        "query frames × corpus frames compared per second.",
        "",
        "| dim | frames | contender | seconds (median) | query×frame / s |",
        "|---|---|---|---|---|",
    ]
    for dim, n, name, sec, rate in rows:
        lines.append(f"| {dim} | {n:,} | {name} | {sec:.3f} | {rate:,.0f} |")
    lines += ["", "| dim | baseline | baseline s / our k-NN s | baseline s / our per-clip s |",
              "|---|---|---|---|"]
    for dim in ("128", "1000"):
        knn = next(s for d, _, nm, s, _ in rows if d == dim and nm.startswith("ours, k-NN"))
        clip = next(s for d, _, nm, s, _ in rows if d == dim and nm.startswith("ours, per"))
        for d, _, name, sec, _ in rows:
            if d == dim and not name.startswith("ours"):
                lines.append(f"| {dim} | {name} | {sec / knn:.2f}x | {sec / clip:.2f}x |")
    lines += [
        "",
        "; ".join(notes) + ".",
        "",
        "What each side does. Ours: the queries are centred on the index mean and normalised; "
        "each block of 65,536 stored frames is read in place from the memory map and one "
        "matrix product with the queries plus the mean as an extra row gives `q·v` and `μ·v` "
        "(with `-q·μ` as the product's starting value), so with `|v|²` stored beside the "
        "vectors at build time the centred cosine `q·(v-μ)/|v-μ|` needs no other pass over "
        "the block; the top 10 of each block is merged with the best so far. The per-clip "
        "variant keeps, for every clip, the best over its frames (`scatter_reduce`), which is "
        "what `mine` ranks by. NumPy and faiss: the corpus centred and normalised before the "
        "timing (their build is not timed; both hold the whole corpus in memory), then one "
        "product and a top-10 selection. Naive loop: per query, per corpus frame, one `np.dot` "
        f"of two rows in Python, then `argpartition`; timed on {args.naive_queries} queries × "
        f"{args.naive_frames:,} frames and scaled linearly to {QUERIES} × the whole corpus.",
        "",
        "Choice: the exact torch search ships, with no faiss dependency: it returns the same "
        "neighbours, adds the per-clip minimum that ranking needs (a k-NN search would need a "
        "large k and a regrouping to give it), and reads the corpus block by block from the "
        "memory-mapped parts, so the index need not fit in memory. Approximate indexes "
        "(faiss IVF, HNSW) would be the next step for corpora of tens of millions of frames.",
    ]
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
