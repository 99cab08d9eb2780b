"""Benchmark the ontology: load time, query throughput and label propagation at full scale.

Each figure is printed with a baseline measured in the same run:

* load: ``Ontology.from_file`` (parse, validate, build the graph) against ``json.loads`` alone;
* queries: ``ancestors``/``descendants`` (precomputed closures) against ``networkx.ancestors`` /
  ``networkx.descendants`` on the same graph; ``resolve`` by id, by exact and by lower-case name;
* propagation: ``LabelIndex.propagate`` (one sparse product) on a 2,000,000 × 527 label matrix
  (about 2 labels per row, classes drawn with the skew of the real training counts, fixed seed)
  against a per-row Python loop over ontology ancestors, timed over every row (``--loop-rows``
  times it on fewer rows instead, and the report then says the figure is extrapolated).

Usage::

    python benchmarks/bench_ontology.py [--rows 2000000] [--loop-rows N] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from audioset_data.ontology import Ontology
from audioset_data.segments.labels import LabelIndex

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
ONTOLOGY_JSON = SHARED / "ontology" / "ontology.json"
LABELS_CSV = SHARED / "segments" / "class_labels_indices.csv"
COUNTS_CSV = SHARED / "segments" / "train_class_counts_panns.csv"
RESULTS = REPO / "benchmarks" / "results" / "ontology.md"


def best_of(fn, repeat: int) -> float:
    """Median wall time of ``repeat`` calls, in seconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def per_second(fn, keys: list, rounds: int = 3) -> float:
    """Calls per second of ``fn`` over ``keys`` (median of ``rounds`` passes)."""
    def one_pass() -> None:
        for k in keys:
            fn(k)
    return len(keys) / best_of(one_pass, rounds)


def synth_labels(n_rows: int, labels: LabelIndex, seed: int) -> sp.csr_array:
    """Clip × label boolean matrix: 1 + Poisson(1) labels per row, skewed like real counts."""
    counts = pd.read_csv(COUNTS_CSV)
    if counts["mid"].tolist() != list(labels.mids):
        raise SystemExit(f"{COUNTS_CSV} is not in label-index order")
    p = counts["count"].to_numpy(dtype=np.float64)
    p /= p.sum()
    rng = np.random.default_rng(seed)
    per_row = 1 + rng.poisson(1.0, size=n_rows)
    rows = np.repeat(np.arange(n_rows), per_row)
    cols = rng.choice(len(labels), size=rows.size, p=p)
    y = sp.csr_array((np.ones(rows.size, dtype=bool), (rows, cols)), shape=(n_rows, len(labels)))
    y.sum_duplicates()
    return y


