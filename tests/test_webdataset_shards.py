"""Tar shards for many machines: the export reads back with ``webdataset`` as the cache's clips,
labels and audio (the stored bytes, never re-encoded); it resumes after its last finished shard;
the shard loader splits each epoch over ranks and workers, every clip once, and resumes
mid-epoch; two DDP ranks train from the shards, each reading its own."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import wave
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from audioset_data.cache.codec import decode_clip
from audioset_data.cache.manifest import clip_key
from audioset_data.cache.reader import AudioSetCache, cache_dir
from audioset_data.cli import main
from audioset_data.errors import (
    CacheError,
    ChecksumMismatchError,
    ConfigError,
    ExportError,
    RemoteError,
)
from audioset_data.interop import webdataset_export
from audioset_data.interop.webdataset_export import parse_size, to_webdataset
from audioset_data.loaders import AudioSetDataset
from audioset_data.loaders.shard_plan import (
    consumed_by_worker,
    per_rank,
    reads_of,
    shard_order,
    worker_parts,
)
from audioset_data.loaders.shards import ShardDataset, ShardIndex, is_shard_source
from audioset_data.segments.labels import LabelIndex
from audioset_data.testing import serve_folder

from .loader_caches import MIDS, SR, build_cache, clicks
from .training_caches import sound_mids, write_sound_cache

wds = pytest.importorskip("webdataset")

#: YouTube ids use '-' and '_' anywhere, also first: keys must survive webdataset's split at '.'
KEYS = [clip_key(f"{'-_'[i % 2]}{i:02d}{'_a-B_c-d' if i % 3 else '-a_B-c_d'}", 30 + i)
        for i in range(11)]


def _stored(folder: Path) -> dict[str, bytes]:
    """Every clip's encoded bytes as the cache files hold them, by key (read with h5py)."""
    out = {}
    for path in folder.glob("*.h5"):
        with h5py.File(path, "r") as h5:
            for row, (y, s) in enumerate(zip(h5["ytid"][()], h5["start"][()], strict=True)):
                out[clip_key(y.decode(), float(s))] = bytes(h5["audio"][row])
    return out


@pytest.mark.parametrize("fmt", ["pcm16", "flac", "opus"])
def test_webdataset_reads_the_shards_as_the_cache_clips_labels_and_audio(tmp_path, fmt):
    clips = build_cache(tmp_path / "cache", keys=KEYS, fmt=fmt)
    cache = AudioSetCache(tmp_path / "cache")
    names = [f"Sound {j}" for j in range(len(MIDS))]
    done = to_webdataset(cache, tmp_path / "out", label_index=LabelIndex(MIDS, names),
                         shard_size="6KB", progress=False)
    assert len(done.shards) > 2 and done.clips == len(clips)
    assert [p.name for p in done.paths][:2] == ["cache-000000.tar", "cache-000001.tar"]
    ext = {"pcm16": "wav", "flac": "flac", "opus": "opus"}[fmt]
    samples = list(wds.WebDataset([str(p) for p in done.paths], shardshuffle=False))
    assert [s["__key__"] for s in samples] == cache.keys() == [c.key for c in clips]
    stored = _stored(tmp_path / "cache") if fmt != "pcm16" else {}
    for i, (s, c) in enumerate(zip(samples, clips, strict=True)):
        assert set(s) >= {"json", ext}
        info = json.loads(s["json"])
        assert (info["key"], info["ytid"], info["start"], info["end"]) == (
            c.key, c.ytid, c.start, c.start + 10)
        assert info["labels"] == [m for m, t in zip(MIDS, c.target, strict=True) if t]
        assert info["label_indices"] == np.flatnonzero(c.target).tolist()
        assert info["names"] == [names[j] for j in info["label_indices"]]
        assert (info["length"], info["sample_rate"], info["codec"]) == (c.length, SR, fmt)
        if fmt == "pcm16":
            with wave.open(io.BytesIO(s["wav"])) as w:
                assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (SR, 1, 2)
                pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        else:
            assert s[ext] == stored[c.key]  # the bytes as stored: nothing decoded or re-encoded
            pcm = decode_clip(s[ext], fmt, sample_rate=SR, num_samples=c.length)
        assert len(pcm) == c.length
        if fmt != "opus":  # lossless: the very samples, the clicks where the cache has them
            assert np.array_equal(pcm, c.pcm[: c.length])
            pos, neg = clicks(i)
            assert int(np.argmax(pcm)) == pos and int(np.argmin(pcm)) == neg
            assert np.count_nonzero(pcm) == 2  # clicks, not a tone


