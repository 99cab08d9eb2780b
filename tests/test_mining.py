"""Exemplar mining: a rare class planted in a few clips is found from three examples, the frame
index persists and grows by the new clips only, the candidates round-trip through the segment
parser, bad input is refused by name, and ``audioset mine`` runs end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audioset_data.baselines.embedding_index import FrameIndex, LogMelStats
from audioset_data.baselines.mining import mine, read_examples, shared_frames
from audioset_data.cache.manifest import clip_key
from audioset_data.cache.reader import AudioSetCache, cache_dir
from audioset_data.cache.store import CacheWriter, open_manifest
from audioset_data.cli import main
from audioset_data.errors import ConfigError
from audioset_data.segments.labels import LabelIndex
from audioset_data.segments.table import Segments

from .training_caches import CENTRES, band_noise

RATE = 16000
SECONDS = 10.0
COMMON = [f"/m/snd{k}" for k in range(len(CENTRES))]
RARE = "/m/rare"
MIDS = [*COMMON, RARE]


def _chirp(n: int, rate: int) -> np.ndarray:
    """Repeated rising sweeps from 1.2 to 3.2 kHz, 0.25 s each."""
    t = np.arange(n) / rate
    period = 0.25
    local = t % period
    return np.sin(2 * np.pi * (1200 * local + 0.5 * (2000 / period) * local ** 2))


def write_planted_cache(folder: Path, *, clips: int = 120, rare_every: int = 12,
                        first: int = 0, seed: int = 0, burst: float = 3.0,
                        shard_size: int = 64) -> dict[str, bool]:
    """Write ``clips`` clips of band noise (one or two common classes, loudness varying);
    every ``rare_every``-th clip also carries a ``burst``-s run of chirps at a random place.
    Returns key -> carries the rare class."""
    rng = np.random.default_rng(seed + first)
    n = int(RATE * SECONDS)
    manifest = open_manifest(folder, fmt="pcm16", sample_rate=RATE, clip_samples=n,
                             label_mids=MIDS)
    writer = CacheWriter(folder, manifest, fmt="pcm16", sample_rate=RATE, clip_samples=n,
                         label_mids=MIDS, batch_size=16, shard_size=shard_size)
    truth: dict[str, bool] = {}
    rows = []
    made = []
    for j in range(first, first + clips):
        target = np.zeros(len(MIDS), dtype=bool)
        target[rng.integers(len(COMMON))] = True
        if rng.random() < 0.3:
            target[rng.integers(len(COMMON))] = True
        wave = 0.05 * rng.standard_normal(n)
        for c in np.flatnonzero(target):
            wave += rng.uniform(0.2, 0.6) * band_noise(rng, n, RATE, CENTRES[c])
        if j % rare_every == 0:
            target[-1] = True
            span = int(burst * RATE)
            at = int(rng.integers(0, n - span + 1))
            wave[at:at + span] += 0.5 * _chirp(span, RATE)
        pcm = np.clip(wave * 20000, -32768, 32767).astype(np.int16)
        ytid = f"pl{j:09d}"
        key = clip_key(ytid, 0.0)
        rows.append((key, ytid, 0.0, SECONDS, ",".join(np.asarray(MIDS)[target])))
        made.append((key, ytid, pcm, target))
        truth[key] = bool(target[-1])
    manifest.add_segments(rows)
    for key, ytid, pcm, target in made:
        writer.add(key, ytid, 0.0, SECONDS, pcm, n, target)
    writer.close()
    manifest.close()
    return truth


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: on a busy two-core machine two spinning threads run the small tensor
    operations here several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, dict[str, bool]]:
    folder = tmp_path_factory.mktemp("planted") / "cache"
    return folder, write_planted_cache(folder)


def _examples(truth: dict[str, bool], n: int = 3) -> list[str]:
    return [k for k, rare in truth.items() if rare][:n]


def test_three_examples_find_the_planted_class(planted):
    folder, truth = planted
    examples = _examples(truth)
    k = 7  # the other rare clips
    result = mine(folder, examples, k)
    found = [truth[x] for x in result.candidates["key"]]
    assert len(found) == k and not set(result.candidates["key"]) & set(examples)
    chance = sum(truth.values()) / len(truth)
    assert np.mean(found) >= 0.7, (found, chance)
    assert result.candidates["distance"].is_monotonic_increasing
    # the shared frames are the chirps: far fewer than all 30 example frames
    assert 3 <= len(result.queries) < 20
    assert list(result.segments[0].labels) == [RARE]
    assert np.allclose(result.segments.end - result.segments.start, 10.0)


def test_shared_frames_keep_what_every_example_has():
    rng = np.random.default_rng(0)
    shared = rng.standard_normal(16)
    frames, owner, is_shared = [], [], []
    for ex in range(3):
        own = rng.standard_normal(16)  # each example's background differs
        for f in range(8):
            common = f in (2, 3)
            base = shared if common else own
            frames.append(base + 0.05 * rng.standard_normal(16))
            owner.append(ex)
            is_shared.append(common)
    mask = shared_frames(np.asarray(frames), np.asarray(owner))
    assert np.array_equal(mask, np.asarray(is_shared))
    assert shared_frames(np.asarray(frames[:8]), np.zeros(8)).all()


def test_index_persists_and_embeds_only_new_clips(tmp_path):
    folder = tmp_path / "cache"
    write_planted_cache(folder, clips=20)
    cache = AudioSetCache(folder)
    base = LogMelStats(RATE)
    seen: list[int] = []

    def counting(wave, lengths):
        seen.append(len(wave))
        return base(wave, lengths)

    index = FrameIndex.beside(cache, base.digest)
    assert index.update(cache, counting, batch_size=8) == 20 and sum(seen) == 20
    assert (folder / "embeddings" / base.digest / "index.json").is_file()
    again = FrameIndex.beside(AudioSetCache(folder), base.digest)
    assert again.keys == index.keys and again.n_frames == 200
    assert np.array_equal(again.frames(index.keys[3]), index.frames(index.keys[3]))
    assert again.update(AudioSetCache(folder), counting) == 0 and sum(seen) == 20

    write_planted_cache(folder, clips=6, first=20)
    grown = AudioSetCache(folder)
    assert again.update(grown, counting, batch_size=8) == 6 and sum(seen) == 26
    reread = FrameIndex.beside(grown, base.digest)
    assert sorted(reread.keys) == sorted(grown.keys()) and reread.n_frames == 260
    fresh = base(*_batch(grown, reread.keys[-1]))[0].numpy()
    assert np.allclose(reread.frames(reread.keys[-1]), fresh, atol=1e-5)


def test_index_refuses_bad_additions_and_names_damage(tmp_path):
    from audioset_data.errors import CacheError

    index = FrameIndex(tmp_path / "idx")
    vectors = np.eye(4, dtype=np.float32)
    index.add(["a_0", "b_0"], [1, 3], vectors)
    with pytest.raises(ConfigError, match="'a_0' is already"):
        index.add(["a_0"], [1], vectors[:1])
    with pytest.raises(ConfigError, match="do not fit"):
        index.add(["c_0"], [2], vectors[:1])
    with pytest.raises(ConfigError, match="4-d"):
        index.add(["c_0"], [1], np.ones((1, 5)))
    with pytest.raises(ConfigError, match="'zz_0' is not in"):
        index.frames("zz_0")
    assert np.array_equal(FrameIndex(tmp_path / "idx").frames("b_0"), vectors[1:])
    (tmp_path / "idx" / "index.json").write_text('{"parts": ["part-00007"]}')
    with pytest.raises(CacheError, match="index.json.*delete"):
        FrameIndex(tmp_path / "idx")


def _batch(cache: AudioSetCache, key: str):
    import torch

    item = cache[int(cache.positions([key])[0])]
    wave = torch.from_numpy(item["waveform"].astype(np.float32) / 32768.0)[None]
    return wave, torch.tensor([item["length"]])


def test_search_agrees_with_a_brute_force_scan(tmp_path):
    folder = tmp_path / "cache"
    write_planted_cache(folder, clips=10)
    cache = AudioSetCache(folder)
    index = FrameIndex.beside(cache, LogMelStats.digest)
    index.update(cache, LogMelStats(RATE))
    every = np.concatenate([index.frames(k) for k in index.keys])
    assert np.allclose(index.mean(), every.mean(axis=0), atol=1e-6)
    queries = every[[3, 40, 77]] + 0.01
    q = queries - every.mean(axis=0)
    v = every - every.mean(axis=0)
    dist = 1.0 - (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (
        v / np.linalg.norm(v, axis=1, keepdims=True)).T
    d, i = index.search(queries, 5, block=16)
    assert np.array_equal(i, np.argsort(dist, axis=1, kind="stable")[:, :5])
    assert np.allclose(d, np.sort(dist, axis=1)[:, :5], atol=1e-5)
    near = index.clip_distances(queries, block=7)
    owner = index.clip_of_frame()
    want = np.stack([[dist[q, owner == c].min() for c in range(len(index))]
                     for q in range(3)])
    assert np.allclose(near, want, atol=1e-5)


def test_parts_without_stored_norms_still_search(tmp_path):
    """Parts written before the squared norms were stored beside the vectors get them on
    load, and a search over unnormalised vectors matches the centred cosine."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((40, 6)).astype(np.float32) * 3 + 1
    index = FrameIndex(tmp_path / "idx")
    index.add([f"c{i}_0" for i in range(8)], [5] * 8, vectors)
    part = tmp_path / "idx" / "part-00000.npz"
    with np.load(part) as meta:
        kept = {k: meta[k] for k in meta.files if k != "sqnorms"}
    np.savez(part, **kept)
    old = FrameIndex(tmp_path / "idx")
    queries = rng.standard_normal((3, 6)).astype(np.float32)
    mu = vectors.mean(axis=0)
    q, v = queries - mu, vectors - mu
    dist = 1.0 - (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (
        v / np.linalg.norm(v, axis=1, keepdims=True)).T
    for idx in (index, old):
        d, i = idx.search(queries, 4, block=9)
        assert np.array_equal(i, np.argsort(dist, axis=1, kind="stable")[:, :4])
        assert np.allclose(d, np.sort(dist, axis=1)[:, :4], atol=1e-5)
        assert np.allclose(idx.frame_distances(queries, "c2_0"), dist[:, 10:15], atol=1e-5)


def test_csv_round_trips_through_the_parser(planted, tmp_path):
    folder, truth = planted
    out = tmp_path / "mined.csv"
    result = mine(folder, _examples(truth), 5, out=out, labels=[RARE, COMMON[1]])
    assert out.read_text().splitlines()[2] == "# YTID, start_seconds, end_seconds, positive_labels"
    back = Segments.from_file(out, label_index=LabelIndex(MIDS, MIDS))
    assert list(back.ytids) == list(result.segments.ytids)
    assert np.allclose(back.start, result.segments.start)
    assert np.allclose(back.end, back.start + 10.0)
    assert back[0].labels == (RARE, COMMON[1])


def test_examples_file_as_keys_or_segment_csv(planted, tmp_path):
    folder, truth = planted
    cache = AudioSetCache(folder)
    keys = _examples(truth)
    plain = tmp_path / "keys.txt"
    plain.write_text("# my examples\n" + "\n".join(keys) + "\n\n")
    assert read_examples(plain, cache) == keys
    csv = tmp_path / "examples.csv"
    csv.write_text("# YTID, start_seconds, end_seconds, positive_labels\n" + "".join(
        f'{k.rsplit("_", 1)[0]}, 0.000, 10.000, "{RARE}"\n' for k in keys))
    assert read_examples(csv, cache) == keys


def test_bad_input_is_named(planted, tmp_path):
    folder, truth = planted
    cache = AudioSetCache(folder)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(ConfigError, match="empty.txt.*no example"):
        read_examples(empty, cache)
    wrong = tmp_path / "wrong.txt"
    wrong.write_text(_examples(truth)[0] + "\nnotAclip00_0\n")
    with pytest.raises(ConfigError, match="wrong.txt.*'notAclip00_0'"):
        read_examples(wrong, cache)
    with pytest.raises(ConfigError, match="not found"):
        read_examples(tmp_path / "absent.txt", cache)
    for k in (0, -3):
        with pytest.raises(ConfigError, match=f"k .*{k}"):
            mine(folder, _examples(truth), k)
    with pytest.raises(ConfigError, match="no example"):
        mine(folder, [], 3)
    with pytest.raises(ConfigError, match="'nope_0'"):
        mine(folder, ["nope_0"], 3)
    with pytest.raises(ConfigError, match="not one of the cache's labels"):
        mine(folder, _examples(truth), 3, labels=["/m/nope"])


def test_cli_end_to_end(planted, data_root, tmp_path, capsys):
    folder, truth = planted
    split = cache_dir("planted", data_root)
    write_planted_cache(split, clips=36, rare_every=6, seed=5)
    keys = [k for k in AudioSetCache(split).keys() if int(k[2:11]) % 6 == 0]
    examples = tmp_path / "ex.txt"
    examples.write_text("\n".join(keys[:3]))
    out = tmp_path / "out.csv"
    assert main(["mine", "--examples", str(examples), "--k", "3", "--split", "planted",
                 "--root", str(data_root), "--out", str(out)]) == 0
    back = Segments.from_file(out, label_index=LabelIndex(MIDS, MIDS))
    assert len(back) == 3
    mined = {clip_key(y, 0.0) for y in back.ytids}
    assert len(mined & set(keys[3:])) >= 2
    assert main(["mine", "--examples", str(examples), "--k", "0", "--split", "planted",
                 "--root", str(data_root)]) == 2
    assert "--k" in capsys.readouterr().err


@pytest.mark.slow
def test_a_trained_fc_model_embeds_for_mining(planted, data_root, tmp_path):
    """The fc model learns the chirps from clips full of them (weak labels that are also
    strong); its embedding then finds the 3-s bursts in the other cache."""
    from audioset_data.baselines import TrainConfig, train

    folder, truth = planted
    split = cache_dir("planted_train", data_root)
    write_planted_cache(split, clips=96, rare_every=5, seed=11, burst=SECONDS)
    config = TrainConfig(model="fc", train="planted_train", eval=None, out=str(tmp_path / "run"),
                         batch_size=16, hidden=(128,), lr=3e-3, num_workers=0, epochs=20.0,
                         checkpoint_every=0, log_every=10, seed=3, sampler="balanced")
    checkpoint = train(config, progress=False).checkpoint
    result = mine(folder, _examples(truth), 7, checkpoint=checkpoint)
    found = [truth[x] for x in result.candidates["key"]]
    assert np.mean(found) >= 0.7, found
    from audioset_data.baselines.checkpoint import file_digest

    assert (folder / "embeddings" / file_digest(checkpoint)[:16] / "index.json").is_file()