def loop_propagate(y: sp.csr_array, labels: LabelIndex, onto: Ontology) -> list[set[int]]:
    """The per-row baseline: for each clip, look up every label's ancestors that are labels."""
    out = []
    for i in range(y.shape[0]):
        cols = set()
        for j in y.indices[y.indptr[i]:y.indptr[i + 1]]:
            for mid in onto.ancestors(labels.mid(int(j)), with_self=True):
                if mid in labels:
                    cols.add(labels.index(mid))
        out.append(cols)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--loop-rows", type=int, default=None,
                        help="time the per-row loop on this many rows and extrapolate "
                             "(default: every row, measured whole)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="do not write the results file")
    args = parser.parse_args(argv)
    command = "python benchmarks/bench_ontology.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    lines: list[str] = []

    def report(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    # ------------------------------------------------------------------ load
    raw = ONTOLOGY_JSON.read_bytes()
    t_json = best_of(lambda: json.loads(raw), 20)
    t_load = best_of(lambda: Ontology.from_file(ONTOLOGY_JSON), 20)
    onto = Ontology.from_file(ONTOLOGY_JSON)
    t_first_anc = best_of(lambda: Ontology.from_file(ONTOLOGY_JSON).ancestors("Dog"), 10)
    report("## Load (ontology.json, 632 classes)")
    report()
    report("| step | median time | ratio |")
    report("|---|---|---|")
    report(f"| `json.loads` alone (baseline) | {t_json * 1e3:.2f} ms | 1.0 |")
    report(f"| `Ontology.from_file` (parse + validate + graph) | {t_load * 1e3:.2f} ms | "
           f"{t_load / t_json:.1f}× the JSON parse |")
    report(f"| `from_file` + first `ancestors` (builds the closures) | {t_first_anc * 1e3:.2f} ms"
           f" | {t_first_anc / t_json:.1f}× |")
    report()

    # ------------------------------------------------------------------ queries
    import networkx as nx

    g = onto.graph
    ids = list(onto)
    names = [onto[c].name for c in ids]
    lower = [n.lower() for n in names]
    keys = ids * 10
    onto.ancestors(ids[0])  # closures built once, as in any real use
    q = {
        "ancestors(id)": per_second(onto.ancestors, keys),
        "descendants(id)": per_second(onto.descendants, keys),
        "nx.ancestors(graph, id)": per_second(lambda k: nx.ancestors(g, k), ids),
        "nx.descendants(graph, id)": per_second(lambda k: nx.descendants(g, k), ids),
        "resolve(id)": per_second(onto.resolve, keys),
        "resolve(exact name)": per_second(onto.resolve, names * 10),
        "resolve(lower-case name)": per_second(onto.resolve, lower * 10),
        "ancestors(name)": per_second(onto.ancestors, names * 10),
    }
    report("## Queries (all 632 classes, median of 3 passes)")
    report()
    report("| query | calls per second | ratio |")
    report("|---|---|---|")
    report(f"| `nx.ancestors(graph, id)` (baseline) | {q['nx.ancestors(graph, id)']:,.0f} | 1.0 |")
    report(f"| `ancestors(id)` | {q['ancestors(id)']:,.0f} | "
           f"{q['ancestors(id)'] / q['nx.ancestors(graph, id)']:.1f}× |")
    report(f"| `nx.descendants(graph, id)` (baseline) | {q['nx.descendants(graph, id)']:,.0f} "
           "| 1.0 |")
    report(f"| `descendants(id)` | {q['descendants(id)']:,.0f} | "
           f"{q['descendants(id)'] / q['nx.descendants(graph, id)']:.1f}× |")
    for k in ("resolve(id)", "resolve(exact name)", "resolve(lower-case name)",
              "ancestors(name)"):
        report(f"| `{k}` | {q[k]:,.0f} | |")
    report()

    # ------------------------------------------------------------------ propagation
    labels = LabelIndex.from_file(LABELS_CSV, ontology=onto)
    t0 = time.perf_counter()
    y = synth_labels(args.rows, labels, args.seed)
    t_synth = time.perf_counter() - t0
    labels.propagation_matrix(onto)  # built once per index, like in training
    t_prop = best_of(lambda: labels.propagate(y, onto), 3)
    out = labels.propagate(y, onto)

    n_loop = args.rows if args.loop_rows is None else min(args.loop_rows, args.rows)
    sample = y[:n_loop]
    t0 = time.perf_counter()
    looped = loop_propagate(sample, labels, onto)
    t_loop_sample = time.perf_counter() - t0
    t_loop_full = t_loop_sample * args.rows / n_loop
    head = out[:n_loop]
    for i, expected in enumerate(looped):
        got = set(head.indices[head.indptr[i]:head.indptr[i + 1]].tolist())
        if got != expected:
            raise SystemExit(f"row {i}: sparse {sorted(got)} != loop {sorted(expected)}")
    report(f"## Label propagation ({args.rows:,} clips × {len(labels)} labels, seed {args.seed})")
    report()
    report(f"Input: {y.nnz:,} positive labels ({y.nnz / args.rows:.2f} per clip), drawn with the "
           f"class skew of `train_class_counts_panns.csv` (built in {t_synth:.1f} s); after "
           f"propagation {out.nnz:,} ({out.nnz / args.rows:.2f} per clip). The two methods agree "
           f"on every one of the {'' if n_loop == args.rows else 'first '}{n_loop:,} rows.")
    report()
    report("| method | time for all rows | ratio |")
    report("|---|---|---|")
    if n_loop == args.rows:
        how = f"baseline; measured over all {n_loop:,} rows, one run"
    else:
        how = (f"baseline; timed on {n_loop:,} rows, {t_loop_sample:.2f} s, extrapolated "
               f"×{args.rows / n_loop:,.0f}, not measured whole")
    report(f"| per-row Python loop over `ontology.ancestors` ({how}) | "
           f"{t_loop_full:.1f} s | 1.0 |")
    report(f"| `LabelIndex.propagate` (one sparse product, median of 3) | {t_prop:.2f} s | "
           f"{t_loop_full / t_prop:.0f}× faster |")
    report()

    if not args.no_write:
        header = [
            "# Ontology benchmark",
            "",
            f"Command: `{command.strip()}` (from the repository root)",
            "",
            f"Machine: {platform.machine()}, {os.cpu_count()} CPU(s), Python "
            f"{platform.python_version()}, {platform.system()}; times are wall clock.",
            "",
        ]
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text("\n".join(header + lines) + "\n", encoding="utf-8")
        print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
