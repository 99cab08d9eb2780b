"""Importing copies other tools made: PaSST's MP3 HDF5, Hugging Face parquet shards and
webdataset tars, each written here in exactly its tool's layout from synthesised audio with a
click, round-trip into the cache with the right labels, audio and counts, and a second run
imports nothing."""

from __future__ import annotations

import doctest
import io
import json
import subprocess
import tarfile
from pathlib import Path

import av
import h5py
import imageio_ffmpeg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audioset_data.cache.manifest import MANIFEST_NAME, Manifest, clip_key
from audioset_data.cache.reader import AudioSetCache, cache_dir
from audioset_data.cache.shards import read_encoded
from audioset_data.cli import main
from audioset_data.errors import CacheError, ConfigError
from audioset_data.interop import (
    ImportReport,
    import_hf_parquet,
    import_passt,
    import_webdataset,
)
from audioset_data.interop.copies import (
    CACHED,
    DAMAGED,
    DUPLICATE,
    EMPTY,
    NOT_AN_ID,
    UNLISTED_ID,
    UNLISTED_START,
    SegmentMatcher,
    decode_any,
    parse_clip_name,
)
from audioset_data.interop.wds_import import BAD_METADATA, split_member
from audioset_data.segments.table import Segments

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
SECONDS = 1.0  # short clips keep the test fast; AudioSet has clips shorter than 10 s too


@pytest.fixture(scope="module")
def eval_part(shared_data, label_index) -> Segments:
    return Segments.from_file(shared_data / "segments" / "eval_segments.csv",
                              label_index=label_index)[:16]


def _clip(i: int, rate: int, seconds: float = SECONDS) -> tuple[np.ndarray, float]:
    """A tone with one loud click; returns the samples and the click's time in seconds."""
    t = np.arange(int(round(rate * seconds))) / rate
    x = 3000 * np.sin(2 * np.pi * (220 + 20 * i) * t)
    at = 0.2 + 0.05 * (i % 13)
    x[int(round(at * rate))] += 20000
    return np.round(x).astype(np.int16), at


def _encode(pcm: np.ndarray, rate: int, out_args: list[str], suffix: str, tmp: Path,
            channels: int = 1) -> bytes:
    """Encode with the ffmpeg command line into a file, as the tools do."""
    src, dst = tmp / "in.raw", tmp / f"out{suffix}"
    src.write_bytes(np.ascontiguousarray(pcm, dtype="<i2").tobytes())
    dst.unlink(missing_ok=True)
    subprocess.run([FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "s16le",
                    "-ar", str(rate), "-ac", str(channels), "-i", str(src), *out_args,
                    str(dst)], check=True)
    return dst.read_bytes()


def _passt_decode(data: bytes) -> np.ndarray:
    """PaSST's own ``decode_mp3`` (float32), scaled to int16."""
    container = av.open(io.BytesIO(data))
    stream = next(s for s in container.streams if s.type == "audio")
    out = [frame.to_ndarray().reshape(-1) for packet in container.demux(stream)
           for frame in packet.decode()]
    return np.clip(np.round(np.concatenate(out) * 32768), -32768, 32767).astype(np.int64)


def _click_at(wave: np.ndarray) -> int:
    return int(np.argmax(np.abs(wave.astype(np.int64))))


def _labels(seg: Segments, i: int) -> np.ndarray:
    return seg.label_matrix[[i]].toarray()[0].astype(bool)


def _stored_bytes(folder: Path, key: str) -> bytes:
    """The encoded bytes the cache holds for ``key``."""
    with Manifest.open(folder / MANIFEST_NAME, readonly=True) as manifest:
        file, row = manifest.locate([key])[key]
    with h5py.File(folder / file, "r") as h5:
        return read_encoded(h5, row)


def _check_counts(report: ImportReport, **want: int) -> None:
    s = report.summary()
    for name, value in want.items():
        got = s[name] if name in s else report.count(name)
        assert got == value, (name, got, value, s)


