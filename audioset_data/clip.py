"""Fetch one AudioSet segment (YouTube id, start, end) as mono int16 PCM.

The public names of the clip layer, from the modules that hold them:

* :mod:`audioset_data.clip_fetcher`: :class:`ClipFetcher` (yt-dlp resolves the audio stream,
  ffmpeg reads only the segment's byte ranges), :class:`ClipAudio`, :func:`fetch_task`;
* :mod:`audioset_data.clip_failures`: :class:`ClipFailure`, the failure :data:`REASONS` and
  the ordered rule table behind :func:`classify_error`;
* :mod:`audioset_data.worker_pool`: :class:`ClipWorkerPool`, worker processes killed (with
  their ffmpeg) when a clip passes its time limit;
* :mod:`audioset_data.media_proxy`: the loopback forwarder that keeps cookies off ffmpeg's
  command line;
* :mod:`audioset_data.video_ids`: what a YouTube id and a video address template look like.
"""

from __future__ import annotations

from .clip_failures import (
    REASONS,
    RULES,
    ClipFailure,
    InvalidIdError,
    Rule,
    classify_error,
    validate_ytid,
)
from .clip_fetcher import DIRECT_PROTOCOLS, ClipAudio, ClipFetcher, fetch_task
from .video_ids import DEFAULT_URL_TEMPLATE, YTID_PATTERN, check_url_template, is_ytid
from .worker_pool import ClipWorkerPool

__all__ = [
    "DEFAULT_URL_TEMPLATE",
    "DIRECT_PROTOCOLS",
    "REASONS",
    "RULES",
    "YTID_PATTERN",
    "ClipAudio",
    "ClipFailure",
    "ClipFetcher",
    "ClipWorkerPool",
    "InvalidIdError",
    "Rule",
    "check_url_template",
    "classify_error",
    "fetch_task",
    "is_ytid",
    "validate_ytid",
]
