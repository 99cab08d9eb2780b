"""Training from tar shards (``audioset export --to webdataset``), on one machine or many.

:class:`ShardDataset` is a torch ``IterableDataset`` over the shards an index lists
(``<split>-shards.json``, written by :func:`audioset_data.interop.webdataset_export.to_webdataset`),
yielding the items of :class:`~audioset_data.loaders.dataset.AudioSetDataset`: ``waveform``
(padded to the clip length), ``length``, ``target`` (multi-hot, the cache's label order), ``key``
and ``index`` (the clip's number in the index's order). The shards may lie in a folder, behind
``http(s)://`` or come out of a command (``pipe:aws s3 cp s3://bucket/x/{name} -``).

How an epoch is split, given seed and epoch, on every rank alike:

1. the shards are put in an order drawn from (seed, epoch) (index order with ``shuffle=False``);
2. their clips, in that order, are cut into ``world`` runs of ``ceil(N / world)`` clips, one per
   rank, in rank order; a run past the end wraps round to the epoch's first clips (so every rank
   yields the same count and DDP steps stay in step). When ``world`` divides ``N`` every clip
   is read once per epoch; otherwise the first ``world·ceil(N/world) - N`` clips twice;
3. each rank's run is cut into its DataLoader workers' parts in whole batches, so only the
   epoch's last batch can be short;
4. each worker streams the shards its part touches and shuffles its clips in a buffer of
   ``buffer`` clips (drawn from seed, epoch, rank and worker).

A rank thus reads its own shards; when shard boundaries do not fall on the cuts (clip counts
that ``world`` × workers do not divide), a shard at a cut is read by both neighbours, each
keeping its own clips. Whole shards read are checked against the index's sha256.

Resuming: :meth:`ShardDataset.load_state_dict` with ``position`` (clips this rank consumed in
the epoch) continues the epoch where it stopped, in the same order, given the same
``batch_size``, number of workers and world size: each worker replays its stream up to the
clips it had handed out (reading, not decoding them).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import subprocess
import tarfile
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import requests
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from audioset_data.cache.codec import decode_clip
from audioset_data.cache.manifest import MANIFEST_NAME
from audioset_data.config import PathLike
from audioset_data.errors import (
    AudioSetError,
    CacheError,
    ChecksumMismatchError,
    ConfigError,
    RemoteError,
)
from audioset_data.loaders.shard_plan import (
    consumed_by_worker,
    per_rank,
    reads_of,
    shard_order,
    worker_parts,
)

from .batches import PCM_SCALE
from .dataset import collate

logger = logging.getLogger(__name__)

Item = dict[str, Any]

#: The index format this reader reads (written by ``audioset export --to webdataset``).
INDEX_FORMAT = "audioset-webdataset"
INDEX_VERSION = 1
INDEX_SUFFIX = "-shards.json"
#: Address prefixes of shards that are not local paths.
_SCHEMES = ("pipe:", "http://", "https://", "file:")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_CHUNK = 1 << 20


def is_shard_source(source: object) -> bool:
    """Whether ``source`` names a shard index rather than a cache: a ``.json`` file, a
    ``pipe:``/``http(s)://``/``file:`` address, or a folder holding a ``*-shards.json`` and no
    cache manifest."""
    if not isinstance(source, str | os.PathLike):
        return False
    text = os.fspath(source)
    if text.startswith(_SCHEMES) or text.endswith(".json"):
        return True
    path = Path(text)
    return (path.is_dir() and not (path / MANIFEST_NAME).exists()
            and any(path.glob(f"*{INDEX_SUFFIX}")))


# -- reading addresses ----------------------------------------------------------------------------
@contextmanager
def open_address(address: str) -> Iterator[IO[bytes]]:
    """A binary stream of ``address``: a path, ``file:PATH``, ``http(s)://...`` or ``pipe:CMD``
    (a shell command writing the bytes to its stdout, as in webdataset).

    A command that exits with an error after its output was read whole raises
    :class:`~audioset_data.errors.RemoteError` naming it; one stopped early (the reader had what
    it needed) is not an error.
    """
    if address.startswith("pipe:"):
        command = address[len("pipe:"):]
        # a pipe: address is a shell command by convention (webdataset's), written by the user
        proc = subprocess.Popen(command, shell=True, stdout=subprocess.PIPE)  # noqa: S602
        stream = _Tracked(proc.stdout)
        failed: Exception | None = None
        try:
            yield stream
        except Exception as exc:
            failed = exc
            raise
        finally:
            if proc.poll() is None and not stream.at_end:
                proc.kill()  # stopped early: the rest is not needed
            proc.stdout.close()
            code = proc.wait()
            if code > 0 and (stream.at_end or failed is not None):
                raise RemoteError(f"{address!r} exited with status {code}; run the command by "
                                  "hand to see why (credentials, address)") from failed
        return
    if address.startswith(("http://", "https://")):
        try:
            response = requests.get(address, stream=True, timeout=60)
            response.raise_for_status()
        except requests.RequestException as exc:
            raise RemoteError(f"cannot fetch {address!r}: {exc}") from None
        try:
            response.raw.decode_content = True
            yield response.raw
        finally:
            response.close()
        return
    path = address[len("file://"):] if address.startswith("file://") else (
        address[len("file:"):] if address.startswith("file:") else address)
    try:
        fh = open(path, "rb")  # closed below, after the caller's block
    except OSError as exc:
        raise RemoteError(f"cannot read {address!r}: {exc.strerror or exc}") from None
    try:
        yield fh
    finally:
        fh.close()


class _Tracked(io.RawIOBase):
    """A read-only stream that notes when it reached its end."""

    def __init__(self, raw: IO[bytes]):
        super().__init__()
        self._raw = raw
        self.at_end = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        if not data:
            self.at_end = True
        buffer[: len(data)] = data
        return len(data)


class _Hashing(io.RawIOBase):
    """A read-only stream that hashes what it reads."""

    def __init__(self, raw: IO[bytes]):
        super().__init__()
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        self.sha256.update(data)
        self.size += len(data)
        return len(data)

    def drain(self) -> None:
        """Read (and hash) what is left."""
        while self.read(_CHUNK):
            pass


# -- the index ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShardIndex:
    """An export's index: its shards (names, clips, bytes, sha256) and the split's settings."""

    address: str
    split: str
    codec: str
    extension: str
    sample_rate: int
    clip_samples: int
    label_mids: list[str]
    label_counts: np.ndarray
    names: list[str]
    clips: np.ndarray
    sizes: np.ndarray
    sha256: list[str]

    @classmethod
    def load(cls, source: PathLike) -> ShardIndex:
        """Read the index at ``source``: its address (path, ``file:``, ``http(s)://`` or
        ``pipe:`` command) or a local folder holding one ``*-shards.json``."""
        address = os.fspath(source)
        if not address.startswith(_SCHEMES) and Path(address).is_dir():
            found = sorted(Path(address).glob(f"*{INDEX_SUFFIX}"))
            if len(found) != 1:
                what = ", ".join(p.name for p in found) or "none"
                raise ConfigError(f"{address!r} must hold one shard index (*{INDEX_SUFFIX}); "
                                  f"found {what}: name the index file")
            address = str(found[0])
        if not address.startswith(_SCHEMES) and not Path(address).is_file():
            raise ConfigError(f"no shard index at {address!r}; write one with `audioset export "
                              "--split NAME --to webdataset OUT`")
        with open_address(address) as fh:
            raw = fh.read()
        try:
            data = json.loads(raw)
            if data.get("format") != INDEX_FORMAT or data.get("version") != INDEX_VERSION:
                raise ValueError(f"format {data.get('format')!r} version "
                                 f"{data.get('version')!r}, not {INDEX_FORMAT!r} "
                                 f"{INDEX_VERSION}")
            shards = data["shards"]
            index = cls(
                address=address, split=str(data["split"]), codec=str(data["codec"]),
                extension=str(data["extension"]), sample_rate=int(data["sample_rate"]),
                clip_samples=int(data["clip_samples"]), label_mids=list(data["label_mids"]),
                label_counts=np.asarray(data["label_counts"], dtype=np.int64),
                names=[str(s["name"]) for s in shards],
                clips=np.asarray([int(s["clips"]) for s in shards], dtype=np.int64),
                sizes=np.asarray([int(s["bytes"]) for s in shards], dtype=np.int64),
                sha256=[str(s["sha256"]) for s in shards])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{address!r} is not a shard index of `audioset export --to "
                              f"webdataset`: {exc}") from None
        own = f"{index.split}{INDEX_SUFFIX}"
        if own not in address:
            raise ConfigError(f"{address!r} must name the index file {own!r}: the shards' "
                              "addresses are made by putting their names in its place")
        # the names go into the shards' addresses, and a pipe: address into a shell: only
        # plain file names (an index fetched from a bucket is not trusted)
        bad = [n for n in [index.split, *index.names] if not _PLAIN_NAME.fullmatch(n)]
        if bad or not all(n.endswith(".tar") for n in index.names):
            what = bad[0] if bad else next(n for n in index.names if not n.endswith(".tar"))
            raise ConfigError(f"{address!r} lists {what!r}, not a plain split or .tar file "
                              "name (letters, digits, '.', '_', '-'); re-export the split")
        return index

    @property
    def total(self) -> int:
        """Clips in all shards."""
        return int(self.clips.sum())

    def url(self, shard: int) -> str:
        """Address of shard number ``shard``: the index's, with the shard's name for the
        index's (``s3://b/x/eval-shards.json`` → ``s3://b/x/eval-000003.tar``)."""
        own = f"{self.split}{INDEX_SUFFIX}"
        head, _, tail = self.address.rpartition(own)
        return f"{head}{self.names[shard]}{tail}"


