"""Caches damaged on purpose: nothing lost, nothing silently wrong."""

from __future__ import annotations

import json
import os
import sqlite3

import h5py
import numpy as np
import pytest

from audioset_data.cache.manifest import Manifest, clip_key
from audioset_data.cache.reader import open_cache
from audioset_data.cache.repair import repair_cache, verify_cache
from audioset_data.cache.store import CacheWriter, open_manifest
from audioset_data.cli import main
from audioset_data.errors import CacheError

MIDS = ["/m/a", "/m/b", "/m/c"]
SR = 100
CLIP = 1000


def _clip(i: int) -> tuple[str, float, np.ndarray, np.ndarray]:
    """Clip i: a distinct id, start, waveform (a click at a place unique to i) and labels."""
    ytid = f"dmg{i:08d}"
    pcm = np.zeros(CLIP, dtype=np.int16)
    pcm[(37 * i) % CLIP] = 20000 + i
    target = np.zeros(len(MIDS), dtype=bool)
    target[i % 3] = True
    target[(i + 1) % 3] = i % 2 == 0
    return ytid, float(i * 10), pcm, target


def _rows(n):
    out = []
    for i in range(n):
        ytid, start, _, target = _clip(i)
        labels = ",".join(m for m, t in zip(MIDS, target, strict=True) if t)
        out.append((clip_key(ytid, start), ytid, start, start + 10, labels))
    return out


def _writer(folder, n, **kw):
    manifest = open_manifest(folder, fmt="pcm16", sample_rate=SR, clip_samples=CLIP,
                             label_mids=MIDS)
    manifest.add_segments(_rows(n))
    kw.setdefault("batch_size", 2)
    kw.setdefault("shard_size", 4)
    writer = CacheWriter(folder, manifest, fmt="pcm16", sample_rate=SR, clip_samples=CLIP,
                         label_mids=MIDS, **kw)
    return manifest, writer


def _build(folder, n=12, **kw):
    manifest, writer = _writer(folder, n, **kw)
    for i in range(n):
        ytid, start, pcm, target = _clip(i)
        writer.add(clip_key(ytid, start), ytid, start, start + 10, pcm, len(pcm), target)
    writer.close()
    manifest.close()


def _assert_true_to_source(cache):
    """Every item is exactly the clip its key names."""
    for j in range(len(cache)):
        item = cache[j]
        i = int(item["ytid"][3:])
        ytid, start, pcm, target = _clip(i)
        assert item["key"] == clip_key(ytid, start)
        assert np.array_equal(item["waveform"], pcm)
        assert np.array_equal(item["target"], target)


def _flip_byte(path, dataset, chunk_index, where=0.5):
    """Flip one byte inside one stored chunk of ``dataset`` (as a disk error would)."""
    with h5py.File(path, "r") as h5:
        info = h5[dataset].id.get_chunk_info_by_coord(chunk_index)
    offset = info.byte_offset + int(info.size * where)
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0x5A]))


def test_lost_manifest_is_rebuilt_from_the_shards_and_nothing_is_deleted(tmp_path):
    folder = tmp_path / "c"
    _build(folder, 12)
    shards = sorted(p.name for p in folder.glob("*.h5"))
    sizes = {p.name: p.stat().st_size for p in folder.glob("*.h5")}
    for p in folder.glob("manifest.sqlite*"):
        p.unlink()
    # a re-run of the writer (what a re-run of the download does) adopts every clip
    manifest, writer = _writer(folder, 12)
    assert sorted(p.name for p in folder.glob("*.h5")) == shards
    assert {p.name: p.stat().st_size for p in folder.glob("*.h5")} == sizes
    assert manifest.counts() == {"pending": 0, "ok": 12, "failed": 0}
    assert sum(writer.last_recovery.adopted.values()) == 12
    manifest.close()
    _assert_true_to_source(open_cache(folder=folder))


