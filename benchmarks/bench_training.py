"""Training and inference throughput of the baseline models, in clips per second.

For each model (``fc``, ``resnet50``, ``cnn14``) one :class:`~audioset_data.baselines.Trainer`
is built on a cache the script writes itself in a temporary folder (``--cache-labels`` ×
``--clips-per-label`` band-noise clips of 10 s at 32 kHz, pcm16, through the project's
``CacheWriter`` via ``tests/training_caches.py``), with the trainer's defaults otherwise
(AdamW, gradient clipping at 5, no mixup, no SpecAugment). Then, per model:

**Model only** (synthetic batches already on the device, no data loading):

* ``train, waveform``: ``Trainer.train_step`` on a batch of float32 waveforms on the device
  (front end → model → loss → backward → clip → AdamW step → schedule step);
* ``train, log-mel``: the same step from the model input precomputed once (the front end's
  output), so the front end's share of the step shows;
* ``infer, waveform`` / ``infer, log-mel``: the forward pass alone (``eval()``, no grad).

**End to end from the cache**:

* ``train, cache, N workers``: ``Trainer.train_step`` on the batches of
  ``AudioSetDataset.loader`` (float32, the balanced sampler, ``drop_last``, persistent workers,
  pinned memory on CUDA). The timed span runs from the first timed batch request to the last
  step's end, so it includes waiting for the loader. ``Trainer.fit`` itself is not timed: it
  rebuilds its DataLoader every epoch (workers restart), which on a cache of a few hundred
  clips would measure worker start-up rather than steady training;
* ``..., int16`` (with ``--dtypes float32,int16``): the loader hands over the stored int16
  (half the bytes between processes and to the device) and the front end scales it;
* ``infer, cache, N workers``: ``score_loader`` (the project's scoring path: forward, sigmoid,
  scores to the host, frame scores pooled per clip) over the next ``--steps`` batches of a
  persistent loader reading the cache in order.

The baseline each row is compared with is the model alone on precomputed log-mel on the
device: the ceiling that no data path or front end can beat (noise aside). Every contender runs
``--warmup`` steps first (compilation, cuDNN autotuning, allocator, page cache), then the
contenders alternate for ``--repeat`` rounds of ``--steps`` steps each, and the table gives
medians. On CUDA the device is synchronised before and after each timed span.

The goal (from the issue): on one H100, CNN14 training end to end from the cache at 1,000
clips/s or more; for scale, the published PANNs training log shows about 39 clips/s on a V100.

Usage::

    python benchmarks/bench_training.py --threads 1           # CPU defaults, shared CPU
    python benchmarks/bench_training.py --device cuda --repeat 3     # 128 clips a batch, bf16

On a CPU shared with other jobs pass ``--threads 1``: with torch's two intra-op threads on two
busy cores a step waits on whichever thread another job has preempted, and the same fc step
took anywhere from 0.05 s to 0.9 s here; with one thread it holds at about 0.08 s.

``--batch-size`` is one number for every model or ``model=N`` pairs
(``fc=8,resnet50=1,cnn14=2``, the CPU default; 128 on CUDA).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import logging
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))  # the one cache generator: tests/training_caches.py

from training_caches import write_sound_cache  # noqa: E402

from audioset_data.baselines.config import TrainConfig  # noqa: E402
from audioset_data.baselines.inference import autocast, model_inputs, score_loader  # noqa: E402
from audioset_data.baselines.training import Trainer  # noqa: E402
from audioset_data.loaders import AudioSetDataset, BalancedSampler  # noqa: E402

RATE = 32000
SECONDS = 10.0
MODELS = ("fc", "resnet50", "cnn14")
CPU_BATCH = {"fc": 8, "resnet50": 1, "cnn14": 2}  # a resnet50 clip is 10 examples
CUDA_BATCH = 128
GOAL = 1000.0  # clips/s, CNN14 training end to end on one H100
PANNS_V100 = 39.0  # clips/s in the published PANNs training log

logger = logging.getLogger("bench_training")


def device_name(device: torch.device) -> str:
    """The accelerator's name, or the CPU model from /proc/cpuinfo."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return found.group(1).strip() if found else platform.machine()


def parse_batch(text: str | None, models: list[str], cuda: bool) -> dict[str, int]:
    """Batch size per model from ``"8"`` or ``"fc=8,cnn14=4"`` (unnamed models: defaults)."""
    sizes = {m: CUDA_BATCH if cuda else CPU_BATCH.get(m, 8) for m in models}
    if not text:
        return sizes
    if "=" not in text:
        return dict.fromkeys(models, int(text))
    for part in text.split(","):
        name, _, value = part.partition("=")
        if name.strip() not in sizes:
            raise SystemExit(f"--batch-size names {name.strip()!r}, not one of {models}")
        sizes[name.strip()] = int(value)
    return sizes


