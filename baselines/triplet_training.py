"""Training any baseline trunk on triplets, exporting its embeddings, and judging them.

:class:`TripletTrainer` is the supervised :class:`~audioset_data.baselines.training.Trainer`
(one loop: AdamW, warm-up + cosine, gradient clipping, ``metrics.jsonl``, whole-state
checkpoints that resume to the same weights) with other batches and another step: it optimises
:func:`~audioset_data.baselines.triplets.triplet_loss` on the ``embedding(x)`` of the model over
batches of :class:`~audioset_data.baselines.triplets.TripletSampler`. Its checkpoints carry a
:class:`~audioset_data.baselines.config.TrainConfig`, so everything that loads a trained model
(``load_trained``, ``audioset mine --checkpoint``) loads a triplet-trained one too; the triplet
settings sit in the checkpoint's ``extra``.

:func:`export_embeddings` writes per-frame or per-clip embeddings as ``.npz``;
:func:`neighbour_agreement` and :func:`semi_supervised` are the seed's two ways of judging an
embedding without (or with very few) labels.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from audioset_data.config import PathLike
from audioset_data.errors import ConfigError
from audioset_data.evaluation.harness import evaluate
from audioset_data.fileio import atomic_path
from audioset_data.loaders import AudioSetDataset
from audioset_data.segments.labels import LabelIndex

from .checkpoint import file_digest
from .config import TrainConfig
from .embedding_index import embedder_for
from .inference import frontend_for
from .models import build_model
from .training import Trainer, seed_everything
from .triplets import TripletBatch, TripletRules, TripletSampler, triplet_loss

logger = logging.getLogger(__name__)

__all__ = ["Embeddings", "TripletConfig", "TripletResult", "TripletTrainer", "export_embeddings",
           "labelled_subset", "linear_probe", "load_embeddings", "neighbour_agreement",
           "semi_supervised", "train_triplets"]


@dataclass
class TripletConfig:
    """One triplet training run; ``rules`` says which triplets and their limits."""

    model: str = "fc"                     # fc, resnet50 or cnn14
    train: str = "unbalanced_train"       # cache to draw triplets from (split or folder)
    root: str | None = None               # data root holding the caches
    out: str = "runs/triplet"             # folder for checkpoints and metrics.jsonl
    steps: int = 10000                    # optimiser steps (one batch of triplets each)
    batch_size: int = 64                  # triplets per step
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: float = 0.05                  # share of the steps spent warming up linearly
    schedule: str = "cosine"              # after the warm-up: cosine (to 0) or constant
    margin: float = 0.1                   # triplet margin on unit-norm embeddings
    grad_clip: float = 5.0                # max gradient norm (0: off)
    checkpoint_every: int = 500           # steps between checkpoints (0: at the end only)
    log_every: int = 20                   # steps between lines in metrics.jsonl
    device: str = "auto"                  # auto, cpu, cuda, cuda:1 ...
    seed: int = 0
    max_clips: int = 0                    # draw from the first N cached clips only (0: all)
    hidden: tuple[int, ...] = field(default=(1000, 1000, 1000))  # fc hidden layers
    resume: bool = True                   # continue from out/last.pt when it exists
    stop_after: int = 0                   # checkpoint and stop after N steps of this call
    rules: TripletRules = field(default_factory=TripletRules)

    def __post_init__(self) -> None:
        if isinstance(self.rules, dict):
            self.rules = TripletRules.from_dict(self.rules)
        self.hidden = tuple(int(h) for h in self.hidden)
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TripletConfig.{name}={getattr(self, name)!r} must be >= 1")
        for name in ("lr", "margin"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"TripletConfig.{name}={getattr(self, name)!r} must be > 0")
        for name in ("weight_decay", "grad_clip", "checkpoint_every", "max_clips",
                     "stop_after"):
            if getattr(self, name) < 0:
                raise ConfigError(f"TripletConfig.{name}={getattr(self, name)!r} must not be "
                                  f"negative")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"TripletConfig.warmup={self.warmup!r} must lie in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        """Plain values, as stored in checkpoints."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["hidden"] = list(self.hidden)
        out["rules"] = self.rules.to_dict()
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TripletConfig:
        """The configuration of :meth:`to_dict`; unknown keys are named in the error."""
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown triplet options {unknown}")
        return cls(**values)

    def replace(self, **changes: Any) -> TripletConfig:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    def train_config(self) -> TrainConfig:
        """The supervised configuration of the same trunk, stored in checkpoints so the
        supervised tools rebuild the model."""
        return TrainConfig(model=self.model, train=self.train, eval=None, root=self.root,
                           out=self.out, batch_size=self.batch_size, lr=self.lr,
                           weight_decay=self.weight_decay, warmup=self.warmup,
                           grad_clip=self.grad_clip, device=self.device, seed=self.seed,
                           max_clips=self.max_clips, hidden=self.hidden, sampler="shuffle")