# -- PaSST / EfficientAT -----------------------------------------------------------------------
def _write_passt(path: Path, seg: Segments, tmp: Path, *, rows: list[int],
                 empty: int, damaged: int, relabel: int, unlisted: str,
                 duplicate: int, part_prefix: int) -> dict[int, bytes]:
    """A file in PaSST's layout (create_h5pymp3_dataset.py): ``audio_name`` S20 ``Y<id>.mp3``,
    ``mp3`` vlen uint8 (ffmpeg ``-codec:a mp3 -ar 32000``), ``target`` np.packbits of 527."""
    names, mp3s, ys = [], {}, []
    order = [*rows, "unlisted", duplicate]
    for k, i in enumerate(order):
        if i == "unlisted":
            names.append(f"Y{unlisted}.mp3")
            pcm, _ = _clip(99, 32000)
            y = _labels(seg, 0)
        else:
            names.append(f"{i:02d}/Y{seg.ytids[i]}.mp3" if i == part_prefix
                         else f"Y{seg.ytids[i]}.mp3")
            pcm, _ = _clip(i, 32000)
            y = _labels(seg, i).copy()
            if i == relabel:
                y[:] = False
                y[0] = True
        if i == empty:
            data = b""
        elif i == damaged:
            data = b"this is no mp3 file at all " * 40
        else:
            data = _encode(pcm, 32000, ["-codec:a", "mp3", "-ar", "32000"], ".mp3", tmp)
        mp3s[k] = data
        ys.append(y)
    packed = np.packbits(np.array(ys, dtype=bool), axis=-1)
    assert packed.shape[1] == 66
    with h5py.File(path, "w") as hf:
        n = len(names)
        audio_name = hf.create_dataset("audio_name", shape=(n,), dtype="S20")
        wave = hf.create_dataset("mp3", shape=(n,), dtype=h5py.vlen_dtype(np.dtype("uint8")))
        target = hf.create_dataset("target", shape=(n, packed.shape[1]), dtype=packed.dtype)
        for k in range(n):
            audio_name[k] = names[k]
            wave[k] = np.frombuffer(mp3s[k], dtype=np.uint8)
            target[k] = packed[k]
    return mp3s


def test_passt_mp3_file_round_trips_with_counts(tmp_path, eval_part, label_index):
    rows = list(range(12))
    h5 = tmp_path / "eval_segments_mp3.hdf"
    mp3s = _write_passt(h5, eval_part, tmp_path, rows=rows, empty=3, damaged=5, relabel=7,
                        unlisted="zzzzzzzzzzz", duplicate=0, part_prefix=9)
    folder = tmp_path / "cache"
    report = import_passt(h5, folder=folder, segments=eval_part, label_index=label_index,
                          batch_size=4, progress=False)
    good = [i for i in rows if i not in (3, 5)]
    _check_counts(report, rows=14, imported=len(good), stored_as_is=0, unlisted=1,
                  placeholders=1, label_mismatches=1, already_cached=0,
                  listed_not_in_copy=16 - len(good))
    assert report.count(DUPLICATE) == 1 and report.count(UNLISTED_ID) == 1
    assert report.summary()["damaged"] == [f"Y{eval_part.ytids[5]}.mp3"]
    assert "cannot be decoded" in report.damaged["detail"].iloc[0]
    assert report.label_mismatches["key"].tolist() == [clip_key(eval_part.ytids[7],
                                                                eval_part.start[7])]

    cache = AudioSetCache(folder)
    assert (cache.format, cache.sample_rate, cache.clip_samples) == ("flac", 32000, 320000)
    assert sorted(cache.keys()) == sorted(clip_key(eval_part.ytids[i], eval_part.start[i])
                                          for i in good)
    for i in good:
        item = cache[cache.position(clip_key(eval_part.ytids[i], eval_part.start[i]))]
        reference = _passt_decode(mp3s[rows.index(i)])  # what PaSST's loader reads
        n = int(item["length"])
        assert n == len(reference) == 32000  # gapless: the MP3 decodes to the source length
        assert np.abs(item["waveform"][:n].astype(np.int64) - reference).max() <= 1
        _, at = _clip(i, 32000)
        assert abs(_click_at(item["waveform"][:n]) - round(at * 32000)) <= 2
        want = _labels(eval_part, i)
        if i == 7:
            want = np.zeros_like(want)
            want[0] = True
        assert np.array_equal(item["target"], want)
        assert (item["start"], item["end"]) == (eval_part.start[i], eval_part.end[i])

    again = import_passt(h5, folder=folder, segments=eval_part, label_index=label_index,
                         progress=False)
    assert again.imported == 0 and again.count(CACHED) == len(good)
    assert again.count(DAMAGED) == 1 and again.count(EMPTY) == 1
    assert len(AudioSetCache(folder)) == len(good)