class Clock:
    """Wall time of a span, with the device drained at both ends on CUDA."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def clips_per_s(self, run: Callable[[], int]) -> float:
        self.sync()
        t0 = time.perf_counter()
        clips = run()
        self.sync()
        return clips / (time.perf_counter() - t0)


def synthetic_batch(trainer: Trainer, batch: int, seed: int) -> dict[str, torch.Tensor]:
    """Noise waveforms of full length and a skewed multi-label target, on the device."""
    g = torch.Generator().manual_seed(seed)
    n = trainer.train_set.cache.clip_samples
    labels = trainer.train_set.targets.shape[1]
    wave = 0.1 * torch.randn(batch, n, generator=g)
    target = (torch.rand(batch, labels, generator=g) < 0.01).float()
    target[:, 0] = 1.0
    return {"waveform": wave.to(trainer.device), "target": target.to(trainer.device),
            "length": torch.full((batch,), n, dtype=torch.int64, device=trainer.device)}


def logmel_step(trainer: Trainer, x: torch.Tensor, target: torch.Tensor) -> float:
    """``Trainer.train_step`` without the front end: from the model input on."""
    with autocast(trainer.device, trainer.bf16):
        logits = trainer.net(x)
    loss = trainer.criterion(logits.float(), target)
    trainer.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if trainer.config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), trainer.config.grad_clip)
    trainer.optimizer.step()
    trainer.scheduler.step()
    return float(loss.detach())


def model_only(trainer: Trainer, batch: int) -> dict[str, Callable[[int], int]]:
    """Contenders on a synthetic batch on the device; each runs ``steps`` and returns clips."""
    data = synthetic_batch(trainer, batch, seed=1)
    with torch.no_grad(), autocast(trainer.device, trainer.bf16):
        x, clip_index = model_inputs(trainer.frontend, trainer.frame_level, data["waveform"],
                                     data["length"])
    if trainer.device.type == "cuda" and trainer.config.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    target = data["target"] if clip_index is None else data["target"][clip_index]

    def train_wave(steps: int) -> int:
        for _ in range(steps):
            trainer.train_step(data)
        return steps * batch

    def train_logmel(steps: int) -> int:
        for _ in range(steps):
            logmel_step(trainer, x, target)
        return steps * batch

    def infer(from_wave: bool) -> Callable[[int], int]:
        def run(steps: int) -> int:
            trainer.net.eval()
            try:
                with torch.no_grad(), autocast(trainer.device, trainer.bf16):
                    for _ in range(steps):
                        inp = model_inputs(trainer.frontend, trainer.frame_level,
                                           data["waveform"], data["length"])[0] \
                            if from_wave else x
                        trainer.net(inp).float()
            finally:
                trainer.net.train()
            return steps * batch
        return run

    return {"train, waveform": train_wave, "train, log-mel": train_logmel,
            "infer, waveform": infer(True), "infer, log-mel": infer(False)}


def endless(loader: Any, sampler: BalancedSampler | None = None) -> Iterator[dict[str, Any]]:
    """The loader's batches, epoch after epoch (workers persist between epochs)."""
    epoch = 0
    while True:
        if sampler is not None:
            sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def from_cache(trainer: Trainer, batch: int, workers: int, dtype: str,
               streams: list[Iterator[Any]]) -> dict[str, Callable[[int], int]]:
    """Contenders reading the cache through the DataLoader with ``workers`` processes, as
    float32 (what the trainer reads) or int16 (scaled by the front end on the device); their
    batch streams are added to ``streams`` (closing one stops its workers)."""
    data = trainer.train_set if dtype == "float32" else \
        AudioSetDataset(trainer.train_set.cache.folder, dtype=dtype)
    cuda = trainer.device.type == "cuda"
    sampler = BalancedSampler(data.targets, seed=0)
    train_batches = endless(data.loader(batch_size=batch, sampler=sampler, num_workers=workers,
                                        pin_memory=cuda, drop_last=True), sampler)
    score_batches = endless(data.loader(batch_size=batch, shuffle=False, num_workers=workers,
                                        pin_memory=cuda, drop_last=True))
    streams += [train_batches, score_batches]

    def train(steps: int) -> int:
        clips = 0
        for _ in range(steps):
            item = next(train_batches)
            trainer.train_step(item)
            clips += len(item["key"])
        return clips

    def infer(steps: int) -> int:
        scores = score_loader(trainer.net, trainer.frontend,
                              itertools.islice(score_batches, steps), trainer.device,
                              frame_level=trainer.frame_level, bf16=trainer.bf16)
        return len(scores.ids)

    tag = f"cache, {workers} workers" + ("" if dtype == "float32" else f", {dtype}")
    return {f"train, {tag}": train, f"infer, {tag}": infer}