@dataclass
class TripletResult:
    """What a run produced: the final step and loss, the files written, the logged lines."""

    step: int
    loss: float
    out: Path
    checkpoint: Path
    history: list[dict[str, Any]] = field(default_factory=list)


class TripletTrainer(Trainer):
    """The state of one triplet run; :meth:`fit` trains it in :class:`Trainer`'s loop (resume,
    ``metrics.jsonl``, checkpoints). Most users call :func:`train_triplets`.

    The run is one endless epoch of :class:`~audioset_data.baselines.triplets.TripletSampler`
    batches; it runs in one process (no DDP), without mixup, SpecAugment or an evaluation
    split: the sampler draws its own noise, mixes and shifts from (seed, batch number).
    """

    unit = "triplets"
    mixup = None
    specaugment = None
    eval_set = None

    def __init__(self, config: TripletConfig, *, progress: bool = True) -> None:
        self._setup_process(config, progress)
        if self.world > 1:
            raise ConfigError(f"triplet training runs in one process; start it without "
                              f"torchrun (WORLD_SIZE is {self.world})")
        seed_everything(config.seed)
        data = AudioSetDataset(config.train, root=config.root, dtype="int16")
        if config.max_clips and len(data) > config.max_clips:
            data = AudioSetDataset(data.cache, selection=np.arange(config.max_clips),
                                   dtype="int16")
        self.dataset = data
        options = {"hidden": config.hidden} if config.model == "fc" else {}
        model = build_model(config.model, n_classes=len(data.cache.label_mids), **options)
        self.frontend = frontend_for(model, int(data.cache.sample_rate)).to(self.device)
        self.model = model.to(self.device)
        self.sampler = TripletSampler(data, config.rules, batch_size=config.batch_size,
                                      seed=config.seed, frontend=self.frontend,
                                      device=self.device)
        # the classifier head (every model's last linear layer) takes no part in the loss;
        # leave it out of the optimiser
        head = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)][-1:]
        params = [p for name, p in model.named_parameters()
                  if not (head and name.startswith(head[0] + "."))]
        self._setup_optimiser(params, config.steps)

    # -- what the checkpoint keeps --------------------------------------------------------
    def _saved_config(self) -> dict[str, Any]:
        """The trunk's supervised configuration, so ``load_trained`` rebuilds the model."""
        return self.config.train_config().to_dict()

    def _extra_state(self) -> dict[str, Any]:
        return {**super()._extra_state(), "triplet": self.config.to_dict()}

    # -- training -------------------------------------------------------------------------
    def _epoch_batches(self, end: int) -> Iterator[tuple[TripletBatch, int]]:
        """Batches from the sampler's position on, until the run's step ``end``: batch ``i``
        is a pure function of (seed, i), so the next one is read and turned into log-mel in
        a thread while this one trains, without changing what is drawn."""
        pool = ThreadPoolExecutor(1, thread_name_prefix="triplets")
        try:
            ahead = pool.submit(self.sampler.batch, self.sampler.step)
            while ahead is not None:
                batch = ahead.result()
                self.sampler.step += 1
                ahead = (pool.submit(self.sampler.batch, self.sampler.step)
                         if self.step + 1 < end else None)
                yield batch, len(batch)
        finally:
            pool.shutdown(cancel_futures=True)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's embedding of model inputs."""
        return self.model.embedding(x)

    def train_step(self, batch: TripletBatch) -> torch.Tensor:
        """One optimiser step on a :class:`~audioset_data.baselines.triplets.TripletBatch`;
        the loss as a detached tensor."""
        self.model.train()
        n = len(batch)
        # one forward pass over all three so batch norm sees them together
        emb = self.embed(torch.cat([batch.anchor, batch.positive, batch.negative]))
        return self._optimise(triplet_loss(emb[:n], emb[n: 2 * n], emb[2 * n:],
                                           self.config.margin))

    def _log_fields(self, loss: torch.Tensor) -> dict[str, Any]:
        return {"loss": float(loss)}

    def fit(self) -> TripletResult:  # type: ignore[override]
        """Train until ``steps`` are done, checkpointing on the way."""
        done = super().fit()
        return TripletResult(done.step, done.loss, done.out, done.checkpoint, done.history)


