"""One exception hierarchy for the whole package.

Every error the library raises on purpose derives from :class:`AudioSetError`, and each
subclass also inherits the builtin that fits, so ``except ValueError`` keeps working for
callers who do not know this package.
"""

from __future__ import annotations


class AudioSetError(Exception):
    """Base class of every error raised on purpose by audioset-data."""


class ConfigError(AudioSetError, ValueError):
    """A setting (argument or environment variable) has a value that cannot be used."""


class OntologyError(AudioSetError, ValueError):
    """The ontology JSON is malformed, or a class id / name is unknown."""


class UnknownClassError(OntologyError, KeyError):
    """A class id or name is not in the ontology (or not in the label index)."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class LabelIndexError(AudioSetError, ValueError):
    """The 527-label index CSV is malformed or disagrees with the ontology."""


class SegmentsError(AudioSetError, ValueError):
    """A segment list (CSV) is malformed; the message names file and line."""


class StrongLabelsError(AudioSetError, ValueError):
    """A strong-label file (events, framed labels, vocabulary) is malformed; the message names
    file and line."""


class RemoteError(AudioSetError, OSError):
    """A remote resource could not be fetched (network, HTTP status, timeouts)."""


class ChecksumMismatchError(RemoteError):
    """A fetched or cached file does not match the size/checksum pinned for it."""


class CacheError(AudioSetError, OSError):
    """The on-disk cache (HDF5 shards, manifest) is missing, incomplete or inconsistent."""


class DiskFullError(CacheError):
    """A write found no space left on its disk (or the user's quota spent); the message names
    the folder, what the write needed and what is free. Nothing half-written is kept, so the
    same command resumes once space is freed."""

    def __init__(self, message: str, *, folder: str | None = None, need: int | None = None,
                 free: int | None = None, what: str = ""):
        super().__init__(message)
        self.folder = folder
        self.need = need
        self.free = free
        self.what = what


class ExportError(AudioSetError, OSError):
    """An export's target cannot be used: not a folder, not writable, or holding files the
    export did not write; the message names the path."""


class DownloadError(AudioSetError, RuntimeError):
    """A clip could not be downloaded or decoded."""


class EvaluationError(AudioSetError, ValueError):
    """Targets, scores or masks given to an evaluation function cannot be evaluated."""


class CheckpointError(AudioSetError, ValueError):
    """A checkpoint cannot be written or loaded: missing, truncated, unsafe or for another
    model; the message names the file."""


__all__ = [
    "AudioSetError",
    "CacheError",
    "CheckpointError",
    "ChecksumMismatchError",
    "ConfigError",
    "DiskFullError",
    "DownloadError",
    "EvaluationError",
    "ExportError",
    "LabelIndexError",
    "OntologyError",
    "RemoteError",
    "SegmentsError",
    "StrongLabelsError",
    "UnknownClassError",
]
