"""The fc baseline's defaults against the linear anchor on a small set, through the commands a
user runs.

The issue: on 10 classes of real recordings (160 training and 80 held-out 10-s segments, each
a 5-s recording placed in noise) ``audioset train --model fc`` with its defaults reached mAP
0.434 where a logistic regression on pooled log-mel statistics reached 0.830. There are no
real recordings here, so ``benchmarks/small_set.py`` synthesises a set of that shape (ten sound
classes, random pitch, timing, level, onset and SNR against pink-to-brown noise, distractors),
written through the package's cache writer at 32 kHz. On it this script runs, per data seed:

* the anchor: ``audioset benchmark --models anchor`` (64-band log-mel from the package's front
  end, mean/std/max over time, one logistic regression per class, scikit-learn when installed);
* ``audioset train --model fc --eval none`` with its defaults, then ``audioset predict`` and
  ``audioset evaluate``: exactly what a user types;
* the same with the defaults before this change (``--epochs 10 --pool frame --input-norm no
  --time-shift no --band-mask 0 --specaugment no --lr 0.001 --dropout 0 --hidden
  1000,1000,1000 --num-workers 2``), unless ``--skip-old``;
* with ``--strong-anchor``, the best of a sweep of the anchor's C (0.01 ... 100) and of a
  multinomial logistic regression, chosen on the held-out split itself: a ceiling for any
  linear model on these features, favouring the anchor.

and prints the mAP of each over the 10 classes, then writes ``benchmarks/results/small_set.md``
with the command. Every command runs with one torch thread (``OMP_NUM_THREADS=1``) unless
``--threads`` says otherwise.

Usage::

    python benchmarks/bench_small_set.py                 # seed 0, anchor, new and old defaults
    python benchmarks/bench_small_set.py --seeds 0,1,2 --strong-anchor
    python benchmarks/bench_small_set.py --seeds 0 --skip-old --ablate \
        --out benchmarks/results/small_set_ablation.md      # what each part is worth
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from small_set import write_small_set  # noqa: E402

#: One change at a time from the fc's defaults (``--ablate``): what each part is worth.
ABLATIONS = {
    "per-example training (--pool frame)": ["--pool", "frame"],
    "decision pooling (--pool linsoft)": ["--pool", "linsoft"],
    "decision pooling (--pool max)": ["--pool", "max"],
    "feature mean pooling (--pool feature-mean)": ["--pool", "feature-mean"],
    "no time shift (--time-shift no)": ["--time-shift", "no"],
    "no band mask (--band-mask 0)": ["--band-mask", "0"],
    "SpecAugment instead of the band mask": ["--band-mask", "0", "--specaugment", "yes"],
    "no input normalisation (--input-norm no)": ["--input-norm", "no"],
    "500 steps (--steps 500)": ["--steps", "500"],
}

#: ``audioset train --model fc``'s defaults before this change, spelt out.
OLD_DEFAULTS = ["--epochs", "10", "--pool", "frame", "--input-norm", "no", "--time-shift", "no",
                "--band-mask", "0", "--specaugment", "no", "--lr", "0.001", "--dropout", "0",
                "--hidden", "1000,1000,1000", "--num-workers", "2"]


def _run(cmd: list[str], env: dict[str, str]) -> tuple[str, float]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout, time.perf_counter() - t0


def _cpu_seconds(t0: os.times_result) -> float:
    t1 = os.times()
    return (t1.children_user - t0.children_user) + (t1.children_system - t0.children_system)


def _fc(root: Path, name: str, extra: list[str], env: dict[str, str]) -> dict[str, float]:
    """train -> predict -> evaluate, as a user types them; mAP and times."""
    run = root / "runs" / name
    audioset = [sys.executable, "-m", "audioset_data"]
    t0 = os.times()
    _, train_s = _run([*audioset, "train", "--model", "fc", "--train", "small_train",
                       "--eval", "none", "--root", str(root), "--out", str(run), *extra], env)
    train_cpu = _cpu_seconds(t0)
    scores = root / f"{name}.npz"
    _, predict_s = _run([*audioset, "predict", "--checkpoint", str(run / "last.pt"),
                         "--source", "small_eval", "--root", str(root), "--scores",
                         str(scores)], env)
    report = root / f"{name}.json"
    _run([*audioset, "evaluate", "--scores", str(scores), "--split", "small_eval", "--root",
          str(root), "--json", str(report)], env)
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()
             if '"loss"' in x]
    return {"mAP": _map(report), "train s": train_s, "train cpu s": train_cpu,
            "predict s": predict_s, "steps": steps[-1] if steps else 0}


def _map(report: Path) -> float:
    data = json.loads(report.read_text())
    return float(data["summary"]["mAP"] if "summary" in data else data["mAP"])


def _anchor(root: Path, env: dict[str, str]) -> dict[str, float]:
    out = root / "runs" / "bench"
    _, secs = _run([sys.executable, "-m", "audioset_data", "benchmark", "--models", "anchor",
                    "--train", "small_train", "--eval", "small_eval", "--root", str(root),
                    "--out", str(out)], env)
    row = json.loads((out / "benchmark.json").read_text())["rows"][0]
    return {"mAP": float(row["mAP"]), "s": secs}


def _strong_anchor(root: Path) -> tuple[float, str]:
    """The best linear model on the anchor's features, chosen on the held-out split."""
    from sklearn.linear_model import LogisticRegression

    from audioset_data.baselines.anchor import LinearAnchor, pooled_logmel
    from audioset_data.evaluation.metrics import class_metrics
    from audioset_data.loaders import AudioSetDataset

    data = {}
    for split in ("small_train", "small_eval"):
        ds = AudioSetDataset(split, root=root)
        keys, x = pooled_logmel(ds)
        where = {k: i for i, k in enumerate(ds.keys)}
        y = ds.targets[[where[k] for k in keys]].toarray()[:, :10].astype(bool)
        data[split] = (x, y)
    (xt, yt), (xe, ye) = data["small_train"], data["small_eval"]
    best = (-1.0, "")
    for c in (0.01, 0.1, 1.0, 10.0, 100.0):
        ovr = LinearAnchor.fit(xt, yt, c=c).predict(xe)
        best = max(best, (float(class_metrics(ye, ovr).mean_ap), f"one-vs-rest, C={c:g}"))
        z = (xt - xt.mean(0)) / (xt.std(0) + 1e-6)
        ze = (xe - xt.mean(0)) / (xt.std(0) + 1e-6)
        multi = LogisticRegression(C=c, max_iter=5000).fit(z, yt.argmax(1)).predict_proba(ze)
        best = max(best, (float(class_metrics(ye, multi).mean_ap), f"multinomial, C={c:g}"))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0", help="data seeds, comma-separated (default 0)")
    parser.add_argument("--root", help="data root to write the caches in (default: a temp dir)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-old", action="store_true", help="skip the old defaults")
    parser.add_argument("--strong-anchor", action="store_true",
                        help="also the best linear model chosen on the held-out split")
    parser.add_argument("--extra", default="", help="extra flags for the new defaults' train")
    parser.add_argument("--ablate", action="store_true",
                        help="also train the defaults with one change at a time (ABLATIONS)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "small_set.md"))
    args = parser.parse_args(argv)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads), "TQDM_DISABLE": "1"}
    rows = []
    with tempfile.TemporaryDirectory(prefix="small-set-") as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            root = Path(args.root or tmp) / f"seed{seed}"
            if not (root / "cache" / "small_train").exists():
                write_small_set(root, seed=seed)
            row: dict[str, object] = {"seed": seed, "anchor": _anchor(root, env)}
            row["fc"] = _fc(root, "fc", args.extra.split(), env)
            if not args.skip_old:
                row["fc old"] = _fc(root, "fc_old", OLD_DEFAULTS, env)
            if args.strong_anchor:
                row["strong anchor"] = _strong_anchor(root)
            if args.ablate:
                row["ablations"] = {name: _fc(root, f"fc_ablation{i}", flags, env)
                                    for i, (name, flags) in enumerate(ABLATIONS.items())}
            print(json.dumps(row), flush=True)
            rows.append(row)
    _write(Path(args.out), rows, args, argv if argv is not None else sys.argv[1:])
    return 0


