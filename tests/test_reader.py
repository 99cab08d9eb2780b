"""The cache reader built for training: stable order, keys, batch reads, sparse targets,
snapshots under a running writer, pickling for worker processes."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from audioset_data.cache.manifest import clip_key
from audioset_data.cache.reader import AudioSetCache, open_cache
from audioset_data.segments.table import Segments

from .test_cache_damage import MIDS, _build, _clip, _writer


def _add(writer, indices):
    for i in indices:
        ytid, start, pcm, target = _clip(i)
        writer.add(clip_key(ytid, start), ytid, start, start + 10, pcm, len(pcm), target)


def test_order_is_the_lists_and_compaction_never_changes_it(tmp_path):
    folder = tmp_path / "c"
    manifest, writer = _writer(folder, 10, batch_size=2, shard_size=100)
    _add(writer, reversed(range(10)))  # arrival order differs from the list's
    writer.flush()
    before = open_cache(folder=folder).keys()
    writer.close()  # compacts every batch into one shard
    manifest.close()
    after = open_cache(folder=folder)
    assert before == after.keys() == [clip_key(*_clip(i)[:2]) for i in range(10)]
    assert after.position(before[7]) == 7
    assert list(after.positions([before[3], before[0]])) == [3, 0]
    assert after.key(-1) == before[-1]
    with pytest.raises(KeyError, match="not in this cache"):
        after.positions(["dmg99999999_0"])
    with pytest.raises(KeyError, match="not a segment key"):
        after.position("nonsense")


def test_batch_read_equals_item_reads_in_any_order(tmp_path):
    folder = tmp_path / "c"
    _build(folder, 11, batch_size=3, shard_size=4)
    cache = open_cache(folder=folder)
    want = [10, 0, 5, 5, 3, -1, 7]
    batch = cache.read(want)
    assert batch["waveform"].shape == (7, 1000) and batch["waveform"].dtype == np.int16
    for j, p in enumerate(want):
        item = cache[p]
        assert np.array_equal(batch["waveform"][j], item["waveform"])
        assert np.array_equal(batch["target"][j], item["target"])
        assert batch["length"][j] == item["length"]
    with pytest.raises(IndexError):
        cache.read([11])
    buffer = np.full((10, 1000), 7, dtype=np.int16)
    again = cache.read(want, out=buffer)
    assert np.shares_memory(again["waveform"], buffer)
    assert np.array_equal(buffer[:7], batch["waveform"]) and (buffer[7:] == 7).all()
    with pytest.raises(ValueError, match="int16"):
        cache.read(want, out=np.zeros((7, 1000), dtype=np.float32))


def test_targets_are_sparse_and_aligned_with_the_label_index(tmp_path):
    folder = tmp_path / "c"
    _build(folder, 9)
    cache = open_cache(folder=folder)
    t = cache.targets()
    assert sp.issparse(t) and t.shape == (9, len(MIDS)) and t.dtype == bool
    dense = np.stack([cache[i]["target"] for i in range(9)])
    assert np.array_equal(t.toarray(), dense)


def test_reader_keeps_its_clips_while_a_download_compacts(tmp_path):
    folder = tmp_path / "c"
    manifest, writer = _writer(folder, 8, batch_size=2, shard_size=100)
    _add(writer, range(6))
    cache = open_cache(folder=folder)  # references three batch files
    assert len(cache) == 6
    writer.close()  # the batches are compacted into a shard and deleted
    _add_more = _writer  # a later run adds clips; the open reader keeps its snapshot
    manifest.close()
    manifest, writer = _add_more(folder, 8, batch_size=2, shard_size=100)
    _add(writer, [6, 7])
    writer.close()
    manifest.close()
    assert len(cache) == 6
    for j in range(6):
        assert cache[j]["key"] == clip_key(*_clip(j)[:2])
        assert np.array_equal(cache[j]["waveform"], _clip(j)[2])
    assert len(open_cache(folder=folder)) == 8


def test_index_cache_follows_the_manifest(tmp_path):
    folder = tmp_path / "c"
    manifest, writer = _writer(folder, 6, batch_size=2, shard_size=100)
    _add(writer, range(4))
    assert len(open_cache(folder=folder)) == 4
    assert (folder / ".manifest.sqlite.index.npz").is_file()
    _add(writer, [4, 5])
    assert len(open_cache(folder=folder)) == 6  # generation changed: rebuilt, not stale
    writer.close()
    manifest.close()
    assert open_cache(folder=folder).keys() == [clip_key(*_clip(i)[:2]) for i in range(6)]


def _read_in_child(cache: AudioSetCache) -> list[int]:
    return [int(np.argmax(cache[i]["waveform"])) for i in range(len(cache))]


def test_pickles_for_spawned_workers(tmp_path, monkeypatch):
    # the spawned child imports this module by name to find _read_in_child: give it the repo
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    folder = tmp_path / "c"
    _build(folder, 5)
    cache = open_cache(folder=folder)
    cache[0]  # open a handle first: it must not travel
    copy = pickle.loads(pickle.dumps(cache))
    assert copy.keys() == cache.keys()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        peaks = pool.apply(_read_in_child, (cache,))
    assert peaks == [(37 * i) % 1000 for i in range(5)]


def test_freshly_parsed_segments_pickle(shared_data, label_index):
    seg = Segments.from_file(shared_data / "segments" / "eval_segments.csv",
                             label_index=label_index)
    copy = pickle.loads(pickle.dumps(seg))
    assert len(copy) == len(seg) and np.array_equal(copy.lines, seg.lines)


@pytest.mark.parametrize("fmt", ["flac", "opus"])
def test_compact_formats_decode_in_process_with_clicks_in_place(tmp_path, fmt, monkeypatch):
    from audioset_data.audio import memory as audio
    from audioset_data.cache import codec
    from audioset_data.cache.store import CacheWriter, open_manifest

    sr, n = 16000, 16000
    folder = tmp_path / fmt
    manifest = open_manifest(folder, fmt=fmt, sample_rate=sr, clip_samples=n, label_mids=MIDS)
    clicks = {0: [1200, 7001], 1: [333, 15000]}
    rows = [(clip_key(f"fmt{i:08d}", 0.0), f"fmt{i:08d}", 0.0, 1.0, MIDS[i]) for i in clicks]
    manifest.add_segments(rows)
    writer = CacheWriter(folder, manifest, fmt=fmt, sample_rate=sr, clip_samples=n,
                         label_mids=MIDS, batch_size=1, shard_size=10)
    for (key, ytid, *_), where in zip(rows, clicks.values(), strict=True):
        pcm = np.zeros(n - 1000, dtype=np.int16)  # a clip shorter than the slot
        pcm[where[0]] = 25000
        if where[1] < len(pcm):
            pcm[where[1]] = 25000
        target = np.zeros(len(MIDS), dtype=bool)
        writer.add(key, ytid, 0.0, 1.0, codec.encode_clip(pcm, sr, fmt), len(pcm), target)
    writer.close()
    manifest.close()

    def no_subprocess(*a, **k):
        raise AssertionError("a compact clip was decoded by an ffmpeg process")

    monkeypatch.setattr(audio, "decode_audio", no_subprocess)
    cache = open_cache(folder=folder)
    batch = cache.read([1, 0])
    for j, i in enumerate([1, 0]):
        item = cache[i]
        assert item["length"] == n - 1000 and item["waveform"].shape == (n,)
        assert not item["waveform"][n - 1000:].any()
        assert np.array_equal(batch["waveform"][j], item["waveform"])
        w = np.abs(item["waveform"].astype(np.int32))
        for c in clicks[i]:
            if c < n - 1000:
                peak = c - 64 + int(np.argmax(w[c - 64 : c + 64]))
                assert abs(peak - c) <= (0 if fmt == "flac" else 32)


def test_open_racing_a_compaction_loses_nothing(tmp_path, monkeypatch):
    """Files compacted away between the manifest snapshot and the file checks are not lost."""
    from audioset_data.cache import reader

    folder = tmp_path / "c"
    manifest, writer = _writer(folder, 6, batch_size=2, shard_size=100)
    _add(writer, range(6))
    original = reader._load_index
    calls = []

    def load_then_compact(*args):
        index = original(*args)
        if not calls:
            writer.close()  # the download compacts right after the reader's snapshot
        calls.append(1)
        return index

    monkeypatch.setattr(reader, "_load_index", load_then_compact)
    cache = open_cache(folder=folder)
    manifest.close()
    assert len(cache) == 6 and cache.unavailable.empty
    assert [cache[i]["key"] for i in range(6)] == [clip_key(*_clip(i)[:2]) for i in range(6)]