def train_triplets(config: TripletConfig | None = None, *, progress: bool = True,
                   **overrides: Any) -> TripletResult:
    """Train a trunk on triplets (see :class:`TripletConfig`; keywords override its fields)."""
    config = config or TripletConfig()
    if overrides:
        config = config.replace(**overrides)
    return TripletTrainer(config, progress=progress).fit()


# -- export -------------------------------------------------------------------------------
@dataclass
class Embeddings:
    """Embeddings of clips: row ``i`` of ``vectors`` belongs to clip ``keys[clip[i]]``, frame
    ``frame[i]`` of it (0 for per-clip rows). ``model`` is the checkpoint's digest."""

    keys: list[str]
    vectors: np.ndarray
    clip: np.ndarray
    frame: np.ndarray
    model: str

    def per_clip(self) -> np.ndarray:
        """One unit vector per key: the normalised mean of its rows."""
        return _clip_means(self.vectors, self.clip, len(self.keys))


def _clip_means(vectors: np.ndarray, clip: np.ndarray, n: int) -> np.ndarray:
    sums = np.zeros((n, vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, clip, vectors)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.maximum(norms, 1e-12)).astype(np.float32)


def export_embeddings(checkpoint: PathLike, source: Any, out: PathLike, *,
                      root: PathLike | None = None, per: str = "frame", batch_size: int = 32,
                      device: str = "cpu", max_clips: int = 0) -> Path:
    """Embed every clip of a cache with a trained model and write ``out`` (``.npz``).

    The file holds ``keys`` (clip keys), ``embeddings`` (unit vectors, one per frame with
    ``per="frame"``, one per clip with ``per="clip"``), ``clip`` (row -> key), ``frame``
    (frame number in its clip) and ``model`` (the checkpoint's SHA-256). Clips too short for
    one frame get no row. Read it back with :func:`load_embeddings`.
    """

    if per not in ("frame", "clip"):
        raise ConfigError(f"per={per!r}: use 'frame' or 'clip'")
    data = AudioSetDataset(source, root=root, dtype="int16")
    if max_clips and len(data) > max_clips:
        data = AudioSetDataset(data.cache, selection=np.arange(max_clips), dtype="int16")
    embed = embedder_for(checkpoint, int(data.cache.sample_rate), device)
    vectors, clip, frame = [], [], []
    for lo, batch in zip(range(0, len(data), batch_size),
                         data.loader(batch_size, shuffle=False), strict=True):
        v, ci = embed(batch["waveform"], batch["length"])
        ci = ci.cpu().numpy()
        vectors.append(v.cpu().numpy().astype(np.float32))
        clip.append(ci + lo)
        frame.append(np.arange(len(ci)) - np.searchsorted(ci, ci, side="left"))
    data.cache.close()
    dim = int(getattr(getattr(embed, "model", None), "embedding_dim", 0))
    got = Embeddings(data.keys, np.concatenate(vectors) if vectors else np.zeros((0, dim)),
                     np.concatenate(clip) if clip else np.zeros(0, np.int64),
                     np.concatenate(frame) if frame else np.zeros(0, np.int64),
                     file_digest(checkpoint))
    if per == "clip":
        have = np.unique(got.clip)
        got = Embeddings(got.keys, _clip_means(got.vectors, got.clip, len(got.keys))[have],
                         have, np.zeros(len(have), np.int64), got.model)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, keys=np.asarray(got.keys), embeddings=got.vectors,
                 clip=got.clip.astype(np.int64), frame=got.frame.astype(np.int64),
                 model=np.asarray(got.model))
    logger.info("wrote %d embeddings of %d clips to %s", len(got.vectors),
                len(np.unique(got.clip)), out)
    return out


