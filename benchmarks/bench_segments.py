"""Parse a full-scale segment list into a label matrix and class priors: ours vs pandas.

Both pipelines go from the CSV file to a boolean clip × 527 sparse label matrix and the
per-class priors:

* **baseline**: the obvious pandas code: ``pd.read_csv(comment="#", skipinitialspace=True)``,
  then ``set(labels.split(","))`` per row and a Python loop mapping mids to columns;
* **ours**: :meth:`audioset_data.segments.Segments.from_file` (vectorised byte-level fast path
  for blocks in the exact official layout, Arrow kernels, no per-row Python) then
  :meth:`~audioset_data.segments.Segments.priors`;
* **ours, cached**: :func:`~audioset_data.segments.load_segments` when the parsed cache exists.

Each run happens in a fresh subprocess so its peak resident memory (``ru_maxrss``, which counts
Arrow's allocations too) is its own; the time covers the pipeline only, not interpreter start
and imports, and the memory of a process that only imports the libraries is reported too. CPU
seconds (user + system, all threads) are reported next to the wall time, since the parser uses
a thread pool and the machine may be shared. The
input is the synthetic 2,041,789-row list of ``benchmarks/make_unbalanced.py`` (generated once
under ``benchmarks/_work/``). The two pipelines must produce the same counts.

Usage::

    python benchmarks/bench_segments.py [--repeat 5] [--rows 2041789]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "_work"
RESULTS = HERE / "results" / "segments.md"
TABLE_HEAD = ("| pipeline | seconds | speed-up | CPU s | CPU speed-up | peak MiB "
              "| peak above imports MiB | peak / baseline peak |\n"
              "|---|---|---|---|---|---|---|---|")
LABELS_CSV = REPO.parent / "shared" / "data" / "segments" / "class_labels_indices.csv"


def _imports() -> None:
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401
    import scipy.sparse  # noqa: F401

    import audioset_data.segments  # noqa: F401


def _baseline(path: Path) -> np.ndarray:
    import pandas as pd
    import scipy.sparse as sp

    mids = pd.read_csv(LABELS_CSV)["mid"].tolist()
    column = {m: i for i, m in enumerate(mids)}
    df = pd.read_csv(path, comment="#", header=None, skipinitialspace=True,
                     names=["ytid", "start", "end", "labels"], quotechar='"')
    label_sets = [set(s.split(",")) for s in df["labels"]]
    rows, cols = [], []
    for i, labels in enumerate(label_sets):
        for mid in labels:
            rows.append(i)
            cols.append(column[mid])
    y = sp.csr_array((np.ones(len(rows), dtype=bool), (np.array(rows), np.array(cols))),
                     shape=(len(df), len(mids)))
    counts = np.asarray(y.sum(axis=0)).ravel()
    _priors = counts / y.shape[0]
    return counts


def _ours(path: Path, cached: bool) -> np.ndarray:
    from audioset_data.labels import LabelIndex
    from audioset_data.segments import Segments, load_segments

    index = LabelIndex.from_file(LABELS_CSV)
    if cached:
        seg = load_segments(path, label_index=index, root=WORK / "home", progress=False)
    else:
        seg = Segments.from_file(path, label_index=index, progress=False)
    priors = seg.priors()
    return priors.counts


def _child(method: str, path: Path) -> None:
    """Run one pipeline in this process and print its figures as JSON."""
    _imports()
    before = resource.getrusage(resource.RUSAGE_SELF)
    rss_imports = before.ru_maxrss
    t0 = time.perf_counter()
    if method == "imports":
        counts = np.zeros(0)
    elif method == "baseline":
        counts = _baseline(path)
    else:
        counts = _ours(path, cached=method == "cached")
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    np.save(WORK / f"counts_{method}.npy", counts)
    print(json.dumps({"method": method, "seconds": seconds, "cpu_seconds": cpu,
                      "peak_mib": after.ru_maxrss / 1024, "imports_mib": rss_imports / 1024}))


def _run(method: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", method, str(path)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rows", type=int, default=2_041_789)
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], Path(args.child[1]))
        return

    sys.path.insert(0, str(HERE))
    from make_unbalanced import generate

    path = WORK / f"unbalanced_synth_{args.rows}.csv"
    if not path.is_file():
        print(f"generating {path} ...", flush=True)
        generate(path, rows=args.rows, seed=0)
    size_mib = path.stat().st_size / 2**20
    _run("cached", path)  # builds the parsed cache outside the timed runs

    runs: dict[str, list[dict]] = {m: [] for m in ("imports", "baseline", "ours", "cached")}
    for i in range(args.repeat):
        for method in runs:  # interleaved, so load changes hit all methods alike
            r = _run(method, path)
            runs[method].append(r)
            print(f"[{i + 1}/{args.repeat}] {method:8s} {r['seconds']:7.3f} s  "
                  f"cpu {r['cpu_seconds']:7.3f} s  peak {r['peak_mib']:7.1f} MiB", flush=True)

    base_counts = np.load(WORK / "counts_baseline.npy")
    for method in ("ours", "cached"):
        if not np.array_equal(np.load(WORK / f"counts_{method}.npy"), base_counts):
            raise SystemExit(f"{method} counts differ from the baseline's")

    def med(method: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[method])

    imports = med("imports", "peak_mib")
    lines = []
    for method, label in (("baseline", "pandas baseline (read_csv + per-row split/sets)"),
                          ("ours", "ours: Segments.from_file + priors"),
                          ("cached", "ours: load_segments, parsed cache present")):
        t, m, c = med(method, "seconds"), med(method, "peak_mib"), med(method, "cpu_seconds")
        lines.append(
            f"| {label} | {t:.3f} | {med('baseline', 'seconds') / t:.1f}× | {c:.3f} | "
            f"{med('baseline', 'cpu_seconds') / c:.1f}× | {m:.0f} | "
            f"{m - imports:.0f} | {m / med('baseline', 'peak_mib'):.2f} |"
        )
    speed = med("baseline", "seconds") / med("ours", "seconds")
    speed_cpu = med("baseline", "cpu_seconds") / med("ours", "cpu_seconds")
    spread = {m: (min(r["seconds"] for r in runs[m]), max(r["seconds"] for r in runs[m]))
              for m in ("baseline", "ours")}
    load = os.getloadavg()[0]
    mem = med("ours", "peak_mib") / med("baseline", "peak_mib")
    mem_net = (med("ours", "peak_mib") - imports) / (med("baseline", "peak_mib") - imports)
    print(f"\nspeed-up ours vs baseline: {speed:.1f}x (CPU time: {speed_cpu:.1f}x); "
          f"peak memory ratio {mem:.2f} (above imports: {mem_net:.2f})")

    cmd = "python benchmarks/bench_segments.py" + (
        f" --repeat {args.repeat}" if args.repeat != 5 else "") + (
        f" --rows {args.rows}" if args.rows != 2_041_789 else "")
    text = f"""# Segment list parsing: file → label matrix → class priors

