"""Pacing a download: a request-rate limit and a circuit breaker for a throttled client.

Neither ever sleeps: the download's loop asks them when the next clip may start and keeps
collecting finished clips in the meantime.
"""

from __future__ import annotations

import itertools
import logging
import time

from audioset_data.errors import DownloadError

logger = logging.getLogger("audioset_data.download")

#: Failure reasons that mean the client is being throttled or blocked, not that a video is gone.
THROTTLE_REASONS = frozenset({"http_429", "http_403", "bot_check"})


class RateLimiter:
    """At most ``rate`` task starts per second across all workers (token bucket).

    :meth:`wait` says how long until the next start is allowed, :meth:`take` spends one;
    neither blocks.
    """

    def __init__(self, rate: float | None, burst: int = 1):
        self.rate = rate
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._last = time.monotonic()

    def _refill(self, now: float) -> None:
        if self.rate:
            elapsed = max(0.0, now - self._last)
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._last = max(self._last, now)

    def wait(self, now: float | None = None) -> float:
        """Seconds until one more start is allowed (0 when it is allowed now)."""
        if not self.rate:
            return 0.0
        self._refill(time.monotonic() if now is None else now)
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate

    def take(self, now: float | None = None) -> bool:
        """Spend one start if one is allowed now; return whether it was."""
        if not self.rate:
            return True
        self._refill(time.monotonic() if now is None else now)
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class CircuitBreaker:
    """Pause every worker when the client itself looks throttled.

    The client looks throttled when ``threshold`` *different* videos answer with throttling
    (429, 403, a bot check) and no clip arrives in between. One video answering again does not
    add to the count, and the download stops reporting a video here once clips of other videos
    arrived between two of its refusals: that video refuses, the client is fine (it fails on
    its own after a bounded number of tries). Each trip pauses for ``cooldown`` seconds,
    doubling up to ``max_cooldown``; after ``max_trips`` trips with no success in between the
    run stops with a :class:`DownloadError`, leaving the rest pending.
    """

    def __init__(self, threshold: int = 5, cooldown: float = 60.0, max_cooldown: float = 900.0,
                 max_trips: int = 6):
        self.threshold = threshold
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.max_trips = max_trips
        self.trips = 0
        self.total_trips = 0
        self.open_until = 0.0
        #: clips that arrived so far (a video that refuses again after one of them refuses alone)
        self.successes = 0
        self._videos: set[str] = set()
        self._anonymous = itertools.count()

    @property
    def streak(self) -> int:
        """Different videos throttled since the last clip arrived or the last trip."""
        return len(self._videos)

    def is_open(self, now: float) -> bool:
        """Whether new work must wait."""
        return now < self.open_until

    def success(self) -> None:
        """A clip arrived: the client is not blocked."""
        self._videos.clear()
        self.trips = 0
        self.successes += 1

    def throttled(self, now: float, video: str | None = None) -> bool:
        """Record a throttling answer about ``video`` (None: count it as a new video); return
        True when this trips the breaker.

        Raises
        ------
        DownloadError
            After ``max_trips`` pauses with no clip arriving in between.
        """
        self._videos.add(video if video is not None else f"#{next(self._anonymous)}")
        if len(self._videos) < self.threshold or self.is_open(now):
            return False
        pause = min(self.max_cooldown, self.cooldown * 2**self.trips)
        self.trips += 1
        self.total_trips += 1
        self._videos.clear()
        self.open_until = now + pause
        if self.trips > self.max_trips:
            raise DownloadError(
                f"the server keeps throttling this client: {self.threshold} different videos "
                f"in a row answered 429/403 or a bot check with no clip arriving, "
                f"{self.trips} times in a row after pauses of up to {pause:.0f} s; the rest "
                "stays pending: resume later, lower --rate-limit, or pass cookies"
            )
        logger.warning("%d different videos throttled in a row: pausing all workers for %.0f s",
                       self.threshold, pause)
        return True


__all__ = ["THROTTLE_REASONS", "CircuitBreaker", "RateLimiter"]
