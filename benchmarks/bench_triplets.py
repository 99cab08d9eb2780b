"""Unsupervised triplet embeddings against log-mel, on synthetic caches: the seed's
semi-supervised experiment and nearest-neighbour label agreement.

SYNTHETIC DATA ONLY. Each run writes two masked-band caches with the tests' generator
(``tests/triplet_caches.py``: 4-s clips, class k a narrow band at its own centre under a loud
background whose spectral colour changes every second; every third clip carries two classes):
an unlabelled training cache and a held-out evaluation cache from other seeds. An ``fc`` trunk
is trained on triplets of the training cache (all four rules, weights 1) without labels. Then,
on 960-ms VGGish frames:

* **semi-supervised**: a logistic-regression probe (``linear_probe``: standardised inputs,
  Adam, 300 full-batch steps) is trained on the frames of a labelled fraction of the training
  clips (0.5 % by default, but at least one clip per class: on small caches the lowest
  fractions all give that minimal cover) and scores the evaluation clips (mean
  of frame probabilities); mAP through ``audioset_data.evaluation.evaluate``. The same probe
  runs on three inputs: the embedding, the flattened 96 x 64 log-mel patch (the embedding's own
  input; the named baseline) and the patch's mean over time (64 values, a stronger log-mel
  baseline here).
* **neighbour agreement**: the share of evaluation frames whose nearest frame of another clip
  shares a label (embedding: cosine; log-mel: euclidean and cosine on the patch, euclidean on
  the time mean).

Figures are medians over ``--seeds`` whole runs (new caches, new training) and, for the probe,
over ``--draws`` labelled subsets per run. This is a quality benchmark, not a timing one; the
training throughput is printed for reference only.

Usage::

    python benchmarks/bench_triplets.py [--seeds 3] [--steps 400] [--fractions 0.005,0.03,0.1]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))  # the masked-band cache generator the tests share

from triplet_caches import masked_band_cache  # noqa: E402

from audioset_data.baselines.triplet_training import (  # noqa: E402
    TripletConfig,
    TripletTrainer,
    neighbour_agreement,
    semi_supervised,
)
from audioset_data.baselines.triplets import TripletRules  # noqa: E402
from audioset_data.loaders import VGGISH, AudioSetDataset, LogMel  # noqa: E402

INPUTS = ("embedding", "log-mel patch", "log-mel time mean")


def frames_of(folder: Path, model: torch.nn.Module) -> dict[str, object]:
    """Every frame of a cache: log-mel patches, the model's embedding, clip of each frame."""
    data = AudioSetDataset(folder, dtype="int16")
    batch = next(iter(data.loader(len(data), shuffle=False)))
    x, ci = LogMel(VGGISH, input_rate=data.cache.sample_rate).examples(batch["waveform"],
                                                                        batch["length"])
    with torch.no_grad():
        emb = model.eval().embedding(x).numpy()
    return {"embedding": emb, "log-mel patch": x.reshape(len(x), -1).numpy(),
            "log-mel time mean": x.mean(dim=1).numpy(), "clip": ci.numpy(),
            "targets": batch["target"].numpy().astype(bool), "keys": list(batch["key"]),
            "mids": list(data.cache.label_mids)}