def test_an_interrupted_import_keeps_its_clips_and_resumes(tmp_path, eval_part, label_index,
                                                           monkeypatch):
    from audioset_data.interop.copies import importer

    h5 = tmp_path / "eval_segments_mp3.hdf"
    _write_passt(h5, eval_part, tmp_path, rows=list(range(8)), empty=-1, damaged=-1,
                 relabel=-1, unlisted="zzzzzzzzzzz", duplicate=0, part_prefix=-1)
    encode, calls = importer.encode_clip, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return encode(*args, **kwargs)

    monkeypatch.setattr(importer, "encode_clip", interrupted)
    folder = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        import_passt(h5, folder=folder, segments=eval_part, label_index=label_index,
                     batch_size=2, progress=False)
    assert len(AudioSetCache(folder)) == 3  # the clips decoded before the interruption
    monkeypatch.setattr(importer, "encode_clip", encode)
    rest = import_passt(h5, folder=folder, segments=eval_part, label_index=label_index,
                        progress=False)
    assert rest.imported == 5 and rest.count(CACHED) == 3
    assert len(AudioSetCache(folder)) == 8
    with pytest.raises(CacheError, match="sample_rate=32000, not 16000"):
        import_passt(h5, folder=folder, segments=eval_part, label_index=label_index,
                     sample_rate=16000, fmt="flac", progress=False)


def test_passt_needs_the_list_and_its_own_layout(tmp_path, eval_part, label_index):
    h5 = tmp_path / "x.hdf"
    with h5py.File(h5, "w") as hf:
        hf.create_dataset("audio_name", data=np.array([b"Y" + b"a" * 11 + b".mp3"]))
        hf.create_dataset("waveform", data=np.zeros((1, 10), np.int16))
        hf.create_dataset("target", data=np.zeros((1, 527), bool))
    with pytest.raises(ConfigError, match="no start time"):
        import_passt(h5, folder=tmp_path / "c", label_index=label_index)
    with pytest.raises(CacheError, match="import panns"):
        import_passt(h5, folder=tmp_path / "c", segments=eval_part, label_index=label_index)
    with h5py.File(h5, "w") as hf:
        hf.create_dataset("audio_name", data=np.array([b"Y" + b"a" * 11 + b".mp3"]))
        hf.create_dataset("mp3", shape=(1,), dtype=h5py.vlen_dtype(np.dtype("uint8")))
        hf.create_dataset("target", data=np.zeros((1, 60), np.uint8))
    with pytest.raises(CacheError, match="pack into 66"):
        import_passt(h5, folder=tmp_path / "c", segments=eval_part, label_index=label_index)