Command: `{cmd}` (from the repository root)

Input: synthetic list in the official format written by `benchmarks/make_unbalanced.py`
(seed 0): {args.rows:,} rows, {int(base_counts.sum()):,} labels, {size_mib:.1f} MiB; per-class
counts follow `train_class_counts_panns.csv`, mids listed in lexicographic order as in the
official files.

Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()},
{platform.system()}. Median of {args.repeat} runs, each in a fresh subprocess; runs of all
methods interleaved. Time excludes interpreter start and imports; CPU = user + system seconds
of all threads. Peak = `ru_maxrss` of the process; a process that only imports the libraries
peaks at {imports:.0f} MiB. The machine was shared with other work (1-minute load average
{load:.2f} at the end); wall times ranged {spread['baseline'][0]:.2f}–{spread['baseline'][1]:.2f} s
(baseline) and {spread['ours'][0]:.2f}–{spread['ours'][1]:.2f} s (ours) over the runs, hence
the medians.

{TABLE_HEAD}
{chr(10).join(lines)}

Speed-up of ours over the baseline: **{speed:.1f}×** wall time ({speed_cpu:.1f}× in CPU time);
peak memory **{mem:.2f}** of the baseline's ({mem_net:.2f} counting only memory above the
imports). Both pipelines give identical per-class counts (checked by the script).
"""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
