"""The scheduling loop of one download run: submit clips to the workers, collect what comes
back, retry transient failures with backoff, pause for a throttled client, hand finished clips
to the cache writer."""

from __future__ import annotations

import heapq
import logging
import random
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from typing import Any

from tqdm.auto import tqdm

from audioset_data.cache.manifest import Manifest
from audioset_data.cache.store import CacheWriter
from audioset_data.segments.labels import LabelIndex

from .failures import ClipFailure
from .fetcher import ClipFetcher, fetch_task
from .options import DownloadOptions
from .plan import Plan, _Item
from .throttle import THROTTLE_REASONS, CircuitBreaker, RateLimiter

logger = logging.getLogger("audioset_data.download")

#: Seconds between checkpoints of the manifest's write-ahead log during a run.
CHECKPOINT_INTERVAL = 10.0


class _Run:
    """The scheduling loop of one download: submit, collect, retry, write.

    It never sleeps while clips are in flight: waiting for the rate limiter, a retry's
    backoff or the circuit breaker happens inside the wait for finished clips.
    """

    def __init__(self, *, manifest: Manifest, writer: CacheWriter, fetcher: ClipFetcher,
                 plan: Plan, index: LabelIndex, options: DownloadOptions,
                 breaker: CircuitBreaker):
        self.manifest = manifest
        self.writer = writer
        self.fetcher = fetcher
        self.plan = plan
        self.index = index
        self.fmt = options.fmt
        self.max_attempts = options.max_attempts
        self.max_throttled = 3 * options.max_attempts
        self.backoff = options.backoff
        self.limiter = RateLimiter(options.rate_limit)
        self.breaker = breaker
        self.tick = min(1.0, max(0.05, options.flush_interval / 4))
        self.fetched = 0
        self.failed = 0
        #: clips attempted in this run and not yet decided (their attempts are not recorded)
        self.open: dict[str, _Item] = {}
        self._rng = random.Random()
        self._checkpointed = time.monotonic()

    def run(self, items: Iterator[_Item], total: int, pool: Executor, max_inflight: int,
            progress: bool, give_up: float) -> None:
        """Fetch every item; return when each is cached or failed."""
        fresh = iter(items)
        queue: deque[_Item] = deque()  # retries that are due
        retry: list[tuple[float, int, _Item]] = []
        inflight: dict[Future, _Item] = {}
        submitted: dict[Future, float] = {}
        running: dict[Future, float] = {}  # since when the executor says a task runs
        seq = 0
        bar = tqdm(total=total, unit="clip", desc="download", disable=not progress,
                   dynamic_ncols=True)
        try:
            while True:
                now = time.monotonic()
                while retry and retry[0][0] <= now:
                    queue.append(heapq.heappop(retry)[2])
                paced = 0.0  # seconds until the rate limiter allows the next start
                while len(inflight) < max_inflight and not self.breaker.is_open(now):
                    paced = self.limiter.wait(now)
                    if paced > 0:
                        break
                    item = queue.popleft() if queue else next(fresh, None)
                    if item is None:
                        break
                    self.limiter.take(now)
                    fut = pool.submit(fetch_task, self.fetcher, item.ytid, item.start,
                                      item.end, self.fmt)
                    inflight[fut] = item
                    submitted[fut] = now = time.monotonic()
                wake = [retry[0][0]] if retry else []
                if self.breaker.is_open(now):
                    wake.append(self.breaker.open_until)
                if paced > 0:
                    wake.append(now + paced)
                if not inflight:
                    if not queue and not retry:
                        nxt = next(fresh, None)
                        if nxt is None:
                            break
                        queue.appendleft(nxt)  # held back by the breaker or the limiter
                    # nothing to collect: wait for the next retry, pause end or start
                    time.sleep(min(self.tick, max(0.01, min(wake, default=now) - now)))
                    self._housekeeping()
                    continue
                timeout = min(self.tick, max(0.0, min(wake, default=now + self.tick) - now))
                done, _ = wait(list(inflight), timeout=timeout, return_when=FIRST_COMPLETED)
                now = time.monotonic()
                for f in inflight:
                    if f not in running and f.running():
                        running[f] = now
                # a task runs at most give_up seconds; one that never starts gets twice that
                stuck = [f for f in inflight if f not in done and (
                    now - running[f] > give_up if f in running
                    else now - submitted[f] > 2 * give_up)]
                for fut in [*done, *stuck]:
                    item = inflight.pop(fut)
                    del submitted[fut]
                    running.pop(fut, None)
                    if fut in done:
                        requeue = self._handle(fut, item)
                    else:  # an executor that never answers must not hang the run
                        fut.cancel()
                        requeue = self._record(item, "timeout", False,
                                               f"no result after {give_up:.0f} s")
                    if requeue is None:
                        bar.update(1)
                        bar.set_postfix(ok=self.fetched, failed=self.failed, refresh=False)
                    else:
                        seq += 1
                        heapq.heappush(retry, (time.monotonic() + requeue, seq, item))
                self._housekeeping()
        except BaseException:
            for fut, item in inflight.items():
                if not fut.cancel():  # it had started: that was an attempt
                    item.attempts += 1
                    if item.reason is None:
                        item.reason = "interrupted"
                        item.detail = "the run stopped during this attempt"
                    self.open[item.key] = item
            raise
        finally:
            bar.close()

    def _housekeeping(self) -> None:
        self.writer.flush_if_stale()
        if time.monotonic() - self._checkpointed >= CHECKPOINT_INTERVAL:
            self.manifest.checkpoint()
            self._checkpointed = time.monotonic()

    def abort(self) -> None:
        """After a stop: publish the clips that arrived, and record the attempts and last
        reason of the clips left undecided (they stay pending, or failed from an earlier
        run)."""
        try:
            self.writer.flush(compact=False)  # no shard now: the disk may be what stopped us
        except Exception as exc:  # noqa: BLE001 - the stop's own error is the one to raise
            logger.warning("could not publish the clips that arrived before the stop: %s", exc)
        rows = [(it.key, it.attempts, it.reason, it.detail) for it in self.open.values()
                if it.attempts]
        if rows:
            try:
                self.manifest.record_attempts(rows)
            except Exception as exc:  # noqa: BLE001
                logger.warning("could not record the attempts of %d clips: %s", len(rows), exc)
        self.open.clear()

    def _handle(self, fut: Future, item: _Item) -> float | None:
        """Record one finished attempt; return a delay when the clip should be retried."""
        try:
            kind, payload = fut.result()
        except ClipFailure as exc:  # the worker pool's time limit, a worker that died
            kind, payload = "failed", (exc.reason, bool(exc.permanent), str(exc.detail or exc))
        except Exception as exc:  # noqa: BLE001 - a worker crash must not stop the run
            kind, payload = "failed", ("worker_error", False, f"{type(exc).__name__}: {exc}")
        if kind != "ok":
            return self._record(item, *payload)
        item.attempts += 1
        audio, length = payload
        self.writer.add(item.key, item.ytid, item.start, item.end, audio, length,
                        self.plan.target(self.index, item.pos), attempts=item.attempts)
        self.open.pop(item.key, None)
        self.breaker.success()
        self.fetched += 1
        logger.debug("%s fetched", item.key)
        return None

    def _record(self, item: _Item, reason: str, permanent: bool, detail: str) -> float | None:
        """Record one failed attempt; return a delay when the clip should be retried."""
        item.attempts += 1
        item.reason, item.detail = reason, detail
        self.open[item.key] = item
        now = time.monotonic()
        if reason in THROTTLE_REASONS:
            if item.throttled and self.breaker.successes > item.success_mark:
                if not item.refuses:
                    logger.info("%s keeps answering %s while other clips arrive: this video "
                                "refuses, the client is not throttled", item.key, reason)
                item.refuses = True
            item.throttled += 1
            item.success_mark = self.breaker.successes
            if not item.refuses:
                # may pause every worker, or stop the run when the client stays throttled
                self.breaker.throttled(now, item.ytid)
            budget = self.max_attempts if item.refuses else self.max_throttled + 1
            if item.throttled < budget:
                delay = self.backoff * 2 ** min(item.throttled - 1, 6)
                delay *= self._rng.uniform(0.5, 1.5)
                if self.breaker.is_open(now):
                    delay = max(delay, self.breaker.open_until - now)
                return delay
        else:
            item.failures += 1
            if not permanent and item.failures < self.max_attempts:
                delay = self.backoff * 2 ** (item.failures - 1) * self._rng.uniform(0.5, 1.5)
                logger.info("%s: %s, retry %d in %.1f s", item.key, reason, item.failures, delay)
                return delay
        self.manifest.mark_failed(item.key, reason, permanent, detail, attempts=item.attempts)
        self.open.pop(item.key, None)
        logger.info("%s failed (%s): %s", item.key, reason, detail[:200])
        self.failed += 1
        return None


class _NoExecutor(Executor):
    """Stands in for the worker pool of a run with nothing to fetch."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future:
        raise RuntimeError("this run has nothing to fetch")
