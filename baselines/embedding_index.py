"""Frame embeddings of a cache, kept beside it and searched exactly in batches.

An embedder turns a batch of waveforms into L2-normalised frame vectors (one per 960 ms
example for the frame models, one per clip for clip models). :class:`FrameIndex` stores them
under ``<cache folder>/embeddings/<embedder digest>/`` as append-only parts: each update embeds
only the clips the index lacks and writes one new part (vectors as ``.npy``, read memory-mapped,
keys and frame counts as ``.npz``), and a small ``index.json`` naming the parts is replaced last,
so a stopped update leaves the previous index intact.

Search is exact: the queries are multiplied with the corpus a block of frames at a time (torch
matmul on the memory-mapped rows, so memory stays bounded by the block whatever the corpus
size) and distances are ``1 - cosine`` after removing the index's mean vector (kept as per-part
sums). The mean is folded into the product and each part stores its vectors' squared norms, so
a block is read once (:class:`_Probe`). It was chosen by measurement
(``benchmarks/results/mining.md``, one thread on every side): it returns the same neighbours as
the simplest NumPy search (matmul + argpartition over the whole corpus) and faiss's exact flat
index, at least as fast as either at 128-d and 1000-d, needs no extra package, gives the
per-clip minimum the ranking uses, and never holds the whole corpus in memory.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from audioset_data.cache.reader import AudioSetCache
from audioset_data.config import PathLike
from audioset_data.errors import CacheError, ConfigError
from audioset_data.fileio import atomic_write
from audioset_data.loaders import AudioSetDataset, collate
from audioset_data.loaders.frontend import VGGISH, LogMel

from .checkpoint import file_digest
from .inference import frontend_for
from .prediction import load_trained

logger = logging.getLogger(__name__)

#: Digest naming the untrained fallback embedding's folder (bump when its recipe changes).
LOGMEL_STATS_DIGEST = "logmel-std-v1"
INDEX_NAME = "index.json"
BLOCK_FRAMES = 65536

Embed = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.normalize(x.float(), dim=1, eps=1e-8)


class LogMelStats:
    """The untrained fallback embedding: per 960 ms VGGish log-mel example, the standard
    deviation over time of each of the 64 bands, minus their mean across bands, L2-normalised.

    The spread of a log band does not change with loudness, and it marks the bands where
    something happens within the second (an event) rather than a steady background, which is
    what a query by example looks for when no trained model is at hand. Steady sounds of
    different colour look alike to it; use a trained model's embedding to tell those apart.
    """

    digest = LOGMEL_STATS_DIGEST

    def __init__(self, input_rate: int, device: str = "cpu") -> None:
        self.frontend = LogMel(VGGISH, input_rate=input_rate).to(device)
        self.device = torch.device(device)

    @torch.no_grad()
    def __call__(self, wave: torch.Tensor, lengths: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        examples, clip_index = self.frontend.examples(wave.to(self.device), lengths)
        std = examples.std(dim=1)
        return _normalise(std - std.mean(dim=1, keepdim=True)), clip_index


class ModelEmbedder:
    """A trained baseline's ``embedding(x)``, L2-normalised: one vector per 960 ms example for
    frame models (``fc``, ``resnet50``), one per clip for clip models (``cnn14``)."""

    def __init__(self, model: nn.Module, input_rate: int, digest: str,
                 device: str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.frontend = frontend_for(model, input_rate).to(device)
        self.frame_level = getattr(model, "frontend", "panns") == "vggish"
        self.digest = digest
        self.device = torch.device(device)

    @torch.no_grad()
    def __call__(self, wave: torch.Tensor, lengths: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        wave = wave.to(self.device)
        if self.frame_level:
            x, clip_index = self.frontend.examples(wave, lengths)
        else:
            x = self.frontend(wave, lengths)
            clip_index = torch.arange(len(wave), device=self.device)
        if not len(x):
            return x.new_zeros((0, int(self.model.embedding_dim))), clip_index
        return _normalise(self.model.embedding(x)), clip_index


def embedder_for(checkpoint: PathLike | None, input_rate: int,
                 device: str = "cpu") -> LogMelStats | ModelEmbedder:
    """The embedder of a training checkpoint, or the untrained :class:`LogMelStats` when
    ``checkpoint`` is ``None``."""
    if checkpoint is None:
        return LogMelStats(input_rate, device)

    path = Path(checkpoint)
    if not path.is_file():
        raise ConfigError(f"checkpoint {str(path)!r} not found")
    model, _ = load_trained(path, device)
    return ModelEmbedder(model, input_rate, file_digest(path)[:16], device)


@dataclass
class _Part:
    name: str
    keys: np.ndarray
    counts: np.ndarray
    vectors: np.ndarray
    total: np.ndarray
    sqnorms: np.ndarray


class FrameIndex:
    """Frame embeddings of a cache's clips, persisted in ``folder`` and searched exactly.

    Attributes
    ----------
    keys : list of str
        Clip keys in index order (the cache's order as clips arrived).
    counts : ndarray of int64
        Frames of each clip (0 for a clip shorter than one example).
    """

    def __init__(self, folder: PathLike) -> None:
        self.folder = Path(folder)
        self._parts: list[_Part] = []
        self._dim: int | None = None
        manifest = self.folder / INDEX_NAME
        if manifest.is_file():
            try:
                meta = json.loads(manifest.read_text())
                for name in meta["parts"]:
                    self._parts.append(self._load_part(name))
                self._dim = int(meta["dim"]) if meta.get("dim") is not None else None
            except (OSError, ValueError, KeyError) as exc:
                raise CacheError(f"embedding index {str(manifest)!r} is damaged ({exc}); "
                                 f"delete {str(self.folder)!r} to rebuild it") from exc
        self._refresh()

    @classmethod
    def beside(cls, cache: AudioSetCache, digest: str) -> FrameIndex:
        """The index of ``cache`` for the embedder named ``digest`` (may be empty)."""
        return cls(Path(cache.folder) / "embeddings" / digest)

    def _load_part(self, name: str) -> _Part:
        with np.load(self.folder / f"{name}.npz") as meta:
            keys, counts = meta["keys"].astype(str), meta["counts"].astype(np.int64)
            total = meta["total"].astype(np.float64)
            sqnorms = meta["sqnorms"] if "sqnorms" in meta.files else None
        # copy-on-write: torch reads the rows in place (a read-only map would need a copy);
        # nothing ever writes to them
        vectors = np.load(self.folder / f"{name}.npy", mmap_mode="c")
        if len(vectors) != int(counts.sum()):
            raise CacheError(f"embedding part {name!r} in {str(self.folder)!r} has "
                             f"{len(vectors)} vectors for {int(counts.sum())} frames")
        if sqnorms is None:  # a part written before the norms were stored with it
            sqnorms = _sqnorms(vectors)
        return _Part(name, keys, counts, vectors, total, sqnorms.astype(np.float32))

    def _refresh(self) -> None:
        self.keys: list[str] = [str(k) for p in self._parts for k in p.keys]
        self.counts = (np.concatenate([p.counts for p in self._parts])
                       if self._parts else np.zeros(0, np.int64))
        self._where = {k: i for i, k in enumerate(self.keys)}
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        return key in self._where

    def __repr__(self) -> str:
        return f"FrameIndex({str(self.folder)!r}, {len(self)} clips, {self.n_frames} frames)"

    @property
    def n_frames(self) -> int:
        """Frames held, over all clips."""
        return int(self.offsets[-1])

    @property
    def dim(self) -> int | None:
        """Length of each vector (``None`` while empty)."""
        return self._dim

    def mean(self) -> np.ndarray:
        """The mean of every vector held (float32), the common part the search removes."""
        if not self.n_frames:
            return np.zeros(self._dim or 0, np.float32)
        return (sum(p.total for p in self._parts) / self.n_frames).astype(np.float32)

    def clip_of_frame(self) -> np.ndarray:
        """Index position of the clip each frame belongs to (int64, one per frame)."""
        return np.repeat(np.arange(len(self.counts)), self.counts)

    def frames(self, key: str) -> np.ndarray:
        """The vectors of one clip, shape (frames, dim)."""
        if key not in self._where:
            raise ConfigError(f"clip {key!r} is not in the embedding index {str(self.folder)!r}")
        i = self._where[key]
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        out = []
        for p, start in zip(self._parts, self._part_starts(), strict=True):
            a, b = max(lo, start), min(hi, start + len(p.vectors))
            if a < b:
                out.append(np.asarray(p.vectors[a - start:b - start]))
        return np.concatenate(out) if out else np.zeros((0, self._dim or 0), np.float32)

    def _part_starts(self) -> list[int]:
        return list(np.cumsum([0] + [len(p.vectors) for p in self._parts[:-1]]).astype(int))

    def update(self, cache: AudioSetCache, embed: Embed, *, batch_size: int = 32,
               progress: bool = False) -> int:
        """Embed the clips of ``cache`` the index lacks and persist them as one new part;
        returns how many clips were added."""
        from tqdm.auto import tqdm


        new = [k for k in cache.keys() if k not in self._where]
        if not new:
            return 0
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1; got {batch_size}")
        dataset = AudioSetDataset(cache, selection=new)
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate)
        keys: list[str] = []
        counts: list[np.ndarray] = []
        vectors: list[np.ndarray] = []
        for batch in tqdm(loader, desc="embedding", disable=not progress, leave=False):
            emb, clip_index = embed(batch["waveform"], batch["length"])
            keys.extend(batch["key"])
            counts.append(np.bincount(clip_index.cpu().numpy(), minlength=len(batch["key"])))
            vectors.append(emb.float().cpu().numpy())
        self.add(keys, np.concatenate(counts), np.concatenate(vectors))
        logger.info("embedded %d new clips into %s", len(keys), self.folder)
        return len(keys)

    def add(self, keys: Sequence[str], counts: np.ndarray, vectors: np.ndarray) -> None:
        """Persist vectors already computed as one new part: ``counts[i]`` frames of clip
        ``keys[i]``, their rows in order in ``vectors``.

        Raises
        ------
        ConfigError
            The shapes disagree, a key is already held, or the vectors have another length
            than the index's.
        """
        keys = np.asarray([str(k) for k in keys])
        counts = np.asarray(counts, dtype=np.int64)
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        if (counts.shape != keys.shape or matrix.ndim != 2 or (counts < 0).any()
                or int(counts.sum()) != len(matrix)):
            raise ConfigError(f"{len(keys)} keys, counts of shape {counts.shape} summing to "
                              f"{int(counts.sum())} and vectors of shape {matrix.shape} "
                              f"do not fit together")
        held = [k for k in keys.tolist() if k in self._where]
        if held or len(set(keys.tolist())) != len(keys):
            raise ConfigError(f"clip {(held or keys.tolist())[0]!r} is already in the "
                              f"embedding index {str(self.folder)!r} (or given twice)")
        if self._dim is not None and matrix.shape[1] != self._dim:
            raise ConfigError(f"embedding index {str(self.folder)!r} holds {self._dim}-d "
                              f"vectors; these are {matrix.shape[1]}-d")
        if not len(keys):
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{len(self._parts):05d}"
        with atomic_write(self.folder / f"{name}.npy") as fh:
            np.save(fh, matrix)
        with atomic_write(self.folder / f"{name}.npz") as fh:
            np.savez(fh, keys=keys, counts=counts, total=matrix.sum(axis=0, dtype=np.float64),
                     sqnorms=_sqnorms(matrix))
        names = [p.name for p in self._parts] + [name]
        with atomic_write(self.folder / INDEX_NAME, "w", encoding="utf-8") as fh:
            json.dump({"parts": names, "dim": int(matrix.shape[1])}, fh)
        self._dim = int(matrix.shape[1])
        self._parts.append(self._load_part(name))
        self._refresh()

    def blocks(self, block: int = BLOCK_FRAMES) -> Sequence[tuple[int, np.ndarray]]:
        """``(first frame, vectors)`` blocks of at most ``block`` frames, over every part."""
        return [(first, v) for first, v, _ in self._blocks(block)]

    def _blocks(self, block: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
        out = []
        for p, start in zip(self._parts, self._part_starts(), strict=True):
            for lo in range(0, len(p.vectors), block):
                out.append((int(start) + lo, p.vectors[lo:lo + block],
                            p.sqnorms[lo:lo + block]))
        return out

    def _probe(self, queries: np.ndarray, device: str) -> _Probe:
        q = _as_queries(queries, self._dim, device)
        mu = torch.from_numpy(self.mean()).to(device)
        if not len(mu):
            mu = q.new_zeros(q.shape[1])
        return _Probe(_normalise(q - mu), mu)

    @torch.no_grad()
    def clip_distances(self, queries: np.ndarray, *, block: int = BLOCK_FRAMES,
                       device: str = "cpu") -> np.ndarray:
        """Distance from each query to the nearest frame of each clip, shape (queries, clips);
        ``inf`` for clips without frames. The distance is ``1 - cosine`` after removing the
        mean vector of the index from both sides (embeddings share a large common part,
        e.g. non-negative activations, that would otherwise make every pair look alike)."""
        probe = self._probe(queries, device)
        best = torch.full((probe.n, len(self)), -float("inf"), device=device)
        owner = torch.from_numpy(self.clip_of_frame()).to(device)
        for first, vectors, sqnorms in self._blocks(block):
            sim = probe.similarities(vectors, sqnorms)
            idx = owner[first:first + sim.shape[1]].unsqueeze(0).expand_as(sim)
            best.scatter_reduce_(1, idx, sim, reduce="amax")
        return (1.0 - best).cpu().numpy()  # a clip without frames: 1 - (-inf) = inf

    @torch.no_grad()
    def frame_distances(self, queries: np.ndarray, key: str, *,
                        device: str = "cpu") -> np.ndarray:
        """Distances from each query to each frame of one clip, shape (queries, frames)."""
        probe = self._probe(queries, device)
        vectors = self.frames(key)
        return (1.0 - probe.similarities(vectors, _sqnorms(vectors))).cpu().numpy()

    @torch.no_grad()
    def search(self, queries: np.ndarray, k: int, *, block: int = BLOCK_FRAMES,
               device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest frames of each query: ``(distances, frame numbers)``, each of
        shape (queries, k), nearest first (distances as in :meth:`clip_distances`)."""
        if k < 1:
            raise ConfigError(f"k must be >= 1; got {k}")
        probe = self._probe(queries, device)
        best_s = torch.full((probe.n, 0), -float("inf"), device=device)
        best_i = torch.zeros((probe.n, 0), dtype=torch.int64, device=device)
        for first, vectors, sqnorms in self._blocks(block):
            sim = probe.similarities(vectors, sqnorms)
            ss, ii = torch.topk(sim, min(k, sim.shape[1]), dim=1)
            best_s = torch.cat([best_s, ss], dim=1)
            best_i = torch.cat([best_i, ii + first], dim=1)
            if best_s.shape[1] > k:
                best_s, pick = torch.topk(best_s, k, dim=1)
                best_i = torch.gather(best_i, 1, pick)
        order = torch.argsort(best_s, dim=1, descending=True)
        return ((1.0 - torch.gather(best_s, 1, order)).cpu().numpy(),
                torch.gather(best_i, 1, order).cpu().numpy())


def _sqnorms(vectors: np.ndarray) -> np.ndarray:
    """``|v|^2`` of each row (float32), one pass over the rows."""
    return np.einsum("ij,ij->i", vectors, vectors, dtype=np.float32)


class _Probe:
    """Centred unit queries ``q`` and the index mean ``mu``, ready to score blocks of stored
    vectors by ``cos(q, v - mu) = (q·v - q·mu) / |v - mu|`` without centring the block.

    One matrix product per block gives both ``q·v`` and ``mu·v`` (``mu`` rides along as an
    extra query row, and ``-q·mu`` enters as the product's initial value); with ``|v|^2``
    stored beside the vectors, ``|v - mu|^2 = |v|^2 - 2 mu·v + |mu|^2`` needs no other pass
    over the block.
    """

    def __init__(self, q: torch.Tensor, mu: torch.Tensor) -> None:
        self.n = len(q)
        self.rows = torch.cat([q, mu[None]])
        self.start = torch.cat([-(q @ mu), q.new_zeros(1)])[:, None]
        self.mu_sq = float(mu @ mu)

    def similarities(self, vectors: np.ndarray, sqnorms: np.ndarray) -> torch.Tensor:
        """``cos(q, v - mu)`` of every query and row of ``vectors``, shape (queries, rows)."""
        device = self.rows.device
        v = torch.from_numpy(np.asarray(vectors, dtype=np.float32)).to(device)
        prod = torch.addmm(self.start, self.rows, v.T)
        sq = torch.from_numpy(np.asarray(sqnorms, dtype=np.float32)).to(device)
        inv = torch.sub(sq, prod[-1], alpha=2.0).add_(self.mu_sq).clamp_min_(1e-12).rsqrt_()
        return prod[:-1].mul_(inv)


def _as_queries(queries: np.ndarray, dim: int | None, device: str) -> torch.Tensor:
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim != 2 or not len(q):
        raise ConfigError(f"queries must be a non-empty (n, dim) array; got shape {q.shape}")
    if dim is not None and q.shape[1] != dim:
        raise ConfigError(f"queries have {q.shape[1]} dimensions, the index {dim}")
    return torch.from_numpy(q).to(device)


__all__ = ["LOGMEL_STATS_DIGEST", "FrameIndex", "LogMelStats", "ModelEmbedder", "embedder_for"]
