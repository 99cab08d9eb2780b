"""Planning of a resumed download over the full-scale unbalanced list, against the old path.

Planning is everything :func:`audioset_data.download` does before its first request: load the
segment list, check the ids, make the keys, join repeated segments, register the list in the
manifest, open the cache writer, read the statuses and pick the clips to fetch. The new path is
measured through ``download(..., dry_run=True)``, which stops right there. The baseline is a
faithful copy (below) of the steps the download ran before this change: pandas segment table,
an id check and a key per row in Python, ``_merge_duplicates``, every row registered again with
``add_segments``'s old SQL, every status read and joined, and a work item built per clip.

Both paths run against their own cache folder holding the same 2,041,789-segment list
(``benchmarks/make_unbalanced.py``), registered once beforehand (that first registration is
timed once, for information). Then each path is warmed up once and the two are timed
interleaved, ``--reps`` times, in two states: nothing fetched yet, and a cache half fetched
with a fifth of the list failed (half of those permanently).

Run: ``python benchmarks/bench_plan.py [--rows 2041789] [--reps 5] [--out FILE]``
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from make_unbalanced import OFFICIAL_ROWS, generate  # noqa: E402

import audioset_data.downloader.job as dl  # noqa: E402
import audioset_data.downloader.plan as plan_  # noqa: E402
from audioset_data.cache.manifest import Manifest, clip_key  # noqa: E402
from audioset_data.cache.reader import cache_dir  # noqa: E402
from audioset_data.cache.store import CacheWriter, FolderLock, open_manifest  # noqa: E402
from audioset_data.downloader.failures import validate_ytid  # noqa: E402
from audioset_data.downloader.fetcher import ClipFetcher  # noqa: E402
from audioset_data.segments.labels import LabelIndex  # noqa: E402
from audioset_data.segments.load import load_segments  # noqa: E402

SHARED = REPO.parent / "shared" / "data" / "segments"
WORK = REPO / "benchmarks" / "_work"


# -- the baseline: the planning steps of download() before this change, copied -----------------
def _old_segment_table(segments) -> pd.DataFrame:
    import pyarrow.compute as pc

    t = segments.arrow
    return pd.DataFrame({
        "ytid": t["ytid"].to_numpy(zero_copy_only=False).astype(str),
        "start": t["start"].to_numpy(),
        "end": t["end"].to_numpy(),
        "labels": pc.binary_join(t["labels"], ",").to_numpy(zero_copy_only=False),
    })


def _old_add_segments(manifest: Manifest, rows) -> tuple[int, int]:
    with manifest.transaction() as conn:
        conn.execute("CREATE TEMP TABLE incoming (key TEXT PRIMARY KEY, ytid TEXT, "
                     "start REAL, end_ REAL, labels TEXT)")
        try:
            conn.executemany("INSERT OR REPLACE INTO incoming VALUES (?,?,?,?,?)", rows)
            changed = conn.execute(
                "SELECT COUNT(*) FROM clips JOIN incoming USING (key) "
                "WHERE clips.status = 'ok' AND clips.labels != incoming.labels"
            ).fetchone()[0]
            conn.execute(
                "UPDATE clips SET labels = i.labels FROM incoming AS i "
                "WHERE i.key = clips.key AND clips.status != 'ok' "
                "AND clips.labels != i.labels"
            )
            before = conn.total_changes
            conn.execute(
                "INSERT OR IGNORE INTO clips (key, ytid, start, end_, labels) "
                "SELECT key, ytid, start, end_, labels FROM incoming"
            )
            new = conn.total_changes - before
        finally:
            conn.execute("DROP TABLE temp.incoming")
    return new, changed


def old_plan(csv: Path, root: Path, index: LabelIndex) -> int:
    """The old planning of ``download(segments=csv)``; returns the number of clips to fetch."""
    name, table = "u", _old_segment_table(load_segments(csv, root=root, label_index=index))
    for ytid in table["ytid"]:
        validate_ytid(ytid)
    table["key"] = [clip_key(y, s) for y, s in zip(table["ytid"], table["start"], strict=True)]
    table = plan_._merge_duplicates(table)
    folder = cache_dir(name, root)
    ClipFetcher(sample_rate=32000)
    folder.mkdir(parents=True, exist_ok=True)
    with FolderLock(folder / ".lock"):
        manifest = open_manifest(folder, fmt="pcm16", sample_rate=32000, clip_samples=320000,
                                 label_mids=index.mids)
        try:
            new, relabelled = _old_add_segments(manifest, zip(
                table["key"], table["ytid"], table["start"], table["end"], table["labels"],
                strict=True))
            CacheWriter(folder, manifest, fmt="pcm16", sample_rate=32000, clip_samples=320000,
                        label_mids=index.mids)
            status = table.merge(manifest.statuses(), on="key", how="left", validate="1:1")
            todo_mask = status["status"].eq("pending") | (
                status["status"].eq("failed") & status["permanent"].eq(0))
            todo = status[todo_mask]
            items = [
                plan_._Item(k, y, float(s), float(e), i)
                for i, (k, y, s, e) in enumerate(zip(todo["key"], todo["ytid"], todo["start"],
                                                     todo["end"], strict=True))
            ]
        finally:
            manifest.close()
    return len(items)


def new_plan(csv: Path, root: Path, index: LabelIndex) -> int:
    """The planning of ``download(segments=csv)`` today; returns the number to fetch."""
    report = dl.download("u", segments=csv, root=root, label_index=index, dry_run=True,
                         progress=False, check_space=False)
    return report.to_fetch


# -- measuring ----------------------------------------------------------------------------------
def timed(fn: Callable[[], int]) -> tuple[float, float, int]:
    t0, c0 = time.perf_counter(), time.process_time()
    n = fn()
    return time.perf_counter() - t0, time.process_time() - c0, n


def half_fetched(root: Path) -> None:
    """Mark half of the list ok and a fifth failed (half of those permanently), as a SQL
    update of the status columns only: the segment rows stay as registered."""
    with contextlib.closing(sqlite3.connect(cache_dir("u", root) / "manifest.sqlite",
                                            isolation_level=None)) as c:
        c.execute("UPDATE clips SET status='ok' WHERE rowid % 2 = 0")
        c.execute("UPDATE clips SET status='failed', reason='private', permanent=1 "
                  "WHERE rowid % 10 = 1")
        c.execute("UPDATE clips SET status='failed', reason='http_5xx', permanent=0 "
                  "WHERE rowid % 10 = 3")


def measure(label: str, paths: dict[str, tuple[Callable[[], int], Path]], reps: int
            ) -> list[dict[str, object]]:
    rows = []
    for name, (fn, _) in paths.items():  # warm-up
        wall, _, n = timed(fn)
        print(f"[{label}] warm-up {name}: {wall:.2f} s, {n} to fetch", flush=True)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in paths}
    counts = {}
    for rep in range(reps):
        for name, (fn, _) in paths.items():
            wall, cpu, n = timed(fn)
            results[name].append((wall, cpu))
            counts[name] = n
            print(f"[{label}] rep {rep + 1} {name}: {wall:.2f} s wall, {cpu:.2f} s cpu",
                  flush=True)
    if len(set(counts.values())) != 1:
        raise SystemExit(f"the two paths disagree on the clips to fetch: {counts}")
    for name, got in results.items():
        walls = [w for w, _ in got]
        rows.append({
            "state": label, "path": name, "to fetch": counts[name],
            "median s": statistics.median(walls), "min s": min(walls), "max s": max(walls),
            "cpu s (median)": statistics.median(c for _, c in got),
        })
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=OFFICIAL_ROWS)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    index = LabelIndex.from_file(SHARED / "class_labels_indices.csv")
    WORK.mkdir(parents=True, exist_ok=True)
    csv = WORK / f"unbalanced-{args.rows}.csv"
    if not csv.is_file():
        generate(csv, rows=args.rows)
    with tempfile.TemporaryDirectory(dir=WORK, prefix="plan-") as tmp:
        roots = {"baseline (before)": Path(tmp) / "old", "new": Path(tmp) / "new"}
        paths = {
            "baseline (before)": (lambda: old_plan(csv, roots["baseline (before)"], index),
                                  roots["baseline (before)"]),
            "new": (lambda: new_plan(csv, roots["new"], index), roots["new"]),
        }
        first = {}
        for name, (fn, _) in paths.items():
            wall, cpu, n = timed(fn)
            first[name] = wall
            print(f"first registration, {name}: {wall:.2f} s ({n} to fetch)", flush=True)
        rows = measure("nothing fetched yet", paths, args.reps)
        for _, root in paths.values():
            half_fetched(root)
        rows += measure("half fetched, 20 % failed", paths, args.reps)
        # the new path makes its work items as the run submits them; all of them cost:
        plan = plan_._plan(plan_._segment_table(load_segments(csv, root=roots["new"],
                                                              label_index=index)), None, None)
        t0 = time.perf_counter()
        n_items = sum(1 for _ in plan_._items(plan.table, np.arange(len(plan))))
        lazy_items = time.perf_counter() - t0
    frame = pd.DataFrame(rows)
    print(frame.to_string(index=False))
    if args.out:
        write(args, frame, first, n_items, lazy_items)


def write(args: argparse.Namespace, frame: pd.DataFrame, first: dict[str, float],
          n_items: int, lazy_items: float) -> None:
    def speedup(state: str) -> float:
        sub = frame[frame["state"] == state].set_index("path")["median s"]
        return float(sub["baseline (before)"] / sub["new"])

    shown = frame.assign(**{c: frame[c].map(lambda v: f"{v:.2f}")
                            for c in ("median s", "min s", "max s", "cpu s (median)")})
    table = "\n".join([
        "| " + " | ".join(shown.columns) + " |",
        "|" + "---|" * len(shown.columns),
        *("| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)),
    ])
    lines = [
        "# Planning a resumed download (bench_plan.py)",
        "",
        f"Command: `python benchmarks/bench_plan.py --rows {args.rows} --reps {args.reps} "
        f"--out {args.out}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}; shared with "
        f"other work (load average {os.getloadavg()[1]:.1f} over the last 5 minutes of the "
        "run), so the spread (min/max) and the CPU time, which load inflates less, are shown.",
        "",
        f"List: {args.rows:,} synthetic segments in the official format "
        "(`benchmarks/make_unbalanced.py`). Each path has its own data root: its first run "
        "parses the CSV into the segment cache and registers the list; later runs load the "
        "parsed list the same way in both paths. After a warm-up run of each, the two paths "
        f"are timed interleaved, {args.reps} times each, in two states of the cache.",
        "",
        table,
        "",
        f"Speed-up of the median: {speedup('nothing fetched yet'):.1f}x with nothing fetched "
        f"yet, {speedup('half fetched, 20 % failed'):.1f}x with half fetched.",
        "",
        f"First run of each path (parse the CSV, register every segment; one run each, for "
        f"information): baseline {first['baseline (before)']:.1f} s, new "
        f"{first['new']:.1f} s. Registration is the same SQL in both; the new path also "
        "stores the list's fingerprint and folds the registration into the manifest file.",
        "",
        f"The baseline builds one work item per clip before the run starts; the new path makes "
        f"them as the run submits clips. Making all {n_items:,} of them that way costs "
        f"{lazy_items:.1f} s in total, spread over the run.",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