# -- Hugging Face agkphysics/AudioSet ----------------------------------------------------------
def _hf_rows(seg: Segments, label_index, tmp: Path) -> tuple[list[dict], dict[int, np.ndarray]]:
    """Rows in the layout of agkphysics/AudioSet: video_id, audio {bytes, path} (FLAC, 48 kHz;
    24-bit stereo and 44.1 kHz rows too), labels (mids), human_labels (names)."""
    rows, sources = [], {}
    for i in range(9):
        ytid = seg.ytids[i] if i != 8 else "zzzzzzzzzzz"
        pcm, _ = _clip(i, 48000)
        sources[i] = pcm
        if i == 3:  # 24-bit stereo, both channels the clip
            stereo = np.repeat(pcm, 2)
            data = _encode(stereo, 48000, ["-c:a", "flac", "-sample_fmt", "s32"], ".flac", tmp,
                           channels=2)
        elif i == 4:  # a 44.1 kHz clip
            pcm, _ = _clip(i, 44100)
            sources[i] = pcm
            data = _encode(pcm, 44100, ["-c:a", "flac"], ".flac", tmp)
        else:
            data = _encode(pcm, 48000, ["-c:a", "flac"], ".flac", tmp)
        if i == 5:
            data = None
        if i == 6:  # flipped bytes in the middle: the frame CRC fails
            raw = bytearray(data)
            for k in range(len(raw) // 2, len(raw) // 2 + 64):
                raw[k] ^= 0x5A
            data = bytes(raw)
        mids = list(seg.table["labels"].iloc[i if i != 8 else 0])
        if i == 7:
            mids = ["/m/09x0r"] if "/m/09x0r" not in mids else ["/m/0bt9lr"]
        rows.append({"video_id": ytid,
                     "audio": {"bytes": data, "path": f"audio/eval/{ytid}.flac"},
                     "labels": mids,
                     "human_labels": [label_index.name(m) for m in mids]})
    return rows, sources


def _write_parquet(path: Path, rows: list[dict]) -> None:
    schema = pa.schema([("video_id", pa.string()),
                        ("audio", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                        ("labels", pa.list_(pa.string())),
                        ("human_labels", pa.list_(pa.string()))])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=2)


def test_hf_parquet_round_trips_keeping_flac_as_it_is(tmp_path, eval_part, label_index):
    rows, sources = _hf_rows(eval_part, label_index, tmp_path)
    shards = tmp_path / "data" / "eval"
    shards.mkdir(parents=True)
    _write_parquet(shards / "eval-00000-of-00002.parquet", rows[:5])
    _write_parquet(shards / "eval-00001-of-00002.parquet", rows[5:])
    folder = tmp_path / "cache"
    report = import_hf_parquet(tmp_path / "data", folder=folder, segments=eval_part,
                               label_index=label_index, batch_size=3, progress=False)
    good = [0, 1, 2, 3, 4, 7]
    _check_counts(report, rows=9, imported=len(good), stored_as_is=4, unlisted=1,
                  placeholders=1, label_mismatches=1, listed_not_in_copy=16 - len(good))
    assert report.summary()["damaged"] == [
        f"eval-00001-of-00002.parquet: audio/eval/{eval_part.ytids[6]}.flac"]

    cache = AudioSetCache(folder)
    assert (cache.format, cache.sample_rate, cache.clip_samples) == ("flac", 48000, 480000)
    for i in good:
        key = clip_key(eval_part.ytids[i], eval_part.start[i])
        item = cache[cache.position(key)]
        n = int(item["length"])
        wave = item["waveform"][:n]
        if i in (0, 1, 2, 7):  # mono 16-bit 48 kHz FLAC: the very bytes, the very samples
            assert _stored_bytes(folder, key) == rows[i]["audio"]["bytes"]
            assert np.array_equal(wave, sources[i])
        elif i == 3:  # 24-bit stereo: mixed down to one channel once
            assert n == 48000 and np.abs(wave.astype(int) - sources[3]).max() <= 1
        else:  # 44.1 kHz: resampled once to the cache's 48 kHz
            assert abs(n - 48000) <= 1
            _, at = _clip(4, 44100)
            assert abs(_click_at(wave) - round(at * 48000)) <= 2
        mids = rows[i]["labels"]
        assert np.flatnonzero(item["target"]).tolist() == sorted(label_index.index(m)
                                                                 for m in mids)

    again = import_hf_parquet(shards / "*.parquet", folder=folder, segments=eval_part,
                              label_index=label_index, progress=False)
    assert again.imported == 0 and again.count(CACHED) == len(good)

    # the list's labels instead of the copy's, into a 32 kHz cache: every clip resampled
    other = import_hf_parquet(shards, folder=tmp_path / "c32", segments=eval_part,
                              label_index=label_index, sample_rate=32000, take_labels="list",
                              progress=False)
    assert other.imported == len(good) and other.stored_as_is == 0
    c32 = AudioSetCache(tmp_path / "c32")
    assert c32.sample_rate == 32000
    item = c32[c32.position(clip_key(eval_part.ytids[7], eval_part.start[7]))]
    assert np.array_equal(item["target"], _labels(eval_part, 7))
    _, at = _clip(0, 48000)
    first = c32[c32.position(clip_key(eval_part.ytids[0], eval_part.start[0]))]
    assert abs(_click_at(first["waveform"]) - round(at * 32000)) <= 2


def test_hf_parquet_needs_the_list_and_its_columns(tmp_path, eval_part, label_index):
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"id": ["a"], "audio": [b"x"]}), bad)
    with pytest.raises(CacheError, match="no column 'video_id'"):
        import_hf_parquet(bad, folder=tmp_path / "c", segments=eval_part,
                          label_index=label_index)
    rows, _ = _hf_rows(eval_part, label_index, tmp_path)
    _write_parquet(tmp_path / "ok.parquet", rows[:1])
    with pytest.raises(ConfigError, match="no start time"):
        import_hf_parquet(tmp_path / "ok.parquet", folder=tmp_path / "c",
                          label_index=label_index)
    with pytest.raises(ConfigError, match="no file, no folder"):
        import_hf_parquet(tmp_path / "nothing" / "*.parquet", folder=tmp_path / "c",
                          label_index=label_index)


