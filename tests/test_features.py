"""The embeddings release: TFRecord reading with every CRC checked, the streamed import into
memory-mapped stores, the anomaly counts, and coverage against the real balanced list.

Fixtures are written by the room's own writer; the real balanced tar comes from ../shared/data.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from audioset_data.cli import main
from audioset_data.errors import ConfigError
from audioset_data.features import (
    CorruptRecordError,
    EmbeddingStore,
    FeatureRecord,
    FeaturesError,
    FeatureStoreNotFoundError,
    TruncatedRecordError,
    decode_record,
    dequantize,
    encode_record,
    import_features,
    iter_payloads,
    list_stores,
    open_store,
    quantize,
    read_feature_file,
    segment_keys,
    write_feature_file,
    write_release,
    write_release_tar,
)
from audioset_data.features.tfrecord import frame, masked_crc32c
from audioset_data.segments import Segments

BAL_TAR = "embeddings/audioset_v1_embeddings_bal_train.tar.gz"
ARRAYS = ("keys", "ids", "starts_ms", "ends_ms", "labels_indptr", "labels_indices", "frames",
          "embeddings")


def _records(n: int, seed: int = 0, prefix: str = "") -> list[FeatureRecord]:
    """``n`` records with distinct ids (several sharing a two-letter prefix), 10 frames."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        vid = (prefix + f"{'ab' if i % 2 else 'cd'}{seed:03d}x{i:05d}")[:11]
        emb = rng.integers(0, 256, (10, 128), dtype=np.uint8)
        out.append(FeatureRecord(vid, 10.0 * (i % 3), 10.0 * (i % 3) + 10.0,
                                 tuple(sorted({int(x) for x in rng.integers(0, 527, 2)})), emb))
    return out


def _import(path: Path, root: Path, **kw) -> object:
    kw.setdefault("coverage", False)
    return import_features(path, root=root, progress=False, **kw)


