"""Training recipes for clip tagging on the released AudioSet embeddings (balanced train only).

Reproduces the final comparison of the embedding-recipe study: decodes the official
``audioset_v1_embeddings_bal_train.tar.gz`` (TFRecords of ``tf.train.SequenceExample``; parsed
here with a tiny protobuf wire reader, no TensorFlow needed), splits the 22,160 clips 80/20
with the package's stratified multi-label split, trains the anchors (a linear classifier and a
one-hidden-layer MLP on mean+max pooled embeddings) and the recipes of
``baselines/embedding.py``, and prints validation macro mAP (classes with a positive in the
validation part), mean AUC and training seconds.

Usage::

    python benchmarks/embedding_recipe.py                      # 2 threads, split seed 0
    python benchmarks/embedding_recipe.py --splits 0 1         # two folds (about twice the time)
    python benchmarks/embedding_recipe.py --only recipe --threads 2

The recipe is tuned to train in under 5 minutes on 2 CPU threads.
"""

from __future__ import annotations

import argparse
import math
import struct
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, roc_auc_score
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from baselines.embedding import EmbeddingAttention, EmbeddingFC  # noqa: E402

try:  # the split helper moved from ``audioset_data.stratify`` to ``segments.stratify``
    from audioset_data.segments.stratify import stratified_split
except ImportError:  # pragma: no cover - older checkouts
    from audioset_data.stratify import stratified_split  # type: ignore[no-redef]

DEFAULT_TAR = Path("/work/shared/data/embeddings/audioset_v1_embeddings_bal_train.tar.gz")
N_CLASSES = 527
MAX_FRAMES = 10


# --------------------------------------------------------------------------- decoding
def _varint(b: memoryview, p: int) -> tuple[int, int]:
    r = s = 0
    while True:
        c = b[p]
        p += 1
        r |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return r, p


def _fields(b: memoryview) -> Iterator[tuple[int, int, object]]:
    p, n = 0, len(b)
    while p < n:
        key, p = _varint(b, p)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, p = _varint(b, p)
        elif wire == 2:
            ln, p = _varint(b, p)
            value, p = b[p:p + ln], p + ln
        elif wire == 5:
            value, p = b[p:p + 4], p + 4
        elif wire == 1:
            value, p = b[p:p + 8], p + 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


def _map(b: memoryview) -> dict[str, memoryview]:
    out: dict[str, memoryview] = {}
    for field, _, entry in _fields(b):
        if field == 1:
            key, val = "", memoryview(b"")
            for g, _, v in _fields(entry):  # type: ignore[arg-type]
                if g == 1:
                    key = bytes(v).decode()  # type: ignore[arg-type]
                elif g == 2:
                    val = v  # type: ignore[assignment]
            out[key] = val
    return out


def parse_sequence_example(rec: memoryview) -> tuple[str, list[int], list[bytes]]:
    """``video_id``, ``labels`` and the per-second ``audio_embedding`` bytes of one record."""
    ctx = fl = memoryview(b"")
    for field, _, v in _fields(rec):
        if field == 1:
            ctx = v  # type: ignore[assignment]
        elif field == 2:
            fl = v  # type: ignore[assignment]
    c = _map(ctx)
    vid, labels = "", []
    for field, _, v in _fields(c.get("video_id", memoryview(b""))):
        if field == 1:  # BytesList
            vid = bytes(next(_fields(v))[2]).decode()  # type: ignore[arg-type]
    for field, _, v in _fields(c.get("labels", memoryview(b""))):
        if field == 3:  # Int64List, packed or not
            for _, wire, x in _fields(v):  # type: ignore[arg-type]
                if wire == 2:
                    p = 0
                    while p < len(x):  # type: ignore[arg-type]
                        y, p = _varint(x, p)  # type: ignore[arg-type]
                        labels.append(y)
                else:
                    labels.append(int(x))  # type: ignore[arg-type]
    frames = []
    for field, _, feat in _fields(_map(fl).get("audio_embedding", memoryview(b""))):
        if field == 1:  # Feature -> BytesList -> value
            for g, _, bl in _fields(feat):  # type: ignore[arg-type]
                if g == 1:
                    frames.append(bytes(next(_fields(bl))[2]))  # type: ignore[arg-type]
    return vid, labels, frames