def test_index_lists_every_shard_with_clips_bytes_and_sha256(tmp_path):
    clips = build_cache(tmp_path / "cache", 30, fmt="flac")
    cache = AudioSetCache(tmp_path / "cache")
    done = to_webdataset(cache, tmp_path / "out", split="bal", shard_size="12KB",
                         progress=False)
    index = json.loads(done.index.read_text())
    assert done.index.name == "bal-shards.json"
    assert (index["format"], index["version"], index["codec"], index["extension"]) == (
        "audioset-webdataset", 1, "flac", "flac")
    assert index["clips"] == 30 and index["label_mids"] == MIDS
    assert index["label_counts"] == np.sum([c.target for c in clips], axis=0).tolist()
    assert [s["name"] for s in index["shards"]] == [p.name for p in done.paths]
    for entry, path in zip(index["shards"], done.paths, strict=True):
        data = path.read_bytes()
        assert entry["bytes"] == len(data) <= 12_000 or entry["clips"] == 1
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert sum(s["clips"] for s in index["shards"]) == 30
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [p.name for p in done.paths] + ["bal-shards.json"])  # no temp or progress file left
    assert parse_size("256MB") == 256_000_000 and parse_size("1.5KiB") == 1536
    with pytest.raises(ConfigError, match="not a size"):
        parse_size("lots")


class _Stop(Exception):
    pass


