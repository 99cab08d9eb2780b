"""Decoding a whole local file window by window, in bounded memory.

One ffmpeg process decodes the file from its first sample to its last (mono int16 at the rate
asked for) into a pipe, and :func:`iter_windows` reads it a window at a time: an hour of audio
costs the memory of one window, not of the hour, and the windows hold the very samples a
whole-file decode gives, cut at ``k * seconds`` (no seeking, so no seek error either).
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from audioset_data.config import PathLike

from .ffmpeg import FFmpegError, _ffmpeg_env, _input_arg, _tail, find_ffmpeg


def iter_windows(
    path: PathLike,
    *,
    sample_rate: int,
    seconds: float = 10.0,
    ffmpeg: PathLike | None = None,
) -> Iterator[np.ndarray]:
    """Yield consecutive windows of ``seconds`` of a local media file, mono int16 at
    ``sample_rate``; the last one holds what is left (shorter, never empty).

    The file is decoded once, as it streams: at most one window (and the pipe's buffer) is
    held at a time. Stopping early (``close()`` or leaving a ``for`` loop) ends ffmpeg.

    Raises
    ------
    FFmpegError
        ffmpeg cannot read the file (``kind="error"``; the message names the file and carries
        ffmpeg's own words, e.g. "Invalid data found when processing input"), or the file
        holds no audio samples (``kind="no_audio"``). A file that breaks off midway raises
        after the windows decoded before the break.
    """
    source = Path(path)
    inp, network = _input_arg(source)
    if network:
        raise FFmpegError(f"iter_windows reads local files, not {str(path)!r}")
    n = int(round(seconds * int(sample_rate)))
    if n <= 0:
        raise FFmpegError(f"window of {seconds} s at {sample_rate} Hz holds no sample")
    args = [find_ffmpeg(ffmpeg), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", inp,
            "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(int(sample_rate)), "-c:a", "pcm_s16le",
            "-f", "s16le", "pipe:1"]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_ffmpeg_env())
    err: list[bytes] = []

    def read_stderr() -> None:  # drained aside, so a chatty ffmpeg never blocks on it
        for chunk in iter(lambda: proc.stderr.read(65536), b""):  # type: ignore[union-attr]
            err.append(chunk)
            if len(err) > 64:
                del err[:32]

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    buf = bytearray(2 * n)
    view = memoryview(buf)
    total = 0
    try:
        while True:
            got = 0
            while got < len(buf):
                k = proc.stdout.readinto(view[got:])  # type: ignore[union-attr]
                if not k:
                    break
                got += k
            got -= got % 2
            if got:
                total += got // 2
                yield np.frombuffer(buf, dtype="<i2", count=got // 2).astype(np.int16)
            if got < len(buf):
                break
        code = proc.wait()
        reader.join(timeout=5)
        log = _tail(b"".join(err).decode("utf-8", "replace"), lines=4)
        if code != 0:
            raise FFmpegError(f"ffmpeg cannot decode {source} (exit {code}, after "
                              f"{total / sample_rate:.1f} s of audio): {log or 'no message'}",
                              stderr=log)
        if total == 0:
            raise FFmpegError(f"{source} holds no audio samples", stderr=log, kind="no_audio")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


__all__ = ["iter_windows"]
