"""Weak-label refinement: the normalised-score rule, stored targets, the kept-fraction table,
the comparison with real strong labels, and a trained frame model that finds where a weak
label's event lies in synthetic clips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from audioset_data.baselines.refine import (
    RefinedTargets,
    check_threshold,
    normalised_scores,
    refine_split,
    refined_path,
)
from audioset_data.baselines.refine_report import format_comparison, format_kept, strong_comparison
from audioset_data.cache.manifest import clip_key
from audioset_data.cache.store import CacheWriter, open_manifest
from audioset_data.cli import main
from audioset_data.errors import ConfigError
from audioset_data.segments.labels import LabelIndex
from audioset_data.strong.events import load_strong

from .training_caches import band_noise

HOP = 0.96
#: Centre frequencies of the synthetic classes, far apart on a log scale.
EVENT_CENTRES = (300.0, 700.0, 1500.0, 3000.0, 5000.0, 7000.0)


def write_event_cache(folder: Path, clips: list[tuple[str, float, list[tuple[int, float, float]]]],
                      mids: list[str], *, rate: int = 16000, seconds: float = 10.0,
                      seed: int = 0, lengths: dict[int, float] | None = None) -> np.ndarray:
    """Write clips ``(ytid, start, [(label column, onset s, offset s), ...])`` with the
    project's writer: quiet white noise everywhere and, inside each event, band noise at its
    class's own centre frequency. ``lengths`` cuts some clips (by number) short, in seconds.
    The weak labels are the classes with an event; returns them."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    targets = np.zeros((len(clips), len(mids)), dtype=bool)
    manifest = open_manifest(folder, fmt="pcm16", sample_rate=rate, clip_samples=n,
                             label_mids=mids)
    rows = []
    for i, (ytid, start, events) in enumerate(clips):
        for label, _, _ in events:
            targets[i, label] = True
        rows.append((clip_key(ytid, start), ytid, start, start + seconds,
                     ",".join(mids[c] for c in np.flatnonzero(targets[i]))))
    manifest.add_segments(rows)
    writer = CacheWriter(folder, manifest, fmt="pcm16", sample_rate=rate, clip_samples=n,
                         label_mids=mids, batch_size=64, shard_size=256)
    for i, (ytid, start, events) in enumerate(clips):
        wave = 0.05 * rng.standard_normal(n)
        for label, onset, offset in events:
            a, b = int(onset * rate), min(n, int(offset * rate))
            if b - a > 32:
                wave[a:b] += 0.5 * band_noise(rng, b - a, rate,
                                              EVENT_CENTRES[label % len(EVENT_CENTRES)])
        true = int(round((lengths or {}).get(i, seconds) * rate))
        wave[true:] = 0.0
        pcm = np.clip(wave * 20000, -32768, 32767).astype(np.int16)
        writer.add(clip_key(ytid, start), ytid, start, start + seconds, pcm, true, targets[i])
    writer.close()
    manifest.close()
    return targets


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: the two shared cores run these small models faster that way."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- the rule -----------------------------------------------------------------------------------


def test_normalised_scores_by_hand():
    scores = np.array([[0.2, 0.8, 0.4, 0.1],
                       [0.0, 0.0, 0.0, 0.0],      # the model never fires: keep the weak label
                       [0.5, 0.5, 0.1, 0.9]])
    valid = np.array([[True] * 4, [True] * 4, [True, True, True, False]])  # short third clip
    n = normalised_scores(scores, valid)
    np.testing.assert_allclose(n, [[0.25, 1.0, 0.5, 0.125],
                                   [1.0, 1.0, 1.0, 1.0],
                                   [1.0, 1.0, 0.2, 0.0]], rtol=1e-6)
    assert n.dtype == np.float32
    for bad in (np.array([0.5, np.nan]), np.array([1.5, 0.2]), np.array([-0.1, 0.3])):
        with pytest.raises(ConfigError, match="probabilities"):
            normalised_scores(bad)
    with pytest.raises(ConfigError, match="shape"):
        normalised_scores(scores, valid[:, :3])


