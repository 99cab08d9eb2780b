"""Parse a full-scale segment list into a label matrix and class priors: ours, the simpler
pyarrow-only alternatives, the parsed cache, and pandas.

Every pipeline goes from the CSV file to a boolean clip × 527 sparse label matrix and the
per-class priors:

* **baseline**: the obvious pandas code: ``pd.read_csv(comment="#", skipinitialspace=True)``,
  then ``set(labels.split(","))`` per row and a Python loop mapping mids to columns;
* **ours**: :meth:`audioset_data.segments.table.Segments.from_file` (blocks of whole lines cut with
  NumPy; a vectorised byte-level fast path parses the rows in the exact official layout) then
  :meth:`~audioset_data.segments.table.Segments.priors`;
* **pyarrow.csv lines + our fast path**: the same parser fed with lines split by
  ``pyarrow.csv`` (one string column, no quoting) instead of its own block reader;
* **ours, regex only**: the same with the fast path switched off, so every line goes through
  the regular path (one regular expression per line in Arrow);
* **pyarrow.csv + Arrow kernels**: the simplest parse built from ``pyarrow.csv`` and Arrow
  compute alone that gives the same result: lines from ``pyarrow.csv``, fields from
  ``split_pattern(", ")``, checks with Arrow kernels (code below). A direct four-column
  ``pyarrow.csv`` read is no candidate: it only recognises a quote at the start of a field,
  and the official ``, "mid,mid"`` puts a blank before it, so every multi-label row splits into
  extra fields (the script checks this on the real eval list and reports it);
* **ours, cached**: :func:`~audioset_data.segments.load.load_segments` when the parsed cache exists.

``--before REV`` also runs the ``ours`` and ``cached`` pipelines of another revision of this
repository (checked out with ``git worktree`` under ``benchmarks/_work/``), interleaved with the
others, for before/after figures on the same machine and load.

Each run happens in a fresh subprocess, whose peak resident memory is read from its own
``VmHWM`` (which counts Arrow's allocations too; ``ru_maxrss`` would start at this parent's
peak, see ``_common.py``); the time covers the pipeline only, not interpreter start and
imports, and the memory of a process that only imports the libraries is reported too. CPU
seconds (user + system, all threads) are reported next to the wall time: ours and the Arrow
pipelines use up to ``min(4, cores)`` threads (2 here), pandas one, so the CPU time is the
per-core comparison. The input is the synthetic 2,041,789-row list of
``benchmarks/make_unbalanced.py`` (generated once under ``benchmarks/_work/``). All pipelines
must produce the same counts.

Usage::

    python benchmarks/bench_segments.py [--repeat 5] [--rows 2041789] [--before REV]
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
from _common import load_average, peak_rss_mib, thread_settings

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "_work"
RESULTS = HERE / "results" / "segments.md"
TABLE_HEAD = ("| pipeline | seconds | speed-up | CPU s | CPU speed-up | peak MiB "
              "| peak above imports MiB | peak / baseline peak |\n"
              "|---|---|---|---|---|---|---|---|")
LABELS_CSV = REPO.parent / "shared" / "data" / "segments" / "class_labels_indices.csv"
EVAL_CSV = REPO.parent / "shared" / "data" / "segments" / "eval_segments.csv"
LABELS = {
    "baseline": "pandas baseline (read_csv + per-row split/sets)",
    "ours": "ours: Segments.from_file + priors (byte-level fast path)",
    "arrow-lines": "pyarrow.csv line splitting + our fast path",
    "regex": "ours, fast path off (one regex per line)",
    "kernels": "pyarrow.csv lines + Arrow kernels (simplest pyarrow-only parse)",
    "cached": "ours: load_segments, parsed cache present",
    "before-ours": "before ({rev}): Segments.from_file + priors",
    "before-cached": "before ({rev}): load_segments, parsed cache present",
}


def _imports() -> None:
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401
    import pyarrow.compute  # noqa: F401
    import pyarrow.csv  # noqa: F401
    import scipy.sparse  # noqa: F401

    import audioset_data.segments.load  # noqa: F401


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


def _kernel_batch(lines, value_set):
    """One batch of lines → (ytid, start, end, label columns, counts), Arrow kernels only."""
    import pyarrow as pa
    import pyarrow.compute as pc

    first = pc.utf8_slice_codeunits(lines, 0, 1)
    lines = lines.filter(pc.and_(pc.not_equal(first, "#"), pc.not_equal(first, "")))
    n = len(lines)
    parts = pc.split_pattern(lines, ", ", max_splits=3)
    if not pc.all(pc.equal(pc.list_value_length(parts), 4)).as_py():
        raise ValueError("a row without 4 fields")
    ytid, start, end, labels = (parts.values.take(pa.array(np.arange(k, 4 * n, 4)))
                                for k in range(4))
    number = r"^[0-9]+(\.[0-9]*)?$"
    if not (pc.all(pc.match_substring_regex(ytid, r"^[A-Za-z0-9_-]{11}$")).as_py()
            and pc.all(pc.match_substring_regex(start, number)).as_py()
            and pc.all(pc.match_substring_regex(end, number)).as_py()
            and pc.all(pc.match_substring_regex(labels, r'^"[^"]+"$')).as_py()):
        raise ValueError("a malformed field")
    start, end = pc.cast(start, pa.float64()), pc.cast(end, pa.float64())
    if not pc.all(pc.greater(end, start)).as_py():
        raise ValueError("end before start")
    mids = pc.split_pattern(pc.utf8_slice_codeunits(labels, 1, -1), ",")
    cols = pc.index_in(mids.values, value_set=value_set)
    if cols.null_count:
        raise ValueError("an unknown mid")
    return ytid, start, end, cols.to_numpy(), np.diff(np.asarray(mids.offsets))


def _kernels(path: Path) -> np.ndarray:
    """The pyarrow-only alternative: same output as ours on a clean official-format list."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa
    import pyarrow.csv as pcsv
    import scipy.sparse as sp

    from audioset_data.segments.labels import LabelIndex
    from audioset_data.segments.priors import ClassPriors
    from audioset_data.segments.table import Segments

    index = LabelIndex.from_file(LABELS_CSV)
    value_set = pa.array(index.mids, pa.string())
    reader = pcsv.open_csv(
        path, read_options=pcsv.ReadOptions(column_names=["line"], block_size=1 << 20),
        parse_options=pcsv.ParseOptions(delimiter="\x1f", quote_char=False, escape_char=False,
                                        ignore_empty_lines=False),
        convert_options=pcsv.ConvertOptions(column_types={"line": pa.string()}))
    with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
        parts = list(pool.map(lambda b: _kernel_batch(b.column(0), value_set), reader))
    counts = np.concatenate([p[4] for p in parts])
    indptr = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    y = sp.csr_array((np.ones(indptr[-1], bool), np.concatenate([p[3] for p in parts]), indptr),
                     shape=(len(counts), len(index)))
    y.sum_duplicates()
    table = pa.table({"ytid": pa.chunked_array([p[0] for p in parts]),
                      "start": pa.chunked_array([p[1] for p in parts]),
                      "end": pa.chunked_array([p[2] for p in parts]),
                      "labels": pa.nulls(len(counts), pa.list_(pa.string()))})
    seg = Segments(table, y, index, source=str(path))
    return ClassPriors.from_segments(seg).counts


