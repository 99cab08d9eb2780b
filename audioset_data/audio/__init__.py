"""Audio through ffmpeg: finding the binary, reading a sample-exact time range of any
media address as mono int16 PCM, and encoding or decoding whole clips in memory.
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
}

__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = sorted(_LAZY)