def _hand_targets(mode: str = "drop", threshold: float = 0.66) -> RefinedTargets:
    """Three clips of four frames over three labels; clip 1 carries labels 0 and 2, clip 2 is
    two frames long, clip 0 carries nothing."""
    fs = np.zeros((3, 4, 3), np.float32)
    fs[1, :, 0] = [0.9, 0.3, 0.6, 0.1]        # kept: frames 0 (1.0), 2 (0.667)
    fs[1, :, 2] = [0.2, 0.2, 0.4, 0.4]        # kept: frames 2, 3
    fs[2, :, 1] = [0.5, 0.2, 0.99, 0.99]      # frames 2-3 lie past the end: only frame 0 kept
    weak = np.array([[0, 0, 0], [1, 0, 1], [0, 1, 0]], bool)
    valid = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0]], bool)
    return RefinedTargets.from_scores(["a_0", "b_0", "c_0"], ["/m/x", "/m/y", "/m/z"], weak, fs,
                                      valid=valid, threshold=threshold, mode=mode,
                                      meta={"checkpoint_sha256": "ab" * 32})


def test_drop_leaves_dropped_frames_out_of_the_loss():
    t, m = _hand_targets("drop").get([1, 2, 0])
    assert t.shape == m.shape == (3, 4, 3) and t.dtype == np.float32 and m.dtype == bool
    np.testing.assert_array_equal(t[0, :, 0], [1, 0, 1, 0])
    np.testing.assert_array_equal(m[0, :, 0], [1, 0, 1, 0])
    np.testing.assert_array_equal(t[0, :, 2], [0, 0, 1, 1])
    np.testing.assert_array_equal(m[0, :, 2], [0, 0, 1, 1])
    # a label the clip does not carry stays a negative on every frame
    np.testing.assert_array_equal(t[0, :, 1], 0)
    np.testing.assert_array_equal(m[0, :, 1], 1)
    # frames past the end of a short clip are out of the loss for every label
    np.testing.assert_array_equal(t[1, :, 1], [1, 0, 0, 0])
    np.testing.assert_array_equal(m[1], np.array([[1, 1, 1], [1, 0, 1], [0] * 3, [0] * 3]))
    assert not t[2].any() and m[2].all()


def test_zero_keeps_dropped_frames_as_negatives():
    t, m = _hand_targets("zero").get([1])
    np.testing.assert_array_equal(t[0, :, 0], [1, 0, 1, 0])
    assert m[0].all()
    looser = _hand_targets("zero", threshold=0.3).get([1])[0]
    np.testing.assert_array_equal(looser[0, :, 0], [1, 1, 1, 0])


