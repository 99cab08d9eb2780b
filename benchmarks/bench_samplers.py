"""Samplers at AudioSet scale: ours against the simplest NumPy code of the same algorithms
(the strongest fair baselines) and against plain Python loops.

The label matrix is synthetic but shaped like the full unbalanced training set: 2,041,789
clips × 527 classes whose column sums are the real per-class clip counts
(``../shared/data/segments/train_class_counts_panns.csv``). Every clip gets at least one label
(one label slot per clip first, the remaining slots spread over random clips without repeating a
(clip, class) pair), seeded.

Measured, each against named baselines (warmed up, interleaved A, B, A, B, ..., medians; one
thread everywhere: NumPy's BLAS is held to one thread and the code is single-threaded):

* **balanced**: build the sampler and one epoch (2,041,789 draws) against (a) the same rounds
  in about 20 lines of plain NumPy (:func:`numpy_balanced`: per class a queue of independent
  ``rng.permutation`` passes, per round ``rng.permuted`` class orders, one gather) and (b) the
  PANNs loop in plain Python (per-class queues as lists shuffled with ``random``, a shuffled
  class order per round, a pointer per class, reshuffle when a queue runs out).
* **weighted, with replacement**: build (label weights) and one epoch against (a) label weights
  by one sparse product + ``np.cumsum`` + ``np.searchsorted`` of uniform draws (inverse-CDF
  sampling, the usual NumPy way), (b) ``Generator.choice(p=...)`` on the same weights, (c) a
  Python loop over clips for the weights plus ``random.choices``.
* **weighted, without replacement**: against (a) NumPy Efraimidis–Spirakis keys
  (``exponential / w``, ``argsort``) and (b) the Python weight loop plus Python keys and
  ``sorted``.
* **resume**: restoring a state at mid-epoch and producing the rest, against producing the
  whole epoch, for each of our samplers.

Usage::

    python benchmarks/bench_samplers.py [--repeat 5] [--baseline-fraction 1.0] [--clips N]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one thread against one thread

import numpy as np  # noqa: E402
from _common import interleaved as interleaved_times  # noqa: E402
from _common import load_average, medians, thread_settings  # noqa: E402
from scipy import sparse  # noqa: E402

from audioset_data.loaders.samplers import (  # noqa: E402
    BalancedSampler,
    ShuffleSampler,
    WeightedSampler,
    label_weights,
)

HERE = Path(__file__).resolve().parent
COUNTS = HERE.parent.parent / "shared" / "data" / "segments" / "train_class_counts_panns.csv"
N_CLIPS = 2_041_789
WORK = HERE / "_work"


def real_counts() -> np.ndarray:
    with open(COUNTS, newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: int(r["index"]))
    return np.array([int(r["count"]) for r in rows], dtype=np.int64)


def synthetic_targets(counts: np.ndarray, n: int, seed: int = 0) -> sparse.csr_matrix:
    """A boolean n × classes matrix with column sums ``counts``, every row labelled."""
    cached = WORK / f"samplers-targets-{n}-{seed}.npz"
    if cached.exists():
        m = sparse.load_npz(cached).tocsr()
        if np.array_equal(np.asarray(m.sum(axis=0)).ravel(), counts):
            return m
    rng = np.random.default_rng(seed)
    n_cls = counts.size
    slots = rng.permutation(np.repeat(np.arange(n_cls, dtype=np.int64), counts))
    if slots.size < n:
        raise SystemExit(f"{slots.size} label slots cannot label {n} clips")
    rows = np.concatenate([np.arange(n, dtype=np.int64),
                           rng.integers(0, n, size=slots.size - n)])
    key = rows * n_cls + slots
    _, first = np.unique(key, return_index=True)
    pending = np.setdiff1d(np.arange(key.size), first)  # repeated (clip, class) pairs
    taken = np.sort(key[first])
    while pending.size:  # move each repeat to another random clip until no pair repeats
        rows[pending] = rng.integers(0, n, size=pending.size)
        new = rows[pending] * n_cls + slots[pending]
        at = np.minimum(np.searchsorted(taken, new), taken.size - 1)
        free = taken[at] != new
        uniq, idx = np.unique(new[free], return_index=True)
        taken = np.insert(taken, np.searchsorted(taken, uniq), uniq)
        placed = np.zeros(pending.size, dtype=bool)
        placed[np.flatnonzero(free)[idx]] = True
        pending = pending[~placed]
    m = sparse.csr_matrix((np.ones(rows.size, dtype=bool), (rows, slots)), shape=(n, n_cls))
    if not np.array_equal(np.asarray(m.sum(axis=0)).ravel(), counts):
        raise SystemExit("column sums do not match the class counts")
    WORK.mkdir(parents=True, exist_ok=True)
    sparse.save_npz(cached, m)
    return m


# --- Baselines: plain NumPy -----------------------------------------------------------------


def numpy_balanced(targets: sparse.csr_matrix, num_samples: int, seed: int) -> np.ndarray:
    """The PANNs balanced rounds in plain NumPy: each class's queue is independent shuffles of
    its clips laid end to end, each round a shuffled class order, one gather."""
    rng = np.random.default_rng(seed)
    csc = targets.tocsc()
    classes = np.flatnonzero(np.diff(csc.indptr))
    rounds = -(-num_samples // classes.size)
    table = np.empty((classes.size, rounds), dtype=np.int64)  # class j's draw in round r
    for j, c in enumerate(classes):
        members = csc.indices[csc.indptr[c]: csc.indptr[c + 1]]
        passes = -(-rounds // members.size)
        table[j] = np.concatenate([rng.permutation(members) for _ in range(passes)])[:rounds]
    order = rng.permuted(np.tile(np.arange(classes.size), (rounds, 1)), axis=1)
    return table[order, np.arange(rounds)[:, None]].ravel()[:num_samples]


def numpy_weighted(targets: sparse.csr_matrix, num_samples: int, seed: int) -> np.ndarray:
    """Label-rule weights by one sparse product, then inverse-CDF draws: ``cumsum`` +
    ``searchsorted``."""
    counts = np.bincount(targets.indices, minlength=targets.shape[1])
    w = targets.astype(np.float64) @ (1000.0 / (counts + 100.0))
    cdf = np.cumsum(w)
    u = np.random.default_rng(seed).random(num_samples) * cdf[-1]
    return np.searchsorted(cdf, u, side="right")


def numpy_weighted_noreplace(targets: sparse.csr_matrix, seed: int) -> np.ndarray:
    """Label-rule weights, then Efraimidis–Spirakis keys ``E / w`` sorted (weight 0 last)."""
    counts = np.bincount(targets.indices, minlength=targets.shape[1])
    w = targets.astype(np.float64) @ (1000.0 / (counts + 100.0))
    with np.errstate(divide="ignore"):
        keys = np.random.default_rng(seed).standard_exponential(w.size) / w
    return np.argsort(keys)[: np.count_nonzero(w)]


# --- Baselines: plain Python -----------------------------------------------------------------


def python_label_weights(labels: list[list[int]], n_classes: int) -> list[float]:
    counts = [0] * n_classes
    for row in labels:
        for c in row:
            counts[c] += 1
    per_class = [1000.0 / (k + 100.0) for k in counts]
    return [sum(per_class[c] for c in row) for row in labels]


def python_balanced(queues: list[list[int]], num_samples: int, seed: int) -> list[int]:
    """The PANNs balanced sampler as a loop (``queues`` are copied, then shuffled)."""
    rng = random.Random(seed)
    queues = [list(q) for q in queues]
    nonempty = [c for c, q in enumerate(queues) if q]
    for c in nonempty:
        rng.shuffle(queues[c])
    pointer = [0] * len(queues)
    out: list[int] = []
    while len(out) < num_samples:
        order = nonempty[:]
        rng.shuffle(order)
        for c in order:
            if len(out) == num_samples:
                break
            q = queues[c]
            if pointer[c] == len(q):
                rng.shuffle(q)
                pointer[c] = 0
            out.append(q[pointer[c]])
            pointer[c] += 1
    return out


def python_weighted(labels: list[list[int]], n_classes: int, num_samples: int,
                    seed: int) -> list[int]:
    w = python_label_weights(labels, n_classes)
    return random.Random(seed).choices(range(len(w)), weights=w, k=num_samples)


def python_weighted_noreplace(labels: list[list[int]], n_classes: int, seed: int) -> list[int]:
    w = python_label_weights(labels, n_classes)
    rng = random.Random(seed)
    keys = [(rng.expovariate(1.0) / wi, i) for i, wi in enumerate(w) if wi > 0]
    keys.sort()
    return [i for _, i in keys]


def fresh(sampler: object) -> None:
    """Forget an epoch a sampler keeps from its last call, as a restarted process would."""
    if hasattr(sampler, "_cache"):
        sampler._cache = None


# --- Timing ---------------------------------------------------------------------------------


def interleaved(contenders: dict, repeat: int) -> dict[str, float]:
    """Median seconds of each contender, run in turn ``repeat`` times after one warm-up."""
    return medians(interleaved_times(contenders, repeat))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=N_CLIPS)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--baseline-fraction", type=float, default=1.0,
                    help="time the Python balanced loop on this fraction of the epoch and "
                         "scale its loop time linearly (its queue setup is timed whole)")
    ap.add_argument("--out", default=str(HERE / "results" / "samplers.md"))
    args = ap.parse_args()
    load_before = load_average()

    n = args.clips
    counts = real_counts()
    if n != N_CLIPS:  # a smaller trial run: the same class proportions
        counts = np.maximum(1, counts * n // N_CLIPS)
    t0 = time.perf_counter()
    targets = synthetic_targets(counts, n)
    per_row = np.diff(targets.indptr)
    print(f"label matrix {targets.shape}, {targets.nnz:,} labels, {per_row.mean():.2f} per "
          f"clip (max {per_row.max()}), built in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)
    csc = targets.tocsc()
    queues = [csc.indices[csc.indptr[c]: csc.indptr[c + 1]].tolist() for c in range(527)]
    labels = np.split(targets.indices, targets.indptr[1:-1])
    labels = [row.tolist() for row in labels]

    rows: list[tuple[str, str, float, float]] = []

    # Balanced
    frac = args.baseline_fraction
    partial = max(1, int(n * frac))
    built_balanced = BalancedSampler(targets, seed=0)
    res = interleaved({"ours": lambda: BalancedSampler(targets, seed=0).indices(),
                       "ours epoch": lambda: (fresh(built_balanced), built_balanced.indices(0)),
                       "numpy": lambda: numpy_balanced(targets, n, seed=0),
                       "python": lambda: python_balanced(queues, partial, seed=0),
                       "python setup": lambda: python_balanced(queues, 1, seed=0)}, args.repeat)
    loop = (res["python"] - res["python setup"]) / frac
    note = "" if frac == 1.0 else f" (loop timed on {frac:.0%} of the epoch, scaled)"
    rows.append(("balanced: build + epoch", "the same rounds in ~20 lines of NumPy "
                 "(`numpy_balanced`)", res["numpy"], res["ours"]))
    rows.append(("balanced: build + epoch", "Python PANNs loop, queues built and shuffled"
                 + note, res["python setup"] + loop, res["ours"]))
    rows.append(("balanced: epoch of a built sampler", "Python PANNs loop, queues ready"
                 + note, loop, res["ours epoch"]))

    # Weighted, with replacement
    w = label_weights(targets)
    res = interleaved({
        "ours": lambda: WeightedSampler(targets, seed=0).indices(),
        "cumsum": lambda: numpy_weighted(targets, n, seed=0),
        "numpy choice": lambda: np.random.default_rng(0).choice(n, size=n, p=w / w.sum()),
        "python": lambda: python_weighted(labels, 527, n, seed=0),
    }, args.repeat)
    rows.append(("weighted, replacement: build + epoch", "label weights (sparse product) + "
                 "`np.cumsum` + `np.searchsorted`", res["cumsum"], res["ours"]))
    rows.append(("weighted, replacement: build + epoch", "`Generator.choice(p=w)`, weights "
                 "given (not timed)", res["numpy choice"], res["ours"]))
    rows.append(("weighted, replacement: build + epoch",
                 "Python weight loop + `random.choices`", res["python"], res["ours"]))

    # Weighted, without replacement
    res = interleaved({
        "ours": lambda: WeightedSampler(targets, replacement=False, seed=0).indices(),
        "numpy": lambda: numpy_weighted_noreplace(targets, seed=0),
        "python": lambda: python_weighted_noreplace(labels, 527, seed=0),
    }, args.repeat)
    rows.append(("weighted, no replacement: build + epoch", "label weights + NumPy E-S keys "
                 "+ `argsort`", res["numpy"], res["ours"]))
    rows.append(("weighted, no replacement: build + epoch",
                 "Python weight loop + E-S keys + `sorted`", res["python"], res["ours"]))

    # Resume at mid-epoch vs the whole epoch (samplers already built)
    resume_rows = []
    built = {"shuffle": ShuffleSampler(n, seed=0), "balanced": BalancedSampler(targets, seed=0),
             "weighted": WeightedSampler(targets, seed=0),
             "weighted, no replacement": WeightedSampler(targets, replacement=False, seed=0)}
    for name, s in built.items():
        state = s.state_dict(position=len(s) // 2)

        def whole(s=s) -> None:
            fresh(s)
            s.indices(0)

        def resume(s=s, state=state) -> None:
            fresh(s)
            s.load_state_dict(state)
            s.indices()

        res = interleaved({"whole": whole, "resume": resume}, args.repeat)
        resume_rows.append((name, res["whole"], res["resume"]))

    cmd = (f"python benchmarks/bench_samplers.py --clips {n} --repeat {args.repeat} "
           f"--baseline-fraction {frac}")
    lines = [
        "# Samplers at AudioSet scale",
        "",
        f"Command: `{cmd}` on {platform.machine()}, {os.cpu_count()} cores (shared), no GPU, "
        f"Python {platform.python_version()}, numpy {np.__version__}; medians of "
        f"{args.repeat} interleaved runs (A, B, A, B, ...) after a warm-up. Threads: one on "
        f"every side ({thread_settings()}; all the code timed is single-threaded). "
        f"Load average (1 min) {load_before:.2f} before, {load_average():.2f} after.",
        "",
        f"Label matrix: {n:,} clips × 527 classes, {targets.nnz:,} labels, column sums = the "
        "real PANNs training class counts (scaled when `--clips` is smaller), every clip "
        "labelled (synthetic rows, seed 0).",
        "",
        "| task | baseline | baseline s | ours s | baseline / ours |",
        "|---|---|---|---|---|",
    ]
    for task, bname, bs, os_ in rows:
        lines.append(f"| {task} | {bname} | {bs:.3f} | {os_:.3f} | {bs / os_:.2f}x |")
    lines += [
        "",
        "The first row of each sampler is its strongest fair baseline: the simplest NumPy code "
        "a user would write for the same algorithm, from the same CSR label matrix.",
        "",
        "What each side does. Balanced: ours builds the sampler from the CSR matrix (label "
        "checks, one CSC conversion, the per-class queues) and produces the positions with "
        "`balanced_epoch` (the same rounds as `numpy_balanced`, except that a class with at "
        "least as many clips as the epoch has rounds draws an ordered sample of that many "
        "clips with `Generator.choice` instead of shuffling all of them, and queue passes are "
        "shuffled by one `Generator.permuted`); the Python baseline copies the 527 class queues "
        "as lists, shuffles them and runs the round loop (its epoch-only row leaves out its "
        "copy and first shuffle, and ours reuses a built sampler). Weighted with replacement: "
        "ours computes the label weights and draws class-then-clip (exact for label-rule "
        "weights, O(1) per draw); the NumPy baseline computes the same weights and draws by "
        "inverse CDF (`cumsum` + `searchsorted`); `choice(p=)` is timed on weights already "
        "computed. Without replacement: Efraimidis–Spirakis keys (`E / w`, `E` exponential), "
        "ours with `argpartition` of the k smallest then a sort of those.",
        "",
        "## Resume at mid-epoch (state loaded, rest of the epoch produced) vs the whole epoch",
        "",
        "| sampler | whole epoch s | resume s | whole / resume |",
        "|---|---|---|---|",
    ]
    for name, whole, resume_s in resume_rows:
        lines.append(f"| {name} | {whole:.3f} | {resume_s:.3f} | {whole / resume_s:.1f}x |")
    lines += [
        "",
        "A resume rebuilds the epoch's permutation (shuffle), balanced epoch or keys (without "
        "replacement) whole and slices it, and only the draw blocks from the resume point on "
        "for weighted draws with replacement: never a replay of the consumed part in Python.",
    ]
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
