"""An offline run of the whole download on generated audio: ``audioset demo``.

It takes the first segments of the real ``eval`` list, serves a generated stand-in video for
each id on a loopback HTTP server (two ids answer 404, as removed videos do), and downloads
them through the production path: yt-dlp resolves each address, ffmpeg reads only the
segment's bytes, the writer fills a cache named ``demo`` (never the real ``eval`` cache), and
the report counts what arrived and why the rest did not.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
from concurrent.futures import Executor
from pathlib import Path

from audioset_data.audio.ffmpeg import find_ffmpeg
from audioset_data.config import PathLike
from audioset_data.errors import ConfigError
from audioset_data.segments.load import load_segments
from audioset_data.testing import LoopbackServer

from .job import download
from .job_array import ShardSpec
from .options import DownloadOptions
from .report import DownloadReport

logger = logging.getLogger(__name__)

#: Cache name the demo writes to; its audio is generated, so it never mixes with real splits.
DEMO_CACHE = "demo"


def make_tone_file(path: Path, seconds: float, ffmpeg: str | None = None) -> Path:
    """Write a ``seconds``-long WebM/Opus file of a rising tone (a stand-in video)."""
    exe = find_ffmpeg(ffmpeg)
    cmd = [
        exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"sine=frequency=220:beep_factor=4:duration={seconds:.3f}",
        "-ac", "1", "-c:a", "libopus", "-b:a", "64k", f"file:{path.resolve()}",
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    return path


def run_demo(
    root: PathLike | None = None,
    csv_base_url: str | None = None,
    n_clips: int = 24,
    workers: int = 4,
    progress: bool = True,
    executor: Executor | None = None,
    shard: str | ShardSpec | None = None,
) -> DownloadReport:
    """Download ``n_clips`` eval segments from generated stand-ins served on loopback.

    ``executor`` and ``shard`` are passed to :func:`audioset_data.download`, so the demo also
    shows a Dask cluster or one job of an array at work.

    Raises
    ------
    ConfigError
        ``n_clips`` or ``workers`` is not a whole number of at least 1.
    """
    for name, value in (("n_clips", n_clips), ("workers", workers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name}={value!r} must be a whole number, at least 1")
    segments = load_segments("eval", root=root, base_url=csv_base_url)
    table = segments[:n_clips].table
    with tempfile.TemporaryDirectory(prefix="audioset-demo-") as tmp, LoopbackServer() as srv:
        source = make_tone_file(Path(tmp) / "tone.webm", float(table["end"].max()) + 1.0)
        gone = set(table["ytid"].iloc[1::max(2, n_clips // 2)][:2])
        for ytid in table["ytid"]:
            if ytid not in gone:
                srv.add(f"v/{ytid}.webm", source)
        options = DownloadOptions(
            url_template=srv.url("v/") + "{ytid}.webm", csv_base_url=csv_base_url,
            progress=progress, shard_size=max(4, n_clips // 3), batch_size=4, max_attempts=1)
        report = download(DEMO_CACHE, segments=table, root=root, workers=workers,
                          shard=shard, options=options, executor=executor)
    return report


__all__ = ["DEMO_CACHE", "make_tone_file", "run_demo"]