def bench_model(name: str, cache: Path, out: Path, args: argparse.Namespace,
                batch: int) -> dict[str, list[float]]:
    """Clips/s of every contender for one model, ``repeat`` interleaved rounds each."""
    config = TrainConfig(model=name, train=str(cache), eval=None, out=str(out / name),
                         batch_size=batch, num_workers=0, device=args.device,
                         precision=args.precision, compile=args.compile,
                         channels_last=args.channels_last, checkpoint_every=0, epochs=1.0,
                         resume=False, seed=0)
    trainer = Trainer(config, progress=False)
    contenders = model_only(trainer, batch)
    streams: list[Iterator[Any]] = []
    for dtype in args.dtypes:
        for workers in args.workers:
            contenders.update(from_cache(trainer, batch, workers, dtype, streams))
    clock = Clock(trainer.device)
    for label, run in contenders.items():
        t0 = time.perf_counter()
        run(args.warmup)
        logger.info("%s: warmed up %s in %.1f s", name, label, time.perf_counter() - t0)
    results: dict[str, list[float]] = {label: [] for label in contenders}
    for r in range(args.repeat):
        for label, run in contenders.items():
            results[label].append(clock.clips_per_s(lambda run=run: run(args.steps)))
        logger.info("%s: round %d/%d done", name, r + 1, args.repeat)
    for stream in streams:
        stream.close()
    del contenders, trainer
    gc.collect()
    if args.device == "cuda":
        torch.cuda.empty_cache()
    return results


