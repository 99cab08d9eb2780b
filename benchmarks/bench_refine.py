"""Weak-label refinement measured against real strong labels, and what refining costs.

The clips are the real strong-labelled clips of ``../shared/data/strong/`` (gun sounds in the
eval file, snoring and baby cry in the train files: six labels, real onsets and offsets). Their
audio is not available here, so each clip is synthesised: quiet white noise throughout and, for
each strong event, band noise at its label's own centre frequency exactly from onset to offset
(``tests/test_refine.py::write_event_cache``, the project's cache writer). The clips' weak labels
are the labels with an event.

1. An ``fc`` frame model is trained on those weak labels only (clip labels on every example,
   as the baselines train), on the same clips: refinement relabels a model's own training set.
2. :func:`~audioset_data.baselines.refine.refine_split` refines the cache (threshold 0.66 by
   default; other thresholds are read from the same stored scores).
3. :func:`~audioset_data.baselines.refine.strong_comparison` counts, over the weak-positive
   (clip, label) pairs, the precision and recall of the kept 960 ms frames against the frames
   the strong events touch, beside the trivial "keep every frame" rule.
4. Timing: ``refine_split`` (score, normalise, store) against plain scoring of the same clips
   with the same model and batch size (``score_loader``, what ``predict`` runs), warmed up,
   interleaved, medians; reported per 1,000 clips.

Usage::

    python benchmarks/bench_refine.py [--epochs 6] [--repeat 3] [--thresholds 0.5,0.66,0.8]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # the test module's cache writer: tests/test_refine.py

from audioset_data.baselines import TrainConfig, train  # noqa: E402
from audioset_data.baselines.inference import frontend_for, score_loader  # noqa: E402
from audioset_data.baselines.prediction import load_trained  # noqa: E402
from audioset_data.baselines.refine import RefinedTargets, refine_split  # noqa: E402
from audioset_data.baselines.refine_report import (  # noqa: E402
    format_comparison,
    strong_comparison,
)
from audioset_data.loaders import AudioSetDataset, collate  # noqa: E402
from audioset_data.segments.labels import LabelIndex  # noqa: E402
from audioset_data.strong.events import StrongLabels, load_strong  # noqa: E402
from tests.test_refine import write_event_cache  # noqa: E402

STRONG = REPO.parent / "shared" / "data" / "strong"
FILES = ("gun_ov_audioset_eval_strong.tsv", "snore_ov_audioset_train_strong.tsv",
         "baby_cry_ov_audioset_train_strong.tsv")
WORK = HERE / "_work" / "refine"
RESULT = HERE / "results" / "refine.md"


def strong_rows(index: LabelIndex) -> tuple[StrongLabels, list[str]]:
    """The events of the three files as one table, and the mids they use (file order)."""
    parts = [load_strong(STRONG / f, label_index=index, vocabulary={}) for f in FILES]
    events = pd.concat([p.events for p in parts], ignore_index=True)
    mids = list(dict.fromkeys(events["mid"]))
    return StrongLabels(events, index, {}, source=", ".join(FILES)), mids


def clips_of(strong: StrongLabels, mids: list[str], limit: int | None):
    col = {m: i for i, m in enumerate(mids)}
    clips = []
    for _, ev in strong.events.groupby("key", sort=True):
        clips.append((str(ev["ytid"].iloc[0]), float(ev["segment_start"].iloc[0]),
                      [(col[m], float(a), float(b))
                       for m, a, b in zip(ev["mid"], ev["onset"], ev["offset"], strict=True)]))
    return clips[:limit] if limit else clips


def time_once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=0, help="use the first N clips (0: all)")
    ap.add_argument("--epochs", type=float, default=6.0)
    ap.add_argument("--hidden", default="256")
    ap.add_argument("--thresholds", default="0.5,0.66,0.8")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULT))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    began = time.perf_counter()

    index = LabelIndex.from_file(REPO.parent / "shared" / "data" / "segments" /
                                 "class_labels_indices.csv")
    names = dict(zip(index.mids, index.names, strict=True))
    strong, mids = strong_rows(index)
    clips = clips_of(strong, mids, args.clips or None)
    hidden = tuple(int(h) for h in args.hidden.split(","))
    shutil.rmtree(WORK, ignore_errors=True)
    t0 = time.perf_counter()
    weak = write_event_cache(WORK / "all", clips, mids, seed=0)
    for fold in (0, 1):
        write_event_cache(WORK / f"fold{fold}", clips[fold::2], mids, seed=0)
    print(f"caches: {len(clips)} clips, {weak.sum()} weak labels "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)

    def fit(cache: str) -> tuple[Path, float]:
        t0 = time.perf_counter()
        train(TrainConfig(model="fc", train=str(WORK / cache), eval=None,
                          out=str(WORK / f"run-{cache}"), batch_size=16, hidden=hidden,
                          lr=2e-3, num_workers=0, epochs=args.epochs, checkpoint_every=0,
                          log_every=100, seed=0, sampler="balanced"), progress=False)
        return WORK / f"run-{cache}" / "last.pt", time.perf_counter() - t0

    checkpoint, t_train = fit("all")
    own = refine_split(checkpoint, WORK / "all", batch_size=args.batch_size)
    fold_models = [fit(f"fold{f}")[0] for f in (0, 1)]
    # each fold refined by the model trained on the other fold
    crossed = RefinedTargets.concat([
        refine_split(fold_models[1 - f], WORK / f"fold{f}", batch_size=args.batch_size)
        for f in (0, 1)])
    print(f"trained fc {hidden}, {args.epochs:g} epochs: all clips {t_train:.0f} s, and "
          f"each half", flush=True)

    thresholds = [float(t) for t in args.thresholds.split(",")]
    setups = {"same clips": own, "2-fold": crossed}
    tables = {}
    for name, refined in setups.items():
        for t in thresholds:
            view = RefinedTargets(refined.keys, refined.label_mids, refined.pair_clip,
                                  refined.pair_label, refined.scores, refined.valid, t)
            tables[name, t] = strong_comparison(view, strong, names=names)
            o = tables[name, t].iloc[-1]
            print(f"{name}, threshold {t:g}: precision {o.precision:.3f} recall "
                  f"{o.recall:.3f} (keep-all {o.keep_all_precision:.3f} / "
                  f"{o.keep_all_recall:.3f})", flush=True)

    # timing: refine_split against plain scoring, interleaved
    model, _ = load_trained(checkpoint)
    dataset = AudioSetDataset(WORK / "all", dtype="int16")
    frontend = frontend_for(model, dataset.cache.sample_rate)

    def score_only() -> None:
        loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size,
                                             collate_fn=collate)
        score_loader(model, frontend, loader, torch.device("cpu"), frame_level=True)

    def refine_once() -> None:
        refine_split(checkpoint, WORK / "all", batch_size=args.batch_size,
                     out=WORK / "timed.npz")

    score_only()
    refine_once()
    times: dict[str, list[float]] = {"refine": [], "score": []}
    for _ in range(args.repeat):
        times["refine"].append(time_once(refine_once))
        times["score"].append(time_once(score_only))
    med = {k: statistics.median(v) for k, v in times.items()}
    per_k = {k: v * 1000 / len(clips) for k, v in med.items()}
    print(f"refine {med['refine']:.1f} s, score only {med['score']:.1f} s "
          f"({med['refine'] / med['score']:.2f}x)", flush=True)

    write_report(args, clips, weak, mids, names, own, tables, times, per_k,
                 t_train, time.perf_counter() - began)


def write_report(args, clips, weak, mids, names, refined, tables, times, per_k, t_train,
                 total) -> None:
    cmd = "python benchmarks/bench_refine.py " + " ".join(sys.argv[1:])
    cpu = f"{platform.machine()}, {os.cpu_count()} cores shared with other jobs, no GPU"
    per_label = pd.Series(weak.sum(axis=0), index=mids)
    lines = [
        "# Weak-label refinement against real strong labels",
        "",
        f"Command: `{cmd.strip()}` (threads {args.threads}) on {cpu}, Python "
        f"{platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}. "
        f"Whole run: {total / 60:.1f} min.",
        "",
        f"Clips: the {len(clips)} clips of the real strong-label rows in `shared/data/strong/` "
        f"({', '.join(FILES)}); {int(weak.sum())} weak (clip, label) pairs: " +
        ", ".join(f"{names.get(m, m)} {n}" for m, n in per_label.items()) + ". The audio is "
        "synthetic: quiet white noise, plus band noise at each label's own centre frequency "
        "from each real event's onset to its offset. These files keep only a few target "
        "labels per clip, so other sounds of the real clips are absent here.",
        "",
        f"Models: `fc` (hidden {args.hidden}, balanced sampler, batch 16, {args.epochs:g} "
        "epochs) trained on the weak labels only, every example taking its clip's labels. "
        f"Two setups. **same clips**: one model trained on all {len(clips)} clips "
        f"({t_train:.0f} s) refines those same clips, as when a model relabels its own "
        "training set. **2-fold**: the clips are split in two halves (alternate clips in key "
        "order); each half is refined by a model trained on the other half only, and the two "
        "halves are joined (`RefinedTargets.concat`). Refined with `refine_split`, compared "
        "with `strong_comparison`: over the weak-positive (clip, label) pairs, every 960 ms "
        "frame (10 per clip) is kept or dropped, and is strong-present when an event of the "
        "label overlaps it at all. Keep-all keeps every frame (recall 1, precision = share of "
        "present frames); dropping frames at random would keep about that precision and lose "
        "recall in proportion, so refined precision above keep-all is what the model's frame "
        "scores add.",
        "",
        "## Overall, by setup and threshold",
        "",
        "| setup | threshold | frames kept | precision | recall | F1 | keep-all precision "
        "| keep-all recall | keep-all F1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (setup, t), table in tables.items():
        o = table.iloc[-1]
        lines.append(f"| {setup} | {t:g} | {o.kept / o.frames:.1%} | {o.precision:.3f} | "
                     f"{o.recall:.3f} | {o.f1:.3f} | {o.keep_all_precision:.3f} | "
                     f"{o.keep_all_recall:.3f} | {o.keep_all_f1:.3f} |")
    for (setup, t), table in tables.items():
        if t == 0.66:
            lines += ["", f"## Per label, {setup}, threshold 0.66", "",
                      format_comparison(table).rstrip()]
    ratio = statistics.median(times["refine"]) / statistics.median(times["score"])
    lines += [
        "",
        "## Time",
        "",
        f"Refining the {len(clips)} clips (`refine_split`: load the checkpoint, score every "
        "example, normalise, write the `.npz` beside the cache) against plain scoring of the "
        "same clips with the same model and batch size (`score_loader`, what `predict` runs); "
        f"batch {args.batch_size}, one warm-up each, {args.repeat} interleaved rounds, medians.",
        "",
        "| contender | seconds (median) | min – max | per 1,000 clips |",
        "|---|---|---|---|",
        f"| refine_split | {statistics.median(times['refine']):.2f} | "
        f"{min(times['refine']):.2f} – {max(times['refine']):.2f} | {per_k['refine']:.1f} s |",
        f"| score_loader only | {statistics.median(times['score']):.2f} | "
        f"{min(times['score']):.2f} – {max(times['score']):.2f} | {per_k['score']:.1f} s |",
        "",
        f"Ratio refine / score only: {ratio:.2f}x. Stored file: "
        f"{refined.path.stat().st_size / 1e3:.0f} kB for {len(refined)} clips.",
        "",
    ]
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