# -- webdataset tar shards ---------------------------------------------------------------------
def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _write_wds(folder: Path, seg: Segments, label_index, tmp: Path) -> dict[str, np.ndarray]:
    """Two shards: confit/audioset-16khz-wds style samples (``sample-N.wav`` + ``.json`` with
    ``id`` and ``label`` names) and samples keyed by the clip (``Y<id>_<start>_<end>.flac``,
    ``<id>_<ms>.flac``) with mids; plus rows that must be counted, not imported."""
    folder.mkdir(parents=True)
    audio: dict[str, np.ndarray] = {}

    def flac(i: int) -> bytes:
        pcm, _ = _clip(i, 16000)
        audio[seg.ytids[i]] = pcm
        return _encode(pcm, 16000, ["-c:a", "flac"], ".flac", tmp)

    with tarfile.open(folder / "shard-00000.tar", "w") as tar:
        for i in range(4):  # confit's layout: 16 kHz WAV, id and label names
            pcm, _ = _clip(i, 16000)
            audio[seg.ytids[i]] = pcm
            key = f"sample-{i:09d}"
            _add(tar, f"{key}.wav", _encode(pcm, 16000, ["-c:a", "pcm_s16le"], ".wav", tmp))
            names = [label_index.name(m) for m in seg.table["labels"].iloc[i]]
            if i == 2:
                names = [*names, "Not a label"]
            _add(tar, f"{key}.json", json.dumps({
                "id": seg.ytids[i], "label": names,
                "label_id": [label_index.index(n) for n in names if n != "Not a label"],
            }).encode())
        _add(tar, "sample-000000004.json", json.dumps({"id": seg.ytids[7],  # no audio
                                                       "label": ["Speech"]}).encode())
        _add(tar, "../../escape.flac", flac(11))  # a name that would leave any folder
        link = tarfile.TarInfo("sample-000000005.flac")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with tarfile.open(folder / "shard-00001.tar", "w") as tar:
        for i in (4, 5):  # keyed by the clip, seconds with decimals, mids
            key = f"Y{seg.ytids[i]}_{seg.start[i]:.3f}_{seg.end[i]:.3f}"
            _add(tar, f"{key}.flac", flac(i))
            _add(tar, f"{key}.json", json.dumps(
                {"labels": list(seg.table["labels"].iloc[i])}).encode())
        key6 = clip_key(seg.ytids[6], seg.start[6])  # the project's own <id>_<ms> keys
        _add(tar, f"{key6}.flac", flac(6))
        _add(tar, f"{key6}.json", json.dumps(
            {"labels": ",".join(seg.table["labels"].iloc[6])}).encode())
        _add(tar, "Yzzzzzzzzzzz_0.000_10.000.flac", flac(12))  # no such video in the list
        _add(tar, f"{seg.ytids[8]}_{seg.start[8] + 3:.3f}.flac", flac(8))  # listed, not there
        _add(tar, f"Y{seg.ytids[9]}.flac", b"fLaC" + b"\x00" * 300)  # damaged
        _add(tar, f"Y{seg.ytids[9]}.json", json.dumps({"labels": []}).encode())
        _add(tar, f"Y{seg.ytids[10]}.flac", flac(10))
        _add(tar, f"Y{seg.ytids[10]}.json", b"{not json")
    return audio