def test_an_interrupted_export_resumes_after_its_last_finished_shard(tmp_path, monkeypatch):
    build_cache(tmp_path / "cache", 20, fmt="flac")
    cache = AudioSetCache(tmp_path / "cache")
    whole = to_webdataset(cache, tmp_path / "whole", shard_size="21KB", progress=False)
    real = webdataset_export._member
    calls = [0]

    def member(*args):  # noqa: ANN002, ANN202 - the real signature
        calls[0] += 1
        if calls[0] > 2 * 12:  # stop in the middle of the export, inside a shard
            raise _Stop
        real(*args)

    monkeypatch.setattr(webdataset_export, "_member", member)
    out = tmp_path / "out"
    with pytest.raises(_Stop):
        to_webdataset(cache, out, shard_size="21KB", progress=False)
    monkeypatch.setattr(webdataset_export, "_member", real)
    kept = sorted(p for p in out.glob("*.tar"))
    assert kept and not (out / "cache-shards.json").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]  # no half-written shard
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in kept}
    done = to_webdataset(cache, out, shard_size="21KB", progress=False)
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in kept} == before
    assert done.shards == whole.shards  # the same bytes as an export never interrupted
    assert to_webdataset(cache, out, shard_size="21KB", progress=False).shards == done.shards
    with pytest.raises(ExportError, match="overwrite=True"):
        to_webdataset(cache, out, shard_size="41KB", progress=False)
    again = to_webdataset(cache, out, shard_size="41KB", overwrite=True, progress=False)
    assert again.clips == 20 and len(again.shards) < len(done.shards)
    assert sorted(p.name for p in out.glob("*.tar")) == [p.name for p in again.paths]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "cache-000000.tar").write_bytes(b"not ours")
    with pytest.raises(ExportError, match="no export in progress recorded"):
        to_webdataset(cache, foreign, progress=False)
    assert (foreign / "cache-000000.tar").read_bytes() == b"not ours"


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_an_epoch_splits_by_rank_then_worker_in_whole_batches(world, workers):
    rng = np.random.default_rng(world * 10 + workers)
    clips = rng.integers(1, 9, size=11)
    total, batch = int(clips.sum()), 4
    order = shard_order(len(clips), seed=5, epoch=2)
    assert sorted(order) == list(range(11))
    assert not np.array_equal(order, shard_order(len(clips), seed=5, epoch=3))
    count = per_rank(total, world)
    seen = np.zeros(total, dtype=int)
    offsets = np.cumsum(clips) - clips
    for rank in range(world):
        parts = worker_parts(count, batch, workers)
        assert min(parts)[0] == 0 and sum(b - a for a, b in parts) == count
        short = [w for w, (a, b) in enumerate(parts) if (b - a) % batch]
        assert len(short) <= 1  # only the epoch's last batch is short ...
        if short:  # ... and the DataLoader asks its worker last
            n_batches = -(-count // batch)
            assert short[0] == (n_batches - 1) % workers
        for first, stop in parts:
            for shard, a, b in reads_of(clips, order, rank * count + first,
                                        rank * count + stop):
                assert 0 <= a < b <= clips[shard]
                seen[offsets[shard] + a: offsets[shard] + b] += 1
    assert seen.min() == 1 and seen.sum() == world * count  # every clip, a few twice
    assert seen.max() == (1 if total % world == 0 else 2)
    assert (seen == 2).sum() == world * count - total
    # a rank that consumed k batches resumes each worker after the batches it handed out
    parts = worker_parts(count, batch, workers)
    got = consumed_by_worker(3 * batch, count, batch, workers)
    assert sum(got) == min(3 * batch, count)
    assert consumed_by_worker(count, count, batch, workers) == [b - a for a, b in parts]


@pytest.fixture
def flac_shards(tmp_path):
    clips = build_cache(tmp_path / "cache", 26, fmt="flac")
    cache = AudioSetCache(tmp_path / "cache")
    done = to_webdataset(cache, tmp_path / "out", shard_size="8KB", progress=False)
    return cache, clips, done


def test_the_shard_dataset_serves_the_items_of_the_cache_dataset(flac_shards):
    cache, _, done = flac_shards
    assert is_shard_source(str(done.index)) and is_shard_source(str(done.index.parent))
    assert not is_shard_source(str(cache.folder)) and not is_shard_source("balanced")
    shards = ShardDataset(done.index.parent, shuffle=False)
    reference = AudioSetDataset(cache)
    assert len(shards) == len(reference) == shards.total == 26
    assert shards.label_counts.tolist() == np.asarray(
        cache.targets().sum(axis=0)).ravel().tolist()
    items = list(shards)
    assert [it["key"] for it in items] == reference.keys
    for it in items:
        ref = reference[it["index"]]
        assert it["key"] == ref["key"] and it["length"] == ref["length"]
        assert torch.equal(it["waveform"], ref["waveform"])
        assert torch.equal(it["target"], ref["target"])
    ints = next(iter(ShardDataset(done.index, shuffle=False, dtype="int16")))
    assert ints["waveform"].dtype == torch.int16
    assert torch.equal(ints["waveform"].float() / 32768, items[0]["waveform"])
    # shuffled: the same clips in another order, drawn from the epoch
    a = [it["key"] for it in ShardDataset(done.index, seed=1, buffer=8)]
    shuffled = ShardDataset(done.index, seed=1, buffer=8)
    shuffled.set_epoch(1)
    b = [it["key"] for it in shuffled]
    assert sorted(a) == sorted(b) == sorted(reference.keys) and a != b
    assert a == [it["key"] for it in ShardDataset(done.index, seed=1, buffer=8)]
    assert len(list(ShardDataset(done.index, limit=10))) == 10


def test_a_damaged_shard_is_named(flac_shards):
    _, _, done = flac_shards
    path = done.paths[1]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # in the archive's end padding: every clip reads, only sha256 tells
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match=path.name):
        list(ShardDataset(done.index, shuffle=False))
    assert len(list(ShardDataset(done.index, shuffle=False, verify=False, limit=3))) == 3
    with pytest.raises(ConfigError, match="no shard index"):
        ShardDataset(done.index.parent / "missing-shards.json")


def test_pipe_addresses_read_the_shards_through_a_command(flac_shards):
    _, clips, done = flac_shards
    address = f"pipe:cat {done.index}"
    index = ShardIndex.load(address)
    assert index.url(2) == f"pipe:cat {done.paths[2]}"
    keys = [it["key"] for it in ShardDataset(address, shuffle=False)]
    assert keys == [c.key for c in clips]
    with pytest.raises(RemoteError, match="exited with status 1"):
        ShardIndex.load(f"pipe:cat {done.index.parent / 'gone-shards.json'}")


