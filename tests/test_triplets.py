"""Triplet embeddings: each rule's triplets have their stated property, training lowers the
loss and resumes exactly, the embedding's neighbours share labels more often than log-mel's,
export round-trips, and the semi-supervised probe and the CLI run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audioset_data.baselines.triplet_training import (
    TripletConfig,
    TripletTrainer,
    export_embeddings,
    labelled_subset,
    load_embeddings,
    neighbour_agreement,
    semi_supervised,
)
from audioset_data.baselines.triplets import RULES, TripletRules, TripletSampler, shift_mel_bins
from audioset_data.cli import main
from audioset_data.errors import ConfigError
from audioset_data.loaders import VGGISH, AudioSetDataset, LogMel

from .triplet_caches import RATE, click_waves, masked_band_cache, write_cache


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: the shared two-core machine runs these small operations faster so."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)



@pytest.fixture(scope="module")
def clicks(tmp_path_factory) -> tuple[AudioSetDataset, np.ndarray]:
    """A cache of 6 click clips of 3 s, and each clip's whole log-mel."""
    folder = tmp_path_factory.mktemp("clicks") / "cache"
    waves = click_waves(6, 3.0, seed=3)
    targets = np.eye(6, dtype=bool)
    write_cache(folder, waves, targets, prefix="clk")
    data = AudioSetDataset(folder, dtype="int16")
    stored = torch.from_numpy(data.cache.read(np.arange(6))["waveform"])
    whole = LogMel(VGGISH, input_rate=RATE)(stored).numpy()
    return data, whole


def sampler(data: AudioSetDataset, batch_size: int = 48, seed: int = 0,
            **rules: object) -> TripletSampler:
    only = {name: 0.0 for name in RULES}
    only.update({k: v for k, v in rules.items() if k in RULES})
    limits = {k: v for k, v in rules.items() if k not in RULES}
    return TripletSampler(data, TripletRules(**only, **limits), batch_size=batch_size, seed=seed)


def _patch(whole: np.ndarray, clip: int, frame: int) -> np.ndarray:
    return whole[clip, frame: frame + 96]


def _common_checks(b, whole: np.ndarray) -> None:
    """Anchors and negatives are the patches cut where stated; negatives from other clips."""
    assert (b.negative_clip != b.anchor_clip).all()
    for i in range(len(b)):
        np.testing.assert_allclose(b.anchor[i].numpy(),
                                   _patch(whole, b.anchor_clip[i], b.anchor_frame[i]),
                                   atol=2e-3)
        np.testing.assert_allclose(b.negative[i].numpy(),
                                   _patch(whole, b.negative_clip[i], b.negative_frame[i]),
                                   atol=2e-3)


def test_noise_rule_positive_is_anchor_plus_noise_at_the_stated_snr(clicks):
    data, whole = clicks
    b = next(sampler(data, noise=1.0, snr_db=(3.0, 12.0)))
    assert (b.rule == RULES.index("noise")).all()
    _common_checks(b, whole)
    a = b.waves["anchor"].astype(np.float64)
    noise = b.waves["positive"].astype(np.float64) - a
    snr = 10 * np.log10(np.mean(a ** 2, axis=1) / np.mean(noise ** 2, axis=1))
    np.testing.assert_allclose(snr, b.snr_db, atol=0.05)
    assert snr.min() >= 3.0 - 0.05 and snr.max() <= 12.0 + 0.05
    assert np.ptp(b.snr_db) > 3  # drawn over the range, not one value
    # the added noise is white, not a copy of the signal
    corr = [abs(np.corrcoef(x, y)[0, 1]) for x, y in zip(a, noise, strict=True)]
    assert max(corr) < 0.1


