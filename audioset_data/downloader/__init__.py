"""Downloading segments into the cache: the job and its options, the plan (what to
fetch), the scheduling loop with retries and throttling, killable worker processes, the clip
fetcher (yt-dlp + ffmpeg byte ranges), failure reasons, reports, cluster job arrays, the
loopback media proxy and the offline demo.
"""

from __future__ import annotations

from audioset_data.lazy import lazy_getattr

_LAZY = {
    "DEMO_CACHE": "audioset_data.downloader.demo",
    "make_tone_file": "audioset_data.downloader.demo",
    "run_demo": "audioset_data.downloader.demo",
    "ClipFailure": "audioset_data.downloader.failures",
    "InvalidIdError": "audioset_data.downloader.failures",
    "REASONS": "audioset_data.downloader.failures",
    "RULES": "audioset_data.downloader.failures",
    "Rule": "audioset_data.downloader.failures",
    "classify_error": "audioset_data.downloader.failures",
    "validate_ytid": "audioset_data.downloader.failures",
    "ClipAudio": "audioset_data.downloader.fetcher",
    "ClipFetcher": "audioset_data.downloader.fetcher",
    "DIRECT_PROTOCOLS": "audioset_data.downloader.fetcher",
    "fetch_task": "audioset_data.downloader.fetcher",
    "download": "audioset_data.downloader.job",
    "MergeReport": "audioset_data.downloader.job_array",
    "ShardSpec": "audioset_data.downloader.job_array",
    "merge": "audioset_data.downloader.job_array",
    "logger": "audioset_data.downloader.loop",
    "MediaProxy": "audioset_data.downloader.media_proxy",
    "Route": "audioset_data.downloader.media_proxy",
    "has_secret": "audioset_data.downloader.media_proxy",
    "media_proxy": "audioset_data.downloader.media_proxy",
    "DEFAULT_BATCH_SIZE": "audioset_data.downloader.options",
    "DEFAULT_FLUSH_INTERVAL": "audioset_data.downloader.options",
    "DownloadOptions": "audioset_data.downloader.options",
    "cache_name": "audioset_data.downloader.options",
    "Plan": "audioset_data.downloader.plan",
    "DownloadReport": "audioset_data.downloader.report",
    "FAILURE_COLUMNS": "audioset_data.downloader.report",
    "CircuitBreaker": "audioset_data.downloader.throttle",
    "RateLimiter": "audioset_data.downloader.throttle",
    "THROTTLE_REASONS": "audioset_data.downloader.throttle",
    "ClipWorkerPool": "audioset_data.downloader.worker_pool",
}

__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = sorted(_LAZY)