@pytest.mark.parametrize("name", ["x;touch PWNED;.tar", "$(touch PWNED).tar", "../up.tar",
                                  "a b.tar", "-rf.tar"])
def test_an_index_naming_a_shard_that_is_not_a_plain_file_name_is_refused(flac_shards, tmp_path,
                                                                          name, monkeypatch):
    """Shard names from an index (fetched from a bucket: untrusted) go into a pipe: command:
    anything but a plain file name is refused before any shard address is made."""
    _, _, done = flac_shards
    data = json.loads(done.index.read_text())
    data["shards"][1]["name"] = name
    forged = tmp_path / "forged" / done.index.name
    forged.parent.mkdir()
    forged.write_text(json.dumps(data))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="not a plain"):
        ShardIndex.load(f"pipe:cat {forged}")
    assert not (tmp_path / "PWNED").exists()

def test_shards_stream_over_http_each_read_once(flac_shards):
    _, clips, done = flac_shards
    with serve_folder(done.index.parent) as server:
        ds = ShardDataset(server.url(done.index.name), shuffle=False, limit=5)
        assert [it["key"] for it in ds] == [c.key for c in clips[:5]]
        assert all(server.requests[f"/{p.name}"] == 1 for p in done.paths[:5])
        assert not any(server.requests[f"/{p.name}"] for p in done.paths[5:])


def test_a_resumed_epoch_continues_the_stream_of_two_workers(flac_shards):
    _, _, done = flac_shards

    def keys(position: int = 0) -> list[str]:
        ds = ShardDataset(done.index, batch_size=3, seed=2, buffer=4)
        ds.set_epoch(1)
        if position:
            ds.load_state_dict({**ds.state_dict(), "position": position})
        loader = ds.loader(num_workers=2, multiprocessing_context="fork")
        return [k for batch in loader for k in batch["key"]]

    whole = keys()
    assert len(whole) == 26 and len(set(whole)) == 26
    assert keys(3 * 3) == whole[9:]
    assert keys(4 * 3) == whole[12:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sound_shards(data_root, tmp_path):
    """24 two-second band-noise clips of four classes, exported in 12 shards of 2 clips."""
    write_sound_cache(cache_dir("snd", data_root), per_class=6, seed=1, prefix="trn",
                      seconds=2.0)
    labels = tmp_path / "labels.csv"
    labels.write_text("index,mid,display_name\n" + "".join(
        f"{j},{m},Sound {j}\n" for j, m in enumerate(sound_mids(4))))
    out = tmp_path / "shards"
    assert main(["export", "--split", "snd", "--to", "webdataset", str(out),
                 "--shard-size", "150KB", "--labels", str(labels)]) == 0
    index = out / "snd-shards.json"
    assert [s["clips"] for s in json.loads(index.read_text())["shards"]] == [2] * 12
    return index


def test_train_reads_shards_named_on_the_command_line(sound_shards, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--train-shards", str(sound_shards), "--eval", "none", "--model",
                 "fc", "--hidden", "16", "--batch-size", "4", "--steps", "3", "--num-workers",
                 "0", "--sampler", "shuffle", "--out", str(run), "--device", "cpu"]) == 0
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "loss" in r][-1] == 3
    capsys.readouterr()
    assert main(["train", "--train", "snd", "--train-shards", str(sound_shards)]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["train", "--train-shards", "snd"]) == 2
    assert "names no shard index" in capsys.readouterr().err
    assert main(["train", "--train-shards", str(sound_shards), "--eval",
                 str(sound_shards), "--device", "cpu", "--out", str(run)]) == 2
    assert "evaluation reads a cache" in capsys.readouterr().err