def test_mix_rule_positive_is_the_anchor_plus_another_clip(clicks):
    data, whole = clicks
    s = sampler(data, mix=1.0, mix_db=(-6.0, 0.0))
    b = next(s)
    assert (b.rule == RULES.index("mix")).all()
    _common_checks(b, whole)
    assert (b.partner_clip >= 0).all() and (b.partner_clip != b.anchor_clip).all()
    assert (b.negative_clip != b.partner_clip).all()
    a = b.waves["anchor"].astype(np.float64)
    rest = b.waves["positive"].astype(np.float64) - a
    partner = s._segments(b.partner_clip, b.partner_frame).astype(np.float64)
    for i in range(len(b)):
        # what was added is the partner's segment, scaled
        assert np.corrcoef(rest[i], partner[i])[0, 1] > 0.999
        level = 10 * np.log10(np.mean(rest[i] ** 2) / np.mean(a[i] ** 2))
        assert level == pytest.approx(b.mix_db[i], abs=0.05)
        # the positive still contains the anchor
        assert np.corrcoef(b.waves["positive"][i], a[i])[0, 1] > 0.5


def test_shift_rule_positive_is_the_anchor_moved_within_the_limits(clicks):
    data, whole = clicks
    b = next(sampler(data, shift=1.0, shift_frames=6, shift_bins=3))
    _common_checks(b, whole)
    seen_t, seen_f = set(), set()
    for i in range(len(b)):
        c, t0 = b.anchor_clip[i], b.anchor_frame[i]
        found = []
        for dt in range(-6, 7):
            if not 0 <= t0 + dt <= whole.shape[1] - 96:
                continue
            moved = torch.from_numpy(np.repeat(_patch(whole, c, t0 + dt)[None], 7, axis=0))
            cands = shift_mel_bins(moved, np.arange(-3, 4)).numpy()
            for df, cand in zip(range(-3, 4), cands, strict=True):
                if np.allclose(cand, b.positive[i].numpy(), atol=2e-3):
                    found.append((dt, df))
        # the shift is recovered from the clicks alone, uniquely, and is the one recorded
        assert found == [(b.positive_frame[i] - t0, b.freq_shift[i])]
        seen_t.add(found[0][0])
        seen_f.add(found[0][1])
    assert len(seen_t) > 4 and len(seen_f) > 3


def test_near_rule_positive_comes_from_the_same_clip_within_the_distance(clicks):
    data, whole = clicks
    b = next(sampler(data, batch_size=64, near=1.0, near_frames=40))
    _common_checks(b, whole)
    gap = b.positive_frame - b.anchor_frame
    assert np.abs(gap).max() <= 40 and np.abs(gap).max() > 20
    for i in range(len(b)):
        np.testing.assert_allclose(b.positive[i].numpy(),
                                   _patch(whole, b.anchor_clip[i], b.positive_frame[i]),
                                   atol=2e-3)


def test_rules_mix_by_weight_and_switch_off(clicks):
    data, _ = clicks
    s = sampler(data, batch_size=100, noise=3.0, near=1.0)
    rules = np.concatenate([next(s).rule for _ in range(10)])
    assert set(rules.tolist()) == {RULES.index("noise"), RULES.index("near")}
    assert np.mean(rules == RULES.index("noise")) == pytest.approx(0.75, abs=0.05)
    with pytest.raises(ConfigError, match="at least one"):
        TripletRules(noise=0, mix=0, shift=0, near=0)
    with pytest.raises(ConfigError, match="snr_db"):
        TripletRules(snr_db=(10, 0))
    two = AudioSetDataset(data.cache, selection=np.arange(2), dtype="int16")
    with pytest.raises(ConfigError, match="at least 3"):
        TripletSampler(two, TripletRules())
    assert len(TripletSampler(two, TripletRules(mix=0)).eligible) == 2


def test_batches_are_seeded_and_resume_from_state(clicks):
    data, _ = clicks
    a, b = sampler(data, noise=1, mix=1, shift=1, near=1), sampler(data, noise=1, mix=1,
                                                                   shift=1, near=1)
    first = [next(a) for _ in range(3)]
    b.load_state_dict({"seed": 0, "step": 2})
    again = next(b)
    assert torch.equal(first[2].positive, again.positive)
    assert (first[2].negative_clip == again.negative_clip).all()
    other = next(sampler(data, seed=1, noise=1, mix=1, shift=1, near=1))
    assert not torch.equal(other.anchor, first[0].anchor)
    with pytest.raises(ConfigError, match="seed"):
        b.load_state_dict({"seed": 5, "step": 0})


