"""The torch dataset and the NumPy batches over the cache: content, selection, workers, frames."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, Subset

from audioset_data.cache.reader import open_cache
from audioset_data.errors import CacheError, ConfigError
from audioset_data.loaders.batches import EpochShuffle, NumpyBatches
from audioset_data.loaders.dataset import AudioSetDataset, ClipBatch, collate
from audioset_data.loaders.frame_labels import FrameLabels
from audioset_data.segments.labels import LabelIndex
from audioset_data.segments.table import Segments
from audioset_data.strong.events import load_framed, load_strong
from audioset_data.strong.frames import frame_targets

from .loader_caches import CLIP, MIDS, build_cache, clicks

STRONG = "strong"


@pytest.fixture
def built(tmp_path: Path):
    """A 23-clip pcm16 cache in six shards, and its clips by key."""
    folder = tmp_path / "c"
    clips = build_cache(folder, 23)
    return folder, {c.key: c for c in clips}


def _check_batch(batch: dict, clips: dict) -> None:
    """Every row of a collated batch is exactly the clip its key names."""
    assert batch["waveform"].dtype == torch.float32 and batch["target"].dtype == torch.float32
    for j, key in enumerate(batch["key"]):
        c = clips[key]
        assert torch.equal(batch["waveform"][j] * 32768,
                           torch.from_numpy(c.pcm.astype(np.float32)))
        assert torch.equal(batch["target"][j], torch.from_numpy(c.target.astype(np.float32)))
        assert int(batch["length"][j]) == c.length


def _segments(keys: list[str], clips: dict) -> Segments:
    index = LabelIndex(MIDS, MIDS)
    rows = [(k.rpartition("_")[0], int(k.rpartition("_")[2]) / 1000) for k in keys]
    labels = [",".join(m for m, t in zip(MIDS, clips[k].target, strict=True) if t)
              if k in clips else MIDS[0] for k in keys]
    table = pd.DataFrame({"ytid": [y for y, _ in rows], "start": [s for _, s in rows],
                          "end": [s + 10 for _, s in rows], "labels": labels})
    return Segments(table, None, index)


# -- items ---------------------------------------------------------------------------------
def test_items_are_the_cached_pcm_scaled_with_clicks_in_place(built):
    folder, clips = built
    ds = AudioSetDataset(folder)
    assert len(ds) == 23 and ds.keys == list(clips)
    for i in (0, 5, 11, 22, -1):
        item = ds[i]
        c = clips[item["key"]]
        w = item["waveform"]
        assert w.dtype == torch.float32 and w.shape == (CLIP,)
        assert item["index"] == i % 23 and item["key"] == ds.keys[i]
        pos, neg = clicks(int(c.ytid[2:]))
        assert w[pos] == pytest.approx((20000 + int(c.ytid[2:])) / 32768)
        assert -1.0 <= float(w.min()) and float(w.max()) < 1.0
        assert torch.count_nonzero(w) == 2  # the two clicks, nothing shifted or smeared
        assert item["length"] == c.length
    assert ds[0]["waveform"][clicks(0)[1]] == -1.0  # int16 -32768 maps to exactly -1
    short = ds[5]
    assert short["length"] < CLIP and not short["waveform"][short["length"]:].any()
    with pytest.raises(IndexError):
        ds[23]
    with pytest.raises(TypeError):
        ds["x"]


def test_getitems_equals_item_path_and_the_dataloader_uses_it(built):
    folder, clips = built
    ds = AudioSetDataset(folder)
    want = [7, 0, 22, 7, 3]
    batch = ds.__getitems__(want)
    assert isinstance(batch, ClipBatch) and len(batch) == 5
    for j, i in enumerate(want):
        one = ds[i]
        for name in ("waveform", "target"):
            assert torch.equal(batch[j][name], one[name])
        assert (batch[j]["key"], batch[j]["length"], batch[j]["index"]) == (
            one["key"], one["length"], one["index"])
    stacked = collate([ds[i] for i in want])
    fast = collate(batch)
    for name in ("waveform", "target", "length", "index"):
        assert torch.equal(stacked[name], fast[name])
    assert stacked["key"] == fast["key"]

    class NoSingleItems(AudioSetDataset):
        def __getitem__(self, i):
            raise AssertionError("the DataLoader must fetch whole batches")

    fetched = NoSingleItems(folder)
    seen = [k for b in DataLoader(fetched, batch_size=6, collate_fn=collate) for k in b["key"]]
    assert seen == list(clips)
    sub = Subset(fetched, [4, 2, 9])  # torch's Subset passes the batch on to __getitems__
    out = next(iter(DataLoader(sub, batch_size=3, collate_fn=collate)))
    assert out["key"] == [ds.keys[4], ds.keys[2], ds.keys[9]]
    _check_batch(out, clips)


def test_batches_kept_by_the_consumer_are_never_overwritten(built):
    folder, clips = built
    ds = AudioSetDataset(folder)
    first = collate(ds.__getitems__([0, 1, 2]))
    view = first["waveform"][1]  # a view alone keeps the memory in use
    kept = view.clone()
    addresses = {first["waveform"].data_ptr()}
    del first
    second = collate(ds.__getitems__([3, 4, 5]))
    assert torch.equal(view, kept) and second["waveform"].data_ptr() not in addresses
    addresses.add(second["waveform"].data_ptr())
    del view, second
    third = collate(ds.__getitems__([6, 7, 8]))
    assert third["waveform"].data_ptr() in addresses  # released: recycled
    _check_batch(third, clips)


def test_int16_waveforms_are_the_stored_samples(built):
    folder, clips = built
    ds = AudioSetDataset(folder, dtype="int16")
    batch = collate(ds.__getitems__([4, 9]))
    assert batch["waveform"].dtype == torch.int16 == ds[4]["waveform"].dtype
    for j, key in enumerate(batch["key"]):
        assert np.array_equal(batch["waveform"][j].numpy(), clips[key].pcm)
    assert torch.equal(ds[9]["waveform"], batch["waveform"][1])
    with pytest.raises(ConfigError, match="dtype"):
        AudioSetDataset(folder, dtype="float16")


def test_transform_runs_per_item_and_collate_stacks_its_fields(built):
    folder, clips = built

    def gain(item):
        return {**item, "waveform": item["waveform"] * 2, "peak": float(item["waveform"].max())}

    ds = AudioSetDataset(folder, transform=gain)
    batch = next(iter(ds.loader(batch_size=4, shuffle=False)))
    plain = collate(AudioSetDataset(folder).__getitems__([0, 1, 2, 3]))
    assert torch.equal(batch["waveform"], plain["waveform"] * 2)
    assert batch["peak"].shape == (4,) and batch["peak"].dtype == torch.float64
    assert ds[1]["peak"] == pytest.approx(float(plain["waveform"][1].max()))


def test_targets_align_with_keys_on_a_skewed_label_set(built):
    folder, clips = built
    sel = list(reversed(list(clips)))[::2]
    ds = AudioSetDataset(folder, selection=_segments(sel, clips))
    t = ds.targets
    assert t.shape == (len(sel), len(MIDS))
    assert np.array_equal(t.toarray(), np.stack([clips[k].target for k in sel]))
    counts = np.asarray(t.sum(axis=0)).ravel()
    assert counts[0] > counts[1] > counts[2] > 0  # skewed, so a misalignment shows
    for i in range(len(ds)):
        assert np.array_equal(t[[i]].toarray()[0], ds[i]["target"].numpy().astype(bool))


# -- selections ----------------------------------------------------------------------------
def test_selection_by_segments_mask_and_positions(built):
    folder, clips = built
    keys = list(clips)
    chosen = [keys[9], keys[2], keys[17]]
    by_segments = AudioSetDataset(folder, selection=_segments(chosen, clips))
    by_keys = AudioSetDataset(folder, selection=chosen)
    by_array = AudioSetDataset(folder, selection=np.array(chosen))
    assert by_segments.keys == by_keys.keys == by_array.keys == chosen
    mask = np.zeros(23, dtype=bool)
    mask[[2, 9, 17]] = True
    by_mask = AudioSetDataset(folder, selection=mask)
    assert by_mask.keys == [keys[2], keys[9], keys[17]]
    by_pos = AudioSetDataset(folder, selection=np.array([17, 2]))
    assert by_pos.keys == [keys[17], keys[2]]
    _check_batch(collate(by_segments.__getitems__([0, 1, 2])), clips)
    with pytest.raises(ConfigError, match="23 clips"):
        AudioSetDataset(folder, selection=mask[:-1])
    with pytest.raises(IndexError, match="outside"):
        AudioSetDataset(folder, selection=[3, 23])
    with pytest.raises(ConfigError, match="missing"):
        AudioSetDataset(folder, selection=chosen, missing="zeros")


def test_missing_clips_raise_or_are_skipped_with_a_count(tmp_path, caplog):
    folder = tmp_path / "c"
    written = {c.key: c for c in build_cache(folder, 12, listed_only=(3, 8))}
    listed = [f"ld{i:09d}_{i * 10000}" for i in range(12)] + ["nothere0000_0"]
    with pytest.raises(CacheError, match=r"3 of the 13 selected clips.*missing='skip'"):
        AudioSetDataset(folder, selection=listed)
    with caplog.at_level(logging.WARNING, logger="audioset_data.loaders"):
        ds = AudioSetDataset(folder, selection=listed, missing="skip")
    assert ds.skipped == [listed[3], listed[8], listed[12]]
    assert any("3 of the 13" in r.getMessage() for r in caplog.records)
    assert len(ds) == 10 and ds.keys == list(written)
    got = [k for b in ds.loader(batch_size=4) for k in b["key"]]
    assert sorted(got) == sorted(written)  # no empty rows stand in for the missing clips


def test_clips_of_a_damaged_file_are_never_served(tmp_path):
    folder = tmp_path / "c"
    clips = {c.key: c for c in build_cache(folder, 12)}
    victim = sorted(folder.glob("shard-*.h5"))[1]
    with open(victim, "r+b") as fh:
        fh.truncate(victim.stat().st_size // 2)
    cache = open_cache(folder=folder)
    lost = set(cache.unavailable["key"])
    assert len(lost) == 4
    ds = AudioSetDataset(cache)
    seen = [k for b in ds.loader(batch_size=5, num_workers=0) for k in b["key"]]
    assert sorted(seen) == sorted(set(clips) - lost)
    with pytest.raises(CacheError, match="4 of them are in damaged or missing files"):
        AudioSetDataset(cache, selection=list(clips))
    assert sorted(AudioSetDataset(cache, selection=list(clips), missing="skip").skipped) == \
        sorted(lost)


def test_source_may_be_a_split_name_under_a_root(tmp_path):
    build_cache(tmp_path / "cache" / "mine", 5)
    assert len(AudioSetDataset("mine", root=tmp_path)) == 5
    assert len(AudioSetDataset(str(tmp_path / "cache" / "mine"))) == 5
    with pytest.raises(CacheError, match="no cache"):
        AudioSetDataset("other", root=tmp_path)


def test_flac_cache_decodes_to_the_same_pcm(tmp_path):
    folder = tmp_path / "c"
    clips = {c.key: c for c in build_cache(folder, 9, fmt="flac")}
    ds = AudioSetDataset(folder)
    _check_batch(collate(ds.__getitems__(list(range(9)))), clips)


# -- workers -------------------------------------------------------------------------------
def _one_epoch(ds: AudioSetDataset, context: str, clips: dict) -> list[str]:
    loader = ds.loader(batch_size=4, num_workers=2, multiprocessing_context=context, seed=3)
    seen = []
    for batch in loader:
        _check_batch(batch, clips)
        seen += batch["key"]
    again = [k for b in loader for k in b["key"]]  # persistent workers, a new order
    assert sorted(again) == sorted(seen) and again != seen
    return seen


def test_every_clip_once_per_epoch_with_two_forked_workers(built):
    folder, clips = built
    ds = AudioSetDataset(folder)
    ds[0]  # a handle opened in the parent before the fork must not be shared
    seen = _one_epoch(ds, "fork", clips)
    assert sorted(seen) == sorted(clips) and seen != list(clips)
    raw = AudioSetDataset(folder, dtype="int16").loader(batch_size=8, num_workers=2,
                                                        multiprocessing_context="fork")
    for batch in raw:
        for j, key in enumerate(batch["key"]):
            assert np.array_equal(batch["waveform"][j].numpy(), clips[key].pcm)


@pytest.mark.slow
def test_every_clip_once_per_epoch_with_two_spawned_workers(built):
    folder, clips = built
    ds = AudioSetDataset(folder, selection=np.arange(1, 23))
    seen = _one_epoch(ds, "spawn", clips)
    assert sorted(seen) == sorted(ds.keys) and len(seen) == 22


# -- NumPy batches -------------------------------------------------------------------------
def test_numpy_batches_hold_what_the_torch_path_holds(built):
    folder, clips = built
    order = [5, 0, 22, 13, 8, 1, 2, 19, 4]
    ds = AudioSetDataset(folder)
    torch_batches = list(ds.loader(batch_size=4, sampler=order))
    for prefetch in (0, 2):
        np_batches = list(NumpyBatches(folder, batch_size=4, sampler=order, prefetch=prefetch))
        assert [len(b["key"]) for b in np_batches] == [4, 4, 1]
        for a, b in zip(torch_batches, np_batches, strict=True):
            assert a["key"] == b["key"]
            assert np.array_equal(a["waveform"].numpy(), b["waveform"])
            assert np.array_equal(a["target"].numpy().astype(bool), b["target"])
            assert np.array_equal(a["index"].numpy(), b["index"])
    raw = next(iter(NumpyBatches(folder, batch_size=4, sampler=order, dtype="int16")))
    assert raw["waveform"].dtype == np.int16
    assert np.array_equal(raw["waveform"][0], clips[raw["key"][0]].pcm)
    assert len(NumpyBatches(folder, batch_size=4, sampler=order, drop_last=True)) == 2
    with pytest.raises(ConfigError, match="batch_size"):
        NumpyBatches(folder, batch_size=0)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_numpy_batches_recycle_only_released_arrays(built, prefetch):
    folder, clips = built
    kept = []
    addresses = set()
    for n, batch in enumerate(NumpyBatches(folder, batch_size=3, prefetch=prefetch)):
        for j, key in enumerate(batch["key"]):
            assert np.array_equal(batch["waveform"][j] * 32768, clips[key].pcm)
        addresses.add(batch["waveform"].__array_interface__["data"][0])
        if n % 3 == 0:
            kept.append((batch["key"], batch["waveform"][:, :500]))  # a view keeps it
    for keys, view in kept:
        for j, key in enumerate(keys):
            assert np.array_equal(view[j] * 32768, clips[key].pcm[:500])
    assert len(addresses) < 8  # 8 batches, and the released arrays were written again


def test_numpy_batches_shuffle_once_per_epoch_and_differ_between_epochs(built):
    folder, clips = built
    nb = NumpyBatches(folder, batch_size=5, seed=4)
    first = [k for b in nb for k in b["key"]]
    second = [k for b in nb for k in b["key"]]
    assert sorted(first) == sorted(second) == sorted(clips)
    assert first != second and nb.epoch == 2
    nb.set_epoch(0)
    assert [k for b in nb for k in b["key"]] == first


@pytest.mark.parametrize("prefetch", [0, 3])
@pytest.mark.parametrize("stateful", [True, False])
def test_numpy_batches_resume_mid_epoch(built, prefetch, stateful):
    folder, _ = built
    sampler = (lambda: EpochShuffle(23, seed=9)) if stateful else \
        (lambda: list(np.random.default_rng(9).permutation(23)))
    whole = [k for b in NumpyBatches(folder, batch_size=4, sampler=sampler()) for k in b["key"]]
    nb = NumpyBatches(folder, batch_size=4, sampler=sampler(), prefetch=prefetch)
    it = iter(nb)
    head = [k for _ in range(2) for k in next(it)["key"]]
    state = nb.state_dict()
    it.close()
    assert state["served"] == 8 and ("sampler" in state) == stateful
    again = NumpyBatches(folder, batch_size=4, sampler=sampler(), prefetch=prefetch)
    again.load_state_dict(state)
    again.set_epoch(state["epoch"])  # a resumed run calls it as usual: the place is kept
    tail = [k for b in again for k in b["key"]]
    assert head + tail == whole


def test_numpy_batches_targets_feed_a_sampler_and_the_module_needs_no_torch(built):
    folder, clips = built
    sel = list(clips)[::3]
    nb = NumpyBatches(folder, selection=sel, batch_size=3)
    assert np.array_equal(nb.targets.toarray(), np.stack([clips[k].target for k in sel]))
    rare = np.flatnonzero(nb.targets.toarray()[:, 2])
    only_rare = NumpyBatches(folder, selection=sel, batch_size=3, sampler=list(rare))
    assert all(clips[k].target[2] for b in only_rare for k in b["key"])
    source = Path(__file__).parents[1] / "loaders" / "batches.py"
    assert "torch" not in {line.split()[1].split(".")[0] for line in source.read_text()
                           .splitlines() if line.startswith(("import ", "from "))}


# -- frame targets from strong labels -------------------------------------------------------
@pytest.fixture
def strong_cache(tmp_path, shared_data, label_index):
    """A cache whose clips are real strong-labelled clips (and one that is not)."""
    keys = ["-9O1cb8z7Mk_0", "-sEh3pYmT1E_140000", "--EnKcYsPas_210000", "zzzzzzzzzzz_0"]
    folder = tmp_path / "s"
    build_cache(folder, keys=keys, label_mids=list(label_index.mids))
    return folder, keys


def test_frame_targets_from_the_framed_file_match_its_rows(strong_cache, shared_data,
                                                           label_index):
    folder, keys = strong_cache
    framed = load_framed(shared_data / STRONG / "gun_ov_audioset_eval_strong_framed_posneg.tsv",
                         label_index=label_index, vocabulary={})
    ds = AudioSetDataset(folder, frames=framed)
    gun = label_index.index("/m/032s66")
    item = ds[0]  # file rows: 1.92-2.88 and 3.84-4.80 PRESENT, i.e. frames 2 and 4
    assert item["frame_target"].shape == item["frame_mask"].shape == (10, len(label_index))
    assert item["frame_target"].dtype == torch.float32 and item["frame_mask"].dtype == torch.bool
    assert np.flatnonzero(item["frame_target"][:, gun].numpy()).tolist() == [2, 4]
    assert item["frame_target"].sum() == 2
    assert np.flatnonzero(item["frame_mask"][:, gun].numpy()).tolist() == [2, 4]
    assert item["frame_mask"].sum() == 2  # the file lists only those pairs
    # the second clip's rows: gunshot at 0.96, 1.92, 3.84, 7.68, 8.64; machine gun between
    assert np.flatnonzero(ds[1]["frame_target"][:, gun].numpy()).tolist() == [1, 2, 4, 8, 9]
    machine_gun = label_index.index("/m/04zjc")
    assert np.flatnonzero(ds[1]["frame_target"][:, machine_gun].numpy()).tolist() == [5, 6, 7]
    assert ds[1]["frame_mask"].sum() == 8
    assert not ds[2]["frame_mask"].any() and not ds[3]["frame_target"].any()
    batch = collate(ds.__getitems__([1, 3, 0]))
    assert batch["frame_target"].shape == (3, 10, len(label_index))
    assert torch.equal(batch["frame_target"][2], item["frame_target"])
    assert torch.equal(batch["frame_mask"][0], ds[1]["frame_mask"])


def test_frame_targets_from_event_files_mask_the_labels_they_annotate(strong_cache, shared_data,
                                                                     label_index):
    folder, keys = strong_cache
    gun = load_strong(shared_data / STRONG / "gun_ov_audioset_eval_strong.tsv",
                      label_index=label_index, vocabulary={})
    ds = AudioSetDataset(folder, frames=gun)
    col = label_index.index("/m/032s66")
    # events 1.598-2.307 (frames 1, 2), 4.307-4.835 (frames 4, 5), 9.724-10.0 (past frame 9)
    item = ds[0]
    assert np.flatnonzero(item["frame_target"][:, col].numpy()).tolist() == [1, 2, 4, 5]
    annotated = sorted(label_index.index(m) for m in ("/m/032s66", "/m/04zjc", "/m/073cg4"))
    assert item["frame_mask"].all(dim=0).nonzero().ravel().tolist() == annotated
    assert item["frame_mask"].sum() == 30  # the three labels of the file, every frame
    assert not ds[2]["frame_mask"].any()  # a baby-cry clip: the gun file says nothing of it
    every = AudioSetDataset(folder, frames=gun, known_labels=["/m/032s66", "/m/09x0r"])
    assert every[0]["frame_mask"].sum() == 20
    cry = load_strong(shared_data / STRONG / "baby_cry_ov_audioset_train_strong.tsv",
                      label_index=label_index, vocabulary={})
    frames = FrameLabels(cry, keys, label_index.mids, 10.0)
    assert frames.labelled.tolist() == [False, False, True, False]
    target, mask = frames.get([2])
    cry_col = label_index.index("/t/dd00002")
    # events 1.474-3.777, 4.34-5.144, 5.426-6.361, 7.067-8.045, ...: frame 0 is free of them
    assert target[0, 0, cry_col] == 0 and target[0, 1:4, cry_col].all()
    one_column = frame_targets(gun, LabelIndex(["/m/032s66"], ["Gunshot"]))
    with pytest.raises(ConfigError, match="1 label columns, the cache has 527"):
        AudioSetDataset(folder, frames=one_column)


@pytest.mark.slow
def test_a_cache_written_by_the_whole_download_path(data_root, shared_data, monkeypatch,
                                                    label_index):
    from audioset_data.downloader.demo import DEMO_CACHE, run_demo

    monkeypatch.setenv("AUDIOSET_ONTOLOGY_BASE_URL", str(shared_data / "ontology"))
    monkeypatch.setenv("AUDIOSET_CSV_BASE_URL", str(shared_data / "segments"))
    report = run_demo(root=data_root, n_clips=6, workers=2, progress=False)
    cache = open_cache(DEMO_CACHE, root=data_root)
    assert report.ok == len(cache) >= 3
    eval_seg = Segments.from_file(shared_data / "segments" / "eval_segments.csv",
                                  label_index=label_index)[:6]
    ds = AudioSetDataset(DEMO_CACHE, root=data_root, selection=eval_seg, missing="skip")
    assert len(ds) == len(cache) and len(ds.skipped) == 6 - len(cache)
    batch = next(iter(ds.loader(batch_size=8, shuffle=False)))
    keys = [f"{y}_{round(s * 1000)}" for y, s in zip(eval_seg.ytids, eval_seg.start,
                                                      strict=True)]
    for j, key in enumerate(batch["key"]):
        i = keys.index(key)
        assert np.array_equal(batch["target"][j].numpy().astype(bool),
                              eval_seg.label_matrix[[i]].toarray()[0])
        n = int(batch["length"][j])  # the segment's own duration (some are under 10 s)
        assert n == round((eval_seg.end[i] - eval_seg.start[i]) * cache.sample_rate)
        assert float(batch["waveform"][j, :n].abs().mean()) > 1e-3  # the stand-in tone
        assert not batch["waveform"][j, n:].any()
        assert torch.equal(ds[int(batch["index"][j])]["waveform"], batch["waveform"][j])


def test_the_project_samplers_drive_both_loaders_and_resume(built):
    from audioset_data.loaders.samplers import BalancedSampler

    folder, clips = built
    ds = AudioSetDataset(folder)
    sampler = BalancedSampler(ds.targets, num_samples=40, seed=2)
    served = [k for b in ds.loader(batch_size=8, sampler=sampler) for k in b["key"]]
    assert len(served) == 40
    rare = sum(clips[k].target[2] for k in served) / 40
    assert rare > sum(c.target[2] for c in clips.values()) / len(clips)  # balanced: rare up

    def fresh(prefetch):
        return NumpyBatches(folder, batch_size=8, prefetch=prefetch,
                            sampler=BalancedSampler(ds.targets, num_samples=40, seed=2))

    whole = [k for b in fresh(0) for k in b["key"]]
    assert whole == served
    nb = fresh(2)
    it = iter(nb)
    head = next(it)["key"] + next(it)["key"]
    state = nb.state_dict()
    it.close()
    again = fresh(2)
    again.load_state_dict(state)
    assert head + [k for b in again for k in b["key"]] == whole
