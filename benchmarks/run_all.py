"""Rerun the benchmarks and stamp each results file with what produced it.

Every benchmark script writes ``benchmarks/results/<name>.md``. This runs them one after the
other (each in its own process, with the thread settings below in its environment), then
inserts a stamp under the file's title: the command, the git commit (and whether the working
tree differed from it), the date, the 1-minute load average before and after the run, the
thread settings, the wall time, and, in ``--quick`` mode, that the sizes were smaller than the
full run's. A script that fails leaves its results file untouched (and unstamped); the
summary at the end names it, and the exit status is 1.

Threads: ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS`` are set to
``--threads`` (default 1) for every script, and ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP
threads sleep instead of spinning on cores other jobs need); scripts that compare thread
counts (the front end) set their own per contender and say so in their results.

Not run here: ``benchmarks/gpu_check.sh`` (the CUDA front end and training, on a GPU
machine).

Usage::

    python benchmarks/run_all.py                  # every benchmark, full sizes
    python benchmarks/run_all.py --quick          # smaller sizes, stamped as such
    python benchmarks/run_all.py --only samplers,mining
    python benchmarks/run_all.py --quick --skip plan,training
    python benchmarks/run_all.py --list
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
LOGS = HERE / "_work" / "logs"
STAMP_BEGIN = "<!-- run_all stamp -->"
STAMP_END = "<!-- /run_all stamp -->"


@dataclass(frozen=True)
class Bench:
    script: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    results: str
    quick_note: str = ""


def _out(name: str) -> tuple[str, ...]:
    return ("--out", f"benchmarks/results/{name}.md")


BENCHMARKS: dict[str, Bench] = {
    "ontology": Bench("bench_ontology.py", (), ("--rows", "200000"), "ontology.md",
                      "200,000 label rows instead of 2,000,000"),
    "segments": Bench("bench_segments.py", ("--repeat", "5"), ("--repeat", "3"), "segments.md",
                      "3 runs per pipeline instead of 5 (same 2,041,789 rows)"),
    "samplers": Bench("bench_samplers.py", ("--repeat", "5"),
                      ("--repeat", "3", "--baseline-fraction", "0.25"), "samplers.md",
                      "3 rounds instead of 5; the Python balanced loop timed on a quarter of "
                      "the epoch and scaled (same 2,041,789 clips)"),
    "evaluation": Bench("bench_evaluation.py", ("--repeat", "5", "--write"),
                        ("--repeat", "3", "--resamples", "200", "--write"), "evaluation.md",
                        "3 rounds instead of 5, 200 bootstrap resamples instead of 1,000"),
    "mining": Bench("bench_mining.py",
                    ("--frames", "1000000", "--wide-frames", "200000", "--repeat", "5"),
                    ("--frames", "400000", "--wide-frames", "80000", "--repeat", "3"),
                    "mining.md", "400,000 / 80,000 frames instead of 1,000,000 / 200,000; "
                                 "3 rounds instead of 5"),
    "frontend": Bench("bench_frontend.py", ("--batch", "64", "--repeat", "5", "--threads", "1,2"),
                      ("--batch", "32", "--repeat", "3", "--threads", "1,2"), "frontend.md",
                      "batches of 32 clips instead of 64, 3 rounds instead of 5"),
    "reader": Bench("bench_reader.py", ("--clips", "2041789", "--repeat", "3"),
                    ("--clips", "200000", "--repeat", "2", "--item-clips", "256",
                     "--format-clips", "32"), "reader.md",
                    "a 200,000-clip cache instead of 2,041,789; 2 rounds; fewer clips read"),
    "plan": Bench("bench_plan.py", ("--reps", "5", *_out("plan")),
                  ("--rows", "200000", "--reps", "2", *_out("plan")), "plan.md",
                  "200,000 segments instead of 2,041,789; 2 rounds instead of 5"),
    "loader": Bench("bench_loader.py", ("--repeat", "3"),
                    ("--clips", "256", "--compressed-clips", "64", "--repeat", "2"), "loader.md",
                    "256 pcm16 and 64 compressed clips instead of 1,024 and 192; 2 rounds"),
    "bytes": Bench("bench_bytes.py", _out("bytes"), _out("bytes"), "bytes.md"),
    "codec": Bench("bench_codec.py", ("--repeat", "5", *_out("codec")),
                   ("--repeat", "2", *_out("codec")), "codec.md", "2 rounds instead of 5"),
    "decoder": Bench("bench_decoder.py", ("--repeat", "10", *_out("decoder")),
                     ("--repeat", "3", *_out("decoder")), "decoder.md",
                     "3 rounds instead of 10"),
    "download": Bench("bench_download.py", ("--clips", "24", "--rounds", "3", *_out("download")),
                      ("--clips", "12", "--rounds", "1", *_out("download")), "download.md",
                      "12 clips instead of 24, 1 timed round instead of 3"),
    "interop": Bench("bench_interop.py", ("--clips", "256", "--repeat", "3"),
                     ("--clips", "64", "--repeat", "2"), "interop.md",
                     "64 clips instead of 256, 2 rounds instead of 3"),
    "refine": Bench("bench_refine.py", ("--threads", "1"),
                    ("--threads", "1", "--epochs", "3", "--repeat", "2"), "refine.md",
                    "3 training epochs instead of 6, 2 rounds instead of 3"),
    "triplets": Bench("bench_triplets.py", ("--threads", "1"),
                      ("--threads", "1", "--seeds", "1"), "triplets.md",
                      "one whole run instead of 3"),
    "training": Bench("bench_training.py", ("--device", "cpu", "--threads", "1"),
                      ("--device", "cpu", "--threads", "1", "--models", "fc"), "training.md",
                      "the fc model only (ResNet-50 and CNN14 left out)"),
    "features": Bench("bench_features.py", (), ("--skip-large",), "features.md",
                      "part (a) only: the real balanced tar, not the generated 2M-record "
                      "release"),
    "small_set": Bench("bench_small_set.py", (), ("--skip-old",), "small_set.md",
                       "the old defaults' run left out"),
}


def git(*args: str) -> str:
    out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else ""


def revision() -> str:
    """The commit, and a digest of the uncommitted changes when the tree differs from it."""
    commit = git("rev-parse", "--short=10", "HEAD") or "unknown"
    changed = [line for line in git("status", "--porcelain").splitlines() if line.strip()]
    if not changed:
        return f"commit `{commit}`"
    diff = subprocess.run(["git", "-C", str(REPO), "diff", "HEAD"], capture_output=True).stdout
    digest = hashlib.sha1(diff).hexdigest()[:10]  # noqa: S324 - a label, not security
    return (f"commit `{commit}` plus uncommitted changes ({len(changed)} paths; "
            f"`git diff HEAD` sha1 `{digest}`)")


def thread_env(threads: int) -> dict[str, str]:
    n = str(threads)
    return {"OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n,
            "OMP_WAIT_POLICY": "PASSIVE"}


def load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def stamp(path: Path, text: str) -> None:
    """Put ``text`` under the file's title, replacing an earlier stamp."""
    body = path.read_text(encoding="utf-8")
    if STAMP_BEGIN in body and STAMP_END in body:
        head, rest = body.split(STAMP_BEGIN, 1)
        body = head.rstrip("\n") + "\n" + rest.split(STAMP_END, 1)[1].lstrip("\n")
        if not head.strip():
            body = body.lstrip("\n")
    lines = body.splitlines()
    title = lines[:1] if lines and lines[0].startswith("# ") else []
    rest = "\n".join(lines[len(title):]).strip("\n")
    parts = [*title, f"{STAMP_BEGIN}\n{text}\n{STAMP_END}", rest]
    path.write_text("\n\n".join(p for p in parts if p) + "\n", encoding="utf-8")