def _arrow_lines(path: Path) -> np.ndarray:
    """Our parser with ``pyarrow.csv`` splitting the lines instead of its own block reader."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    from audioset_data.segments import parser as sp_
    from audioset_data.segments.labels import LabelIndex
    from audioset_data.segments.parser import ParseOptions, Parser
    from audioset_data.segments.table import Segments

    def blocks(self):
        reader = pcsv.open_csv(
            pa.OSFile(str(path)),
            read_options=pcsv.ReadOptions(column_names=["line"], block_size=sp_.BLOCK_BYTES),
            parse_options=pcsv.ParseOptions(delimiter="\x1f", quote_char=False,
                                            escape_char=False, ignore_empty_lines=False),
            convert_options=pcsv.ConvertOptions(column_types={"line": pa.binary()}))
        first = 1
        for batch in reader:
            lines = batch.column(0)
            offsets = np.frombuffer(lines.buffers()[1], np.int32, count=len(lines) + 1,
                                    offset=4 * lines.offset).astype(np.int64)
            data = bytearray(int(offsets[-1]) + 64)  # zero padding, as the parser's blocks
            data[:offsets[-1]] = memoryview(lines.buffers()[2])[:offsets[-1]]
            yield sp_._Lines(data, offsets[:-1], offsets[1:], first)
            first += len(lines)

    Parser.blocks = blocks
    seg = Parser(str(path), LabelIndex.from_file(LABELS_CSV), ParseOptions(),
                 open_binary=path.open, size=path.stat().st_size, into=Segments).run(False)
    return seg.priors().counts


def _ours(path: Path, cached: bool, regex: bool = False) -> np.ndarray:
    from audioset_data.segments.labels import LabelIndex
    from audioset_data.segments.load import load_segments
    from audioset_data.segments.table import Segments

    if regex:
        from audioset_data.segments.parser import Parser

        Parser.fast = False
    index = LabelIndex.from_file(LABELS_CSV)
    if cached:
        seg = load_segments(path, label_index=index, root=WORK / "home", progress=False)
    else:
        seg = Segments.from_file(path, label_index=index, progress=False)
    priors = seg.priors()
    return priors.counts


def _child(method: str, path: Path) -> None:
    """Run one pipeline in this process and print its figures as JSON."""
    if method.startswith("before-"):
        sys.path.insert(0, str(WORK / "before"))
    _imports()
    before = resource.getrusage(resource.RUSAGE_SELF)
    rss_imports = peak_rss_mib()
    t0 = time.perf_counter()
    if method == "imports":
        counts = np.zeros(0)
    elif method == "baseline":
        counts = _baseline(path)
    elif method == "kernels":
        counts = _kernels(path)
    elif method == "arrow-lines":
        counts = _arrow_lines(path)
    elif method.startswith("before-"):
        from audioset_data.segments.labels import LabelIndex
        from audioset_data.segments.load import load_segments
        from audioset_data.segments.table import Segments

        index = LabelIndex.from_file(LABELS_CSV)
        seg = (load_segments(path, label_index=index, root=WORK / "home-before", progress=False)
               if method == "before-cached"
               else Segments.from_file(path, label_index=index, progress=False))
        counts = seg.priors().counts
    else:
        counts = _ours(path, cached=method == "cached", regex=method == "regex")
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    np.save(WORK / f"counts_{method}.npy", counts)
    print(json.dumps({"method": method, "seconds": seconds, "cpu_seconds": cpu,
                      "peak_mib": peak_rss_mib(), "imports_mib": rss_imports}))


def _run(method: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", method, str(path)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _direct_read_note() -> str:
    """What a direct four-column pyarrow.csv read makes of the real eval list."""
    import pyarrow.csv as pcsv

    try:
        pcsv.read_csv(EVAL_CSV, read_options=pcsv.ReadOptions(
            skip_rows=3, column_names=["ytid", "start", "end", "labels"]))
    except Exception as exc:  # noqa: BLE001 - the message is the finding
        return f"fails on the real eval list: `{str(exc).splitlines()[0][:90]}`"
    return "reads the real eval list without an error (check its label column)"


def _checkout(rev: str | None) -> str | None:
    """A worktree of ``rev`` under ``_work/before`` (``None``: remove it); the short hash."""
    target = WORK / "before"
    if target.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(target)],
                       check=True)
    if rev is None:
        return None
    short = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", rev], check=True,
                           capture_output=True, text=True).stdout.strip()
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(target), rev],
                   check=True, capture_output=True)
    return short


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rows", type=int, default=2_041_789)
    parser.add_argument("--before", metavar="REV", help="also time this revision's parser")
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
    load_before = load_average()
    methods = ["imports", "baseline", "ours", "arrow-lines", "kernels", "regex", "cached"]
    rev = None
    if args.before:
        rev = _checkout(args.before)
        methods += ["before-ours", "before-cached"]
        _run("before-cached", path)  # builds that revision's parsed cache
    _run("cached", path)  # builds the parsed cache (and its stat marker) outside the timed runs

    runs: dict[str, list[dict]] = {m: [] for m in methods}
    for i in range(args.repeat):
        for method in runs:  # interleaved, so load changes hit all methods alike
            r = _run(method, path)
            runs[method].append(r)
            print(f"[{i + 1}/{args.repeat}] {method:13s} {r['seconds']:7.3f} s  "
                  f"cpu {r['cpu_seconds']:7.3f} s  peak {r['peak_mib']:7.1f} MiB", flush=True)

    if rev:
        _checkout(None)
    base_counts = np.load(WORK / "counts_baseline.npy")
    for method in methods[2:]:
        if not np.array_equal(np.load(WORK / f"counts_{method}.npy"), base_counts):
            raise SystemExit(f"{method} counts differ from the baseline's")

    def med(method: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[method])

    imports = med("imports", "peak_mib")
    lines = []
    for method in methods[1:]:
        t, m, c = med(method, "seconds"), med(method, "peak_mib"), med(method, "cpu_seconds")
        lines.append(
            f"| {LABELS[method].format(rev=rev)} | {t:.3f} | {med('baseline', 'seconds') / t:.1f}× "
            f"| {c:.3f} | {med('baseline', 'cpu_seconds') / c:.1f}× | {m:.0f} | "
            f"{m - imports:.0f} | {m / med('baseline', 'peak_mib'):.2f} |"
        )
    speed = med("baseline", "seconds") / med("ours", "seconds")
    speed_cpu = med("baseline", "cpu_seconds") / med("ours", "cpu_seconds")
    spread = {m: (min(r["seconds"] for r in runs[m]), max(r["seconds"] for r in runs[m]))
              for m in methods[1:]}
    load = load_average()
    mem = med("ours", "peak_mib") / med("baseline", "peak_mib")
    mem_net = (med("ours", "peak_mib") - imports) / (med("baseline", "peak_mib") - imports)
    kernels = med("kernels", "seconds") / med("ours", "seconds")
    kernels_cpu = med("kernels", "cpu_seconds") / med("ours", "cpu_seconds")
    lines_t = med("arrow-lines", "seconds") / med("ours", "seconds")
    lines_m = med("arrow-lines", "peak_mib") - med("ours", "peak_mib")
    cache = med("ours", "seconds") / med("cached", "seconds")
    print(f"\nspeed-up ours vs baseline: {speed:.1f}x (CPU time: {speed_cpu:.1f}x); "
          f"peak memory ratio {mem:.2f} (above imports: {mem_net:.2f}); Arrow kernels take "
          f"{kernels:.2f}x our time; cached load {cache:.1f}x faster than a parse")

    cmd = "python benchmarks/bench_segments.py" + (
        f" --repeat {args.repeat}" if args.repeat != 5 else "") + (
        f" --rows {args.rows}" if args.rows != 2_041_789 else "") + (
        f" --before {args.before}" if args.before else "")
    ranges = "; ".join(f"{m} {lo:.2f}–{hi:.2f} s" for m, (lo, hi) in spread.items())
    text = f"""# Segment list parsing: file → label matrix → class priors

