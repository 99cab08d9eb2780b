"""Audio through ffmpeg: finding the binary, reading a sample-exact time range of any
media address as mono int16 PCM, encoding or decoding whole clips in memory, and decoding a
long file window by window in bounded memory.
"""

from __future__ import annotations

from audioset_data.lazy import lazy_getattr

_LAZY = {
    "DecodeResult": "audioset_data.audio.ffmpeg",
    "FFMPEG_ENV": "audioset_data.audio.ffmpeg",
    "FFmpegError": "audioset_data.audio.ffmpeg",
    "find_ffmpeg": "audioset_data.audio.ffmpeg",
    "http_read_options": "audioset_data.audio.ffmpeg",
    "CODECS": "audioset_data.audio.memory",
    "decode_audio": "audioset_data.audio.memory",
    "encode_audio": "audioset_data.audio.memory",
    "decode_pcm": "audioset_data.audio.ranges",
    "iter_windows": "audioset_data.audio.stream",
}

__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = sorted(_LAZY)
