"""Training checkpoints that load with ``torch.load(weights_only=True)``.

A checkpoint holds the model, optimizer, scheduler and grad-scaler state, the sampler's
position, step and epoch, the run's config, optional extras and the RNG states of Python's
``random``, NumPy's global generator, torch's CPU generator and every CUDA device's, so a
resumed run draws the same dropout masks and augmentations as the uninterrupted one.

Everything in it is a tensor, a number, a string, ``None`` or a plain container (dict, list,
tuple), so it loads without unpickling arbitrary objects: ``save_checkpoint`` refuses anything
else, naming where it sits, instead of writing a file that the safe loader would reject. The
file is written under a temporary name, verified with the safe loader and renamed into place,
so an interrupted save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import random
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from audioset_data.config import PathLike
from audioset_data.errors import CheckpointError
from audioset_data.fileio import atomic_path

logger = logging.getLogger(__name__)

FORMAT = "audioset_data.checkpoint"
VERSION = 1
_PLAIN = (torch.Tensor, str, int, float, bool, complex, type(None), torch.dtype, torch.device,
          torch.Size)


def _unwrap(model: nn.Module) -> nn.Module:
    """The module whose parameter names a checkpoint stores: inside DataParallel /
    DistributedDataParallel (``module``) and ``torch.compile`` (``_orig_mod``)."""
    while True:
        if isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def _check_plain(obj: Any, where: str) -> None:
    """Raise CheckpointError naming the first value the safe loader would refuse."""
    if isinstance(obj, _PLAIN):
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str | int | float | bool | type(None)):
                raise CheckpointError(f"{where} has a key of type {type(key).__name__} "
                                      f"({key!r}); use str or int keys")
            _check_plain(value, f"{where}[{key!r}]")
        return
    if isinstance(obj, list | tuple | set | frozenset):
        for i, value in enumerate(obj):
            _check_plain(value, f"{where}[{i}]")
        return
    hint = " (convert NumPy values with .tolist() or torch.as_tensor)" \
        if type(obj).__module__.startswith("numpy") else ""
    raise CheckpointError(f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}, "
                          f"which torch.load(weights_only=True) refuses{hint}; keep only "
                          "tensors, numbers, strings, None and dict/list/tuple")


def rng_states() -> dict[str, Any]:
    """The RNG states of Python, NumPy (global), torch CPU and each CUDA device, as plain
    types and tensors."""
    version, state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    states: dict[str, Any] = {
        "python": {"version": version, "state": list(state), "gauss_next": gauss},
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": [],
    }
    if torch.cuda.is_available():
        states["cuda"] = list(torch.cuda.get_rng_state_all())
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`rng_states` returned."""
    py = states["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    npy = states["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].cpu().numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(states["torch"].cpu())
    cuda = states.get("cuda") or []
    if cuda and torch.cuda.is_available():
        n = torch.cuda.device_count()
        if n != len(cuda):
            logger.warning("checkpoint has CUDA RNG states for %d device(s), this machine has "
                           "%d; restoring the first %d", len(cuda), n, min(n, len(cuda)))
        for i, state in enumerate(cuda[:n]):
            torch.cuda.set_rng_state(state.cpu(), device=i)
    elif cuda:
        logger.warning("checkpoint has CUDA RNG states but CUDA is not available; not restored")