# -- the dataset ----------------------------------------------------------------------------------
class ShardDataset(IterableDataset):
    """Clips of exported tar shards as a torch ``IterableDataset``, split by rank, then by
    DataLoader worker (see the module docstring).

    Parameters
    ----------
    source
        The shard index (``<split>-shards.json``): a path, a folder holding it, ``file:``,
        ``http(s)://`` or ``pipe:CMD`` address. Shards are found where the index is.
    rank, world_size
        This process's place in a distributed job (default: the process group's, else 0 of 1).
    batch_size
        The DataLoader's batch size: workers hold whole batches, and resume is exact.
    seed
        Seeds the shard order and the buffers; every rank must use the same.
    shuffle
        Draw the shard order per epoch and shuffle in a buffer; False reads in index order.
    buffer
        Clips a worker holds to shuffle (encoded bytes: ~0.3 MB a 10-s 32 kHz FLAC clip).
    limit
        Use only the first ``limit`` clips in index order (None: all).
    verify
        Check the sha256 of each shard read whole against the index.
    dtype
        ``"float32"`` (waveforms in [-1, 1)) or ``"int16"`` (as stored).
    transform
        Called on each item; returns the item to serve (e.g. a log-mel front end).
    """

    def __init__(
        self,
        source: PathLike | ShardIndex,
        *,
        rank: int | None = None,
        world_size: int | None = None,
        batch_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        buffer: int = 256,
        limit: int | None = None,
        verify: bool = True,
        dtype: Literal["float32", "int16"] = "float32",
        transform: Callable[[Item], Item] | None = None,
    ):
        if dtype not in ("float32", "int16"):
            raise ConfigError(f"dtype={dtype!r} must be 'float32' or 'int16'")
        for name, value, low in (("batch_size", batch_size, 1), ("buffer", buffer, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name}={value!r} must be a whole number, at least {low}")
        self.index = source if isinstance(source, ShardIndex) else ShardIndex.load(source)
        if self.index.codec not in ("pcm16", "flac", "opus"):
            raise ConfigError(f"{self.index.address!r}: unknown codec {self.index.codec!r}")
        if world_size is None:
            world_size = dist.get_world_size() if dist.is_available() and \
                dist.is_initialized() else 1
        if rank is None:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank={rank!r} must lie in 0..{world_size - 1}")
        self.rank, self.world_size = int(rank), int(world_size)
        self.batch_size, self.seed, self.shuffle = batch_size, int(seed), bool(shuffle)
        self.buffer, self.verify, self.dtype, self.transform = buffer, verify, dtype, transform
        clips = self.index.clips.copy()
        if limit is not None and 0 < limit < clips.sum():
            ends = np.cumsum(clips)
            clips = np.clip(limit - (ends - clips), 0, clips)
        self.clips = clips
        self.offsets = np.cumsum(self.index.clips) - self.index.clips
        self.epoch = 0
        self.position = 0
        if self.total == 0:
            raise ConfigError(f"{self.index.address!r} lists no clips")

    # -- sizes and settings --------------------------------------------------------------------
    @property
    def total(self) -> int:
        """Clips of one epoch over all ranks, each once."""
        return int(self.clips.sum())

    def __len__(self) -> int:
        """Clips this rank yields per epoch (the same on every rank)."""
        return per_rank(self.total, self.world_size)

    def __repr__(self) -> str:
        return (f"ShardDataset({self.index.address!r}, {self.total} clips in "
                f"{int((self.clips > 0).sum())} shards, rank {self.rank} of {self.world_size})")

    @property
    def label_mids(self) -> list[str]:
        """Label mids in target order."""
        return self.index.label_mids

    @property
    def label_counts(self) -> np.ndarray:
        """Clips carrying each label, over the whole index (for class priors)."""
        return self.index.label_counts

    @property
    def sample_rate(self) -> int:
        """Sample rate of the waveforms."""
        return self.index.sample_rate

    @property
    def clip_samples(self) -> int:
        """Samples of every (padded) waveform."""
        return self.index.clip_samples

    # -- epochs and resume (the sampler contract of :mod:`~audioset_data.loaders.samplers`) ------
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (shard order and buffers); another epoch starts at its beginning."""
        if int(epoch) != self.epoch:
            self.position = 0
        self.epoch = int(epoch)

    def state_dict(self) -> dict[str, Any]:
        """Epoch and clips consumed in it, with what they depend on."""
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "rank": self.rank, "num_replicas": self.world_size, "total": self.total,
                "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s ``epoch`` and ``position``."""
        if int(state.get("seed", self.seed)) != self.seed or \
                int(state.get("total", self.total)) != self.total:
            raise ConfigError("the saved shard state belongs to another seed or set of clips; "
                              "resume with the seed and shards it was written with")
        self.epoch = int(state.get("epoch", 0))
        self.position = max(0, int(state.get("position", 0)))

    # -- which clips each reader reads -----------------------------------------------------------
    def reads(self, epoch: int | None = None, worker: int = 0, workers: int = 1
              ) -> list[tuple[str, int, int]]:
        """``(shard name, first clip, stop clip)`` that ``worker`` of ``workers`` of this rank
        reads in ``epoch`` (default: the current one), in order."""
        epoch = self.epoch if epoch is None else int(epoch)
        order = shard_order(len(self.clips), self.seed, epoch, self.shuffle)
        order = order[self.clips[order] > 0]
        count = len(self)
        first, stop = worker_parts(count, self.batch_size, workers)[worker]
        at = self.rank * count
        return [(self.index.names[s], a, b)
                for s, a, b in reads_of(self.clips, order, at + first, at + stop)]

    def __iter__(self) -> Iterator[Item]:
        info = get_worker_info()
        wid, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        count = len(self)
        # a DataLoader asks worker 0 first: resumed after k batches, worker 0 plays the part
        # of the worker an unbroken epoch would have asked next (k modulo the workers)
        worker = (wid + min(self.position, count) // self.batch_size) % workers
        skip = consumed_by_worker(self.position, count, self.batch_size, workers)[worker]
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker, 1])
        records = self._records(self.reads(worker=worker, workers=workers))
        for n, record in enumerate(_shuffled(records, self.buffer if self.shuffle else 0, rng)):
            if n < skip:
                continue
            item = self._item(record)
            yield self.transform(item) if self.transform is not None else item

    def _records(self, reads: list[tuple[str, int, int]]) -> Iterator[tuple[int, dict]]:
        where = {name: i for i, name in enumerate(self.index.names)}
        for name, first, stop in reads:
            shard = where[name]
            for j, record in _read_shard(self.index, shard, first, stop, self.verify):
                yield int(self.offsets[shard]) + j, record

    def _item(self, numbered: tuple[int, dict]) -> Item:
        number, record = numbered
        pcm, info = _decode(self.index, record)
        wave = torch.zeros(self.clip_samples, dtype=torch.int16)
        wave[: len(pcm)] = torch.from_numpy(pcm)
        if self.dtype == "float32":
            wave = wave.to(torch.float32) * PCM_SCALE
        target = torch.zeros(len(self.label_mids), dtype=torch.float32)
        target[torch.as_tensor(info["label_indices"], dtype=torch.long)] = 1.0
        return {"waveform": wave, "length": int(min(info["length"], self.clip_samples)),
                "target": target, "key": record["key"], "index": number}

    def loader(self, *, num_workers: int = 0, pin_memory: bool = False,
               drop_last: bool = False, **kwargs: Any) -> DataLoader:
        """A DataLoader of this dataset in batches of ``batch_size``, with :func:`collate`."""
        return DataLoader(self, batch_size=self.batch_size, num_workers=num_workers,
                          collate_fn=kwargs.pop("collate_fn", collate), pin_memory=pin_memory,
                          drop_last=drop_last, **kwargs)