def load_embeddings(path: PathLike) -> Embeddings:
    """Read a file written by :func:`export_embeddings`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"embeddings file {str(path)!r} not found")
    with np.load(path, allow_pickle=False) as z:
        missing = {"keys", "embeddings", "clip", "frame", "model"} - set(z.files)
        if missing:
            raise ConfigError(f"embeddings file {str(path)!r} lacks {sorted(missing)}; "
                              f"was it written by export_embeddings?")
        return Embeddings([str(k) for k in z["keys"]], z["embeddings"], z["clip"],
                          z["frame"], str(z["model"]))


# -- judging an embedding -----------------------------------------------------------------
def neighbour_agreement(vectors: np.ndarray, targets: Any, groups: np.ndarray | None = None,
                        *, metric: str = "cosine", block: int = 2048) -> float:
    """Share of rows whose nearest neighbour (outside their own group) shares a label.

    Parameters
    ----------
    vectors : (n, d)
        One row per item (frame or clip).
    targets : (n, labels) bool
        Labels of each row (a frame carries its clip's labels).
    groups : (n,) int, optional
        Rows of one group (frames of one clip) are never each other's neighbours.
    metric : {"cosine", "euclidean"}
    """
    x = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
    t = np.asarray(targets.toarray() if hasattr(targets, "toarray") else targets, dtype=bool)
    if x.dim() != 2 or len(x) != len(t) or len(x) < 2:
        raise ConfigError(f"neighbour_agreement: need >= 2 rows of vectors and one target row "
                          f"each; got {tuple(x.shape)} and {t.shape}")
    if metric not in ("cosine", "euclidean"):
        raise ConfigError(f"metric={metric!r}: use 'cosine' or 'euclidean'")
    g = torch.as_tensor(np.arange(len(x)) if groups is None else np.asarray(groups))
    if metric == "cosine":
        x = nn.functional.normalize(x, dim=1, eps=1e-8)
    sq = x.square().sum(dim=1)
    nearest = torch.empty(len(x), dtype=torch.int64)
    for lo in range(0, len(x), block):
        q = x[lo: lo + block]
        d = sq[lo: lo + block, None] - 2 * q @ x.T + sq[None, :]
        d[g[lo: lo + block, None] == g[None, :]] = float("inf")
        nearest[lo: lo + block] = d.argmin(dim=1)
    shared = (t & t[nearest.numpy()]).any(axis=1)
    return float(shared.mean())


def labelled_subset(targets: Any, fraction: float = 0.005, seed: int = 0) -> np.ndarray:
    """Rows to label: ``round(fraction × n)`` of them, drawn at random, but at least one
    positive of every class that has one (the seed's small-label experiment needs each class
    seen once)."""
    t = np.asarray(targets.toarray() if hasattr(targets, "toarray") else targets, dtype=bool)
    if not 0 < fraction <= 1:
        raise ConfigError(f"fraction={fraction!r} must lie in (0, 1]")
    rng = np.random.default_rng(seed)
    chosen: set[int] = set()
    for k in rng.permutation(t.shape[1]):
        rows = np.flatnonzero(t[:, k])
        if len(rows) and not t[sorted(chosen), k].any():
            chosen.add(int(rng.choice(rows)))
    want = max(len(chosen), int(round(fraction * len(t))))
    rest = rng.permutation(np.setdiff1d(np.arange(len(t)), sorted(chosen)))
    chosen.update(int(i) for i in rest[: want - len(chosen)])
    return np.array(sorted(chosen), dtype=np.int64)


def linear_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, *,
                 steps: int = 300, lr: float = 0.05, weight_decay: float = 1e-3,
                 seed: int = 0) -> np.ndarray:
    """Logistic regression (one sigmoid per label, standardised inputs, Adam on the full
    batch); returns the probabilities of ``x_test``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(np.asarray(x_train, dtype=np.float32))
    y = torch.as_tensor(np.asarray(y_train, dtype=np.float32))
    mu, sd = x.mean(dim=0), x.std(dim=0, unbiased=False).clamp_min(1e-6)
    layer = nn.Linear(x.shape[1], y.shape[1])
    with torch.no_grad():
        layer.weight.normal_(0.0, 0.01, generator=gen)
        layer.bias.zero_()
    opt = torch.optim.Adam(layer.parameters(), lr=lr, weight_decay=weight_decay)
    xs = (x - mu) / sd
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(layer(xs), y).backward()
        opt.step()
    with torch.no_grad():
        test = (torch.as_tensor(np.asarray(x_test, dtype=np.float32)) - mu) / sd
        return torch.sigmoid(layer(test)).numpy()


def semi_supervised(train_x: np.ndarray, train_clip: np.ndarray, train_targets: Any,
                    test_x: np.ndarray, test_clip: np.ndarray, test_targets: Any, *,
                    fraction: float = 0.005, seed: int = 0, mids: list[str] | None = None,
                    test_keys: list[str] | None = None, **probe: Any) -> dict[str, Any]:
    """The seed's semi-supervised experiment on any frame features.

    A :func:`linear_probe` is trained on the frames of a :func:`labelled_subset` of the
    training clips (each frame with its clip's labels), scores every test frame, and the clip
    score is the mean of its frames' probabilities. Returns ``mAP`` (through the evaluation
    harness), ``labelled`` (clips used) and ``result`` (the harness's EvaluationResult).
    """
    train_t = np.asarray(train_targets.toarray() if hasattr(train_targets, "toarray")
                         else train_targets, dtype=bool)
    test_t = np.asarray(test_targets.toarray() if hasattr(test_targets, "toarray")
                        else test_targets, dtype=bool)
    rows = labelled_subset(train_t, fraction, seed)
    frames = np.isin(train_clip, rows)
    prob = linear_probe(train_x[frames], train_t[train_clip[frames]], test_x, seed=seed,
                        **probe)
    n = len(test_t)
    sums = np.zeros((n, prob.shape[1]))
    np.add.at(sums, test_clip, prob)
    counts = np.bincount(test_clip, minlength=n)
    scored = np.flatnonzero(counts)
    scores = sums[scored] / counts[scored, None]
    mids = mids or [f"label{k}" for k in range(test_t.shape[1])]
    keys = [test_keys[i] for i in scored] if test_keys is not None else None
    result = evaluate(y_true=test_t[scored], y_score=scores, clip_ids=keys,
                      label_index=LabelIndex(mids, mids))
    return {"mAP": float(result.metrics.mean_ap), "labelled": len(rows), "result": result}
