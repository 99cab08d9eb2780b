"""One training loop for every baseline: a laptop CPU, one GPU, or many under torchrun.

``train(TrainConfig(...))`` reads a cached split through the loaders (balanced, weighted or
shuffled sampling, distributed when launched by torchrun), turns waveforms into log-mel on the
device, and optimises the prior-balanced loss with AdamW and a warm-up + cosine schedule
(optional mixup, SpecAugment, bf16 autocast, ``channels_last``, ``torch.compile``, gradient
clipping). It logs to ``metrics.jsonl``, evaluates with the harness, and checkpoints the whole
state (model, optimiser, schedule, sampler position, every RNG) so a run stopped at any point
resumes to the same weights an uninterrupted run reaches.

Training other than classification runs in the same loop: a subclass of :class:`Trainer`
overrides its hooks (the epoch's batches, the step, the logged fields, what the checkpoint
keeps), as :class:`~audioset_data.baselines.triplet_training.TripletTrainer` does.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from audioset_data.errors import ConfigError
from audioset_data.evaluation.context import label_index_for, listed_clips
from audioset_data.evaluation.harness import EvaluationResult, evaluate
from audioset_data.fileio import atomic_write
from audioset_data.loaders import (
    AudioSetDataset,
    BalancedSampler,
    EmbeddingDataset,
    Mixup,
    PriorBalancedBCE,
    ShuffleSampler,
    SpecAugment,
    WeightedSampler,
    collate,
    collate_embeddings,
)
from audioset_data.loaders.embeddings import dequantize
from audioset_data.loaders.losses import prior_balanced_bce
from audioset_data.loaders.shards import ShardDataset, is_shard_source, shard_config_error
from audioset_data.segments.labels import LabelIndex

from .checkpoint import load_checkpoint, rng_states, save_checkpoint, set_rng_states
from .config import TrainConfig
from .inference import (
    autocast,
    clip_pool,
    frontend_for,
    model_inputs,
    score_embeddings,
    score_loader,
)
from .models import build_model, model_defaults, model_options, reads_embeddings, trains_in_bf16
from .refine import RefinedTargets

logger = logging.getLogger(__name__)

__all__ = ["TrainResult", "Trainer", "train"]


@dataclass
class TrainResult:
    """What a run produced: the final step, the last evaluation (rank 0), the files written."""

    step: int
    epoch: int
    loss: float
    evaluation: EvaluationResult | None
    out: Path
    checkpoint: Path
    history: list[dict[str, Any]] = field(default_factory=list)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` → this process's GPU when there is one, else the CPU; a named device is
    checked."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but this machine has no usable CUDA device")
    return dev


def _init_distributed(device_name: str) -> tuple[int, int, int]:
    """(rank, world size, local rank); joins the process group when torchrun started us."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    if not dist.is_initialized():
        cuda = device_name != "cpu" and torch.cuda.is_available()
        dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))


def lr_schedule(total: int, warmup: float, kind: str = "cosine") -> Any:
    """LR factor per step: linear warm-up over ``warmup × total`` steps, then cosine to 0
    (``kind="cosine"``) or the full rate to the end (``"constant"``)."""
    n_warm = int(round(warmup * total))

    def factor(step: int) -> float:
        if step < n_warm:
            return (step + 1) / n_warm
        if kind == "constant":
            return 1.0
        rest = max(1, total - n_warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - n_warm) / rest)))

    return factor