_DDP_SCRIPT = """
import json, sys, torch, torch.distributed as dist
from audioset_data.baselines import TrainConfig
from audioset_data.baselines.training import Trainer
out, index = sys.argv[1], sys.argv[2]
cfg = TrainConfig(model='fc', train=index, eval=None, out=out, batch_size=3, hidden=(16,),
                  num_workers=0, epochs=1.0, checkpoint_every=0, sampler='shuffle',
                  device='cpu', log_every=1)
t = Trainer(cfg, progress=False)
ds = t.train_set
seen = {}
for epoch in (0, 1):
    t.sampler.set_epoch(epoch)
    keys = [k for b in t._loader(ds, t.sampler, train=True) for k in b['key']]
    seen[epoch] = {'keys': keys, 'reads': ds.reads(epoch)}
t.sampler.set_epoch(0)
json.dump({'len': len(ds), 'seen': seen}, open(f'{out}/rank{t.rank}.json', 'w'))
t.fit()
# the parameters (DDP keeps them equal; BatchNorm statistics stay each rank's own)
torch.save(dict(t.model.named_parameters()), f'{out}/rank{t.rank}.pt')
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_two_ddp_ranks_read_their_own_shards_and_train(sound_shards, tmp_path):
    script = tmp_path / "ddp_shards.py"
    script.write_text(_DDP_SCRIPT)
    out = tmp_path / "ddp"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", str(_free_port()), str(script), str(out), str(sound_shards)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    every = {s["name"]: s["clips"] for s in json.loads(sound_shards.read_text())["shards"]}
    all_keys = AudioSetCache(cache_dir("snd")).keys()
    assert [r["len"] for r in ranks] == [12, 12]
    for epoch in ("0", "1"):
        a, b = (r["seen"][epoch] for r in ranks)
        assert len(a["keys"]) == len(b["keys"]) == 12
        assert not set(a["keys"]) & set(b["keys"])
        assert sorted(a["keys"] + b["keys"]) == sorted(all_keys)  # each clip once per epoch
        shards_a, shards_b = ({name for name, _, _ in x["reads"]} for x in (a, b))
        assert not shards_a & shards_b and shards_a | shards_b == set(every)
        assert all(first == 0 and stop == every[name]
                   for x in (a, b) for name, first, stop in x["reads"])  # shards read whole
    assert ranks[0]["seen"]["0"]["reads"] != ranks[0]["seen"]["1"]["reads"]  # epoch's order
    w0 = torch.load(out / "rank0.pt", weights_only=True)
    w1 = torch.load(out / "rank1.pt", weights_only=True)
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()
             if '"loss"' in x]
    assert steps[-1] == 12 // 3  # each rank trains on its half of the 24-clip epoch


def test_exported_shards_import_back_into_a_cache_byte_for_byte(flac_shards, tmp_path):
    """``audioset export --to webdataset`` then ``audioset import wds``: the same clips, labels
    and stored FLAC bytes, without a segment list (the JSON carries id, start and labels)."""
    from audioset_data.interop.wds_import import import_webdataset

    cache, clips, done = flac_shards
    report = import_webdataset(done.paths[0].parent, folder=tmp_path / "back",
                               label_index=LabelIndex(MIDS, [f"s{j}" for j in range(len(MIDS))]),
                               progress=False)
    back = AudioSetCache(tmp_path / "back")
    assert sorted(back.keys()) == sorted(cache.keys()) == sorted(c.key for c in clips)
    assert report.summary()["imported"] == len(clips)
    order = back.positions(cache.keys())
    assert (back.targets()[order] != cache.targets()).nnz == 0
    assert _stored(tmp_path / "back") == _stored(tmp_path / "cache")
    again = import_webdataset(done.paths[0].parent, folder=tmp_path / "back",
                              label_index=LabelIndex(MIDS, [f"s{j}" for j in range(len(MIDS))]),
                              progress=False)
    assert again.summary()["imported"] == 0 and again.summary()["already_cached"] == len(clips)


def test_the_cache_serves_a_compact_clip_as_stored_and_refuses_raw_pcm(tmp_path):
    build_cache(tmp_path / "flac", keys=KEYS, fmt="flac")
    cache = AudioSetCache(tmp_path / "flac")
    stored = _stored(tmp_path / "flac")
    assert [cache.encoded(i) for i in range(len(cache))] == [stored[k] for k in cache.keys()]
    build_cache(tmp_path / "pcm", keys=KEYS, fmt="pcm16")
    with pytest.raises(CacheError, match="pcm16"):
        AudioSetCache(tmp_path / "pcm").encoded(0)