def rate(value: float) -> str:
    """Clips/s to three significant figures (whole numbers from 100 up)."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def percent(share: float) -> str:
    """A share as a whole percentage, without a "-0%" for noise around zero."""
    return f"{0.0 if abs(share) < 0.005 else share:.0%}"


def report(args: argparse.Namespace, device: torch.device, batches: dict[str, int],
           n_clips: int, results: dict[str, dict[str, list[float]]], wall: float) -> str:
    """The markdown table and the notes around it."""
    bf16 = args.precision == "bf16" or (args.precision == "auto" and device.type == "cuda")
    lines = [
        "# Training throughput of the baselines (clips/s)",
        "",
        f"Command: `python benchmarks/bench_training.py {' '.join(sys.argv[1:])}`",
        "",
        f"Device: {device_name(device)} ({device.type}; {os.cpu_count()} CPU cores"
        f"{', shared with other jobs' if device.type == 'cpu' else ''}), torch "
        f"{torch.__version__}, Python {platform.python_version()}, "
        f"{'bf16 autocast' if bf16 else 'fp32'}, "
        f"channels_last {'on' if args.channels_last and device.type == 'cuda' else 'off'}, "
        f"torch.compile {'on' if args.compile else 'off'}, "
        f"{torch.get_num_threads()} torch threads. Batch sizes: "
        + ", ".join(f"{m} {b}" for m, b in batches.items())
        + f". Cache: {n_clips} clips of 10 s at 32 kHz, pcm16, {args.cache_labels} labels "
        f"(written by the script in a temporary folder). Each contender warmed up with "
        f"{args.warmup} step(s), then {args.repeat} interleaved rounds of {args.steps} "
        f"step(s); medians. Whole run: {wall / 60:.1f} min.",
        "",
        "Goal: CNN14 training end to end from the cache at >= 1,000 clips/s on one H100 "
        f"(the published PANNs training log shows about {PANNS_V100:.0f} clips/s on a V100).",
        "",
        "Rows: *waveform*: `Trainer.train_step` (train) or front end + forward (infer, "
        "`eval()`, no grad) on one synthetic batch already on the device; *log-mel*: the same "
        "from the precomputed model input, the baseline of the last column (the ceiling no "
        "data path can beat, noise aside); *cache, N workers*: `AudioSetDataset.loader` "
        "(float32 unless int16 is named; the balanced sampler for training, cache order for "
        "inference; persistent workers) feeding `Trainer.train_step` or `score_loader`, the "
        "timed span including every wait for the loader. A training step is forward, loss, "
        "backward, gradient clipping at 5, AdamW and the LR schedule (the trainer's defaults: "
        "plain BCE, no mixup, no SpecAugment). `Trainer.fit` is not timed: it rebuilds its "
        "DataLoader every epoch, which on a small cache would time worker start-up.",
        "",
        "| model | pass | input | clips/s (median) | min – max | vs model alone on log-mel |",
        "|---|---|---|---|---|---|",
    ]
    for model, rows in results.items():
        med = {label: statistics.median(v) for label, v in rows.items()}
        for label, value in med.items():
            kind, _, where = label.partition(", ")
            ceiling = med[f"{kind}, log-mel"]
            lo, hi = min(rows[label]), max(rows[label])
            lines.append(f"| {model} | {kind} | {where} | {rate(value)} | {rate(lo)} – "
                         f"{rate(hi)} | {value / ceiling:.2f} |")
    lines += ["", "Front end's share of the model-only time (1 − waveform / log-mel rate):", ""]
    for model, rows in results.items():
        med = {label: statistics.median(v) for label, v in rows.items()}
        share = {k: 1 - med[f"{k}, waveform"] / med[f"{k}, log-mel"] for k in ("train", "infer")}
        lines.append(f"* {model}: training {percent(share['train'])}, inference "
                     f"{percent(share['infer'])}")
    if "cnn14" in results:
        rows = results["cnn14"]
        best = max(statistics.median(v) for k, v in rows.items()
                   if k.startswith("train, cache"))
        lines += ["", f"CNN14 training end to end, best loader setting: {rate(best)} clips/s, "
                  f"{best / GOAL:.2%} of the 1,000 clips/s goal, {best / PANNS_V100:.2f}x "
                  "PANNs' V100 figure."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"),
                    default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", default=",".join(MODELS),
                    help="comma-separated, from " + ", ".join(MODELS))
    ap.add_argument("--batch-size", default=None,
                    help="N, or model=N pairs (default fc=8,resnet50=1,cnn14=2 on CPU; 128 "
                         "on CUDA)")
    ap.add_argument("--steps", type=int, default=None,
                    help="steps per timed span (default 1 on CPU, 20 on CUDA)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed steps per contender (default 1 on CPU, 5 on CUDA)")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds")
    ap.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="auto",
                    help="auto: bf16 on CUDA, fp32 on CPU (as the trainer)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                    help="channels_last model and input (CUDA only, as the trainer)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: torch's); 1 on a shared CPU, where "
                         "a second thread waits on a core another job holds")
    ap.add_argument("--workers", default=None,
                    help="DataLoader workers, comma-separated (default 0,2 on CPU, 0,8 on CUDA)")
    ap.add_argument("--dtypes", default=None,
                    help="loader waveform types, comma-separated: float32 (the trainer's) "
                         "and/or int16 (scaled on the device); default float32 on CPU, "
                         "float32,int16 on CUDA")
    ap.add_argument("--cache-labels", type=int, default=527,
                    help="labels (synthetic classes) in the generated cache")
    ap.add_argument("--clips-per-label", type=int, default=1)
    ap.add_argument("--tmp", default=None, help="folder for the temporary cache")
    ap.add_argument("--out", default=None,
                    help="markdown report (default results/training.md on CPU, "
                         "results/training_cuda.md on CUDA)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise SystemExit(f"--models: unknown {unknown}; known: {list(MODELS)}")
    cuda = args.device == "cuda"
    args.workers = [int(w) for w in (args.workers or ("0,8" if cuda else "0,2")).split(",")
                    if w.strip()]
    args.dtypes = [d.strip() for d in (args.dtypes or ("float32,int16" if cuda else "float32"))
                   .split(",") if d.strip()]
    if set(args.dtypes) - {"float32", "int16"}:
        raise SystemExit(f"--dtypes: use float32 and/or int16, not {args.dtypes}")
    args.steps = args.steps if args.steps is not None else 20 if cuda else 1
    args.warmup = args.warmup if args.warmup is not None else 5 if cuda else 1
    if min(args.steps, args.repeat, args.warmup) < 1:
        raise SystemExit("--steps, --repeat and --warmup must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batches = parse_batch(args.batch_size, models, device.type == "cuda")
    out = Path(args.out) if args.out else HERE / "results" / (
        "training.md" if device.type == "cpu" else "training_cuda.md")

    t_start = time.perf_counter()
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-training-", dir=args.tmp) as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        keys, _ = write_sound_cache(folder / "cache", classes=args.cache_labels,
                                    per_class=args.clips_per_label, rate=RATE,
                                    seconds=SECONDS, seed=0, prefix="bench")
        logger.info("wrote a %d-clip cache in %.1f s", len(keys), time.perf_counter() - t0)
        for model in models:
            if max(batches[model], 1) > len(keys):
                raise SystemExit(f"batch {batches[model]} of {model} exceeds the "
                                 f"{len(keys)}-clip cache; raise --clips-per-label")
            results[model] = bench_model(model, folder / "cache", folder / "runs", args,
                                         batches[model])
    text = report(args, device, batches, len(keys), results, time.perf_counter() - t_start)
    out.write_text(text)
    print(text)
    raw = {m: {k: [round(x, 2) for x in v] for k, v in r.items()} for m, r in results.items()}
    print(json.dumps(raw, indent=1), file=sys.stderr)


if __name__ == "__main__":
    main()