def load_embeddings(tar_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 embeddings (N, 10, 128), frame counts (N,), bool labels (N, 527)."""
    qs, counts, rows = [], [], []
    with tarfile.open(tar_path) as tf:
        for member in tf:
            if not member.name.endswith(".tfrecord"):
                continue
            fh = tf.extractfile(member)
            assert fh is not None
            b = memoryview(fh.read())
            p = 0
            while p < len(b):
                (n,) = struct.unpack("<Q", b[p:p + 8])
                p += 12  # length + its masked crc
                _, labels, frames = parse_sequence_example(b[p:p + n])
                p += n + 4  # data + its masked crc
                q = np.zeros((MAX_FRAMES, 128), np.uint8)
                k = min(len(frames), MAX_FRAMES)
                for i in range(k):
                    q[i] = np.frombuffer(frames[i], np.uint8)
                qs.append(q)
                counts.append(k)
                rows.append(labels)
    y = np.zeros((len(rows), N_CLASSES), bool)
    for i, labels in enumerate(rows):
        y[i, labels] = True
    return np.stack(qs), np.asarray(counts), y


# --------------------------------------------------------------------------- models
class PooledMLP(nn.Module):
    """Anchor: standardised [mean, max] over real frames (256-d) -> MLP / linear -> logits."""

    def __init__(self, hidden: tuple[int, ...] = (), dropout: float = 0.0) -> None:
        super().__init__()
        self.input_norm = nn.BatchNorm1d(256, affine=False)
        layers: list[nn.Module] = []
        width = 256
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, N_CLASSES)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1)
        mean = (x * m).sum(1) / m.sum(1).clamp(min=1)
        mx = x.masked_fill(~m, -1e4).max(1).values
        mx = torch.where(mask.any(1, keepdim=True), mx, torch.zeros_like(mx))
        return self.head(self.body(self.input_norm(torch.cat([mean, mx], 1))))


# --------------------------------------------------------------------------- training
def train(make: Callable[[], nn.Module], x: torch.Tensor, mask: torch.Tensor, y: torch.Tensor,
          *, lr: float = 1e-3, weight_decay: float = 0.0, batch_size: int = 128,
          epochs: int = 20, schedule: str = "none", warmup: float = 0.0, mixup: float = 0.0,
          optimizer: str = "adam", seed: int = 0) -> nn.Module:
    """Minibatch BCE-with-logits training on clip labels, uniform sampling."""
    torch.manual_seed(seed)
    model = make()
    opt_cls = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
    opt = opt_cls(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = len(x)
    steps = math.ceil(n / batch_size)
    total = steps * epochs
    n_warm = int(warmup * total)

    def factor(step: int) -> float:
        if step < n_warm:
            return (step + 1) / n_warm
        if schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * (step - n_warm) / max(1, total - n_warm)))
        return 1.0

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    beta = torch.distributions.Beta(mixup, mixup) if mixup > 0 else None
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n)
        for b in range(steps):
            idx = perm[b * batch_size:(b + 1) * batch_size]
            xb, mb, yb = x[idx], mask[idx], y[idx]
            if beta is not None:
                lam = beta.sample((len(idx),))
                lam = torch.maximum(lam, 1 - lam)
                other = torch.randperm(len(idx))
                xb = lam[:, None, None] * xb + (1 - lam[:, None, None]) * xb[other]
                mb = mb | mb[other]
                yb = lam[:, None] * yb + (1 - lam[:, None]) * yb[other]
            loss = F.binary_cross_entropy_with_logits(model(xb, mb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


@torch.no_grad()
def predict(models: list[nn.Module], x: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    return np.mean([torch.sigmoid(m(x, mask)).numpy() for m in models], axis=0)


def scores(p: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    keep = y.sum(0) > 0
    ap = average_precision_score(y[:, keep], p[:, keep], average=None)
    auc = roc_auc_score(y[:, keep], p[:, keep], average=None)
    return float(np.mean(ap)), float(np.mean(auc))


# name -> list of (model factory, train kwargs); several entries = an ensemble (mean of probs)
RECIPES: dict[str, list[tuple[Callable[[], nn.Module], dict]]] = {
    "anchor: linear on mean+max": [
        (lambda: PooledMLP(), dict(lr=1e-3, epochs=30))],
    "anchor: MLP 1x1024 d0.5 on mean+max": [
        (lambda: PooledMLP((1024,), 0.5), dict(lr=1e-3, epochs=10))],
    "anchor: dec-att 3x512 BN, 20 ep, const lr": [
        (lambda: EmbeddingAttention(pooling="decision"), dict(lr=1e-3, epochs=20))],
    "pooled MLP 2x1024 d0.5, 30 ep cosine": [
        (lambda: PooledMLP((1024, 1024), 0.5), dict(lr=2e-3, epochs=30, schedule="cosine",
                                                    warmup=0.05))],
    "recipe: EmbeddingAttention, 20 ep cosine": [
        (lambda: EmbeddingAttention(), dict(lr=1e-3, epochs=20, schedule="cosine",
                                            warmup=0.05))],
    "EmbeddingFC (defaults), 10 ep": [
        (lambda: EmbeddingFC(), dict(lr=1e-3, epochs=10))],
}
# ensembles of recipes already trained above: mean of their probabilities, summed seconds
ENSEMBLES: dict[str, list[str]] = {
    "ensemble: att cosine + pooled MLP 2x1024": [
        "recipe: EmbeddingAttention, 20 ep cosine", "pooled MLP 2x1024 d0.5, 30 ep cosine"],
    "ensemble: att const + att cosine": [
        "anchor: dec-att 3x512 BN, 20 ep, const lr", "recipe: EmbeddingAttention, 20 ep cosine"],
}
GROUPS = {"anchors": [k for k in RECIPES if k.startswith("anchor")],
          "recipe": ["recipe: EmbeddingAttention, 20 ep cosine"],
          "fc": ["EmbeddingFC (defaults), 10 ep"]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tar", type=Path, default=DEFAULT_TAR)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--splits", type=int, nargs="+", default=[0],
                    help="seeds of the stratified 80/20 split (one fold each)")
    ap.add_argument("--only", nargs="+", default=None,
                    help=f"groups {sorted(GROUPS)} or recipe names (default: all)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    t0 = time.time()
    q, counts, y = load_embeddings(args.tar)
    print(f"decoded {len(q)} clips in {time.time() - t0:.1f}s "
          f"({int((counts < MAX_FRAMES).sum())} with < {MAX_FRAMES} frames)", flush=True)
    x_all = torch.from_numpy(q.astype(np.float32) * (4.0 / 255.0) - 2.0)
    m_all = torch.arange(MAX_FRAMES)[None, :] < torch.from_numpy(counts)[:, None]
    x_all = x_all * m_all.unsqueeze(-1)  # padded frames = 0

    names = list(RECIPES)
    if args.only:
        names = [n for g in args.only for n in GROUPS.get(g, [g])]
    rows: dict[str, list[tuple[float, float, float]]] = {n: [] for n in names}
    ensembles = {e: parts for e, parts in ENSEMBLES.items() if set(parts) <= set(names)}
    rows.update({e: [] for e in ensembles})
    for split_seed in args.splits:
        tr, va = stratified_split(y, (0.8, 0.2), seed=split_seed)
        xtr, mtr, ytr = x_all[tr], m_all[tr], torch.from_numpy(y[tr].astype(np.float32))
        preds: dict[str, tuple[np.ndarray, float]] = {}
        for name in names:
            t1, c1 = time.time(), time.process_time()
            models = [train(make, xtr, mtr, ytr, seed=i, **kw)
                      for i, (make, kw) in enumerate(RECIPES[name])]
            secs = time.time() - t1
            preds[name] = (predict(models, x_all[va], m_all[va]), secs)
            print(f"  trained {name}: {secs:.1f}s wall, {time.process_time() - c1:.1f}s CPU "
                  f"(all threads)", flush=True)
        for e, parts in ensembles.items():
            preds[e] = (np.mean([preds[p][0] for p in parts], axis=0),
                        sum(preds[p][1] for p in parts))
        for name, (p, secs) in preds.items():
            m_ap, auc = scores(p, y[va])
            rows[name].append((m_ap, auc, secs))
            print(f"split {split_seed}  {name:45s} mAP {m_ap:.4f}  AUC {auc:.4f}  "
                  f"{secs:6.1f}s", flush=True)

    print(f"\n{'recipe':45s} {'val mAP':>8s} {'AUC':>7s} {'train s':>8s}  "
          f"({args.threads} threads, splits {args.splits})")
    for name, r in rows.items():
        a = np.asarray(r)
        print(f"{name:45s} {a[:, 0].mean():8.4f} {a[:, 1].mean():7.4f} {a[:, 2].mean():8.1f}")


if __name__ == "__main__":
    main()