def _shuffled(records: Iterator[Any], size: int, rng: np.random.Generator) -> Iterator[Any]:
    """``records`` through a shuffle buffer of ``size`` (0: in order)."""
    if size <= 1:
        yield from records
        return
    held: list[Any] = []
    for record in records:
        if len(held) < size:
            held.append(record)
            continue
        j = int(rng.integers(size))
        held[j], record = record, held[j]
        yield record
    rng.shuffle(held)
    yield from held


def _read_shard(index: ShardIndex, shard: int, first: int, stop: int, verify: bool
                ) -> Iterator[tuple[int, dict]]:
    """Clips ``[first, stop)`` of one shard as ``(number in the shard, {key, json, audio})``;
    a shard read whole is checked against the index's clip count and sha256."""
    url = index.url(shard)
    whole = first == 0 and stop == int(index.clips[shard])
    ext = f".{index.extension}"
    with open_address(url) as raw:
        stream = _Hashing(raw)
        n = 0  # clips passed
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                key: str | None = None
                fields: dict[str, bytes] = {}
                for member in tar:
                    if not member.isfile():
                        continue
                    name, _, field = member.name.rpartition("/")[2].partition(".")
                    if key is not None and name != key:
                        if n >= first:
                            yield n, _complete(key, fields, ext, url)
                        n, fields = n + 1, {}
                        if n >= stop:
                            break
                    key = name
                    if n >= first:  # members of clips before ``first`` are skipped unread
                        data = tar.extractfile(member)
                        fields["." + field] = data.read() if data is not None else b""
                else:
                    if key is not None:
                        if n >= first:
                            yield n, _complete(key, fields, ext, url)
                        n += 1
        except (tarfile.TarError, EOFError, OSError) as exc:
            if isinstance(exc, AudioSetError):
                raise
            raise RemoteError(f"shard {url!r} cannot be read after {n} clips: {exc} (cut off or "
                              "not a tar file); export or upload it again") from None
        if n < stop:
            raise ChecksumMismatchError(f"shard {url!r} holds {n} clips, its index says "
                                        f"{int(index.clips[shard])}; export or upload it again")
        if whole and verify:
            stream.drain()
            if stream.sha256.hexdigest() != index.sha256[shard]:
                raise ChecksumMismatchError(
                    f"shard {url!r} ({stream.size} bytes) does not match the sha256 its index "
                    "records (damaged or replaced); export or upload it again, or pass "
                    "verify=False to read it anyway")