def _dataset(embeddings: bool, source: str, config: TrainConfig) -> Any:
    """The dataset of a split, cut to its first ``max_clips`` clips when asked: an audio cache,
    or for a model that reads the release's embeddings, the embeddings store of that name."""
    if is_shard_source(source):  # tar shards of `audioset export --to webdataset`
        problem = shard_config_error(source, embeddings=embeddings, refined=config.refined,
                                     evaluation=source == config.eval)
        if problem is not None:
            raise problem
        return ShardDataset(source, batch_size=config.batch_size, seed=config.seed,
                            limit=config.max_clips or None, dtype="int16")
    if embeddings:
        data: Any = EmbeddingDataset(source, root=config.root)
        if config.max_clips and len(data) > config.max_clips:
            data = EmbeddingDataset(data.store, selection=np.arange(config.max_clips))
        return data
    # int16 batches: half the bytes through workers and pinned memory; the front end scales
    # them on the device (benchmarks/results/loader.md)
    data = AudioSetDataset(source, root=config.root, dtype="int16")
    if config.max_clips and len(data) > config.max_clips:
        data = AudioSetDataset(data.cache, selection=np.arange(config.max_clips), dtype="int16")
    return data


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rank_seeds(seed: int, rank: int, n: int = 4) -> list[int]:
    """``n`` independent seeds of one rank's augmentation streams, derived from (seed, rank).

    Every rank of a DDP run gets its own dropout, mixup and SpecAugment draws (N GPUs must not
    see one augmentation stream N times), yet the same (seed, rank) always gives the same
    streams, and each stream's state is checkpointed per rank, so a resumed run continues each
    stream at the step where it stopped.
    """
    state = np.random.SeedSequence([int(seed), int(rank), 0xA5E7]).generate_state(n, np.uint64)
    return [int(s % 2**63) for s in state]


def use_deterministic(on: bool) -> None:
    """Make torch choose deterministic kernels (``TrainConfig.deterministic``).

    On the CPU the baselines' kernels are deterministic already and this costs nothing
    measurable; on CUDA it turns off cuDNN's autotuner and makes scatter/index-add style
    kernels use their slower deterministic versions (and needs ``CUBLAS_WORKSPACE_CONFIG``,
    set here when absent), which costs throughput that depends on the model and card.
    """
    if not on:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


class _TrackedBCE(PriorBalancedBCE):
    """The training loss, which also keeps (detached, as ``last_present``) its value over the
    classes present in the training split: the mean over all 527 outputs is dominated by
    classes a small split never has, and reads 0.004 long before the model has learnt."""

    present: torch.Tensor
    last_present: torch.Tensor | None = None

    @classmethod
    def from_priors(cls, priors: Any, beta: float = 1.0, **kwargs: Any) -> _TrackedBCE:
        loss = super().from_priors(priors, beta, **kwargs)
        loss.register_buffer("present", torch.as_tensor(np.asarray(priors) > 0),
                             persistent=False)
        return loss

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        with torch.no_grad():
            cols = self.present
            keep = None if mask is None else torch.broadcast_to(mask, logits.shape)[..., cols]
            self.last_present = prior_balanced_bce(logits[..., cols], targets[..., cols],
                                                   self.pos_weight[cols], mask=keep)
        return super().forward(logits, targets, mask)