def _write(path: Path, rows: list[dict], args: argparse.Namespace, argv: list[str]) -> None:
    lines = ["# fc defaults against the linear anchor on a small set", "",
             f"Command: `python benchmarks/bench_small_set.py {' '.join(argv)}`".rstrip() + "",
             "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores "
             f"(shared with other jobs), Python {platform.python_version()}, "
             f"{args.threads} torch thread(s) per command.", "",
             "Data: `benchmarks/small_set.py`, 10 synthetic sound classes, 160 training and 80 "
             "held-out 10-s clips at 32 kHz (a 3-6 s event at a random onset, SNR -9..+6 dB "
             "against pink-to-brown noise, half the clips with an unlabelled distractor), "
             "written by the cache writer; mAP over the 10 classes of the held-out clips.", "",
             "| seed | anchor mAP | fc defaults mAP | fc steps | fc train s (CPU s) | "
             "old defaults mAP | old steps | strongest linear (chosen on held-out) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fc, old = r["fc"], r.get("fc old")
        strong = r.get("strong anchor")
        lines.append(
            f"| {r['seed']} | {r['anchor']['mAP']:.3f} | {fc['mAP']:.3f} | {fc['steps']} | "
            f"{fc['train s']:.0f} ({fc['train cpu s']:.0f}) | "
            f"{'–' if old is None else format(old['mAP'], '.3f')} | "
            f"{'–' if old is None else old['steps']} | "
            f"{'–' if strong is None else f'{strong[0]:.3f} ({strong[1]})'} |")
    if len(rows) > 1:
        a = np.mean([r["anchor"]["mAP"] for r in rows])
        f = np.mean([r["fc"]["mAP"] for r in rows])
        lines.append(f"| mean | {a:.3f} | {f:.3f} | | | | | |")
    if any("ablations" in r for r in rows):
        lines += ["", "One change at a time from the fc's defaults (mAP, the same commands "
                  "with the flags named):", "",
                  "| change | " + " | ".join(f"seed {r['seed']}" for r in rows) + " |",
                  "|---|" + "---|" * len(rows)]
        lines.append("| none (the defaults) | "
                     + " | ".join(f"{r['fc']['mAP']:.3f}" for r in rows) + " |")
        for name in ABLATIONS:
            lines.append(f"| {name} | " + " | ".join(
                f"{r['ablations'][name]['mAP']:.3f}" for r in rows) + " |")
    lines += ["", "Commands per seed (R the data root):", "",
              "```bash",
              "audioset benchmark --models anchor --train small_train --eval small_eval "
              "--root R --out R/runs/bench",
              "audioset train --model fc --train small_train --eval none --root R "
              "--out R/runs/fc",
              "audioset predict --checkpoint R/runs/fc/last.pt --source small_eval --root R "
              "--scores R/fc.npz",
              "audioset evaluate --scores R/fc.npz --split small_eval --root R --json R/fc.json",
              f"audioset train --model fc ... {' '.join(OLD_DEFAULTS)}   # the old defaults",
              "```", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
