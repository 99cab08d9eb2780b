"""The training configuration: one small dataclass, every field overridable on the command line.

There are no config files to edit: ``TrainConfig(model="cnn14", lr=1e-3)`` in Python, or
``--model cnn14 --lr 1e-3`` on the command line (flags are built from the fields, so they
cannot drift apart). A checkpoint stores the configuration it was trained with.

A *recipe* names the sampler, loss balancing and augmentation of a published training setup,
kept faithful to its source: ``TrainConfig.from_recipe("seed", beta=0.25)`` or
``--recipe seed --beta 0.25``. A configuration that names a recipe and changes one of its fixed
fields is refused, so no run labelled ``panns`` also weights the loss by the priors.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from audioset_data.errors import ConfigError

__all__ = ["RECIPES", "Recipe", "TrainConfig", "add_config_arguments", "config_from_args"]

SAMPLERS = ("balanced", "weighted", "shuffle")
PRECISIONS = ("auto", "fp32", "bf16")
#: The learning rate after the warm-up: ``cosine`` decays it to 0 at the last step; ``constant``
#: keeps it (the embedding models' recipe: held-out mAP 0.289 against 0.261 with the cosine).
SCHEDULES = ("cosine", "constant")
#: How a frame model (96 x 64 examples) makes a clip's score: ``frame`` trains every example
#: on its clip's labels and scores the clip by the mean example probability; the others pool
#: the examples per clip (multiple-instance learning) and train and score the pooled clip
#: logit (see :mod:`~audioset_data.baselines.pooling`, which holds the same tuple).
POOLS = ("frame", "mean", "max", "lse", "linsoft", "feature-max", "feature-mean")
#: The automatic schedule (``epochs=0`` and ``steps=0``): this many passes over the sampler's
#: epoch, but never fewer steps than ``min_steps`` (a small split needs far more passes than a
#: large one to learn anything) nor, on a tiny split, more than ``AUTO_MAX_PASSES`` passes.
AUTO_EPOCHS = 10.0
AUTO_MAX_PASSES = 300.0


@dataclass(frozen=True)
class Recipe:
    """A published training setup: the fields it sets, which of them it fixes, and the loss
    exponents its benchmark sweeps."""

    name: str
    source: str
    fields: dict[str, Any]
    fixed: tuple[str, ...]
    betas: tuple[float, ...] = (0.0,)


#: The named recipes. ``seed``: uniform sampling and the seed's prior-balanced loss, swept over
#: beta 0 / 0.1 / 0.25 / 1, no augmentation. ``panns``: the PANNs class-balanced sampler (which
#: already corrects the imbalance, so beta stays 0), mixup (alpha 1) and SpecAugment.
RECIPES: dict[str, Recipe] = {
    "seed": Recipe("seed", "the seed paper: uniform sampling, prior-balanced loss",
                   {"sampler": "shuffle", "beta": 0.0, "mixup": 0.0, "specaugment": False},
                   fixed=("sampler", "mixup", "specaugment"), betas=(0.0, 0.1, 0.25, 1.0)),
    "panns": Recipe("panns", "PANNs (Kong et al. 2020): balanced sampler, mixup, SpecAugment",
                    {"sampler": "balanced", "beta": 0.0, "mixup": 1.0, "specaugment": True},
                    fixed=("sampler", "beta", "mixup", "specaugment")),
}


@dataclass
class TrainConfig:
    """Everything one training run needs; see the field comments."""

    model: str = "cnn14"                  # fc, resnet50 or cnn14
    train: str = "balanced"               # cache to train on (split name or folder)
    eval: str | None = "eval"             # cache to evaluate on (None: no evaluation)
    root: str | None = None               # data root holding the caches (default: the usual)
    out: str = "runs/baseline"            # folder for checkpoints, metrics.jsonl, reports
    epochs: float = 0.0                   # passes over the sampler's epoch (0: automatic)
    steps: int = 0                        # optimiser steps; wins over epochs (0: from epochs)
    min_steps: int = 1000                 # floor of the automatic schedule (see AUTO_EPOCHS)
    recipe: str | None = None             # seed or panns: a published sampler/loss/augmentation
    batch_size: int = 32                  # clips per step (per process under DDP)
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup: float = 0.05                  # share of the steps spent warming up linearly
    schedule: str = "cosine"              # after the warm-up: cosine (to 0) or constant
    sampler: str = "balanced"             # balanced, weighted or shuffle
    beta: float = 0.0                     # prior-balanced loss exponent (0: plain BCE)
    mixup: float = 0.0                    # mixup alpha (0: off)
    specaugment: bool = False
    precision: str = "auto"               # auto (bf16 on GPU; on a CPU with native bf16 for
    #                                       the embedding models; else fp32), fp32 or bf16
    channels_last: bool = True            # on GPU only
    compile: bool = False                 # torch.compile the model
    grad_clip: float = 5.0                # max gradient norm (0: off)
    eval_every: int = -1                  # steps between evaluations (0: at the end only,
                                          # -1: up to ten a run, at most ~10 % of the cost)
    checkpoint_every: int = 500           # steps between checkpoints (0: at the end only)
    log_every: int = 20                   # steps between lines in metrics.jsonl
    num_workers: int = 2                  # DataLoader worker processes
    device: str = "auto"                  # auto, cpu, cuda, cuda:1 …
    seed: int = 0
    max_clips: int = 0                    # use only the first N cached clips (0: all)
    hidden: tuple[int, ...] = field(default=(1000, 1000, 1000))  # fc hidden layers
    dropout: float = 0.0                  # fc: dropout after each hidden layer
    pool: str = "frame"                   # frame models: frame, mean, max, lse, linsoft,
                                          # feature-max or feature-mean (see pooling.py)
    input_norm: bool = False              # fc: remove each example's level, standardise bands
    band_mask: int = 0                    # fc: mask up to N mel bands per clip in training
    time_shift: bool = False              # frame models: examples start anywhere in the clip
    resume: bool = True                   # continue from out/last.pt when it exists
    stop_after: int = 0                   # checkpoint and stop after N steps of this call
    refined: str | None = None            # refined frame targets (audioset refine) to train on
    deterministic: bool = False           # torch.use_deterministic_algorithms (see Trainer)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"sampler={self.sampler!r}: use one of {SAMPLERS}")
        if self.pool not in POOLS:
            raise ConfigError(f"pool={self.pool!r}: use one of {POOLS}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout={self.dropout!r} must lie in [0, 1)")
        if not 0 <= self.band_mask < 64:
            raise ConfigError(f"band_mask={self.band_mask!r} must lie in [0, 64): mel bands")
        if self.eval_every < -1:
            raise ConfigError(f"eval_every={self.eval_every!r}: steps, 0 (at the end only) or "
                              f"-1 (up to ten a run)")
        self._check_recipe()
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule={self.schedule!r}: use one of {SCHEDULES}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision={self.precision!r}: use one of {PRECISIONS}")
        for name in ("batch_size",):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be at least 1")
        if not self.lr > 0:
            raise ConfigError(f"lr={self.lr!r} must be positive")
        for name in ("epochs", "steps", "min_steps", "beta", "mixup", "weight_decay",
                     "grad_clip", "max_clips", "num_workers", "stop_after"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)!r} must not be negative")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"warmup={self.warmup!r} must lie in [0, 1)")
        self.hidden = tuple(int(h) for h in self.hidden)

    def _check_recipe(self) -> None:
        if self.recipe is None:
            return
        if self.recipe not in RECIPES:
            raise ConfigError(f"recipe={self.recipe!r}: use one of {sorted(RECIPES)}")
        recipe = RECIPES[self.recipe]
        off = {k: getattr(self, k) for k in recipe.fixed if getattr(self, k) != recipe.fields[k]}
        if off:
            want = ", ".join(f"{k}={recipe.fields[k]!r}" for k in off)
            raise ConfigError(f"recipe {self.recipe!r} ({recipe.source}) fixes {want}; got "
                              f"{', '.join(f'{k}={v!r}' for k, v in off.items())}. Build it "
                              f"with TrainConfig.from_recipe({self.recipe!r}, ...) (`--recipe "
                              f"{self.recipe}` on the command line), or drop the recipe to "
                              f"train a setup of your own")

    @classmethod
    def from_recipe(cls, name: str, base: TrainConfig | None = None,
                    **changes: Any) -> TrainConfig:
        """``base`` (default :class:`TrainConfig()`) with the recipe ``name``'s fields, then
        ``changes``; a change to a field the recipe fixes is refused.

        Examples
        --------
        >>> c = TrainConfig.from_recipe("seed", beta=0.25)
        >>> (c.recipe, c.sampler, c.beta, c.mixup)
        ('seed', 'shuffle', 0.25, 0.0)
        """
        if name not in RECIPES:
            raise ConfigError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
        base = (base or cls()).replace(recipe=None)
        return base.replace(**{**RECIPES[name].fields, **changes, "recipe": name})

    def total_steps(self, batches_per_epoch: int) -> int:
        """Optimiser steps of the run, given the batches in one epoch of its sampler.

        ``steps`` when set; else ``epochs`` passes; else the automatic schedule:
        ``AUTO_EPOCHS`` passes, at least ``min_steps`` steps, at most ``AUTO_MAX_PASSES``
        passes when that is fewer (a split of 160 clips in batches of 32 trains 1,000 steps,
        200 passes, where 10 epochs would be 50 steps and learn next to nothing).
        """
        per = max(1, int(batches_per_epoch))
        if self.steps:
            return int(self.steps)
        if self.epochs:
            return max(1, int(math.ceil(self.epochs * per)))
        floor = min(self.min_steps, int(math.ceil(AUTO_MAX_PASSES * per)))
        return max(1, int(math.ceil(AUTO_EPOCHS * per)), floor)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists for tuples), as stored in checkpoints and reports."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The configuration of :meth:`to_dict`; unknown keys are named in the error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training options {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a yes/no value")


def _parse_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of "
                                         f"integers") from None


def add_config_arguments(parser: argparse.ArgumentParser,
                         skip: Sequence[str] = ()) -> None:
    """Add ``--field value`` for every :class:`TrainConfig` field (``--no-field`` for flags)."""
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            parser.add_argument(flag, dest=f"cfg_{f.name}", type=_parse_bool, default=None,
                                metavar="yes|no", help=f"(default {'yes' if default else 'no'})")
        elif isinstance(default, tuple):
            parser.add_argument(flag, dest=f"cfg_{f.name}", type=_parse_ints, default=None,
                                metavar="N,N", help=f"(default {','.join(map(str, default))})")
        else:
            kind = type(default) if default is not None else str
            parser.add_argument(flag, dest=f"cfg_{f.name}", type=kind, default=None,
                                help=f"(default {default})")


def config_from_args(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """``base`` (default :class:`TrainConfig()`) with the flags that were given."""
    base = base or TrainConfig()
    changes = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
    for name in ("eval", "recipe"):
        if name in changes and changes[name].lower() in ("none", ""):
            changes[name] = None
    if changes.get("recipe"):
        return TrainConfig.from_recipe(changes.pop("recipe"), base, **changes)
    return base.replace(**changes)
