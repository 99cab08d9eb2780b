"""Write a synthetic segment list at the scale and skew of the official unbalanced list.

The official ``unbalanced_train_segments.csv`` (2,041,789 rows) cannot be fetched here, so this
script synthesises a stand-in in the exact official format: three ``#`` header lines, then
``YTID, start, end, "mid,mid"`` rows with valid 11-character ids (some starting with ``-``),
times with three decimals (about 1.7 % of segments shorter than 10 s) and quoted label lists.

Per-class label counts follow ``train_class_counts_panns.csv`` (the real counts of the full
training crawl), scaled so the total matches the 4,020,212 positive labels announced in the
header of the official unbalanced list. Every row has at least one label and no row repeats a
label; mids are listed in lexicographic order, as in the official files. The output is
deterministic for a given seed.

Usage::

    python benchmarks/make_unbalanced.py OUT.csv [--rows 2041789] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

REPO = Path(__file__).resolve().parents[1]
COUNTS_CSV = REPO.parent / "shared" / "data" / "segments" / "train_class_counts_panns.csv"
OFFICIAL_ROWS = 2_041_789
OFFICIAL_LABELS = 4_020_212  # header of the official unbalanced_train_segments.csv
ALPHABET = np.frombuffer(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", dtype=np.uint8
)


def _class_counts(counts_csv: Path, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Mids and target label counts per class, scaled to ``rows``."""
    table = pd.read_csv(counts_csv)
    raw = table["count"].to_numpy(np.float64)
    total = OFFICIAL_LABELS * rows / OFFICIAL_ROWS
    counts = np.maximum(1, np.round(raw * total / raw.sum())).astype(np.int64)
    counts = np.minimum(counts, rows)
    return table["mid"].to_numpy(str), counts


def _assign(counts: np.ndarray, rows: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Place ``counts[k]`` labels of class k on distinct rows, at least one label per row.

    Each class draws its rows without replacement; then labels beyond the first of a row are
    moved, one each, to the rows left empty, which keeps every class count exact.
    """
    k = len(counts)
    row = np.concatenate([rng.choice(rows, int(c), replace=False) for c in counts])
    cls = np.repeat(np.arange(k, dtype=np.int64), counts)
    order = np.argsort(row, kind="stable")
    row, cls = row[order], cls[order]
    empty = np.setdiff1d(np.arange(rows), row, assume_unique=False)
    spare = np.flatnonzero(np.r_[False, row[1:] == row[:-1]])  # not the first label of a row
    if len(empty) > len(spare):
        raise SystemExit("too few labels to give every row one")
    moved = rng.choice(spare, len(empty), replace=False)
    row[moved] = rng.permutation(empty)
    return row, cls


def _ids(rows: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted 11-character ids over ``[A-Za-z0-9_-]``."""
    codes = ALPHABET[rng.integers(0, len(ALPHABET), size=(rows, 11))]
    ids = np.ascontiguousarray(codes).view("S11").ravel()
    return np.sort(ids)


def _fmt_seconds(ms: np.ndarray) -> pa.Array:
    """Milliseconds as ``S.mmm`` strings, vectorised."""
    whole = pc.cast(pa.array(ms // 1000), pa.string())
    frac = pc.utf8_lpad(pc.cast(pa.array(ms % 1000), pa.string()), 3, "0")
    return pc.binary_join_element_wise(whole, frac, ".")


def generate(out: Path, rows: int = OFFICIAL_ROWS, seed: int = 0,
             counts_csv: Path = COUNTS_CSV) -> Path:
    """Write the synthetic list to ``out`` and return it."""
    rng = np.random.default_rng(seed)
    mids, counts = _class_counts(counts_csv, rows)
    row, cls = _assign(counts, rows, rng)
    # official rows list their mids in lexicographic order
    rank = np.argsort(np.argsort(mids, kind="stable"))
    key = np.sort(row * len(mids) + rank[cls])
    row, cls = key // len(mids), np.argsort(rank)[key % len(mids)]
    ids = _ids(rows, rng)

    start_s = np.where(rng.random(rows) < 0.38, 30, rng.integers(0, 600, rows))
    start_ms = start_s * 1000
    length_ms = np.full(rows, 10_000)
    short = rng.random(rows) < 0.017
    length_ms[short] = rng.integers(1000, 10_000, int(short.sum()))
    end_ms = start_ms + length_ms

    offsets = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(np.bincount(row, minlength=rows), out=offsets[1:])
    mid_arr = pa.array(mids).take(pa.array(cls))
    lists = pa.ListArray.from_arrays(pa.array(offsets), mid_arr)
    labels = pc.binary_join_element_wise('"', pc.binary_join(lists, ","), '"', "")

    line = pc.binary_join_element_wise(
        pa.array(ids, pa.binary()).cast(pa.string()),
        _fmt_seconds(start_ms), _fmt_seconds(end_ms), labels, ", ",
    )
    line = pc.binary_join_element_wise(line, pa.scalar("\n"), "")
    header = (
        "# Segments csv created by benchmarks/make_unbalanced.py (synthetic, seed "
        f"{seed})\n"
        f"# num_ytids={rows}, num_segs={rows}, num_unique_labels={int((counts > 0).sum())}, "
        f"num_positive_labels={len(cls)}\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".part")
    if isinstance(line, pa.ChunkedArray):
        line = line.combine_chunks()
    offs = np.frombuffer(line.buffers()[1], dtype=np.int32)[line.offset:]
    body = memoryview(line.buffers()[2])
    with tmp.open("wb") as fh:
        fh.write(header.encode())
        fh.write(body[offs[0]: offs[len(line)]])
    tmp.replace(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=OFFICIAL_ROWS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    generate(args.out, rows=args.rows, seed=args.seed)
    print(args.out)


if __name__ == "__main__":
    main()