def test_webdataset_shards_round_trip_with_counts(tmp_path, eval_part, label_index):
    shards = tmp_path / "20k" / "test"
    audio = _write_wds(shards, eval_part, label_index, tmp_path)
    folder = tmp_path / "work" / "cache"
    report = import_webdataset(str(shards / "shard-*.tar"), folder=folder,
                               segments=eval_part, label_index=label_index, progress=False)
    good = [0, 1, 2, 3, 4, 5, 6]
    _check_counts(report, imported=len(good), stored_as_is=3, unlisted=2, placeholders=1,
                  label_mismatches=0, listed_not_in_copy=16 - len(good))
    assert report.count(UNLISTED_ID) == 1 and report.count(UNLISTED_START) == 1
    assert report.count(NOT_AN_ID) == 1 and report.count(BAD_METADATA) == 1
    assert report.summary()["damaged"] == [f"shard-00001.tar: Y{eval_part.ytids[9]}.flac"]
    assert report.unknown_labels == {"Not a label": 1}
    assert not (tmp_path / "escape.flac").exists() and not (tmp_path.parent / "escape.flac"
                                                            ).exists()

    cache = AudioSetCache(folder)
    assert (cache.format, cache.sample_rate) == ("flac", 16000)
    assert sorted(cache.keys()) == sorted(clip_key(eval_part.ytids[i], eval_part.start[i])
                                          for i in good)
    for i in good:
        item = cache[cache.position(clip_key(eval_part.ytids[i], eval_part.start[i]))]
        assert np.array_equal(item["waveform"][:item["length"]], audio[eval_part.ytids[i]])
        assert np.array_equal(item["target"], _labels(eval_part, i))
    again = import_webdataset(shards, folder=folder, segments=eval_part,
                              label_index=label_index, progress=False)
    assert again.imported == 0 and again.count(CACHED) == len(good)