Command: `{cmd}` (from the repository root)

Input: synthetic list in the official format written by `benchmarks/make_unbalanced.py`
(seed 0): {args.rows:,} rows, {int(base_counts.sum()):,} labels, {size_mib:.1f} MiB; per-class
counts follow `train_class_counts_panns.csv`, mids listed in lexicographic order as in the
official files.

Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()},
{platform.system()}. Median of {args.repeat} runs, each in a fresh subprocess; runs of all
methods interleaved. Time excludes interpreter start and imports; CPU = user + system seconds
of all threads. Threads: ours and the Arrow pipelines up to {min(4, os.cpu_count() or 1)}
(their thread pools), pandas 1; {thread_settings()}. Peak = `VmHWM` of the process (its own
high-water mark); a process that only imports the libraries peaks at {imports:.0f} MiB. The
machine was shared with other work (1-minute load average {load_before:.2f} before,
{load:.2f} at the end); wall times ranged over the runs: {ranges}; hence the medians.

{TABLE_HEAD}
{chr(10).join(lines)}

Speed-up of ours over the pandas baseline: **{speed:.1f}×** wall time ({speed_cpu:.1f}× in CPU
time); peak memory **{mem:.2f}** of the baseline's ({mem_net:.2f} counting only memory above the
imports). All pipelines give identical per-class counts (checked by the script).

Against the strongest fair baseline, the simplest pyarrow-only parse (`pyarrow.csv` lines,
fields by `split_pattern`, mids by `index_in`, checks with Arrow kernels, the same threads):
ours is **{kernels:.2f}×** faster in wall time ({kernels_cpu:.2f}× in CPU time); a direct
four-column `pyarrow.csv` read {_direct_read_note()}.
Splitting the lines with `pyarrow.csv` instead of our block reader takes {lines_t:.2f}× our
time and {lines_m:+.0f} MiB of peak memory, so the block reader stays too.
A load from the parsed cache is **{cache:.1f}×** faster than a parse.
"""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