class Trainer:
    """The state of one run; :meth:`fit` trains it. Most users call :func:`train`.

    :meth:`fit` is the one loop (resume, log, evaluate, checkpoint); a subclass training
    something else sets up its model and sampler with :meth:`_setup_process` and
    :meth:`_setup_optimiser` and overrides the hooks: :meth:`_epoch_batches`,
    :meth:`train_step`, :meth:`_log_fields`, :meth:`_saved_config` and :meth:`_extra_state`
    (and :attr:`unit`, what a batch counts).
    """

    unit = "clips"

    def __init__(self, config: TrainConfig, *, progress: bool = True,
                 train_data: Any = None, eval_data: Any = None):
        """``train_data`` / ``eval_data``: datasets to use instead of the splits the config
        names (e.g. a stratified part of a store), of the kind the model reads."""
        self._setup_process(config, progress)
        self.bf16 = trains_in_bf16(config.model, config.precision, self.device)
        use_deterministic(config.deterministic)
        # the same seed on every rank for the model's initial weights (DDP also broadcasts
        # rank 0's); the augmentation streams below are each rank's own
        seed_everything(config.seed)

        # the model says what it reads: the release's embeddings, or audio through a front end
        self.embeddings = reads_embeddings(config.model)
        self.train_set = (train_data if train_data is not None
                          else _dataset(self.embeddings, config.train, config))
        self.eval_set = (eval_data if eval_data is not None
                         else _dataset(self.embeddings, config.eval, config) if config.eval
                         else None)
        self.collate = collate_embeddings if self.embeddings else collate
        shards = isinstance(self.train_set, ShardDataset)  # a stream: its index counts labels
        targets = None if shards else self.train_set.targets
        counts = (self.train_set.label_counts if shards
                  else np.asarray(targets.sum(axis=0)).ravel())
        self.priors = counts / max(1, self.train_set.total if shards else targets.shape[0])
        n_classes = len(counts)

        model = build_model(config.model, n_classes=n_classes, **self._model_options())
        self.frame_level = getattr(model, "frontend", "panns") == "vggish"
        self.frontend: nn.Module | None = None
        if self.embeddings:
            if config.specaugment or config.refined:
                raise ConfigError(f"model {config.model!r} reads the release's embeddings: "
                                  "SpecAugment and refined frame targets apply to log-mel "
                                  "models only")
        else:
            data = self.train_set
            rate = data.sample_rate if isinstance(data, ShardDataset) else data.cache.sample_rate
            self.frontend = frontend_for(model, rate).to(self.device)
        global_seed, spec_seed, mix_seed, self.loader_seed = rank_seeds(config.seed, self.rank)
        seed_everything(global_seed)  # dropout and anything else on the global generators
        self.specaugment = (SpecAugment(generator=torch.Generator(device="cpu")
                                        .manual_seed(spec_seed))
                            if config.specaugment else None)
        model = model.to(self.device)
        if self.device.type == "cuda" and config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.net: nn.Module = model
        if self.world > 1:
            self.net = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if config.compile:
            self.net = torch.compile(self.net)
        self.criterion = _TrackedBCE.from_priors(
            np.maximum(self.priors, 0.0) if counts.any() else np.ones(n_classes),
            beta=config.beta).to(self.device)
        self.mixup = Mixup(config.mixup, mode="permute", seed=mix_seed) \
            if config.mixup > 0 else None

        self.refined = self._refined()
        self.sampler = self._sampler(targets)
        # an epoch shorter than one batch still trains: one smaller batch per epoch
        self.drop_last = len(self.sampler) >= config.batch_size
        self.batches_per_epoch = max(1, len(self.sampler) // config.batch_size)
        self._setup_optimiser(model.parameters(), config.total_steps(self.batches_per_epoch))
        self._loader_cache: Any = None
        self._eval_labels: tuple[LabelIndex, int] | None = None

    # -- construction helpers -------------------------------------------------------------
    def _setup_process(self, config: Any, progress: bool) -> None:
        """This process's place in the run: rank, world size, device, output folder."""
        self.config = config
        self.progress = progress
        self.rank, self.world, local = _init_distributed(config.device)
        self.device = resolve_device(config.device, local)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.out = Path(config.out)
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)

    def _setup_optimiser(self, params: Iterable[torch.Tensor], total_steps: int) -> None:
        """AdamW over ``params``, warm-up + cosine over ``total_steps``, the counters at 0."""
        c = self.config
        self.total_steps = total_steps
        self.optimizer = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_schedule(total_steps, c.warmup, c.schedule))
        self.step = 0
        self.epoch = 0
        self.consumed = 0  # items (clips) of the current epoch this rank has trained on
        self.history: list[dict[str, Any]] = []
        self.evaluation: EvaluationResult | None = None

    def _model_options(self) -> dict[str, Any]:
        return model_options(self.config)

    def _refined(self) -> Any:
        """Refined frame targets (``audioset refine``) aligned with the training clips."""
        if not self.config.refined:
            return None
        if not self.frame_level:
            raise ConfigError(f"refined targets are per 960 ms example; model "
                              f"{self.config.model!r} scores whole clips")
        if self.config.mixup > 0:
            raise ConfigError("refined targets with mixup are not supported: set mixup 0")

        return RefinedTargets.load(self.config.refined, keys=self.train_set.keys,
                                   label_mids=self.train_set.cache.label_mids)

    def _sampler(self, targets: Any) -> Any:
        c = self.config
        common = {"seed": c.seed, "num_replicas": self.world, "rank": self.rank}
        if isinstance(self.train_set, ShardDataset):  # a stream orders itself, epoch by epoch
            if c.sampler != "shuffle":
                logger.warning("shards are read in a shuffled order, not by a %s sampler "
                               "(--sampler shuffle says so; --beta weights the loss by the "
                               "priors instead)", c.sampler)
            return self.train_set
        if c.sampler == "balanced":
            return BalancedSampler(targets, **common)
        if c.sampler == "weighted":
            return WeightedSampler(targets, **common)
        return ShuffleSampler(targets.shape[0], **common)

    def _loader(self, dataset: Any, sampler: Any, *, train: bool) -> torch.utils.data.DataLoader:
        c = self.config
        return torch.utils.data.DataLoader(
            dataset, batch_size=c.batch_size, collate_fn=self.collate,
            sampler=None if isinstance(dataset, ShardDataset) else sampler,
            # an embeddings batch is one memory-mapped slice (well under a millisecond):
            # worker processes would only add pickling
            num_workers=0 if self.embeddings else c.num_workers,
            drop_last=train and self.drop_last,
            persistent_workers=False,
            pin_memory=self.device.type == "cuda",
            # a loader of its own draws the worker seeds, so building one at a resume point
            # leaves the global RNG (dropout) exactly where an uninterrupted run has it
            generator=torch.Generator().manual_seed(self.loader_seed),
        )

    # -- checkpoints ----------------------------------------------------------------------
    def _rank_state(self) -> dict[str, Any]:
        """This rank's own random state: global generators, mixup and SpecAugment."""
        state: dict[str, Any] = {"rng": rng_states()}
        if self.mixup is not None:
            state["mixup"] = self.mixup.state_dict()
        if self.specaugment is not None:
            state["specaugment"] = self.specaugment.generator.get_state()
        return state

    def _extra_state(self) -> dict[str, Any]:
        """What the checkpoint keeps beside the weights; ``ranks`` holds every rank's random
        state (gathered to rank 0), so resume is exact under DDP too."""
        mine = self._rank_state()
        ranks = [mine]
        if self.world > 1:
            gathered: list[Any] = [None] * self.world
            dist.all_gather_object(gathered, mine)
            ranks = gathered
        return {"consumed": self.consumed, "ranks": ranks}

    def _saved_config(self) -> dict[str, Any]:
        """The configuration the checkpoint stores, from which ``load_trained`` rebuilds the
        model: a :class:`TrainConfig`'s plain values."""
        return self.config.to_dict()

    def save(self, name: str = "last.pt") -> Path:
        """Checkpoint the whole state to ``out/name`` (rank 0 writes; all ranks wait)."""
        path = self.out / name
        state = self.sampler.state_dict()
        state["position"] = self.consumed
        extra = self._extra_state()  # a collective under DDP: every rank takes part
        if self.rank == 0:
            save_checkpoint(path, model=self.model, optimizer=self.optimizer,
                            scheduler=self.scheduler, sampler_state=state, step=self.step,
                            epoch=self.epoch, config=self._saved_config(), extra=extra)
        if self.world > 1:
            dist.barrier()
        return path

    def resume(self, path: Path) -> None:
        """Continue from a checkpoint written by :meth:`save`."""
        info = load_checkpoint(path, model=self.model, optimizer=self.optimizer,
                               scheduler=self.scheduler, map_location=self.device)
        self.step, self.epoch = int(info["step"]), int(info["epoch"])
        extra = info.get("extra") or {}
        self.consumed = int(extra.get("consumed", 0))
        sampler_state = dict(info["sampler_state"])
        sampler_state["rank"] = self.rank
        self.sampler.load_state_dict(sampler_state)
        ranks = extra.get("ranks")
        if ranks and len(ranks) == self.world:
            mine = ranks[self.rank]
            set_rng_states(mine["rng"])
        elif ranks:
            logger.warning("%s was written by %d processes, this run has %d: each rank's "
                           "augmentation stream starts afresh from (seed, rank)", path,
                           len(ranks), self.world)
            mine = {}
        else:  # a checkpoint of an earlier release: one process's state at the top level
            mine = extra
        if self.mixup is not None and "mixup" in mine:
            self.mixup.load_state_dict(mine["mixup"])
        if self.specaugment is not None and "specaugment" in mine:
            self.specaugment.generator.set_state(mine["specaugment"])
        logger.info("resumed %s at step %d (epoch %d, %d %s in)", path, self.step,
                    self.epoch, self.consumed, self.unit)

    # -- training -------------------------------------------------------------------------
    def _epoch_batches(self, end: int) -> Iterator[tuple[Any, int]]:
        """This epoch's batches, each with the clips it holds, from the sampler's position
        (mid-epoch when resumed). ``end``: the step this call of :meth:`fit` stops at."""
        self.sampler.set_epoch(self.epoch)
        if self.consumed:
            state = self.sampler.state_dict()
            state["position"] = self.consumed
            self.sampler.load_state_dict(state)
        for batch in self._loader(self.train_set, self.sampler, train=True):
            yield batch, len(batch["key"])

    def _embedding_logits(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and targets of a batch of release embeddings (mixup mixes the frames; a
        mixed clip has the frames either of its two clips has)."""
        x = dequantize(batch["embedding"].to(self.device, non_blocking=True))
        mask = batch["mask"].to(self.device)
        target = batch["target"].to(self.device, non_blocking=True).float()
        if self.mixup is not None:
            mixed = self.mixup(x, target)
            x, target = mixed.inputs, mixed.targets
            mask = mask[mixed.first] | mask[mixed.second]
        with autocast(self.device, self.bf16):
            logits = self.net(x, mask)
        return logits, target

    def train_step(self, batch: dict[str, Any]) -> torch.Tensor:
        """One optimiser step on one batch; returns the loss as a detached tensor (reading it
        waits for the device, so the loop does that only when it logs)."""
        if self.embeddings:
            logits, target = self._embedding_logits(batch)
            return self._optimise(self.criterion(logits.float(), target, None))
        wave = batch["waveform"].to(self.device, non_blocking=True)
        lengths = batch["length"].to(self.device)
        target = batch["target"].to(self.device, non_blocking=True).float()
        if self.mixup is not None:
            if not wave.is_floating_point():  # mix samples, not int16 codes
                wave = wave.float() * (1.0 / 32768.0)
            mixed = self.mixup(wave, target, lengths)
            wave, target, lengths = mixed.inputs, mixed.targets, mixed.lengths
        with autocast(self.device, self.bf16):
            x, clip_index = model_inputs(self.frontend, self.frame_level, wave, lengths,
                                         shift=self.config.time_shift)
            if self.specaugment is not None:
                x = self.specaugment(x)
            mask = None
            if clip_index is not None and self.refined is not None:
                ft, fm = self.refined.for_examples(batch["index"].numpy(),
                                                   clip_index.cpu().numpy())
                target = torch.as_tensor(ft, device=self.device)
                mask = torch.as_tensor(fm, device=self.device)
            elif clip_index is not None:
                target = target[clip_index]
            if self.device.type == "cuda" and self.config.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            if clip_index is not None and mask is None and clip_pool(self.model) != "frame":
                # multiple-instance learning: the clip's pooled logit meets the clip's labels
                logits, first = self.net(x, clip_index)
                target = target[first]
            else:
                logits = self.net(x)
        return self._optimise(self.criterion(logits.float(), target, mask))

    def _optimise(self, loss: torch.Tensor) -> torch.Tensor:
        """Backward, clip, step the optimiser and the schedule; the loss, detached."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()

    def evaluate(self) -> EvaluationResult | None:
        """Score the evaluation cache and run the harness (the result on rank 0)."""
        if self.eval_set is None:
            return None

        sampler = ShuffleSampler(len(self.eval_set), shuffle=False, num_replicas=self.world,
                                 rank=self.rank)
        loader = self._loader(self.eval_set, sampler, train=False)
        if self.embeddings:
            scores = score_embeddings(self.net, loader, self.device, bf16=self.bf16,
                                      progress=self.progress and self.rank == 0,
                                      distributed=self.world > 1)
        else:
            scores = score_loader(self.net, self.frontend, loader, self.device,
                                  frame_level=self.frame_level, bf16=self.bf16,
                                  progress=self.progress and self.rank == 0,
                                  distributed=self.world > 1)
        if self.rank != 0:
            return None
        targets = self.eval_set.targets
        where = {k: i for i, k in enumerate(self.eval_set.keys)}
        rows = [where[k] for k in scores.ids]
        if self._eval_labels is None:  # looked up once: names, and the clips the split lists
            if self.embeddings:
                mids = self.eval_set.label_mids
                self._eval_labels = (LabelIndex(mids, mids), len(self.eval_set.store))
            else:
                cache = self.eval_set.cache
                listed = listed_clips(cache.folder) or len(self.eval_set)
                self._eval_labels = (label_index_for(cache.label_mids, self.config.root),
                                     listed)
        label_index, listed = self._eval_labels
        result = evaluate(y_score=scores.clips, y_true=targets[rows], clip_ids=scores.ids,
                          label_index=label_index, n_listed=listed)
        self.evaluation = result
        return result

    def _log_fields(self, loss: torch.Tensor) -> dict[str, Any]:
        """A training line's fields beside step, learning rate and throughput (``loss``
        among them); reading them waits for the device, so only logged steps do."""
        # the loss over the classes the training split has (see _TrackedBCE)
        tracked = self.criterion.last_present
        return {"epoch": self.epoch, "loss": float(loss),
                "loss_present": None if tracked is None else float(tracked)}

    def _log(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.rank == 0:
            with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

    def fit(self) -> TrainResult:
        """Train until ``epochs`` are done, evaluating and checkpointing on the way."""
        c = self.config
        last = self.out / "last.pt"
        if c.resume and last.is_file():
            self.resume(last)
        bar = tqdm(total=self.total_steps, initial=self.step, desc=f"train {c.model}",
                   disable=not self.progress or self.rank != 0)
        loss = float("nan")
        t0, seen = time.perf_counter(), 0
        every = self.eval_every()
        end = self.total_steps if not c.stop_after else min(self.total_steps,
                                                            self.step + c.stop_after)
        while self.step < end:
            step_before = self.step
            with closing(self._epoch_batches(end)) as batches:
                for batch, n in batches:
                    loss_t = self.train_step(batch)
                    self.step += 1
                    self.consumed += n
                    seen += n
                    bar.update(1)
                    if self.step % max(1, c.log_every) == 0 or self.step >= end:
                        fields = self._log_fields(loss_t)
                        loss = fields["loss"]
                        dt = time.perf_counter() - t0
                        self._log({"step": self.step, **fields,
                                   "lr": self.scheduler.get_last_lr()[0],
                                   f"{self.unit}_per_s": seen * self.world / max(dt, 1e-9)})
                        bar.set_postfix({k: f"{v:.4f}" for k, v in fields.items()
                                         if isinstance(v, float)})
                        t0, seen = time.perf_counter(), 0
                    if every and self.step % every == 0 and self.step < self.total_steps:
                        self._log_eval()
                    if c.checkpoint_every and self.step % c.checkpoint_every == 0:
                        self.save()
                    if self.step >= end:
                        break
                else:
                    if self.step == step_before and not self.consumed:
                        raise ConfigError(f"an epoch of {self.config.train!r} gave no batch: "
                                          f"the sampler has {len(self.sampler)} clips")
                    self.epoch += 1
                    self.consumed = 0
                    continue
            break
        bar.close()
        path = self.save()
        if self.step >= self.total_steps:
            self._log_eval()
        return TrainResult(self.step, self.epoch, loss, self.evaluation, self.out, path,
                           self.history)

    def eval_every(self) -> int:
        """Steps between evaluations: ``eval_every``; with -1 (the default) up to ten a run,
        spaced so that they cost at most about a tenth of the training (scoring a clip is a
        third of training on it); 0 (or no evaluation split) evaluates at the end only."""
        c = self.config
        if self.eval_set is None or c.eval_every == 0:
            return 0
        if c.eval_every > 0:
            return c.eval_every
        affordable = math.ceil(10 * len(self.eval_set) / (3 * c.batch_size * self.world))
        return max(1, math.ceil(self.total_steps / 10), affordable)

    def _log_eval(self) -> None:
        result = self.evaluate()
        if result is not None:
            m = result.metrics
            self._log({"step": self.step, "epoch": self.epoch, "eval": {
                "mAP": float(m.mean_ap), "mAUC": float(m.mean_auc),
                "d_prime": float(m.dprime_of_mean_auc)}})
            if self.progress:
                tqdm.write(f"step {self.step}: validation mAP {float(m.mean_ap):.3f}",
                           file=sys.stderr)
            with atomic_write(self.out / "eval.json", "w", encoding="utf-8") as fh:
                fh.write(result.to_json())


def train(config: TrainConfig | None = None, *, progress: bool = True,
          **overrides: Any) -> TrainResult:
    """Train a baseline (see :class:`TrainConfig`; keyword overrides change its fields).

    Without a ``config`` the run starts from the model's own recipe where it has one
    (:func:`~audioset_data.baselines.models.model_defaults`), then applies ``overrides``."""
    if config is None:
        config = TrainConfig(**model_defaults(overrides.get("model", TrainConfig.model)))
    config = config.replace(**overrides) if overrides else config
    return Trainer(config, progress=progress).fit()