def test_short_clips_give_patches_only_within_their_length(tmp_path):
    waves = click_waves(4, 3.0, seed=7)
    waves[1] = waves[1][: int(1.5 * RATE)]
    waves[2] = waves[2][: int(0.5 * RATE)]  # shorter than one 0.975-s patch
    write_cache(tmp_path / "c", waves, np.eye(4, dtype=bool), prefix="sho")
    data = AudioSetDataset(tmp_path / "c", dtype="int16")
    s = sampler(data, batch_size=200, noise=1, mix=1, shift=1, near=1)
    assert s.eligible.tolist() == [0, 1, 3]
    b = next(s)
    clips = np.concatenate([b.anchor_clip, b.negative_clip, b.partner_clip[b.partner_clip >= 0]])
    assert 2 not in clips
    lengths = np.array([len(w) for w in waves])
    for clip, frame in ((b.anchor_clip, b.anchor_frame), (b.anchor_clip, b.positive_frame),
                        (b.negative_clip, b.negative_frame)):
        assert (frame * 160 + s.segment <= lengths[clip]).all()
    assert b.positive_frame[b.anchor_clip == 1].max() > 40  # the 1.5-s clip is used whole


# -- training -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def masked(tmp_path_factory) -> dict[str, object]:
    """A trained fc trunk on one masked-band cache, and a held-out cache of the same kind."""
    root = tmp_path_factory.mktemp("masked")
    masked_band_cache(root / "train", per_class=16, seed=1, prefix="mtr")
    keys, targets = masked_band_cache(root / "held", per_class=8, seed=101, prefix="mhe")
    config = TripletConfig(model="fc", train=str(root / "train"), out=str(root / "run"),
                           steps=150, batch_size=32, lr=3e-3, hidden=(256, 64), device="cpu",
                           log_every=10, checkpoint_every=0,
                           rules=TripletRules(near_frames=150))
    trainer = TripletTrainer(config, progress=False)
    probe = [trainer.sampler.batch(10_000 + i) for i in range(4)]
    before = _loss(trainer, probe)
    result = trainer.fit()
    return {"root": root, "trainer": trainer, "result": result, "before": before,
            "after": _loss(trainer, probe), "held_keys": keys, "held_targets": targets}


@torch.no_grad()
def _loss(trainer: TripletTrainer, batches: list) -> float:
    from audioset_data.baselines.triplets import triplet_loss

    trainer.model.eval()
    out = [float(triplet_loss(trainer.embed(b.anchor), trainer.embed(b.positive),
                              trainer.embed(b.negative), trainer.config.margin))
           for b in batches]
    return float(np.mean(out))


@pytest.mark.slow
def test_training_lowers_the_triplet_loss(masked):
    # random trunks already satisfy most triplets (small loss at the start); for cache
    # seeds 1-4, 150 steps cut it by 45-90 %
    assert masked["after"] < 0.6 * masked["before"]
    assert masked["result"].step == 150 and masked["result"].checkpoint.is_file()
    assert len(masked["result"].history) == 15


def _held_frames(masked) -> tuple[np.ndarray, np.ndarray, np.ndarray, AudioSetDataset]:
    data = AudioSetDataset(masked["root"] / "held", dtype="int16")
    batch = data.__getitems__(list(range(len(data)))).data
    x, ci = LogMel(VGGISH, input_rate=RATE).examples(batch["waveform"], batch["length"])
    return x, ci.numpy(), batch["target"].numpy().astype(bool), data


