"""Interop: exports to Hugging Face datasets and lhotse round-trip a small cache; a PANNs HDF5
copy imports into the cache without its placeholder rows; display names beside mids."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from audioset_data.cache.codec import decode_clip
from audioset_data.cache.manifest import clip_key
from audioset_data.cache.reader import AudioSetCache, cache_dir
from audioset_data.cli import main
from audioset_data.errors import CacheError, ConfigError, ExportError
from audioset_data.interop.panns import PLACEHOLDER, import_panns, parse_audio_name
from audioset_data.segments.labels import LabelIndex
from audioset_data.segments.table import Segments

from .loader_caches import MIDS, SR, build_cache

NAMES = [f"Sound {j}" for j in range(len(MIDS))]


@pytest.fixture
def small(tmp_path):
    """A 14-clip cache (some clips short, skewed labels) and what it holds, by key."""
    clips = build_cache(tmp_path / "cache", 14)
    return AudioSetCache(tmp_path / "cache"), {c.key: c for c in clips}


@pytest.fixture
def index():
    return LabelIndex(MIDS, NAMES)


def _decode(data: bytes, fmt: str, length: int) -> np.ndarray:
    if fmt == "flac":
        return decode_clip(data, "flac", sample_rate=SR, num_samples=length)
    with wave.open(io.BytesIO(data)) as w:
        assert w.getframerate() == SR and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


# -- Hugging Face datasets ---------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["flac", "wav"])
def test_hf_export_round_trips_clips_labels_and_lengths(small, index, tmp_path, fmt):
    datasets = pytest.importorskip("datasets")
    from audioset_data.interop import to_hf_dataset

    cache, clips = small
    ds = to_hf_dataset(cache, tmp_path / "hf", label_index=index, audio_format=fmt,
                       batch_size=4)
    assert len(ds) == len(cache) == len(clips)
    assert isinstance(ds.features["audio"], datasets.Audio)
    assert ds.features["audio"].sampling_rate == SR
    assert ds.features["labels"].feature.names == MIDS
    reopened = datasets.Dataset.from_file(str(tmp_path / "hf" / "data.arrow"))
    raw = reopened.cast_column("audio", datasets.Audio(decode=False))
    seen = []
    for row in raw:
        c = clips[row["key"]]
        seen.append(row["key"])
        assert (row["ytid"], row["start"], row["end"]) == (c.ytid, c.start, c.start + 10)
        assert row["length"] == c.length
        assert row["labels"] == np.flatnonzero(c.target).tolist()
        assert row["mids"] == [MIDS[i] for i in np.flatnonzero(c.target)]
        assert row["names"] == [NAMES[i] for i in np.flatnonzero(c.target)]
        pcm = _decode(row["audio"]["bytes"], fmt, row["length"])
        assert len(pcm) == c.length
        assert np.array_equal(pcm, c.pcm[: c.length])
    assert seen == cache.keys()
    assert any(c.length < 1000 for c in clips.values())  # short clips were exercised


def test_hf_export_of_chosen_positions_and_decoding_where_torchcodec_is_present(
        small, index, tmp_path):
    pytest.importorskip("datasets")
    from audioset_data.interop import to_hf_dataset

    cache, clips = small
    ds = to_hf_dataset(cache, tmp_path / "hf", label_index=index, positions=[5, 0, 11])
    assert ds["key"] == [cache.key(5), cache.key(0), cache.key(11)]
    with pytest.raises(ConfigError, match="overwrite"):
        to_hf_dataset(cache, tmp_path / "hf", label_index=index)
    again = to_hf_dataset(cache, tmp_path / "hf", positions=[1], overwrite=True)
    assert again["key"] == [cache.key(1)] and again["names"] == [[None] * len(again["mids"][0])]
    with pytest.raises(ConfigError, match="positions"):
        to_hf_dataset(cache, tmp_path / "other", positions=[14])
    try:
        import torchcodec  # noqa: F401
    except ImportError:
        return
    audio = ds[0]["audio"]
    c = clips[cache.key(5)]
    assert audio["sampling_rate"] == SR
    assert np.allclose(np.asarray(audio["array"]).ravel() * 32768, c.pcm[: c.length], atol=1)


# -- lhotse ------------------------------------------------------------------------------------
def test_lhotse_export_round_trips_clips_labels_and_lengths(small, index, tmp_path):
    lhotse = pytest.importorskip("lhotse")
    from audioset_data.interop import to_lhotse

    cache, clips = small
    recs, sups = to_lhotse(cache, tmp_path / "lh", label_index=index, batch_size=4)
    recs = lhotse.RecordingSet.from_recordings(list(recs))
    sups = lhotse.SupervisionSet.from_segments(list(sups))
    assert len(recs) == len(sups) == len(clips)
    for key, c in clips.items():
        rec = recs[key]
        assert rec.sampling_rate == SR and rec.num_samples == c.length
        assert rec.duration == pytest.approx(c.length / SR)
        audio = rec.load_audio()
        assert audio.shape == (1, c.length)
        assert np.array_equal(np.round(audio[0] * 32768).astype(np.int16), c.pcm[: c.length])
        sup = sups[key]
        assert sup.recording_id == key and sup.start == 0
        assert sup.duration == pytest.approx(c.length / SR)
        assert sup.custom["mids"] == [MIDS[i] for i in np.flatnonzero(c.target)]
        assert sup.custom["names"] == [NAMES[i] for i in np.flatnonzero(c.target)]
        assert (sup.custom["ytid"], sup.custom["segment_start"]) == (c.ytid, c.start)
    cuts = lhotse.CutSet.from_manifests(recordings=recs, supervisions=sups)
    assert len(cuts) == len(clips)
    with pytest.raises(ConfigError, match="overwrite"):
        to_lhotse(cache, tmp_path / "lh")


def test_lhotse_wav_export_of_a_compressed_cache(tmp_path, index):
    lhotse = pytest.importorskip("lhotse")
    from audioset_data.interop import to_lhotse

    clips = {c.key: c for c in build_cache(tmp_path / "cache", 6, fmt="flac")}
    cache = AudioSetCache(tmp_path / "cache")
    recs, _ = to_lhotse(cache, tmp_path / "lh", audio_format="wav")
    for rec in recs:
        assert rec.sources[0].source.endswith(".wav")
        c = clips[rec.id]
        got = np.round(rec.load_audio()[0] * 32768).astype(np.int16)
        assert np.array_equal(got, c.pcm[: c.length])
    assert isinstance(lhotse.load_manifest_lazy(tmp_path / "lh" / "recordings.jsonl.gz"),
                      lhotse.RecordingSet)


def test_missing_extras_name_the_install_command(small, tmp_path, monkeypatch):
    from audioset_data.interop import to_hf_dataset, to_lhotse

    cache, _ = small
    monkeypatch.setitem(sys.modules, "datasets", None)
    monkeypatch.setitem(sys.modules, "lhotse", None)
    with pytest.raises(ConfigError, match=r"pip install audioset-data\[hf\]"):
        to_hf_dataset(cache, tmp_path / "hf")
    with pytest.raises(ConfigError, match=r"pip install audioset-data\[lhotse\]"):
        to_lhotse(cache, tmp_path / "lh")
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="audio_format='mp3'"):
        to_hf_dataset(cache, tmp_path / "hf", audio_format="mp3")


def test_core_imports_none_of_the_extras_nor_torch():
    code = ("import sys, audioset_data, audioset_data.interop, audioset_data.interop.huggingface,"
            " audioset_data.interop.lhotse_export, audioset_data.interop.panns,"
            " audioset_data.segments.stratify, audioset_data.cli.export;"
            " print([m for m in ('datasets', 'lhotse', 'torch') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


# -- PANNs -------------------------------------------------------------------------------------
CLIP = 640  # 2 s at 320 Hz: PANNs' layout, small


def _panns_clip(i: int) -> np.ndarray:
    w = np.zeros(CLIP, dtype=np.int16)
    w[(37 * i + 5) % CLIP] = 1000 + i
    w[(91 * i + 17) % CLIP] = -2000 - i
    return w


def _write_panns(path, seg: Segments, *, missing=(), named_empty=(), silent=(), duplicate=None,
                 with_start=False, float_wave=False, permute=None, n_labels=None):
    """A file in PANNs' layout for the rows of ``seg``: rows in ``missing`` are left as PANNs
    leaves a clip it did not have (no name, all zeros), ``named_empty`` keep a name but no data,
    ``silent`` have labels but an all-zero waveform."""
    n = len(seg) + (duplicate is not None)
    y = seg.label_matrix.toarray()
    if permute is not None:
        y = y[:, permute]
    width = n_labels or y.shape[1]
    with h5py.File(path, "w") as h5:
        h5.create_dataset("audio_name", shape=(n,), dtype="S20" if not with_start else "S30")
        h5.create_dataset("waveform", shape=(n, CLIP), dtype=np.float32 if float_wave
                          else np.int16)
        h5.create_dataset("target", shape=(n, width), dtype=bool)
        h5.attrs.create("sample_rate", data=320, dtype=np.int32)
        rows = list(range(len(seg))) + ([duplicate] if duplicate is not None else [])
        for r, i in enumerate(rows):
            if i in missing:
                continue
            ytid = seg.ytids[i]
            name = f"Y{ytid}_{seg.start[i]:.3f}.wav" if with_start else f"Y{ytid}.wav"
            h5["audio_name"][r] = name.encode()
            if i in named_empty:
                continue
            w = np.zeros(CLIP, np.int16) if i in silent else _panns_clip(i)
            h5["waveform"][r] = w / 32767.0 if float_wave else w
            h5["target"][r] = y[i, :width]


@pytest.fixture(scope="module")
def eval_part(shared_data, label_index):
    return Segments.from_file(shared_data / "segments" / "eval_segments.csv",
                              label_index=label_index)[:16]


def test_panns_import_serves_exactly_the_real_rows(tmp_path, eval_part, label_index):
    path = tmp_path / "eval.h5"
    _write_panns(path, eval_part, missing=(2, 9), named_empty=(5,), silent=(12,), duplicate=3)
    report = import_panns(path, folder=tmp_path / "cache", segments=eval_part,
                          label_index=label_index, batch_size=5)
    real = [i for i in range(16) if i not in (2, 9, 5)]
    assert report.rows == 17 and report.imported == len(real)
    reasons = dict(zip(report.skipped["row"], report.skipped["reason"], strict=True))
    assert reasons == {2: PLACEHOLDER, 5: PLACEHOLDER, 9: PLACEHOLDER,
                       16: "duplicate of an earlier row"}
    cache = AudioSetCache(tmp_path / "cache")
    assert cache.sample_rate == 320 and cache.clip_samples == CLIP
    assert cache.label_mids == list(label_index.mids)
    want = {clip_key(eval_part.ytids[i], eval_part.start[i]): i for i in real}
    assert sorted(cache.keys()) == sorted(want)
    y = eval_part.label_matrix.toarray()
    for p in range(len(cache)):
        item = cache[p]
        i = want[item["key"]]
        expected = np.zeros(CLIP, np.int16) if i == 12 else _panns_clip(i)
        assert np.array_equal(item["waveform"], expected)
        assert np.array_equal(item["target"], y[i])
        assert item["end"] == eval_part.end[i]
    # a second import finds everything cached and writes nothing
    again = import_panns(path, folder=tmp_path / "cache", segments=eval_part,
                         label_index=label_index)
    assert again.imported == 0
    assert (again.skipped["reason"] == "already cached").sum() == len(real)
    assert len(AudioSetCache(tmp_path / "cache")) == len(real)


def test_panns_names_with_start_need_no_list_and_float_waveforms_convert(
        tmp_path, eval_part, label_index):
    path = tmp_path / "eval.h5"
    _write_panns(path, eval_part, missing=(0,), with_start=True, float_wave=True)
    report = import_panns(path, "imported_eval", label_index=label_index)
    assert report.imported == 15 and report.folder == cache_dir("imported_eval")
    cache = AudioSetCache(report.folder)
    p = cache.position(clip_key(eval_part.ytids[7], eval_part.start[7]))
    assert np.array_equal(cache[p]["waveform"], _panns_clip(7))


def test_panns_label_order_and_shape_are_checked(tmp_path, eval_part, label_index):
    path = tmp_path / "eval.h5"
    _write_panns(path, eval_part)
    with pytest.raises(ConfigError, match="no start time"):
        import_panns(path, folder=tmp_path / "c1", label_index=label_index)
    rng = np.random.default_rng(0)
    _write_panns(path, eval_part, permute=rng.permutation(len(label_index)))
    with pytest.raises(CacheError, match="not in the label index's order"):
        import_panns(path, folder=tmp_path / "c2", segments=eval_part, label_index=label_index)
    _write_panns(path, eval_part, n_labels=500)
    with pytest.raises(CacheError, match="500 label columns"):
        import_panns(path, folder=tmp_path / "c3", segments=eval_part, label_index=label_index)
    with h5py.File(path, "w") as h5:
        h5.create_dataset("waveform", data=np.zeros((2, 4), np.int16))
    with pytest.raises(CacheError, match="audio_name"):
        import_panns(path, folder=tmp_path / "c4", label_index=label_index)


@pytest.mark.parametrize("name, parsed", [
    ("Y--PJHxphWEs.wav", ("--PJHxphWEs", None, None)),
    ("Y--PJHxphWEs_30.000.wav", ("--PJHxphWEs", 30.0, None)),
    ("--PJHxphWEs_30.000_40.000.flac", ("--PJHxphWEs", 30.0, 40.0)),
    ("YabcdefghiJ", ("YabcdefghiJ", None, None)),  # an 11-character id starting with Y
    ("Yshort.wav", None),
    ("", None),
])
def test_panns_audio_names(name, parsed):
    assert parse_audio_name(name) == parsed


# -- display names beside mids -----------------------------------------------------------------
def test_segments_table_shows_display_names_beside_mids(eval_seg, label_index):
    frame = eval_seg.table
    assert list(frame.columns) == ["ytid", "start", "end", "labels", "names"]
    for i in (0, 7, len(frame) - 1):
        mids = list(frame["labels"].iloc[i])
        assert list(frame["names"].iloc[i]) == [label_index.name(m) for m in mids]
    part = eval_seg[[9, 3]]
    assert list(part.table["names"].iloc[0]) == list(frame["names"].iloc[9])
    odd = Segments(pa.table({"ytid": ["a" * 11, "b" * 11], "start": [0.0, 1.0],
                             "end": [10.0, 11.0],
                             "labels": [["/m/09x0r", "/m/not_a_label"], []]}),
                   sp.csr_array((2, len(label_index)), dtype=bool), label_index)
    assert list(odd.table["names"].iloc[0]) == ["Speech", None]
    assert list(odd.table["names"].iloc[1]) == []


# -- command line ------------------------------------------------------------------------------
def test_cli_exports_and_imports(tmp_path, shared_data, eval_part, capsys):
    pytest.importorskip("datasets")
    clips = build_cache(cache_dir("small"), 5)
    labels = str(shared_data / "segments" / "class_labels_indices.csv")
    assert main(["export", "--split", "small", "--to", "hf", str(tmp_path / "hf"),
                 "--labels", labels, "--audio-format", "wav"]) == 0
    import datasets

    ds = datasets.Dataset.from_file(str(tmp_path / "hf" / "data.arrow"))
    assert sorted(ds["key"]) == sorted(c.key for c in clips)
    assert main(["export", "--split", "small", "--to", "hf", str(tmp_path / "hf"),
                 "--labels", labels]) == 2
    assert "overwrite" in capsys.readouterr().err
    h5 = tmp_path / "eval.h5"
    _write_panns(h5, eval_part, missing=(4,))
    listed = tmp_path / "eval_part.csv"
    eval_part.to_csv(listed)
    capsys.readouterr()
    assert main(["export", "--from-panns", str(h5), "--split", "from_panns", "--segments",
                 str(listed), "--labels", labels]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["imported"] == 15 and summary["skipped"] == {PLACEHOLDER: 1}
    assert main(["export", "--split", "small", "--labels", labels]) == 2


# -- issue 20: unusable export targets and files the export did not write ---------------------
@pytest.mark.parametrize("to", ["hf", "lhotse"])
def test_export_under_a_file_is_a_named_error(small, index, tmp_path, to):
    pytest.importorskip("datasets" if to == "hf" else "lhotse")
    from audioset_data.interop import to_hf_dataset, to_lhotse

    export = to_hf_dataset if to == "hf" else to_lhotse
    cache, _ = small
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    with pytest.raises(ExportError, match=r"notes\.txt' is a file, not a folder") as err:
        export(cache, a_file / "out", label_index=index)
    assert isinstance(err.value, OSError) and "cannot create the export folder" in str(err.value)
    with pytest.raises(ExportError, match="is a file, not a folder"):
        export(cache, a_file, label_index=index)
    assert a_file.read_text() == "not a folder"


@pytest.mark.parametrize("to", ["hf", "lhotse"])
def test_export_to_an_unwritable_folder_is_a_named_error(small, index, tmp_path, to,
                                                         monkeypatch):
    pytest.importorskip("datasets" if to == "hf" else "lhotse")
    from audioset_data.interop import to_hf_dataset, to_lhotse

    export = to_hf_dataset if to == "hf" else to_lhotse
    cache, _ = small
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() != 0:  # a folder this user may not write into
        locked.chmod(0o500)
    else:  # root writes anywhere: refuse the folder the way a read-only one does
        real_mkdir = Path.mkdir

        def mkdir(self, *args, **kwargs):  # noqa: ANN001, ANN202
            if locked in (self, *self.parents):
                raise PermissionError(13, "Permission denied", str(self))
            return real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", mkdir)
    try:
        with pytest.raises(ExportError, match="Permission denied") as err:
            export(cache, locked / "out", label_index=index)
    finally:
        locked.chmod(0o700)
    assert str(locked / "out") in str(err.value) and "choose a folder" in str(err.value)


def test_lhotse_export_never_replaces_a_file_it_did_not_write(small, index, tmp_path, capsys):
    pytest.importorskip("lhotse")
    from audioset_data.interop import to_lhotse

    cache, _ = small
    out = tmp_path / "lh"
    key = cache.key(3)
    theirs = out / "audio" / key[:2] / f"{key}.flac"
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(b"someone else's recording")
    with pytest.raises(ExportError, match="1 audio files the export would write") as err:
        to_lhotse(cache, out, label_index=index)
    assert str(theirs) in str(err.value) and "overwrite=True" in str(err.value)
    assert theirs.read_bytes() == b"someone else's recording"
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == [theirs.name]  # nothing
    to_lhotse(cache, out, label_index=index, overwrite=True)
    assert theirs.read_bytes().startswith(b"fLaC")


def test_cli_export_refusals_name_the_flag_not_the_python_argument(tmp_path, shared_data,
                                                                   capsys):
    pytest.importorskip("lhotse")
    clips = build_cache(cache_dir("small"), 3)
    labels = str(shared_data / "segments" / "class_labels_indices.csv")
    out = tmp_path / "lh"
    theirs = out / "audio" / clips[0].key[:2] / f"{clips[0].key}.flac"
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(b"x")
    args = ["export", "--split", "small", "--to", "lhotse", str(out), "--labels", labels]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "overwrite=True" not in err
    assert main([*args, "--overwrite"]) == 0
    capsys.readouterr()
    assert main(args) == 2  # the manifests exist now
    err = capsys.readouterr().err
    assert "manifests exist" in err and "--overwrite" in err and "overwrite=True" not in err
    note = tmp_path / "note.txt"
    note.write_text("x")
    assert main(["export", "--split", "small", "--to", "hf", str(note / "hf"),
                 "--labels", labels]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