def test_examples_of_a_batch_get_their_own_frame():
    """The training loop's view: examples come clip by clip (a short clip gives fewer)."""
    refined = _hand_targets()
    clip_index = np.array([0, 0, 0, 0, 1, 1])          # batch = positions [1, 2]
    target, mask = refined.for_examples([1, 2], clip_index)
    assert target.shape == mask.shape == (6, 3)
    np.testing.assert_array_equal(target[:, 0], [1, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(target[:, 1], [0, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(mask[:, 1], [1, 1, 1, 1, 1, 0])
    with pytest.raises(ConfigError, match="at most 4 per clip"):
        refined.for_examples([1], np.zeros(5, int))
    with pytest.raises(ConfigError, match="together"):
        refined.for_examples([1, 2], np.array([0, 1, 0]))


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.01, float("nan"), float("inf")])
def test_threshold_outside_the_unit_interval_is_refused(bad):
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        check_threshold(bad)
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        _hand_targets(threshold=bad)
    assert check_threshold(1) == 1.0


def test_bad_mode_and_shapes_are_refused():
    with pytest.raises(ConfigError, match="mode"):
        _hand_targets(mode="mask")
    with pytest.raises(ConfigError, match="weak labels of shape"):
        RefinedTargets.from_scores(["a_0"], ["/m/x"], np.ones((2, 1), bool),
                                   np.zeros((1, 4, 1)))
    with pytest.raises(ConfigError, match="frame scores of shape"):
        RefinedTargets.from_scores(["a_0"], ["/m/x"], np.ones((1, 1), bool), np.zeros((1, 4)))
    with pytest.raises(ConfigError, match="out of range"):
        _hand_targets().get([3])


def test_stored_file_records_what_made_it_and_reloads(tmp_path):
    refined = _hand_targets()
    path = refined_path(tmp_path / "cache", "ab" * 32, 0.66)
    assert path == tmp_path / "cache" / "refined" / ("ab" * 8 + "-t0.66.npz")
    refined.save(path)
    back = RefinedTargets.load(path)
    assert back.meta["checkpoint_sha256"] == "ab" * 32 and back.meta["threshold"] == 0.66
    assert back.meta["mode"] == "drop" and len(back.meta["keys_sha256"]) == 64
    for got, want in zip(back.get([0, 1, 2]), refined.get([0, 1, 2]), strict=True):
        np.testing.assert_array_equal(got, want)
    # re-ordered to a dataset's keys
    reordered = RefinedTargets.load(path, keys=["c_0", "b_0"])
    np.testing.assert_array_equal(reordered.get([0])[0], refined.get([2])[0])
    np.testing.assert_array_equal(reordered.get([1])[1], refined.get([1])[1])
    # another threshold or mode from the same stored scores
    assert RefinedTargets.load(path, threshold=0.3, mode="zero").get([1])[1].all()
    with pytest.raises(ConfigError, match="'zz_0' has no refined targets"):
        RefinedTargets.load(path, keys=["a_0", "zz_0"])
    with pytest.raises(ConfigError, match="more than once"):
        RefinedTargets.load(path, keys=["a_0", "a_0"])
    with pytest.raises(ConfigError, match="labels that differ"):
        RefinedTargets.load(path, label_mids=["/m/x", "/m/z", "/m/y"])
    assert RefinedTargets.load(path, label_mids=["/m/x", "/m/y", "/m/z"]).label_mids[2] == "/m/z"
    with pytest.raises(ConfigError, match="not found"):
        RefinedTargets.load(tmp_path / "nothing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="not a refined-targets file"):
        RefinedTargets.load(tmp_path / "junk.npz")


def test_folds_join_into_one_set():
    a = _hand_targets()
    b = RefinedTargets.from_scores(["d_0"], a.label_mids, np.array([[0, 0, 1]], bool),
                                   np.full((1, 4, 3), 0.5, np.float32), meta={"fold": 1})
    joined = RefinedTargets.concat([a, b])
    assert joined.keys == ["a_0", "b_0", "c_0", "d_0"] and len(joined.meta["parts"]) == 2
    for got, want in zip(joined.get([1, 3]), (np.concatenate([x, y]) for x, y in
                                              zip(a.get([1]), b.get([0]), strict=True)),
                         strict=True):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ConfigError, match="share clips"):
        RefinedTargets.concat([a, a])


def test_kept_fraction_table_on_a_skewed_label_set():
    rng = np.random.default_rng(0)
    n = 200
    weak = np.zeros((n, 3), bool)
    weak[:, 0] = True                 # every clip: a label whose event fills the clip
    weak[:20, 1] = True               # a rarer label, a one-frame event
    fs = np.full((n, 10, 3), 0.05, np.float32)
    fs[:, :, 0] = rng.uniform(0.8, 0.9, (n, 10))
    fs[:20, 4, 1] = 0.9
    refined = RefinedTargets.from_scores([f"k{i}_0" for i in range(n)], ["/m/a", "/m/b", "/m/c"],
                                         weak, fs)
    table = refined.kept_fractions({"/m/a": "Long", "/m/b": "Short"})
    assert list(table.columns) == ["label", "mid", "name", "clips", "frames", "kept", "fraction"]
    assert list(table["mid"]) == ["/m/a", "/m/b"]        # /m/c labels no clip
    assert list(table["clips"]) == [200, 20] and list(table["frames"]) == [2000, 200]
    assert table.loc[1, "kept"] == 20 and table.loc[1, "fraction"] == pytest.approx(0.1)
    assert table.loc[0, "fraction"] == 1.0
    text = format_kept(table)
    assert "Short" in text and "0.100" in text and "1.000" in text


# -- against real strong labels ----------------------------------------------------------------


@pytest.fixture(scope="module")
def gun(shared_data, label_index):
    return load_strong(shared_data / "strong" / "gun_ov_audioset_eval_strong.tsv",
                       label_index=label_index, vocabulary={})


def test_comparison_report_on_real_strong_rows(gun, label_index):
    """Scores that follow the strong frames (plus noise) keep the present frames; the report
    has a row per annotated label and an overall row, beside keep-all."""
    from audioset_data.strong.frames import frame_targets

    mids = ["/m/032s66", "/m/04zjc", "/m/073cg4", "/m/01d3sd"]
    index = LabelIndex(mids, mids)
    keys = list(gun.keys[:60])
    truth = frame_targets(gun, index, keys=keys)
    present = truth.targets.toarray().reshape(len(keys), 10, len(mids))
    weak = present.any(axis=1)
    weak[:5, 3] = True            # a weak label the strong file does not annotate: left out
    rng = np.random.default_rng(1)
    fs = np.where(present, 0.9, 0.2) + rng.uniform(0, 0.05, present.shape)
    refined = RefinedTargets.from_scores(keys, mids, weak, fs.astype(np.float32))
    table = strong_comparison(refined, gun, names=label_index)
    assert list(table["mid"])[-1] == "overall" and table["label"].iloc[-1] == -1
    assert set(table["mid"][:-1]) <= set(mids[:3])
    overall = table.iloc[-1]
    assert overall["clips"] == int(weak[:, :3].sum())
    assert overall["precision"] == 1.0 and overall["recall"] == 1.0
    assert overall["keep_all_recall"] == 1.0
    assert overall["keep_all_precision"] == pytest.approx(present.sum() / (weak[:, :3].sum() * 10))
    assert overall["keep_all_precision"] < 0.5
    text = format_comparison(table)
    lines = text.splitlines()
    assert lines[0].startswith("| label | clips | frames | present | kept | precision | recall")
    assert "keep-all precision" in lines[0] and lines[1] == "|" + "---|" * 11
    assert len(lines) == len(table) + 2 and lines[-1].startswith("| **overall** |")
    assert "| Gunshot, gunfire (/m/032s66) |" in text
    assert lines[-1].split(" | ")[5:7] == ["1.000", "1.000"]


def test_comparison_with_a_poor_refinement_is_not_flattered(gun):
    """Keeping the frames the strong labels mark absent scores worse than keep-all."""
    from audioset_data.strong.frames import frame_targets

    mids = ["/m/032s66", "/m/04zjc", "/m/073cg4"]
    keys = list(gun.keys[:40])
    present = frame_targets(gun, LabelIndex(mids, mids), keys=keys).targets.toarray() \
        .reshape(len(keys), 10, 3)
    weak = present.any(axis=1)
    fs = np.where(present, 0.1, 0.9).astype(np.float32)
    overall = strong_comparison(RefinedTargets.from_scores(keys, mids, weak, fs), gun).iloc[-1]
    assert overall["precision"] < overall["keep_all_precision"]
    assert overall["recall"] < 0.5


# -- a trained frame model on a synthetic cache --------------------------------------------------

MIDS = ["/m/ev0", "/m/ev1", "/m/ev2", "/m/ev3"]


@pytest.fixture(scope="module")
def known_extent(tmp_path_factory):
    """A cache where each clip's event fills 3 of its 10 frames (a random place), a frame
    model trained on its weak labels, and the known frames."""
    from audioset_data.baselines import TrainConfig, train

    base = tmp_path_factory.mktemp("refine")
    rng = np.random.default_rng(5)
    clips, extent = [], []
    for i in range(32):
        first = int(rng.integers(0, 8))
        clips.append((f"ext{i:08d}", 0.0, [(i % 4, first * HOP, (first + 3) * HOP)]))
        extent.append(first)
    write_event_cache(base / "cache", clips, MIDS, seed=6)
    out = base / "run"
    train(TrainConfig(model="fc", train=str(base / "cache"), eval=None, out=str(out),
                      batch_size=8, hidden=(64,), lr=3e-3, num_workers=0, epochs=6.0,
                      checkpoint_every=0, log_every=50, seed=3), progress=False)
    known = np.zeros((32, 10), bool)
    for i, f in enumerate(extent):
        known[i, f:f + 3] = True
    return base, out / "last.pt", known


@pytest.mark.slow
def test_kept_frames_find_the_known_extent(known_extent):
    base, checkpoint, known = known_extent
    refined = refine_split(checkpoint, base / "cache", threshold=0.66)
    assert refined.path is not None and refined.path.parent == base / "cache" / "refined"
    assert refined.meta["model"] == "fc" and refined.meta["generation"] is not None
    kept = np.zeros_like(known)
    kept[refined.pair_clip] = refined.kept
    precision = (kept & known).sum() / kept.sum()
    recall = (kept & known).sum() / known.sum()
    assert known.mean() == pytest.approx(0.3)   # keep-all precision: chance
    assert precision > 0.75 and recall > 0.6, (precision, recall)
    target, mask = refined.get(np.arange(32))
    assert target.shape == mask.shape == (32, 10, 4)
    label = np.arange(32) % 4
    rows = np.arange(32)
    np.testing.assert_array_equal(target[rows, :, label], kept)
    np.testing.assert_array_equal(mask[rows, :, label], kept)          # drop mode
    other = np.ones((32, 4), bool)
    other[rows, label] = False
    assert mask.transpose(0, 2, 1)[other].all() and not target.transpose(0, 2, 1)[other].any()


@pytest.mark.slow
def test_cli_end_to_end(known_extent, capsys, tmp_path):
    base, checkpoint, _ = known_extent
    out = tmp_path / "r.npz"
    code = main(["refine", "--checkpoint", str(checkpoint), "--split", str(base / "cache"),
                 "--threshold", "0.5", "--zero", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "/m/ev0" in captured.out and "fraction" in captured.out and str(out) in captured.out
    back = RefinedTargets.load(out)
    assert back.threshold == 0.5 and back.mode == "zero"
    assert json.loads(json.dumps(back.meta))["checkpoint_sha256"]
    assert main(["refine", "--checkpoint", str(checkpoint), "--split", str(base / "cache"),
                 "--threshold", "1.5"]) == 2
    assert "(0, 1]" in capsys.readouterr().err


def _untrained(path: Path, model: str, n_classes: int) -> Path:
    from audioset_data.baselines import TrainConfig, build_model, save_checkpoint

    options = {"hidden": (8,)} if model == "fc" else {}
    return save_checkpoint(path, model=build_model(model, n_classes=n_classes, **options),
                           step=0, epoch=0,
                           config=TrainConfig(model=model, **options).to_dict())


def test_short_clips_and_label_mismatch(tmp_path):
    """A clip cut at 4.5 s has 4 whole frames, the rest out of the loss; a model with
    another number of outputs than the cache has labels is refused."""
    clips = [("aaaaaaaaaaa", 0.0, [(0, 1.0, 3.0)]), ("bbbbbbbbbbb", 30.0, [(1, 0.5, 2.0)])]
    write_event_cache(tmp_path / "cache", clips, MIDS[:2], lengths={1: 4.5})
    refined = refine_split(_untrained(tmp_path / "fc2.pt", "fc", 2), tmp_path / "cache",
                           out=tmp_path / "r.npz")
    assert refined.keys == ["aaaaaaaaaaa_0", "bbbbbbbbbbb_30000"]
    assert list(refined.valid.sum(axis=1)) == [10, 4]
    _, mask = refined.get([1])
    assert not mask[0, 4:].any() and mask[0, :4, 0].all()
    assert refined.kept[1, 4:].sum() == 0 and refined.kept[1, :4].any()
    with pytest.raises(ConfigError, match="has 3 outputs, cache .* has 2 labels"):
        refine_split(_untrained(tmp_path / "fc3.pt", "fc", 3), tmp_path / "cache")


@pytest.mark.slow
def test_clip_level_model_is_refused(tmp_path):
    path = _untrained(tmp_path / "cnn14.pt", "cnn14", 4)
    with pytest.raises(ConfigError, match="frame-level model"):
        refine_split(path, tmp_path / "no-cache")
    with pytest.raises(ConfigError, match="not found"):
        refine_split(tmp_path / "missing.pt", tmp_path / "no-cache")