@pytest.mark.slow
def test_embedding_neighbours_share_labels_more_often_than_log_mel(masked):
    x, ci, targets, _ = _held_frames(masked)
    model = masked["trainer"].model.eval()
    with torch.no_grad():
        emb = model.embedding(x).numpy()
    ours = neighbour_agreement(emb, targets[ci], ci)
    flat = x.reshape(len(x), -1).numpy()
    raw = max(neighbour_agreement(flat, targets[ci], ci, metric="euclidean"),
              neighbour_agreement(flat, targets[ci], ci),
              neighbour_agreement(x.mean(dim=1).numpy(), targets[ci], ci, metric="euclidean"))
    # for cache seeds 1-4 (this is seed 1) ours 0.93-0.98, the best log-mel variant
    # 0.90-0.91: ours ahead for each, by 0.016-0.07 (0.055 here)
    assert ours > raw
    assert ours > 0.85


@pytest.mark.slow
def test_export_round_trip_frames_and_clips(masked, tmp_path):
    x, ci, _, data = _held_frames(masked)
    ckpt = masked["result"].checkpoint
    path = export_embeddings(ckpt, data.cache.folder, tmp_path / "emb.npz", batch_size=7)
    emb = load_embeddings(path)
    assert emb.keys == masked["held_keys"]
    assert (emb.clip == ci).all() and emb.frame.tolist() == [0, 1, 2, 3] * len(emb.keys)
    with torch.no_grad():
        direct = torch.nn.functional.normalize(masked["trainer"].model.eval().embedding(x),
                                               dim=1).numpy()
    np.testing.assert_allclose(emb.vectors, direct, atol=1e-5)
    clips = load_embeddings(export_embeddings(ckpt, data.cache.folder, tmp_path / "c.npz",
                                              per="clip"))
    assert clips.vectors.shape == (len(emb.keys), 64) and (clips.clip == np.arange(32)).all()
    np.testing.assert_allclose(clips.vectors, emb.per_clip(), atol=1e-5)
    assert clips.model == emb.model and len(emb.model) == 64
    with pytest.raises(ConfigError, match="per="):
        export_embeddings(ckpt, data.cache.folder, tmp_path / "x.npz", per="second")


def test_resume_continues_to_the_same_weights(tmp_path):
    folder = tmp_path / "cache"
    masked_band_cache(folder, per_class=2, seed=4, prefix="rsm")
    base = TripletConfig(model="fc", train=str(folder), steps=6, batch_size=8, hidden=(32, 16),
                         device="cpu", checkpoint_every=0, log_every=1)
    whole = TripletTrainer(base.replace(out=str(tmp_path / "whole")), progress=False)
    whole.fit()
    split = base.replace(out=str(tmp_path / "split"), stop_after=3)
    first = TripletTrainer(split, progress=False)
    assert first.fit().step == 3
    torch.manual_seed(123)  # a resumed run restores every RNG from the checkpoint
    second = TripletTrainer(split, progress=False)
    assert second.fit().step == 6
    for (name, w), v in zip(whole.model.state_dict().items(),
                            second.model.state_dict().values(), strict=True):
        assert torch.equal(w, v), name
    assert second.sampler.step == whole.sampler.step == 6
    # the same loop logs the same lines: steps 4-6 of the resumed call, as in the whole run
    assert [r["loss"] for r in second.history] == [r["loss"] for r in whole.history[3:]]
    assert [r["step"] for r in second.history] == [4, 5, 6]
    assert set(whole.history[0]) == {"step", "loss", "lr", "triplets_per_s"}


