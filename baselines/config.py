"""The training configuration: one small dataclass, every field overridable on the command line.

There are no config files to edit: ``TrainConfig(model="cnn14", lr=1e-3)`` in Python, or
``--model cnn14 --lr 1e-3`` on the command line (flags are built from the fields, so they
cannot drift apart). A checkpoint stores the configuration it was trained with.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from audioset_data.errors import ConfigError

__all__ = ["TrainConfig", "add_config_arguments", "config_from_args"]

SAMPLERS = ("balanced", "weighted", "shuffle")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TrainConfig:
    """Everything one training run needs; see the field comments."""

    model: str = "cnn14"                  # fc, resnet50 or cnn14
    train: str = "balanced"               # cache to train on (split name or folder)
    eval: str | None = "eval"             # cache to evaluate on (None: no evaluation)
    root: str | None = None               # data root holding the caches (default: the usual)
    out: str = "runs/baseline"            # folder for checkpoints, metrics.jsonl, reports
    epochs: float = 10.0                  # passes over the sampler's epoch (fractions allowed)
    batch_size: int = 32                  # clips per step (per process under DDP)
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup: float = 0.05                  # share of the steps spent warming up linearly
    sampler: str = "balanced"             # balanced, weighted or shuffle
    beta: float = 0.0                     # prior-balanced loss exponent (0: plain BCE)
    mixup: float = 0.0                    # mixup alpha (0: off)
    specaugment: bool = False
    precision: str = "auto"               # auto (bf16 on GPU, fp32 on CPU), fp32 or bf16
    channels_last: bool = True            # on GPU only
    compile: bool = False                 # torch.compile the model
    grad_clip: float = 5.0                # max gradient norm (0: off)
    eval_every: int = 0                   # steps between evaluations (0: at the end only)
    checkpoint_every: int = 500           # steps between checkpoints (0: at the end only)
    log_every: int = 20                   # steps between lines in metrics.jsonl
    num_workers: int = 2                  # DataLoader worker processes
    device: str = "auto"                  # auto, cpu, cuda, cuda:1 …
    seed: int = 0
    max_clips: int = 0                    # use only the first N cached clips (0: all)
    hidden: tuple[int, ...] = field(default=(1000, 1000, 1000))  # fc hidden layers
    resume: bool = True                   # continue from out/last.pt when it exists
    stop_after: int = 0                   # checkpoint and stop after N steps of this call
    refined: str | None = None            # refined frame targets (audioset refine) to train on
    deterministic: bool = False           # torch.use_deterministic_algorithms (see Trainer)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"sampler={self.sampler!r}: use one of {SAMPLERS}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision={self.precision!r}: use one of {PRECISIONS}")
        for name in ("batch_size",):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be at least 1")
        for name in ("epochs", "lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be positive")
        for name in ("beta", "mixup", "weight_decay", "grad_clip", "max_clips", "num_workers",
                     "stop_after"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)!r} must not be negative")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"warmup={self.warmup!r} must lie in [0, 1)")
        self.hidden = tuple(int(h) for h in self.hidden)

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
    if "eval" in changes and changes["eval"].lower() in ("none", ""):
        changes["eval"] = None
    return base.replace(**changes)
