"""How an epoch of exported tar shards is shared: the shard order drawn from (seed, epoch), one
run of ``ceil(N / world)`` clips per rank, each rank's run cut into its DataLoader workers'
parts in whole batches, and the shard reads that cover a part (see
:mod:`~audioset_data.loaders.shards`, which streams them)."""

from __future__ import annotations

import numpy as np

__all__ = ["consumed_by_worker", "per_rank", "reads_of", "shard_order", "worker_parts"]


def shard_order(n_shards: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The order in which an epoch reads the shards (the same on every rank)."""
    if not shuffle:
        return np.arange(n_shards)
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n_shards)


def per_rank(total: int, world: int) -> int:
    """Clips each of ``world`` ranks yields per epoch: ``ceil(total / world)``."""
    return -(-int(total) // int(world))


def worker_parts(count: int, batch_size: int, workers: int) -> list[tuple[int, int]]:
    """``[first, stop)`` clips of a rank's ``count`` held by each of its ``workers`` workers:
    whole batches, and the epoch's last (maybe short) batch at the worker a DataLoader asks
    last, so the round-robin order of batches has the short one at its end."""
    batches = -(-count // batch_size)
    q, r = divmod(batches, workers)
    last = r - 1 if r else workers - 1
    order = [w for w in range(workers) if w != last] + [last]
    parts: dict[int, tuple[int, int]] = {}
    at = 0
    for w in order:
        n = (q + (w < r)) * batch_size
        parts[w] = (min(at, count), min(at + n, count))
        at += n
    return [parts[w] for w in range(workers)]


def consumed_by_worker(position: int, count: int, batch_size: int, workers: int) -> list[int]:
    """Clips each worker had handed out when its rank consumed ``position`` of ``count``
    (the DataLoader asks workers in turn, one batch each)."""
    parts = worker_parts(count, batch_size, workers)
    if position >= count:
        return [stop - first for first, stop in parts]
    full = int(position) // batch_size
    return [min(stop - first, max(0, -(-(full - w) // workers)) * batch_size)
            for w, (first, stop) in enumerate(parts)]


def reads_of(clips: np.ndarray, order: np.ndarray, first: int, stop: int
             ) -> list[tuple[int, int, int]]:
    """``(shard, first clip, stop clip)`` reads covering clips ``[first, stop)`` of the
    sequence the shards in ``order`` make, wrapping round past its end."""
    counts = clips[order]
    ends = np.cumsum(counts)
    total = int(ends[-1]) if len(ends) else 0
    out: list[tuple[int, int, int]] = []
    p = int(first)
    while p < stop and total:
        q = p % total
        j = int(np.searchsorted(ends, q, side="right"))
        begin = int(ends[j] - counts[j])
        take = min(int(stop) - p, int(ends[j]) - q)
        out.append((int(order[j]), q - begin, q - begin + take))
        p += take
    return out
