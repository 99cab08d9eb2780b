"""TFRecord framing, read and written without TensorFlow, every CRC checked.

Each record is ``uint64 length`` (little-endian), ``uint32 masked CRC-32C of the length``, the
data, ``uint32 masked CRC-32C of the data``. The CRC is the ``crc32c`` package's (hardware
accelerated where the CPU has it); the records parse with ``protobuf`` (its C/upb backend)
into the classes of :mod:`.proto`.

Decision: ``protobuf`` + ``crc32c`` over the ``tfrecord`` PyPI package, measured on the real
balanced tar, one thread, 2 CPUs (``benchmarks/bench_features.py``, figures and the shared
machine's load in ``benchmarks/results/features.md``): ours reads 73,197 records/s with both
CRCs checked (35,120 in a run at twice the load), the ``tfrecord`` package 54,830 (24,670)
with its ``tfrecord_iterator`` and 23,153 (12,426) with its ``sequence_loader``, checking
neither CRC; ours streamed from the tar.gz (gunzip + tar included) 39,907 (17,500). The
``tfrecord`` package also opens inputs only by path (a member of the 2.4 GB tar would have to
be extracted first) and registers ``tensorflow.*`` messages in protobuf's default pool, which
clashes with TensorFlow's own.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from crc32c import crc32c

from audioset_data.config import PathLike
from audioset_data.fileio import atomic_write

from .errors import CorruptRecordError, TruncatedRecordError

_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
_LENGTH = struct.Struct("<Q")
_MASK_DELTA = 0xA282EAD8
#: A record longer than this is corrupt: an AudioSet record is a few kB.
MAX_RECORD_BYTES = 1 << 26


def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    """TFRecord's masked CRC-32C of ``data`` (rotate right 15 bits, add a constant)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def iter_payloads(fh: IO[bytes], name: str) -> Iterator[bytes]:
    """Yield the data of each record of the TFRecord stream ``fh``, checking both CRCs.

    ``name`` is what error messages call the stream (a path, or ``archive:member``).

    Raises
    ------
    CorruptRecordError
        A length or data CRC does not match, or a length is impossible.
    TruncatedRecordError
        The stream ends inside a record.
    """
    read = fh.read
    index = 0
    while True:
        head = read(12)
        if not head:
            return
        if len(head) < 12:
            raise TruncatedRecordError(
                f"{name}: record {index}: the file ends inside the record header "
                f"({len(head)} of 12 bytes); the copy is incomplete, fetch it again",
                path=name, record=index)
        length, length_crc = _HEADER.unpack(head)
        if masked_crc32c(head[:8]) != length_crc:
            raise CorruptRecordError(
                f"{name}: record {index}: the CRC of the length field does not match; the "
                "file is corrupt, fetch it again", path=name, record=index)
        if length > MAX_RECORD_BYTES:
            raise CorruptRecordError(
                f"{name}: record {index}: length {length} is over {MAX_RECORD_BYTES} bytes; "
                "the file is corrupt", path=name, record=index)
        body = read(length + 4)
        if len(body) < length + 4:
            raise TruncatedRecordError(
                f"{name}: record {index}: the file ends inside the record ({len(body)} of "
                f"{length + 4} bytes); the copy is incomplete, fetch it again",
                path=name, record=index)
        payload = body[:length]
        (data_crc,) = _FOOTER.unpack_from(body, length)
        if masked_crc32c(payload) != data_crc:
            raise CorruptRecordError(
                f"{name}: record {index}: the CRC of the data does not match; the file is "
                "corrupt, fetch it again", path=name, record=index)
        yield payload
        index += 1


def read_payloads(path: PathLike) -> Iterator[bytes]:
    """Yield the data of each record of the TFRecord file ``path`` (CRCs checked)."""
    with open(path, "rb") as fh:
        yield from iter_payloads(fh, str(path))


def frame(payload: bytes) -> bytes:
    """One framed record: length, its masked CRC, ``payload``, its masked CRC."""
    length = _LENGTH.pack(len(payload))
    return b"".join((length, _FOOTER.pack(masked_crc32c(length)), payload,
                     _FOOTER.pack(masked_crc32c(payload))))


def write_tfrecord(path: PathLike, payloads: Iterable[bytes]) -> Path:
    """Write ``payloads`` as a TFRecord file (atomically); return the path."""
    path = Path(path)
    with atomic_write(path, durable=False) as fh:
        for payload in payloads:
            fh.write(frame(payload))
    return path


__all__ = [
    "MAX_RECORD_BYTES",
    "frame",
    "iter_payloads",
    "masked_crc32c",
    "read_payloads",
    "write_tfrecord",
]
