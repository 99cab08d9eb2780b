"""The settings of a download run, in one object shared by :func:`audioset_data.download`, the
``audioset download`` command and the demo: :class:`DownloadOptions`.

The options build the clip fetcher themselves (:meth:`DownloadOptions.make_fetcher`), so the
address template, the cookies and the clip length a run records are always the ones its
fetcher uses. Every value is checked when the object is made, before anything is read or
fetched; a bad one raises :class:`~audioset_data.errors.ConfigError` naming the setting.

This module imports nothing heavy: the command line reads its defaults from here.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audioset_data.cache.shards import check_format
from audioset_data.config import PathLike
from audioset_data.errors import ConfigError
from audioset_data.segments.ids import DEFAULT_URL_TEMPLATE, check_url_template
from audioset_data.segments.splits import MAX_SPLIT_NAME, SplitNameError, canonical_split

from .fetcher import ClipFetcher

if TYPE_CHECKING:
    from .fetcher import ClipFetcher

#: Default flush policy: finished clips are published as one small batch file (and one
#: manifest transaction) every ``DEFAULT_BATCH_SIZE`` clips or ``DEFAULT_FLUSH_INTERVAL``
#: seconds, whichever comes first; that is all a kill -9 can lose besides the clips in flight.
DEFAULT_BATCH_SIZE = 8
DEFAULT_FLUSH_INTERVAL = 2.0

#: Settings of the fetcher that the options hold as their own fields.
_FETCHER_FIELDS = ("url_template", "sample_rate", "clip_seconds", "cookiefile",
                   "cookies_from_browser")


@dataclass(frozen=True)
class DownloadOptions:
    """How a download run fetches, stores, retries and reports (everything but *what* it
    downloads, *where* the data root is, how many workers fetch, and which part of a job
    array it is).

    Clips
        ``url_template`` (an ``http(s)://`` address with ``{ytid}``), ``sample_rate`` (Hz),
        ``clip_seconds`` (the longest clip fetched; longer segments are cut to it, and the
        cache stores the end actually fetched), ``fmt`` (``"pcm16"``, ``"flac"`` or
        ``"opus"``), ``cookiefile`` (a Netscape cookies.txt that must exist) or
        ``cookies_from_browser`` (``"firefox"``, ``"chrome:Profile 1"``), and
        ``fetcher_options``: any other :class:`~audioset_data.downloader.fetcher.ClipFetcher`
        setting (``socket_timeout``, ``ffmpeg_timeout``, ``ytdl_options``...).
    Lists
        ``csv_base_url`` (mirror of the official CSV files), ``accept_new_upstream``,
        ``on_bad_rows`` (``"error"``, or ``"skip"`` to keep the valid rows of a segment list
        with malformed ones).
    Which clips
        ``retry_failed`` (also permanent failures), ``limit`` (only the first N segments, N at
        least 1), ``dry_run`` (plan, fetch nothing), ``check_space``.
    Retries and pacing
        ``max_attempts`` per clip and run, ``backoff`` (seconds, doubled per retry, with
        jitter), ``rate_limit`` (clip starts per second), ``task_timeout`` (hard limit of one
        attempt; default: twice the fetcher's socket plus ffmpeg timeouts, plus a minute),
        ``stall_timeout`` (an attempt that reads less than 1 KiB and uses less than a second
        of CPU in this many seconds is stopped as ``stalled``, e.g. against a server that
        trickles a byte a second; None: only ``task_timeout`` applies; worker processes on
        Linux only).
    Publishing
        ``batch_size`` clips or ``flush_interval`` seconds per published batch, ``shard_size``
        clips per compacted shard; ``progress`` shows a progress bar.

    Examples
    --------
    >>> opts = DownloadOptions(fmt="flac", sample_rate=16000)
    >>> opts.replace(max_attempts=5).max_attempts
    5
    >>> DownloadOptions(limit=-1)
    Traceback (most recent call last):
    ...
    audioset_data.errors.ConfigError: limit=-1 must be a whole number of segments, at least 1 (--limit)
    """  # noqa: E501

    url_template: str = DEFAULT_URL_TEMPLATE
    sample_rate: int = 32000
    clip_seconds: float = 10.0
    fmt: str = "pcm16"
    cookiefile: PathLike | None = None
    cookies_from_browser: str | None = None
    fetcher_options: Mapping[str, Any] = field(default_factory=dict)
    csv_base_url: str | None = None
    accept_new_upstream: bool = False
    on_bad_rows: str = "error"
    retry_failed: bool = False
    limit: int | None = None
    dry_run: bool = False
    check_space: bool = True
    max_attempts: int = 3
    backoff: float = 2.0
    rate_limit: float | None = None
    task_timeout: float | None = None
    stall_timeout: float | None = 30.0
    batch_size: int = DEFAULT_BATCH_SIZE
    flush_interval: float = DEFAULT_FLUSH_INTERVAL
    shard_size: int = 1000
    progress: bool = True

    def __post_init__(self) -> None:
        check_url_template(self.url_template)
        check_format(self.fmt)
        _whole(self, "sample_rate", 1, "--sample-rate")
        if not (isinstance(self.clip_seconds, numbers.Real) and math.isfinite(self.clip_seconds)
                and self.clip_seconds > 0):
            raise ConfigError(f"clip_seconds={self.clip_seconds!r} must be a number of seconds "
                              "above 0")
        if self.cookiefile is not None and not Path(self.cookiefile).expanduser().is_file():
            raise ConfigError(f"cookies file {str(self.cookiefile)!r} does not exist "
                              "(--cookies / cookiefile=)")
        if self.cookies_from_browser is not None and not str(self.cookies_from_browser).strip():
            raise ConfigError("cookies_from_browser is empty (--cookies-from-browser)")
        self._check_fetcher_options()
        if self.on_bad_rows not in ("error", "skip"):
            raise ConfigError(f"on_bad_rows={self.on_bad_rows!r} must be 'error' or 'skip' "
                              "(--skip-bad-rows)")
        if self.limit is not None:
            _whole(self, "limit", 1, "--limit", what="a whole number of segments")
        _whole(self, "max_attempts", 1, "--max-attempts")
        _whole(self, "batch_size", 1, "--batch-size")
        _whole(self, "shard_size", 1, "--shard-size")
        for name, flag, positive in (("backoff", None, False),
                                     ("flush_interval", "--flush-interval", False),
                                     ("rate_limit", "--rate-limit", True),
                                     ("task_timeout", "--task-timeout", True),
                                     ("stall_timeout", "--stall-timeout", True)):
            value = getattr(self, name)
            if value is None and name in ("rate_limit", "task_timeout", "stall_timeout"):
                continue
            if not (isinstance(value, numbers.Real) and math.isfinite(value)
                    and (value > 0 if positive else value >= 0)):
                where = f" ({flag})" if flag else ""
                bound = "above 0" if positive else "0 or more"
                raise ConfigError(f"{name}={value!r} must be a number {bound}{where}")

    def _check_fetcher_options(self) -> None:
        allowed = {f.name for f in dataclasses.fields(ClipFetcher)} - set(_FETCHER_FIELDS)
        for key in self.fetcher_options:
            if key in _FETCHER_FIELDS:
                raise ConfigError(f"fetcher_options sets {key!r}, which is a download option of "
                                  f"its own: pass {key}= instead")
            if key not in allowed:
                raise ConfigError(f"fetcher_options: ClipFetcher has no setting {key!r} "
                                  f"(it has {', '.join(sorted(allowed))})")

    @property
    def clip_samples(self) -> int:
        """Samples of a full clip (the cache's row length)."""
        return int(round(self.sample_rate * self.clip_seconds))

    def replace(self, **changes: Any) -> DownloadOptions:
        """A copy with ``changes`` applied (checked like the constructor's arguments).

        Raises
        ------
        TypeError
            A name that is not an option (with the closest one, if any).
        """
        names = [f.name for f in dataclasses.fields(self)]
        for key in changes:
            if key not in names:
                if key == "fetcher":
                    raise TypeError(
                        "there is no fetcher= setting: the options build the fetcher, so the "
                        "address template, cookies and clip length it uses are the ones the "
                        "cache records; pass its other settings as fetcher_options={...}")
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise TypeError(f"{key!r} is not a download option{hint}")
        return dataclasses.replace(self, **changes) if changes else self

    def make_fetcher(self) -> ClipFetcher:
        """The clip fetcher of a run with these options."""
        return ClipFetcher(
            url_template=self.url_template, sample_rate=self.sample_rate,
            clip_seconds=self.clip_seconds,
            cookiefile=str(Path(self.cookiefile).expanduser()) if self.cookiefile else None,
            cookies_from_browser=self.cookies_from_browser, **dict(self.fetcher_options))


def _whole(opts: DownloadOptions, name: str, least: int, flag: str,
           what: str = "a whole number") -> None:
    value = getattr(opts, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ConfigError(f"{name}={value!r} must be {what}, at least {least} ({flag})")


def cache_name(name: str) -> str:
    """The cache folder name of ``name``: an official split's canonical name for any spelling
    of it (``"EVAL"``, ``" eval "``, ``"balanced_train"``), else ``name`` itself.

    This is how :func:`audioset_data.cache.reader.cache_dir` folds names too, so a download and a
    later ``open_cache`` find the same folder.

    Raises
    ------
    ConfigError
        ``name`` is longer than :data:`audioset_data.segments.splits.MAX_SPLIT_NAME` characters.
    """
    text = str(name)
    if len(text) > MAX_SPLIT_NAME:
        raise ConfigError(f"a cache name of {len(text):,} characters ({text[:20]!r}...) is too "
                          f"long; use at most {MAX_SPLIT_NAME}")
    try:
        return canonical_split(text)
    except SplitNameError:
        return text


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_FLUSH_INTERVAL",
    "DownloadOptions",
    "cache_name",
]