def _no_temp_folders(root: Path) -> bool:
    folder = root / "features"
    return not folder.exists() or not [p for p in folder.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------- real release
@pytest.fixture(scope="module")
def real_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """The real balanced tar imported once, with coverage against the real balanced list."""
    root = tmp_path_factory.mktemp("features_real")
    mp = pytest.MonkeyPatch()
    mp.setenv("AUDIOSET_CSV_BASE_URL", str(shared_data / "segments"))
    try:
        t0 = time.perf_counter()
        report = import_features(shared_data / BAL_TAR, root=root, progress=False)
        elapsed = time.perf_counter() - t0
    finally:
        mp.undo()
    return report, open_store("balanced", root=root), elapsed


def test_real_balanced_tar(real_store, shared_data: Path, label_index):
    report, store, elapsed = real_store
    rep = report.splits["balanced"]
    assert (rep.records, rep.stored, rep.files) == (22160, 22160, 4070)
    assert (rep.frames_short, rep.frames_zero, rep.duplicates, rep.bad_labels) == (378, 0, 0, 0)
    assert len(store) == 22160 and store.embeddings.shape == (22160, 10, 128)
    assert int((store.frames < 10).sum()) == 378 and store.frames.min() >= 1
    assert report.source["sha256"] == (
        "24933b90f35fe9dda87cffed591c3b52b8d48d211dce60b6b049e7616f5c87fa")
    assert store.meta["source"]["size"] == 27478005
    # every key equals a row of the official list, and the label sets are the same
    seg = Segments.from_file(shared_data / "segments" / "balanced_train_segments.csv",
                             label_index=label_index)
    keys = segment_keys(seg.ytids, seg.start)
    assert sorted(keys.tolist()) == store.key_bytes.tolist()
    pos = store.index_of(keys)
    assert (pos >= 0).all()
    assert (store.targets()[pos] != seg.label_matrix).nnz == 0
    cov = rep.coverage
    assert (cov.listed, cov.present, cov.missing, cov.extra, cov.label_mismatches) == (
        22160, 22160, 0, 0, 0)
    table = (store.folder / "coverage.csv").read_text().splitlines()
    assert table[0] == "mid,index,display_name,listed,present,missing" and len(table) == 528
    assert store.meta["coverage"]["present"] == 22160
    assert elapsed < 30  # the budget is 10 s (benchmarks/results/features.md); CI is slower


def test_real_padding_and_mask(real_store):
    _, store, _ = real_store
    short = np.flatnonzero(store.frames < 10)
    i = int(short[0])
    k = int(store.frames[i])
    assert not store.embeddings[i, k:].any()
    assert store.mask()[i].tolist() == [True] * k + [False] * (10 - k)
    x = store.dequantized(i)
    assert x.dtype == np.float32 and (x[k:] == 0).all()
    assert np.array_equal(x[:k], dequantize(store.embeddings[i, :k]))
    assert store.dequantized(short[:3]).shape == (3, 10, 128)


def test_real_records_reframe_byte_for_byte(shared_data: Path):
    """Our framing (length, masked CRCs) rebuilds a real file exactly."""
    with tarfile.open(shared_data / BAL_TAR, "r|*") as tar:
        for member in tar:
            if member.isfile():
                data = tar.extractfile(member).read()
                break
    payloads = list(iter_payloads(io.BytesIO(data), member.name))
    assert b"".join(frame(p) for p in payloads) == data
    rec = decode_record(payloads[0])
    assert len(rec.video_id) == 11 and rec.embedding.shape[1] == 128


# ----------------------------------------------------------------------------- format
def test_quantisation_inverse():
    q = np.arange(256, dtype=np.uint8)
    x = dequantize(q)
    assert x[0] == -2.0 and x[-1] == 2.0 and x.dtype == np.float32
    assert np.array_equal(quantize(x), q)
    assert quantize([-5.0, 5.0]).tolist() == [0, 255]


def test_record_round_trip(tmp_path: Path):
    recs = _records(5) + [FeatureRecord("zzzzzzzzzzz", 1.5, 4.5, (), np.zeros((0, 128), np.uint8))]
    path = write_feature_file(tmp_path / "x.tfrecord", recs)
    back = read_feature_file(path)
    for a, b in zip(recs, back, strict=True):
        assert (a.video_id, a.start, a.end, a.labels) == (b.video_id, b.start, b.end, b.labels)
        assert np.array_equal(a.embedding, b.embedding)
    assert decode_record(encode_record(recs[0])).video_id == recs[0].video_id
    assert masked_crc32c(b"") == 0xA282EAD8


# ----------------------------------------------------------------------------- damage
def _one_file(tmp_path: Path, n: int = 3) -> Path:
    folder = tmp_path / "rel" / "bal_train"
    return write_feature_file(folder / "Zz.tfrecord", _records(n))


def _offsets(data: bytes) -> list[int]:
    out, off = [], 0
    while off < len(data):
        out.append(off)
        off += 16 + int.from_bytes(data[off:off + 8], "little")
    return out


def test_flipped_data_byte_names_file_and_record(tmp_path: Path, data_root: Path):
    path = _one_file(tmp_path)
    data = bytearray(path.read_bytes())
    data[_offsets(bytes(data))[1] + 40] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptRecordError, match=r"Zz\.tfrecord: record 1: the CRC of the data"
                       ) as err:
        _import(path.parent, data_root)
    assert err.value.record == 1 and err.value.path.endswith("Zz.tfrecord")
    assert isinstance(err.value, ValueError)
    assert _no_temp_folders(data_root) and not (data_root / "features" / "balanced").exists()


def test_wrong_length_crc(tmp_path: Path, data_root: Path):
    path = _one_file(tmp_path)
    data = bytearray(path.read_bytes())
    data[_offsets(bytes(data))[2] + 9] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptRecordError, match="record 2: the CRC of the length") as err:
        _import(path.parent, data_root)
    assert err.value.record == 2