def test_webdataset_keys_and_a_truncated_shard(tmp_path, eval_part, label_index):
    assert split_member("a/b.c.json") == ("a/b", "c.json")
    shards = tmp_path / "s"
    _write_wds(shards, eval_part, label_index, tmp_path)
    whole = (shards / "shard-00001.tar").read_bytes()
    (shards / "shard-00001.tar").write_bytes(whole[: len(whole) * 2 // 3])  # cut off
    report = import_webdataset(shards, folder=tmp_path / "c", segments=eval_part,
                               label_index=label_index, progress=False)
    assert report.imported >= 4  # the intact shard, and what the cut one held before the cut
    assert report.count(DAMAGED) >= 1
    assert "shard-00001.tar" in " ".join(report.summary()["damaged"])


# -- shared parts ------------------------------------------------------------------------------
@pytest.mark.parametrize("name, parsed", [
    ("Y--PJHxphWEs.mp3", ("--PJHxphWEs", None, None)),
    ("07/Y--PJHxphWEs.mp3", ("--PJHxphWEs", None, None)),
    ("audio/bal_train/--PJHxphWEs.flac", ("--PJHxphWEs", None, None)),
    ("--PJHxphWEs_30000", ("--PJHxphWEs", 30000.0, None)),
    ("Y--PJHxphWEs_30.000_40.000.wav", ("--PJHxphWEs", 30.0, 40.0)),
    ("sample-000000001", None),
    ("../../x", None),
])
def test_clip_names(name, parsed):
    assert parse_clip_name(name) == parsed


def test_starts_match_in_seconds_or_milliseconds(eval_part):
    m = SegmentMatcher(eval_part)
    ytid, start = str(eval_part.ytids[3]), float(eval_part.start[3])
    assert m.find(ytid, start) == (3, "")
    assert m.find(ytid, start * 1000) == (3, "")
    assert m.find(ytid, None) == (3, "")
    assert m.find(ytid, start + 1) == (-1, UNLISTED_START)
    assert m.find("zzzzzzzzzzz", 0.0) == (-1, UNLISTED_ID)


def test_doctests():
    from audioset_data.interop import wds_import
    from audioset_data.interop.copies import names

    for module in (names, wds_import):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted >= 2


def test_decode_any_names_what_it_cannot_decode():
    with pytest.raises(CacheError, match="cannot be decoded"):
        decode_any(b"\x00" * 100, 16000)


def test_cli_imports_each_kind(tmp_path, shared_data, eval_part, label_index, capsys):
    labels = str(shared_data / "segments" / "class_labels_indices.csv")
    listed = tmp_path / "eval_part.csv"
    eval_part.to_csv(listed)
    h5 = tmp_path / "eval_segments_mp3.hdf"
    _write_passt(h5, eval_part, tmp_path, rows=[0, 1, 2], empty=1, damaged=-1, relabel=-1,
                 unlisted="zzzzzzzzzzz", duplicate=0, part_prefix=-1)
    capsys.readouterr()
    assert main(["import", "passt", str(h5), "--split", "from_passt", "--segments",
                 str(listed), "--labels", labels, "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["imported"] == 2 and summary["unlisted"] == 1 and summary["placeholders"] == 1
    assert AudioSetCache(cache_dir("from_passt")).sample_rate == 32000
    # the same cache again: everything there already
    assert main(["import", "passt", str(h5), "--split", "from_passt", "--segments",
                 str(listed), "--labels", labels, "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["already_cached"] == 2

    rows, _ = _hf_rows(eval_part, label_index, tmp_path)
    _write_parquet(tmp_path / "eval-0.parquet", rows[:3])
    assert main(["import", "hf", str(tmp_path / "eval-*.parquet"), "--split", "from_hf",
                 "--segments", str(listed), "--labels", labels, "--sample-rate", "16000",
                 "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["imported"] == 3 and summary["stored_as_is"] == 0
    assert AudioSetCache(cache_dir("from_hf")).sample_rate == 16000

    assert main(["import", "wds", str(tmp_path / "none"), "--split", "w", "--labels",
                 labels]) == 2
    assert "no file, no folder" in capsys.readouterr().err
    assert main(["import", "panns", str(h5), "--split", "p", "--labels", labels,
                 "--sample-rate", "16000"]) == 2
    assert "--sample-rate does not apply" in capsys.readouterr().err
