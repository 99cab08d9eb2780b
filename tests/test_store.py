"""The HDF5 store: atomic batches, compaction into shards, loud failures on missing files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from audioset_data.cache.manifest import clip_key
from audioset_data.cache.reader import cache_dir, open_cache
from audioset_data.cache.store import CacheWriter, open_manifest
from audioset_data.errors import CacheError, ConfigError

MIDS = ["/m/a", "/m/b", "/m/c"]
SR = 100
CLIP = 1000


def _clip(i: int) -> tuple[str, np.ndarray, np.ndarray]:
    ytid = f"-clip{i:06d}"
    pcm = (np.arange(CLIP - (i % 3) * 10, dtype=np.int64) * (i + 1) % 30000).astype(np.int16)
    target = np.zeros(len(MIDS), dtype=bool)
    target[i % 3] = True
    return ytid, pcm, target


def _fill(folder, n, *, batch_size=2, shard_size=5, fmt="pcm16"):
    manifest = open_manifest(folder, fmt=fmt, sample_rate=SR, clip_samples=CLIP, label_mids=MIDS)
    rows = []
    for i in range(n):
        ytid, _, _ = _clip(i)
        rows.append((clip_key(ytid, i), ytid, float(i), i + 10.0, MIDS[i % 3]))
    manifest.add_segments(rows)
    writer = CacheWriter(folder, manifest, fmt=fmt, sample_rate=SR, clip_samples=CLIP,
                         label_mids=MIDS, batch_size=batch_size, shard_size=shard_size)
    return manifest, writer


def test_write_compact_and_read_back(tmp_path):
    folder = tmp_path / "c"
    manifest, writer = _fill(folder, 12)
    for i in range(12):
        ytid, pcm, target = _clip(i)
        writer.add(clip_key(ytid, i), ytid, float(i), i + 10.0, pcm, len(pcm), target)
    writer.close()
    files = manifest.files()
    assert sorted(files["kind"]) == ["shard"] * 3
    assert sorted(files["n_rows"]) == [2, 5, 5]
    assert sorted(p.name for p in folder.glob("*.h5")) == [
        "shard-00000.h5", "shard-00001.h5", "shard-00002.h5"]
    assert manifest.counts() == {"pending": 0, "ok": 12, "failed": 0}
    manifest.close()

    cache = open_cache(folder=folder)
    assert len(cache) == 12
    seen = set()
    for j in range(len(cache)):
        item = cache[j]
        i = int(item["ytid"][5:])
        _, pcm, target = _clip(i)
        assert item["length"] == len(pcm)
        assert np.array_equal(item["waveform"][: len(pcm)], pcm)
        assert not item["waveform"][len(pcm):].any()  # padded with silence
        assert np.array_equal(item["target"], target)
        assert item["start"] == float(i)
        seen.add(i)
    assert seen == set(range(12))
    assert cache.targets().sum() == 12
    with h5py.File(folder / "shard-00000.h5") as h5:  # PANNs-style names and attributes
        assert h5["waveform"].dtype == np.int16 and h5["waveform"].shape == (5, CLIP)
        assert h5["waveform"].chunks == (1, CLIP)
        assert h5["audio_name"][0].decode().startswith("Y-clip")
        assert h5.attrs["sample_rate"] == SR


def test_unflushed_clips_are_not_in_cache_and_unfinished_files_are_removed(tmp_path):
    folder = tmp_path / "c"
    manifest, writer = _fill(folder, 5, batch_size=2, shard_size=100)
    for i in range(3):
        ytid, pcm, target = _clip(i)
        writer.add(clip_key(ytid, i), ytid, float(i), i + 10.0, pcm, len(pcm), target)
    # the third clip is still buffered: as after a kill, it is pending, not ok
    assert manifest.counts()["ok"] == 2
    (folder / "batch-deadbeef.h5").write_bytes(b"junk")
    (folder / ".shard-00000.h5.0123abcd.part").write_bytes(b"junk")
    manifest.close()
    manifest2, writer2 = _fill(folder, 5, batch_size=2, shard_size=100)
    # an unreadable published file is never deleted (it may hold clips); a temp file is
    assert (folder / "batch-deadbeef.h5").read_bytes() == b"junk"
    assert not (folder / ".shard-00000.h5.0123abcd.part").exists()
    assert len(open_cache(folder=folder)) == 2
    manifest2.close()


def test_missing_file_leaves_its_clips_out_and_says_why(tmp_path):
    folder = tmp_path / "c"
    manifest, writer = _fill(folder, 6)
    for i in range(6):
        ytid, pcm, target = _clip(i)
        writer.add(clip_key(ytid, i), ytid, float(i), i + 10.0, pcm, len(pcm), target)
    writer.close()
    manifest.close()
    (folder / "shard-00001.h5").unlink()
    cache = open_cache(folder=folder)
    assert len(cache) == 5
    assert list(cache.unavailable["file"]) == ["shard-00001.h5"]
    assert list(cache.unavailable["problem"]) == ["file missing"]
    assert {cache[i]["key"] for i in range(5)}.isdisjoint(cache.unavailable["key"])


def test_settings_are_pinned_per_cache(tmp_path):
    folder = tmp_path / "c"
    open_manifest(folder, fmt="pcm16", sample_rate=SR, clip_samples=CLIP, label_mids=MIDS).close()
    with pytest.raises(CacheError, match="sample_rate=100"):
        open_manifest(folder, fmt="pcm16", sample_rate=16000, clip_samples=CLIP, label_mids=MIDS)
    with pytest.raises(ConfigError, match="unknown storage format"):
        open_manifest(tmp_path / "d", fmt="wav", sample_rate=SR, clip_samples=CLIP,
                      label_mids=MIDS)
    with pytest.raises(ConfigError):
        cache_dir("../escape")
    with pytest.raises(CacheError, match="missing"):
        open_cache(folder=tmp_path / "nothing")


def test_merge_again_after_a_part_was_resumed(tmp_path, monkeypatch):
    from audioset_data.downloader.job_array import merge

    monkeypatch.setenv("AUDIOSET_DATA_HOME", str(tmp_path))
    folder = cache_dir("arr")

    def part_writer(tag):
        manifest = open_manifest(folder, fmt="pcm16", sample_rate=SR, clip_samples=CLIP,
                                 label_mids=MIDS, name=f"manifest.{tag}.sqlite")
        return manifest, CacheWriter(folder, manifest, fmt="pcm16", sample_rate=SR,
                                     clip_samples=CLIP, label_mids=MIDS, batch_size=2,
                                     shard_size=100, prefix=f"{tag}-")

    def add(manifest, writer, ids):
        rows = [(clip_key(_clip(i)[0], i), _clip(i)[0], float(i), i + 10.0, MIDS[i % 3])
                for i in ids]
        manifest.add_segments(rows)
        for i in ids:
            ytid, pcm, target = _clip(i)
            writer.add(clip_key(ytid, i), ytid, float(i), i + 10.0, pcm, len(pcm), target)

    m1, w1 = part_writer("part-1-of-2")
    add(m1, w1, range(0, 4))
    w1.flush()  # interrupted: published batches, never compacted
    m1.close()
    m2, w2 = part_writer("part-2-of-2")
    add(m2, w2, range(4, 7))
    w2.close()
    m2.close()
    merge("arr")
    assert len(open_cache("arr")) == 7
    m1, w1 = part_writer("part-1-of-2")  # resume part 1: its batches become a shard
    w1.close()
    m1.close()
    assert not list(folder.glob("part-1-of-2-batch-*.h5"))
    merge("arr")
    cache = open_cache("arr")
    assert sorted(cache[i]["ytid"] for i in range(len(cache))) == sorted(
        _clip(i)[0] for i in range(7))


def test_split_aliases_share_one_cache_and_labels_follow_the_list(tmp_path):
    assert cache_dir("balanced_train") == cache_dir("balanced")
    folder = tmp_path / "c"
    manifest, writer = _fill(folder, 3)
    ytid, pcm, target = _clip(0)
    writer.add(clip_key(ytid, 0), ytid, 0.0, 10.0, pcm, len(pcm), target)
    writer.close()
    rows = [(clip_key(_clip(i)[0], i), _clip(i)[0], float(i), i + 10.0, "/m/c") for i in range(3)]
    new, changed = manifest.add_segments(rows)
    assert (new, changed) == (0, 1)  # clip 0 is cached with its old label
    labels = manifest.table().set_index("ytid")["labels"]
    assert labels[_clip(1)[0]] == "/m/c" and labels[_clip(0)[0]] == MIDS[0]
    manifest.finish()
    manifest.close()
    assert not (folder / "manifest.sqlite-wal").exists()
    assert len(open_cache(folder=folder)) == 1
    assert not (folder / "manifest.sqlite-wal").exists()  # reading writes nothing