def run(name: str, bench: Bench, args: argparse.Namespace) -> tuple[bool, str]:
    argv = list(bench.quick if args.quick else bench.full)
    command = " ".join(["python", f"benchmarks/{bench.script}", *argv])
    results = RESULTS / bench.results
    before_mtime = results.stat().st_mtime if results.exists() else None
    env = {**os.environ, **thread_env(args.threads)}
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{name}.log"
    started = datetime.datetime.now(datetime.UTC)
    load_before = load()
    t0 = time.perf_counter()
    print(f"[{started:%H:%M:%S}] {name}: {command} (load {load_before:.2f}; log {log})",
          flush=True)
    with open(log, "w") as fh:
        try:
            proc = subprocess.run([sys.executable, str(HERE / bench.script), *argv], cwd=REPO,
                                  env=env, stdout=fh, stderr=subprocess.STDOUT,
                                  timeout=args.timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    seconds = time.perf_counter() - t0
    load_after = load()
    written = results.exists() and results.stat().st_mtime != before_mtime
    if rc != 0 or not written:
        why = f"exit {rc}" if rc != 0 else f"{results.name} not written"
        print(f"  FAILED ({why}, {seconds:.0f} s); see {log}", flush=True)
        return False, why
    mode = (f"**quick mode**: {bench.quick_note or 'the same sizes as the full run'}; the "
            "full run is `python benchmarks/run_all.py --only " + name + "`"
            if args.quick else "full run")
    threads = ", ".join(f"{k}={v}" for k, v in thread_env(args.threads).items())
    stamp(results, (
        f"> Made by `{command}` (through `python benchmarks/run_all.py`), {revision()}, on "
        f"{started:%Y-%m-%d %H:%M} UTC; {mode}. Load average (1 min) {load_before:.2f} before "
        f"and {load_after:.2f} after, on {os.cpu_count()} cores shared with other jobs. "
        f"Thread settings: {threads} (a script's own thread options, shown in its command, "
        f"take precedence). Wall time {seconds:.0f} s."))
    print(f"  ok ({seconds:.0f} s, load {load_after:.2f}); stamped {results}", flush=True)
    return True, f"{seconds:.0f} s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (stamped as such)")
    ap.add_argument("--only", default="", help="comma-separated benchmark names")
    ap.add_argument("--skip", default="", help="comma-separated benchmark names to leave out")
    ap.add_argument("--threads", type=int, default=1,
                    help="OMP/OpenBLAS/MKL threads in each script's environment")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per benchmark")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = ap.parse_args()
    if args.list:
        for name, b in BENCHMARKS.items():
            print(f"{name:11s} {b.script:22s} results/{b.results}")
        return 0
    only = [x for x in args.only.split(",") if x]
    skip = {x for x in args.skip.split(",") if x}
    unknown = sorted((set(only) | skip) - set(BENCHMARKS))
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    names = [n for n in (only or BENCHMARKS) if n not in skip]
    outcome = {name: run(name, BENCHMARKS[name], args) for name in names}
    print("\nsummary:")
    for name, (ok, what) in outcome.items():
        print(f"  {name:11s} {'ok' if ok else 'FAILED'} ({what})")
    return 0 if all(ok for ok, _ in outcome.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
