"""The embeddings route's commands as a user types them, timed: import, default training,
predict on an eval-sized store.

Runs, each in a fresh process (``audioset`` on the PATH of this interpreter):

1. ``audioset features import <balanced tar.gz> --root R`` (the real balanced part);
2. ``audioset features import EVAL --split eval --root R`` where EVAL is a stand-in for the
   eval part (not in the offline mirror): one record for every row of the official
   ``eval_segments.csv`` (20,371 clips, the listed ids, starts and labels) with random frames,
   written in the release's TFRecord layout. Its scores mean nothing; it sizes ``predict``;
3. ``audioset train --model embedding-attention --train balanced --eval none --root R --out
   RUN`` with the model's defaults, and the same with ``--precision fp32`` (the baseline: the
   defaults before bf16 autocast on CPUs that compute bf16 natively), alternating;
4. ``audioset predict --checkpoint RUN/last.pt --source eval --root R --scores S.npz``, and
   checks that every eval clip is scored.

Threads: torch's default (every core) unless ``--threads`` is given, as a user runs it.

Usage::

    python benchmarks/bench_embedding_route.py                # writes results/embedding_route.md
    python benchmarks/bench_embedding_route.py --repeat 2 --root /tmp/route
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import load_average, thread_settings  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
BALANCED = SHARED / "embeddings" / "audioset_v1_embeddings_bal_train.tar.gz"
EVAL_CSV = SHARED / "segments" / "eval_segments.csv"


def _eval_stand_in(folder: Path, seed: int = 0) -> tuple[Path, int]:
    """Write one random record per row of the official eval list; return (folder, rows)."""
    from audioset_data.features.release import FeatureRecord, write_release
    from audioset_data.segments.labels import LabelIndex

    index = LabelIndex.from_file(SHARED / "segments" / "class_labels_indices.csv")
    rng = np.random.default_rng(seed)
    records = []
    with open(EVAL_CSV, newline="") as fh:
        for row in csv.reader(fh, skipinitialspace=True):
            if not row or row[0].startswith("#"):
                continue
            mids = row[3].split(",")
            labels = tuple(sorted(int(i) for i in index.indices(mids)))
            records.append(FeatureRecord(row[0], float(row[1]), float(row[2]), labels,
                                         rng.integers(0, 256, (10, 128), dtype=np.uint8)))
    split = write_release(folder, records, split="eval")
    return split, len(records)


def _run(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall and CPU seconds of one command in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "load": load_average()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", help="data root (default: a temp dir)")
    parser.add_argument("--repeat", type=int, default=1, help="training runs per variant")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--skip-fp32", action="store_true", help="skip the fp32 baseline")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" /
                                              "embedding_route.md"))
    args = parser.parse_args(argv)
    env = {**os.environ, "TQDM_DISABLE": "1",
           "AUDIOSET_CSV_BASE_URL": (SHARED / "segments").as_uri()}
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    audioset = [sys.executable, "-m", "audioset_data"]
    with tempfile.TemporaryDirectory(prefix="embedding-route-") as tmp:
        root = Path(args.root or tmp)
        root.mkdir(parents=True, exist_ok=True)
        rows: list[tuple[str, dict[str, float], str]] = []
        r = _run(audioset + ["features", "import", str(BALANCED), "--root", str(root)], env)
        rows.append(("import the balanced part (22,160 records)", r, ""))
        split, n_eval = _eval_stand_in(root / "eval-src")
        r = _run(audioset + ["features", "import", str(split), "--split", "eval",
                             "--root", str(root)], env)
        rows.append((f"import the eval stand-in ({n_eval:,} records)", r, ""))
        variants = {"defaults": [], "--precision fp32": ["--precision", "fp32"]}
        if args.skip_fp32:
            del variants["--precision fp32"]
        train = {name: [] for name in variants}
        for i in range(args.repeat):
            for name, extra in variants.items():
                run = root / "runs" / f"{name.strip('-').replace(' ', '-')}-{i}"
                train[name].append(_run(audioset + [
                    "train", "--model", "embedding-attention", "--train", "balanced",
                    "--eval", "none", "--root", str(root), "--out", str(run), *extra], env))
        for name, runs in train.items():
            best = min(runs, key=lambda x: x["wall"])
            rows.append((f"train embedding-attention, {name} (best of {len(runs)})", best,
                         ", ".join(f"{x['wall']:.0f}" for x in runs)))
        scores = root / "S.npz"
        ckpt = root / "runs" / "defaults-0" / "last.pt"
        r = _run(audioset + ["predict", "--checkpoint", str(ckpt), "--source", "eval",
                             "--root", str(root), "--scores", str(scores)], env)
        with np.load(scores) as z:
            scored = len(z["ids"])
            shape = z["scores"].shape
        rows.append((f"predict on the eval stand-in ({scored:,} of {n_eval:,} clips scored, "
                     f"scores {shape[0]}x{shape[1]})", r, ""))
    lines = ["# The embeddings route, timed as a user runs it", "",
             f"Command: `python benchmarks/bench_embedding_route.py "
             f"{' '.join(argv if argv is not None else sys.argv[1:])}`".rstrip(), "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}; {thread_settings()}; each command a fresh "
             "process (interpreter start and imports included).", "",
             "| step | wall s | CPU s | 1-min load after | runs (wall s) |",
             "|---|---|---|---|---|"]
    lines += [f"| {name} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['load']:.2f} | {runs} |"
              for name, r, runs in rows]
    lines += ["", "The eval stand-in has the official eval list's 20,371 ids, starts and "
              "labels with random frames (the eval part of the release is not in the offline "
              "mirror): it times `predict`, its scores mean nothing. Goals: import of the "
              "balanced part <= 10 s, default training <= 5 min on 2 CPU cores, predict on "
              "20,371 clips <= 10 s.", ""]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