def test_truncated_file(tmp_path: Path, data_root: Path):
    path = _one_file(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    with pytest.raises(TruncatedRecordError, match=r"Zz\.tfrecord: record 2: the file ends"):
        _import(path.parent, data_root)
    path.write_bytes(data[:_offsets(data)[1] + 5])  # inside the header of record 1
    with pytest.raises(TruncatedRecordError, match="record 1: the file ends inside the record "
                                                   "header"):
        _import(path.parent, data_root)


def test_corrupt_record_inside_tar_names_archive_and_member(tmp_path: Path, data_root: Path):
    path = _one_file(tmp_path)
    data = bytearray(path.read_bytes())
    data[_offsets(bytes(data))[0] + 30] ^= 0x10
    path.write_bytes(bytes(data))
    tar = write_release_tar(tmp_path / "rel", tmp_path / "rel.tar.gz")
    with pytest.raises(CorruptRecordError, match=r"rel\.tar\.gz:bal_train/Zz\.tfrecord: "
                                                 r"record 0"):
        _import(tar, data_root)


def test_truncated_tar_gz(tmp_path: Path, data_root: Path):
    write_release(tmp_path / "rel", _records(40), split="eval")
    tar = write_release_tar(tmp_path / "rel", tmp_path / "rel.tar.gz")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    with pytest.raises(FeaturesError, match="cut.tar.gz"):
        _import(cut, data_root)
    assert _no_temp_folders(data_root)


# ----------------------------------------------------------------------------- anomalies
def test_zero_frames_bad_labels_and_duplicates_are_counted(tmp_path: Path, data_root: Path):
    folder = tmp_path / "bal_train"
    recs = _records(6)
    zero = FeatureRecord("zero0000000", 0.0, 10.0, (3,), np.zeros((0, 128), np.uint8))
    bad = FeatureRecord("badlabel000", 20.0, 30.0, (5, 600, -1), np.ones((4, 128), np.uint8))
    dup_first = recs[0]
    dup_second = recs[0]._replace(embedding=np.full((10, 128), 7, np.uint8), labels=(1,))
    write_feature_file(folder / "a.tfrecord", [*recs[1:3], zero, dup_first])
    write_feature_file(folder / "b.tfrecord", [dup_second, *recs[3:], bad])
    rep = _import(folder, data_root).splits["balanced"]
    assert (rep.records, rep.stored, rep.duplicates) == (9, 8, 1)
    assert (rep.frames_zero, rep.frames_short, rep.bad_labels, rep.records_with_bad_labels) == (
        1, 1, 2, 1)
    store = open_store("balanced", root=data_root)
    i = int(store.index_of("zero0000000_0")[0])
    assert store.frames[i] == 0 and store.labels(i).tolist() == [3]
    assert not store.mask()[i].any()
    j = int(store.index_of("badlabel000_20000")[0])
    assert store.labels(j).tolist() == [5] and store.frames[j] == 4
    k = int(store.index_of(f"{recs[0].video_id}_0")[0])
    assert np.array_equal(store.embeddings[k], recs[0].embedding)  # the first one is kept
    assert store.counts()["duplicates"] == 1
    anomalies = (store.folder / "anomalies.csv").read_text()
    assert "zero_frames,zero0000000_0,a.tfrecord,2" in anomalies
    assert "bad_label,badlabel000_20000,b.tfrecord,4" in anomalies and "600" in anomalies
    assert f"duplicate,{recs[0].video_id}_0,b.tfrecord,0" in anomalies
    assert list(store.key_bytes) == sorted(store.key_bytes)


# ----------------------------------------------------------------------------- inputs
def _same_store(a: EmbeddingStore, b: EmbeddingStore) -> None:
    for name in ARRAYS:
        x, y = np.asarray(a._a[name]), np.asarray(b._a[name])
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert a.counts() == b.counts()


def test_tar_and_folder_give_identical_stores(tmp_path: Path):
    recs = _records(30)
    dup = recs[4]._replace(embedding=np.zeros((10, 128), np.uint8))
    write_release(tmp_path / "rel", [*recs, dup], split="balanced")
    write_release(tmp_path / "rel", _records(8, seed=1), split="eval")
    tar = write_release_tar(tmp_path / "rel", tmp_path / "rel.tar.gz")
    shuffled = tmp_path / "shuffled.tar"  # members in another order: the same store
    with tarfile.open(shuffled, "w") as out:
        for p in sorted((tmp_path / "rel").rglob("*.tfrecord"), reverse=True):
            out.add(p, arcname=p.relative_to(tmp_path / "rel").as_posix())
    roots = [tmp_path / n for n in ("r_folder", "r_tar", "r_shuffled", "r_split_folder")]
    reports = [_import(tmp_path / "rel", roots[0]), _import(tar, roots[1]),
               _import(shuffled, roots[2])]
    assert all(set(r.splits) == {"balanced", "eval"} for r in reports)
    _import(tmp_path / "rel" / "audioset_v1_embeddings" / "bal_train", roots[3])
    for split in ("balanced", "eval"):
        stores = [open_store(split, root=r) for r in roots[:3]]
        _same_store(stores[0], stores[1])
        _same_store(stores[0], stores[2])
    _same_store(open_store("balanced", root=roots[0]), open_store("balanced", root=roots[3]))
    assert reports[0].splits["balanced"].duplicates == 1
    assert reports[1].source["kind"] == "tar" and len(reports[1].source["sha256"]) == 64


def test_split_of_flat_folder(tmp_path: Path, data_root: Path):
    folder = tmp_path / "loose"
    write_feature_file(folder / "x.tfrecord", _records(4))
    with pytest.raises(ConfigError, match="--split"):
        _import(folder, data_root)
    rep = _import(folder, data_root, split="Eval")
    assert set(rep.splits) == {"eval"} and len(open_store("eval", root=data_root)) == 4


def test_forced_split_selects_from_release_folders(tmp_path: Path, data_root: Path):
    write_release(tmp_path / "rel", _records(5), split="balanced")
    write_release(tmp_path / "rel", _records(3, seed=2), split="unbalanced")
    rep = _import(tmp_path / "rel", data_root, split="unbal_train")
    assert set(rep.splits) == {"unbalanced"} and rep.splits["unbalanced"].stored == 3
    assert sum(rep.skipped_files.values()) == 2
    with pytest.raises(FeatureStoreNotFoundError, match="import"):
        open_store("balanced", root=data_root)


def test_forced_split_names_the_folder_given(tmp_path: Path, data_root: Path):
    # the files directly in the folder named on the command line take the split named with
    # it, even when the folder carries another release name
    folder = write_release(tmp_path / "rel", _records(4), split="balanced")
    assert folder.name == "bal_train"
    rep = _import(folder, data_root, split="eval")
    assert set(rep.splits) == {"eval"} and len(open_store("eval", root=data_root)) == 4


# ----------------------------------------------------------------------------- the store
def test_reimport_replaces_atomically(tmp_path: Path, data_root: Path):
    first = tmp_path / "one" / "eval"
    write_feature_file(first / "a.tfrecord", _records(6))
    _import(first, data_root)
    old = open_store("eval", root=data_root)
    old_emb = old.embeddings  # a reader holding the old maps keeps reading them
    snapshot = np.array(old_emb)
    second = tmp_path / "two" / "eval"
    write_feature_file(second / "a.tfrecord", _records(9, seed=5))
    _import(second, data_root)
    assert len(open_store("eval", root=data_root)) == 9
    assert np.array_equal(np.asarray(old_emb), snapshot)
    assert _no_temp_folders(data_root)
    # a failing re-import leaves the published store as it was
    broken = tmp_path / "three" / "eval"
    path = write_feature_file(broken / "a.tfrecord", _records(3))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(TruncatedRecordError):
        _import(broken, data_root)
    assert len(open_store("eval", root=data_root)) == 9
    assert _no_temp_folders(data_root)


def test_store_opens_memory_mapped(tmp_path: Path, data_root: Path):
    write_release(tmp_path / "rel", _records(20), split="eval")
    _import(tmp_path / "rel", data_root)
    t0 = time.perf_counter()
    store = open_store("eval", root=data_root)
    assert time.perf_counter() - t0 < 0.1
    assert isinstance(store.embeddings, np.memmap) and not store.embeddings.flags.writeable
    assert store.mask().shape == (20, 10) and store.mask().all()
    y = store.targets()
    assert y.shape == (20, 527) and y.dtype == bool
    assert store.keys[0] == store.key_bytes[0].decode() and store.ids.dtype.kind == "U"
    assert (store.starts_ms % 10000 == 0).all() and (store.ends_ms - store.starts_ms == 10000
                                                     ).all()
    assert store.index_of(["nope_0"]).tolist() == [-1]
    meta = json.loads((store.folder / "meta.json").read_text())
    assert meta["format_version"] == 1 and meta["source"]["size"] > 0
    assert "no checksum" in meta["source"]["note"]
    assert [s.split for s in list_stores(data_root)] == ["eval"]


def test_coverage_skipped_when_the_list_cannot_load(tmp_path: Path, data_root: Path,
                                                    monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AUDIOSET_CSV_BASE_URL", str(tmp_path / "empty_mirror"))
    write_release(tmp_path / "rel", _records(4), split="eval")
    rep = _import(tmp_path / "rel", data_root, coverage=True).splits["eval"]
    assert rep.coverage is None and "could not be loaded" in rep.coverage_skipped
    store = open_store("eval", root=data_root)
    assert store.meta["coverage_skipped"] and not (store.folder / "coverage.csv").exists()


# ----------------------------------------------------------------------------- fetch, CLI
def test_fetch_resumes_and_records_sha256(tmp_path: Path, data_root: Path, http_server,
                                          monkeypatch: pytest.MonkeyPatch):
    import hashlib

    write_release(tmp_path / "rel", _records(12), split="eval")
    tar = write_release_tar(tmp_path / "rel", tmp_path / "features.tar.gz")
    body = tar.read_bytes()
    url = http_server.add("features/features.tar.gz", tar)
    part = data_root / "remote" / ".features.tar.gz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(body[:1000])  # an interrupted earlier download
    monkeypatch.setenv("AUDIOSET_FEATURES_URL", http_server.url("features/"))
    rep = import_features(None, root=data_root, progress=False, coverage=False)
    assert any(h.get("Range") == "bytes=1000-" for _, h in http_server.request_log)
    assert rep.source["sha256"] == hashlib.sha256(body).hexdigest()
    meta = json.loads((data_root / "remote" / "features.tar.gz.meta.json").read_text())
    assert meta["sha256"] == rep.source["sha256"] and meta["url"] == url
    assert len(open_store("eval", root=data_root)) == 12


def test_cli_import_and_info(tmp_path: Path, data_root: Path, capsys):
    write_release(tmp_path / "rel", _records(7), split="balanced")
    tar = write_release_tar(tmp_path / "rel", tmp_path / "rel.tar")
    assert main(["features", "import", str(tar), "--root", str(data_root), "--no-progress",
                 "--no-coverage"]) == 0
    out = capsys.readouterr().out
    assert "balanced: 7 segments stored" in out and "duplicate keys: 0" in out
    assert main(["features", "info", "--root", str(data_root)]) == 0
    assert "balanced: 7 segments" in capsys.readouterr().out
    assert main(["features", "import", str(tmp_path / "missing"), "--root",
                 str(data_root)]) == 2


def test_empty_file_gives_an_empty_store(tmp_path: Path, data_root: Path):
    folder = tmp_path / "eval"
    folder.mkdir()
    (folder / "00.tfrecord").write_bytes(b"")
    rep = _import(folder, data_root).splits["eval"]
    assert (rep.files, rep.records, rep.stored) == (1, 0, 0)
    store = open_store("eval", root=data_root)
    assert len(store) == 0 and store.embeddings.shape == (0, 10, 128)
    assert store.targets().shape == (0, 527) and store.index_of(["x_0"]).tolist() == [-1]