def one_run(seed: int, args: argparse.Namespace, work: Path) -> dict[str, object]:
    train, held = work / f"train{seed}", work / f"held{seed}"
    masked_band_cache(train, per_class=args.train_per_class, seed=seed, prefix=f"t{seed}",
                      classes=args.classes)
    masked_band_cache(held, per_class=args.eval_per_class, seed=1000 + seed,
                      prefix=f"e{seed}", classes=args.classes)
    config = TripletConfig(model="fc", train=str(train), out=str(work / f"run{seed}"),
                           steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                           hidden=tuple(int(h) for h in args.hidden.split(",")),
                           device="cpu", seed=seed, checkpoint_every=0, log_every=50,
                           rules=TripletRules(near_frames=150))
    trainer = TripletTrainer(config, progress=False)
    t0 = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - t0
    tr, ev = frames_of(train, trainer.model), frames_of(held, trainer.model)
    ci = ev["clip"]
    frame_targets = ev["targets"][ci]
    agree = {
        "embedding (cosine)": neighbour_agreement(ev["embedding"], frame_targets, ci),
        "log-mel patch (euclidean)": neighbour_agreement(ev["log-mel patch"], frame_targets, ci,
                                                         metric="euclidean"),
        "log-mel patch (cosine)": neighbour_agreement(ev["log-mel patch"], frame_targets, ci),
        "log-mel time mean (euclidean)": neighbour_agreement(ev["log-mel time mean"],
                                                             frame_targets, ci,
                                                             metric="euclidean"),
    }
    probe: dict[tuple[float, str], list[float]] = {}
    labelled: dict[float, list[int]] = {}
    for fraction in args.fraction_list:
        for draw in range(args.draws):
            for name in INPUTS:
                got = semi_supervised(tr[name], tr["clip"], tr["targets"], ev[name], ci,
                                      ev["targets"], fraction=fraction, seed=draw,
                                      mids=ev["mids"], test_keys=ev["keys"])
                probe.setdefault((fraction, name), []).append(got["mAP"])
                labelled.setdefault(fraction, []).append(got["labelled"])
    prior = float(ev["targets"].mean(axis=0).mean())
    print(f"seed {seed}: trained {result.step} steps in {seconds:.1f} s "
          f"({result.step * args.batch_size / seconds:.0f} triplets/s), final loss "
          f"{result.loss:.4f}; agreement " +
          ", ".join(f"{k} {v:.3f}" for k, v in agree.items()), flush=True)
    return {"agree": agree, "probe": probe, "labelled": labelled, "prior": prior,
            "train_clips": len(tr["targets"]), "eval_clips": len(ev["targets"]),
            "eval_frames": len(ci), "seconds": seconds}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3, help="whole runs (new caches and training)")
    p.add_argument("--classes", type=int, default=8)
    p.add_argument("--train-per-class", type=int, default=40)
    p.add_argument("--eval-per-class", type=int, default=12)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--hidden", default="256,64")
    p.add_argument("--fractions", default="0.005,0.03,0.1")
    p.add_argument("--draws", type=int, default=5, help="labelled subsets per run")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(HERE / "results" / "triplets.md"))
    args = p.parse_args()
    lines: list[str] = []

    def say(*parts: object, **kwargs: object) -> None:
        print(*parts, **kwargs)
        lines.append(" ".join(str(x) for x in parts))

    args.fraction_list = [float(f) for f in args.fractions.split(",")]
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    say(f"{platform.machine()}, {os.cpu_count()} cores, no GPU used, Python "
        f"{sys.version.split()[0]}, torch {torch.__version__}, numpy {np.__version__}, "
        f"threads {args.threads}; SYNTHETIC masked-band caches", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [one_run(seed, args, Path(tmp)) for seed in range(1, args.seeds + 1)]
    r0 = runs[0]
    say(f"\n{args.seeds} runs; each: {r0['train_clips']} unlabelled training clips, "
        f"{r0['eval_clips']} evaluation clips ({r0['eval_frames']} frames), "
        f"{args.classes} classes; fc {args.hidden}, {args.steps} steps of "
        f"{args.batch_size} triplets; chance mAP (class prior) "
        f"{statistics.median(r['prior'] for r in runs):.3f}; whole run "
        f"{(time.perf_counter() - start) / 60:.1f} min")
    say("\nSemi-supervised probe, mAP on the evaluation cache (median over runs x draws; "
        "min - max)\n")
    say("| labelled fraction | labelled clips | " + " | ".join(INPUTS)
        + " | embedding / log-mel patch | embedding / log-mel time mean |")
    say("|---|---|" + "---|" * (len(INPUTS) + 2))
    for f in args.fraction_list:
        cells, med = [], {}
        for name in INPUTS:
            values = [v for r in runs for v in r["probe"][(f, name)]]
            med[name] = statistics.median(values)
            cells.append(f"{med[name]:.3f} ({min(values):.3f} - {max(values):.3f})")
        counts = [n for r in runs for n in r["labelled"][f]]
        say(f"| {100 * f:g} % | {min(counts)} - {max(counts)} | " + " | ".join(cells)
            + f" | {med['embedding'] / med['log-mel patch']:.2f}x"
            + f" | {med['embedding'] / med['log-mel time mean']:.2f}x |")
    say("\nNearest-neighbour label agreement on evaluation frames (median over runs; "
        "min - max)\n")
    say("| features | agreement | embedding / this |")
    say("|---|---|---|")
    ours = statistics.median(r["agree"]["embedding (cosine)"] for r in runs)
    for name in r0["agree"]:
        values = [r["agree"][name] for r in runs]
        med = statistics.median(values)
        say(f"| {name} | {med:.3f} ({min(values):.3f} - {max(values):.3f}) | "
            f"{ours / med:.2f}x |")
    command = "python benchmarks/bench_triplets.py " + " ".join(sys.argv[1:])
    Path(args.out).write_text(
        "# Unsupervised triplet embeddings vs log-mel (synthetic caches)\n\n"
        "**Synthetic data only.** These figures come from generated caches, not AudioSet "
        "audio: they show that the pipeline works and how it behaves on a task whose answer "
        "is known, not how the method does on real AudioSet.\n\n"
        f"Command: `{command.strip()}`\n\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