def test_a_triplet_checkpoint_of_the_earlier_layout_resumes_to_the_same_weights(tmp_path):
    """Checkpoints written before the triplet run shared the supervised loop kept the sampler's
    own state and only the triplet settings in ``extra`` (the RNG at the top level): they
    resume as they did."""
    from audioset_data.baselines.checkpoint import read_checkpoint

    folder = tmp_path / "cache"
    masked_band_cache(folder, per_class=2, seed=5, prefix="old")
    base = TripletConfig(model="fc", train=str(folder), steps=4, batch_size=8, hidden=(32, 16),
                         device="cpu", checkpoint_every=0, log_every=1)
    whole = TripletTrainer(base.replace(out=str(tmp_path / "whole")), progress=False)
    whole.fit()
    split = base.replace(out=str(tmp_path / "split"), stop_after=2)
    assert TripletTrainer(split, progress=False).fit().step == 2
    last = tmp_path / "split" / "last.pt"
    payload = read_checkpoint(last)
    assert payload["extra"]["triplet"] == split.to_dict()
    assert payload["config"]["model"] == "fc" and payload["sampler_state"]["step"] == 2
    payload["extra"] = {"triplet": payload["extra"]["triplet"]}
    payload["sampler_state"] = {"seed": 0, "step": 2}
    torch.save(payload, last)
    torch.manual_seed(7)
    second = TripletTrainer(split, progress=False)
    assert second.fit().step == 4
    for (name, w), v in zip(whole.model.state_dict().items(),
                            second.model.state_dict().values(), strict=True):
        assert torch.equal(w, v), name


# -- judging an embedding -----------------------------------------------------------------
def test_neighbour_agreement_and_groups():
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = np.array([[1, 0], [1, 0], [0, 1], [1, 1]], dtype=bool)
    assert neighbour_agreement(vectors, labels) == 1.0
    # rows 0 and 1 in one group: each must look elsewhere; row 0's nearest other is row 3
    # (shares label 0), row 1's too; rows 2 and 3 pair as before
    assert neighbour_agreement(vectors, labels, groups=np.array([0, 0, 1, 2])) == 1.0
    swapped = labels[[2, 1, 0, 3]]
    assert neighbour_agreement(vectors, swapped) == 0.5


def test_labelled_subset_covers_every_class_and_the_fraction():
    rng = np.random.default_rng(0)
    targets = np.zeros((1000, 6), bool)
    targets[np.arange(1000), rng.choice(6, 1000, p=[0.9, 0.05, 0.02, 0.01, 0.01, 0.01])] = True
    few = labelled_subset(targets, 0.002, seed=1)
    assert targets[few].any(axis=0).all() and len(few) == 6
    more = labelled_subset(targets, 0.05, seed=1)
    assert len(more) == 50 and len(set(more.tolist())) == 50
    assert (labelled_subset(targets, 0.05, seed=1) == more).all()
    with pytest.raises(ConfigError, match="fraction"):
        labelled_subset(targets, 0.0)


def test_semi_supervised_separates_informative_features_from_noise():
    rng = np.random.default_rng(2)
    n_clips, frames = 200, 3
    targets = np.eye(4, dtype=bool)[rng.integers(0, 4, n_clips)]
    clip = np.repeat(np.arange(n_clips), frames)
    informative = targets[clip].astype(float) * 2 + rng.normal(0, 1, (len(clip), 4))
    noise = rng.normal(0, 1, (len(clip), 4))
    good = semi_supervised(informative, clip, targets, informative, clip, targets,
                           fraction=0.05, seed=0)
    bad = semi_supervised(noise, clip, targets, noise, clip, targets, fraction=0.05, seed=0)
    assert good["labelled"] == 10
    assert good["mAP"] > 0.9 > 0.5 > bad["mAP"]


def test_cli_train_then_export(tmp_path, capsys):
    folder = tmp_path / "cache"
    masked_band_cache(folder, per_class=2, seed=5, prefix="cli")
    out = tmp_path / "run"
    assert main(["embed", "train", "--train", str(folder), "--out", str(out), "--steps", "2",
                 "--batch-size", "4", "--hidden", "16,8", "--rules", "noise=1,mix=0",
                 "--device", "cpu"]) == 0
    assert "step 2" in capsys.readouterr().out
    assert main(["embed", "export", "--checkpoint", str(out / "last.pt"), "--source",
                 str(folder), "--out", str(tmp_path / "e.npz"), "--per", "clip"]) == 0
    assert load_embeddings(tmp_path / "e.npz").vectors.shape == (8, 8)
    assert main(["embed", "train", "--train", str(folder), "--out", str(out), "--rules",
                 "hiss=1"]) == 2
    assert "hiss" in capsys.readouterr().err