def save_checkpoint(path: PathLike, *, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any = None, scaler: Any = None,
                    sampler_state: dict | None = None, step: int, epoch: int,
                    config: dict, extra: dict | None = None) -> Path:
    """Write a checkpoint to ``path`` atomically and return the path.

    Parameters
    ----------
    path : path-like
        The file to write (replaced if it exists).
    model : nn.Module
        Its state dict is saved (unwrapped from DDP / ``torch.compile``).
    optimizer, scheduler, scaler : optional
        Anything with ``state_dict()``: a torch optimizer, LR scheduler, ``GradScaler``.
    sampler_state : dict, optional
        The training sampler's ``state_dict()``, to resume mid-epoch.
    step, epoch : int
        Optimizer steps taken and the current epoch.
    config : dict
        The run's settings (plain values), kept to rebuild the model and for the record.
    extra : dict, optional
        Anything else of plain values (metrics, label-set hash...).

    Raises
    ------
    CheckpointError
        A value is not a tensor, number, string, None or plain container (the message gives
        its place, e.g. ``extra['stats']``); nothing is written then.
    """
    path = Path(path)
    inner = _unwrap(model)
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "model_class": type(inner).__name__,
        "model": OrderedDict(inner.state_dict()),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "scaler": None if scaler is None else scaler.state_dict(),
        "sampler_state": sampler_state,
        "step": int(step),
        "epoch": int(epoch),
        "config": dict(config),
        "extra": extra,
        "rng": rng_states(),
    }
    for key in ("optimizer", "scheduler", "scaler", "sampler_state", "config", "extra"):
        _check_plain(payload[key], key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
        try:
            torch.load(tmp, map_location="cpu", weights_only=True, mmap=True)
        except pickle.UnpicklingError as exc:
            raise CheckpointError(f"checkpoint for {str(path)!r} would not load with "
                                  f"weights_only=True: {exc}") from exc
    logger.info("saved checkpoint %s (step %d, epoch %d)", path, step, epoch)
    return path


def _read(path: Path, map_location: Any) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} holds objects other than tensors and "
                              f"plain values; refusing to unpickle it: {exc}") from exc
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        size = path.stat().st_size
        what = ("is empty (0 bytes): truncated, or never written" if size == 0 else
                f"is truncated or not a torch checkpoint ({size} bytes)")
        detail = f": {exc}" if str(exc) else ""
        raise CheckpointError(f"checkpoint {str(path)!r} {what}{detail}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {str(path)!r} was not written by save_checkpoint "
                              f"(no format marker {FORMAT!r})")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {str(path)!r} has format version "
                              f"{payload.get('version')!r}; this code reads {VERSION}")
    return payload


def read_checkpoint(path: PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """The whole payload of a checkpoint written by :func:`save_checkpoint` (``model``,
    ``config``, ``step``, ...), loaded with ``weights_only=True``, without building anything.

    Raises
    ------
    CheckpointError
        The file is missing, empty, truncated, not a torch file, holds objects other than
        tensors and plain values (a pickle payload), or was not written by
        :func:`save_checkpoint`; the message names the file.
    """
    return _read(Path(path), map_location)


def _few(names: list[str], n: int = 5) -> str:
    shown = ", ".join(names[:n])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > n else shown


def _load_model(path: Path, model: nn.Module, payload: dict[str, Any]) -> None:
    inner = _unwrap(model)
    saved = payload["model"]
    expected = inner.state_dict()
    missing = [k for k in expected if k not in saved]
    unexpected = [k for k in saved if k not in expected]
    shapes = [f"{k} {tuple(saved[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in saved and isinstance(v, torch.Tensor) and saved[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = [f"checkpoint {str(path)!r} is for another model (saved from "
                 f"{payload.get('model_class')}, loading into {type(inner).__name__})"]
        if missing:
            parts.append(f"missing keys: {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_few(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches (saved vs model): {_few(shapes, 3)}")
        raise CheckpointError("; ".join(parts))
    inner.load_state_dict(saved)


def _load_part(path: Path, name: str, target: Any, state: Any) -> None:
    if target is None:
        return
    if state is None:
        raise CheckpointError(f"checkpoint {str(path)!r} has no {name} state to load")
    try:
        target.load_state_dict(state)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r}: its {name} state does not fit the "
                              f"given {name}: {exc}") from exc


def load_checkpoint(path: PathLike, *, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any = None, scaler: Any = None,
                    map_location: Any = "cpu", restore_rng: bool = True) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` into the given objects.

    Always loads with ``weights_only=True``. The model must match the saved one key for key
    and shape for shape. Put the model on its device before building the optimizer, as usual;
    optimizer tensors are moved to the parameters' devices by ``load_state_dict``.

    Returns
    -------
    dict
        ``step``, ``epoch``, ``sampler_state``, ``config``, ``extra`` and ``model_class``.

    Raises
    ------
    CheckpointError
        The file is missing, truncated, not a checkpoint of this format, holds unsafe objects,
        is for another model (a few missing / unexpected keys are listed), or lacks a state
        asked for.
    """
    path = Path(path)
    payload = _read(path, map_location)
    _load_model(path, model, payload)
    _load_part(path, "optimizer", optimizer, payload.get("optimizer"))
    _load_part(path, "scheduler", scheduler, payload.get("scheduler"))
    _load_part(path, "scaler", scaler, payload.get("scaler"))
    if restore_rng:
        set_rng_states(payload["rng"])
    return {key: payload.get(key) for key in
            ("step", "epoch", "sampler_state", "config", "extra", "model_class")}


def file_digest(path: PathLike) -> str:
    """SHA-256 (hex) of a file, e.g. a checkpoint, to record which model produced something."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


__all__ = ["CheckpointError", "file_digest", "load_checkpoint", "read_checkpoint",
           "rng_states", "save_checkpoint", "set_rng_states"]