def test_lost_manifest_rebuilt_by_repair_without_a_download(tmp_path, capsys):
    folder = tmp_path / "cache" / "c"
    _build(folder, 9)
    for p in folder.glob("manifest.sqlite*"):
        p.unlink()
    with pytest.raises(CacheError, match="--repair"):
        open_cache(folder=folder)
    assert main(["cache", "--root", str(tmp_path), "--split", "c", "--repair"]) == 0
    assert "adopted 9 clips" in capsys.readouterr().out
    cache = open_cache(folder=folder)
    assert len(cache) == 9 and cache.label_mids == MIDS and cache.sample_rate == SR
    _assert_true_to_source(cache)


def test_unreadable_manifest_is_set_aside_and_rebuilt(tmp_path):
    folder = tmp_path / "c"
    _build(folder, 8)
    (folder / "manifest.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(CacheError, match="cannot be read"):
        _writer(folder, 8)
    report = repair_cache(folder)
    assert sum(report.adopted.values()) == 8
    assert (folder / "manifest.sqlite.damaged").exists()
    _assert_true_to_source(open_cache(folder=folder))


def test_empty_manifest_file_adopts_instead_of_deleting(tmp_path):
    folder = tmp_path / "c"
    _build(folder, 8)
    for p in folder.glob("manifest.sqlite*"):
        p.unlink()
    (folder / "manifest.sqlite").write_bytes(b"")
    manifest, _ = _writer(folder, 8)
    assert manifest.counts()["ok"] == 8
    manifest.close()


def test_batch_published_before_its_manifest_commit_is_adopted(tmp_path):
    """A kill between publishing a batch and committing it no longer loses its clips."""
    folder = tmp_path / "c"
    manifest, writer = _writer(folder, 6, batch_size=3, shard_size=100)
    for i in range(3):
        ytid, start, pcm, target = _clip(i)
        writer.add(clip_key(ytid, start), ytid, start, start + 10, pcm, len(pcm), target)
    # simulate the kill: forget the commit of the batch that was just published
    conn = sqlite3.connect(folder / "manifest.sqlite")
    conn.execute("DELETE FROM files")
    conn.execute("UPDATE clips SET status='pending', file=NULL, row=NULL")
    conn.commit()
    conn.close()
    manifest.close()
    manifest, writer = _writer(folder, 6, batch_size=3, shard_size=100)
    assert manifest.counts()["ok"] == 3
    manifest.close()


def test_leftovers_of_a_compaction_are_removed_only_when_their_clips_live_elsewhere(tmp_path):
    folder = tmp_path / "c"
    manifest, writer = _writer(folder, 4, batch_size=2, shard_size=100)
    for i in range(4):
        ytid, start, pcm, target = _clip(i)
        writer.add(clip_key(ytid, start), ytid, start, start + 10, pcm, len(pcm), target)
    batches = sorted(p.name for p in folder.glob("batch-*.h5"))
    keep = {p: (folder / p).read_bytes() for p in batches}
    writer.close()  # compacts both batches into a shard and removes them
    manifest.close()
    for name, data in keep.items():  # as if killed after the manifest switched, before unlink
        (folder / name).write_bytes(data)
    manifest, writer = _writer(folder, 4)
    assert not any((folder / b).exists() for b in batches)
    assert writer.last_recovery.removed == batches
    assert manifest.counts()["ok"] == 4
    manifest.close()


def test_flipped_waveform_byte_fails_the_read_and_verify_finds_it(tmp_path, capsys):
    folder = tmp_path / "cache" / "c"
    _build(folder, 8)
    cache = open_cache(folder=folder)
    name = "shard-00000.h5"
    with h5py.File(folder / name) as h5:
        victim = clip_key(h5["ytid"][2].decode(), float(h5["start"][2]))
    _flip_byte(folder / name, "waveform", (2, 0))
    cache = open_cache(folder=folder)
    pos = cache.position(victim)
    with pytest.raises(CacheError, match=f"{name}.*row 2.*{victim}"):
        cache[pos]
    with pytest.raises(CacheError):
        cache.read([pos])
    others = [j for j in range(len(cache)) if j != pos]
    assert len(cache.read(others)["waveform"]) == 7  # the rest still reads

    report = verify_cache(folder, progress=False)
    assert not report.ok
    assert list(report.problems["key"]) == [victim]
    assert main(["cache", "--root", str(tmp_path), "--split", "c", "--verify",
                 "--no-progress"]) == 1
    assert "audio fails its checksum" in capsys.readouterr().out
    # repair with verify sends the damaged clip back to be fetched again
    assert main(["cache", "--root", str(tmp_path), "--split", "c", "--repair", "--verify",
                 "--no-progress"]) == 0
    with Manifest.open(folder / "manifest.sqlite", readonly=True) as m:
        table = m.table().set_index("key")
    assert table.loc[victim, "status"] == "pending"
    cache = open_cache(folder=folder)
    assert len(cache) == 7
    _assert_true_to_source(cache)


def test_flipped_target_byte_fails_the_read(tmp_path):
    folder = tmp_path / "c"
    _build(folder, 8)
    _flip_byte(folder / "shard-00000.h5", "target", (0, 0))
    cache = open_cache(folder=folder)
    with pytest.raises(CacheError, match="shard-00000.h5"):
        for j in range(len(cache)):
            cache[j]
    report = verify_cache(folder, progress=False)
    assert set(report.problems["problem"]) == {"labels fail their checksum"}
    assert len(report.problems) == 4  # the shard's rows share one label chunk


def test_swapped_shards_are_detected_on_read_and_repaired(tmp_path):
    folder = tmp_path / "c"
    _build(folder, 8)  # two shards of 4 clips
    a, b = folder / "shard-00000.h5", folder / "shard-00001.h5"
    tmp = folder / "swap"
    os.replace(a, tmp)
    os.replace(b, a)
    os.replace(tmp, b)
    cache = open_cache(folder=folder)  # sizes are equal: only the contents tell
    with pytest.raises(CacheError, match="swapped"):
        for j in range(len(cache)):
            cache[j]
    report = repair_cache(folder)
    assert report.repointed == 8
    _assert_true_to_source(open_cache(folder=folder))


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_truncated_or_missing_shard_the_rest_opens_and_a_rerun_refetches(tmp_path, damage):
    folder = tmp_path / "c"
    _build(folder, 12)
    victim = folder / "shard-00001.h5"
    if damage == "truncate":
        with open(victim, "r+b") as fh:
            fh.truncate(victim.stat().st_size // 2)
    else:
        victim.unlink()
    cache = open_cache(folder=folder)
    assert len(cache) == 8
    assert set(cache.unavailable["file"]) == {"shard-00001.h5"}
    assert len(cache.unavailable) == 4
    _assert_true_to_source(cache)
    # a re-run's writer sends the four clips back to pending; a damaged file is set aside
    manifest, writer = _writer(folder, 12)
    assert manifest.counts() == {"pending": 4, "ok": 8, "failed": 0}
    assert (folder / "shard-00001.h5.damaged").exists() == (damage == "truncate")
    manifest.close()


def test_row_past_the_end_of_a_file_is_reported_not_raised(tmp_path, capsys):
    folder = tmp_path / "cache" / "c"
    _build(folder, 8)
    conn = sqlite3.connect(folder / "manifest.sqlite")
    conn.execute("UPDATE clips SET row = 99 WHERE rowid = 1")
    conn.commit()
    conn.close()
    cache = open_cache(folder=folder)
    assert len(cache) == 7
    assert list(cache.unavailable["problem"]) == ["row past the end of its file"]
    assert main(["cache", "--root", str(tmp_path), "--split", "c"]) == 1
    assert "row past the end of its file: 1" in capsys.readouterr().out


def test_file_names_from_the_manifest_never_escape_the_folder(tmp_path):
    folder = tmp_path / "c"
    _build(folder, 4)
    conn = sqlite3.connect(folder / "manifest.sqlite")
    conn.execute("UPDATE files SET name = '../outside.h5'")
    conn.execute("UPDATE clips SET file = '../outside.h5' WHERE status = 'ok'")
    conn.commit()
    conn.close()
    cache = open_cache(folder=folder)
    assert len(cache) == 0
    assert cache.unavailable["problem"].str.contains("not a plain cache file name").all()


# -- issue 20: damage the quick check could not see, and an emptied clips table ---------------
def _zero_header(path, n=512):
    """Zero the first ``n`` bytes of a file in place (its size unchanged)."""
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.write(b"\0" * n)
    assert path.stat().st_size == size


def test_zeroed_shard_header_is_set_aside_and_its_clips_fetched_again(tmp_path, capsys):
    folder = tmp_path / "cache" / "c"
    _build(folder, 12)  # shards of 4 clips: shard-00000..00002
    victim = folder / "shard-00001.h5"
    _zero_header(victim)
    damaged = victim.read_bytes()
    # `audioset cache` counts only the clips that read
    assert main(["cache", "--root", str(tmp_path), "--split", "c"]) == 1
    out = capsys.readouterr().out
    assert "8 clips readable" in out
    assert "4 cached clips cannot be read" in out and "file signature not found" in out
    assert main(["cache", "--root", str(tmp_path), "--split", "c", "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["clips"] == 8 and summary["unavailable"] == 4
    # the next download's writer opens every file it relies on: the damaged one is set aside
    # (kept, never deleted) and its four clips go back to pending, to be fetched again
    manifest, writer = _writer(folder, 12)
    assert manifest.counts() == {"pending": 4, "ok": 8, "failed": 0}
    assert list(writer.last_recovery.set_aside) == ["shard-00001.h5"]
    assert "file signature not found" in writer.last_recovery.set_aside["shard-00001.h5"]
    assert (folder / "shard-00001.h5.damaged").read_bytes() == damaged
    pending = manifest.table().query("status == 'pending'")
    assert sorted(pending["key"]) == sorted(clip_key(*_clip(i)[:2]) for i in range(4, 8))
    for i in range(4, 8):  # fetched again
        ytid, start, pcm, target = _clip(i)
        writer.add(clip_key(ytid, start), ytid, start, start + 10, pcm, len(pcm), target)
    writer.close()
    manifest.close()
    cache = open_cache(folder=folder)
    assert cache.check_files() == 0 and len(cache) == 12
    _assert_true_to_source(cache)


def test_reader_check_files_leaves_out_clips_of_a_file_that_does_not_open(tmp_path):
    folder = tmp_path / "c"
    _build(folder, 8)
    _zero_header(folder / "shard-00000.h5")
    cache = open_cache(folder=folder)
    assert len(cache) == 8  # names and sizes look right
    assert cache.check_files() == 4 and len(cache) == 4
    assert set(cache.unavailable["file"]) == {"shard-00000.h5"}
    assert cache.unavailable["problem"].str.startswith("file unreadable").all()
    _assert_true_to_source(cache)


def test_emptied_clips_table_adopts_the_clips_the_shards_hold(tmp_path):
    folder = tmp_path / "c"
    _build(folder, 12)
    shards = {p.name: p.read_bytes() for p in folder.glob("*.h5")}
    conn = sqlite3.connect(folder / "manifest.sqlite")
    conn.execute("DELETE FROM clips")  # the table emptied, the file and its files table kept
    conn.commit()
    conn.close()
    # what a download does next: register the list, then reconcile in the writer
    manifest, writer = _writer(folder, 12)
    assert manifest.counts() == {"pending": 0, "ok": 12, "failed": 0}
    assert writer.last_recovery.repointed + sum(writer.last_recovery.adopted.values()) == 12
    assert {p.name: p.read_bytes() for p in folder.glob("*.h5")} == shards  # no orphan, no copy
    assert set(manifest.files()["name"]) == set(shards)
    manifest.close()
    _assert_true_to_source(open_cache(folder=folder))


@pytest.mark.parametrize("rebuilt", [False, True])
def test_clips_released_by_verify_are_not_adopted_again(tmp_path, rebuilt):
    folder = tmp_path / "c"
    _build(folder, 8)
    if rebuilt:  # clips adopted from the files, over rows registered (never attempted)
        for p in folder.glob("manifest.sqlite*"):
            p.unlink()
        manifest, _ = _writer(folder, 8)
        manifest.close()
    _flip_byte(folder / "shard-00000.h5", "waveform", (1, 0))
    report = verify_cache(folder, repair=True, progress=False)
    assert len(report.problems) == 1
    manifest, _ = _writer(folder, 8)
    assert manifest.counts() == {"pending": 1, "ok": 7, "failed": 0}
    manifest.close()