def _complete(key: str, fields: dict[str, bytes], ext: str, url: str) -> dict[str, Any]:
    for want in (".json", ext):
        if want not in fields:
            raise ChecksumMismatchError(f"shard {url!r}: clip {key!r} lacks its {want} member")
    return {"key": key, **fields}


def _decode(index: ShardIndex, record: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """A clip's int16 samples (true length) and its metadata."""
    info = json.loads(record[".json"])
    data = record[f".{index.extension}"]
    length = min(int(info["length"]), index.clip_samples)
    try:
        if index.codec == "pcm16":
            with wave.open(io.BytesIO(data)) as w:
                if w.getframerate() != index.sample_rate or w.getsampwidth() != 2:
                    raise CacheError(f"WAV at {w.getframerate()} Hz, {8 * w.getsampwidth()} "
                                     f"bit; the index says {index.sample_rate} Hz, 16 bit")
                pcm = np.frombuffer(w.readframes(length), dtype="<i2").astype(np.int16)
        else:
            pcm = decode_clip(data, index.codec, sample_rate=index.sample_rate,
                              num_samples=length)
    except (CacheError, wave.Error, EOFError) as exc:
        raise CacheError(f"clip {record['key']!r} of {index.address!r}'s shards cannot be "
                         f"decoded: {exc}") from None
    return pcm, info


def shard_config_error(source: str, *, embeddings: bool, refined: object, evaluation: bool
                       ) -> ConfigError | None:
    """Why a training run cannot read the shards at ``source`` (None when it can)."""
    if evaluation:
        return ConfigError(f"{source!r}: evaluation reads a cache (scores are matched to clips "
                           "by position); name a cached split with --eval, or --eval none")
    if embeddings:
        return ConfigError(f"{source!r}: shards hold audio; this model reads the release's "
                           "embeddings")
    if refined:
        return ConfigError(f"{source!r}: refined frame targets are matched to cache positions; "
                           "train them from the cache")
    return None


__all__ = [
    "INDEX_SUFFIX",
    "ShardDataset",
    "ShardIndex",
    "consumed_by_worker",
    "is_shard_source",
    "open_address",
    "per_rank",
    "reads_of",
    "shard_order",
    "worker_parts",
]
