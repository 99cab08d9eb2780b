"""Samplers: coverage, class balance, weights, determinism, distributed shards, resume."""

from __future__ import annotations

import ast
import itertools
import json
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

from audioset_data.errors import ConfigError
from audioset_data.loaders import samplers as samplers_module
from audioset_data.loaders.samplers import (
    BalancedSampler,
    DistributedBalancedSampler,
    DistributedShuffleSampler,
    DistributedWeightedSampler,
    ShuffleSampler,
    WeightedSampler,
    label_weights,
)

N_CLASSES = 12


def skewed_targets(seed: int = 0) -> sparse.csr_matrix:
    """Class 0 on 5000 clips, class k = 1..10 on 7k clips, class 11 empty, 215 clips unlabelled;
    15 rare-class clips also carry class 0 and about 25 carry a second rare class."""
    rng = np.random.default_rng(seed)
    n = 5600
    dense = np.zeros((n, N_CLASSES), dtype=bool)
    dense[:5000, 0] = True
    start = 5000
    for k in range(1, 11):
        dense[start: start + 7 * k, k] = True
        start += 7 * k
    rare = rng.permutation(np.arange(5000, start))
    dense[rare[:15], 0] = True
    for i in rare[100:125]:
        dense[i, rng.choice(np.arange(1, 11))] = True
    return sparse.csr_matrix(dense)


def reference_balanced(targets: sparse.csr_matrix, num_samples: int, seed: int) -> tuple[
        list[int], list[int]]:
    """The PANNs balanced algorithm as a plain loop: the statistical reference."""
    rng = random.Random(seed)
    csc = sparse.csc_matrix(targets)
    queues = {c: list(csc.indices[csc.indptr[c]: csc.indptr[c + 1]])
              for c in range(csc.shape[1]) if csc.indptr[c + 1] > csc.indptr[c]}
    for q in queues.values():
        rng.shuffle(q)
    pointer = dict.fromkeys(queues, 0)
    clips: list[int] = []
    classes: list[int] = []
    while len(clips) < num_samples:
        order = list(queues)
        rng.shuffle(order)
        for c in order:
            if len(clips) == num_samples:
                break
            if pointer[c] == len(queues[c]):
                rng.shuffle(queues[c])
                pointer[c] = 0
            clips.append(queues[c][pointer[c]])
            classes.append(c)
            pointer[c] += 1
    return clips, classes


def check_balanced_structure(targets: sparse.csr_matrix, clips: np.ndarray,
                             classes: np.ndarray) -> None:
    """Every round has each non-empty class once; a class repeats no clip within a queue pass,
    so each of its clips is drawn floor or ceil of (draws / clips) times; each drawn clip
    carries the class it was drawn for."""
    dense = targets.toarray()
    nonempty = np.flatnonzero(dense.any(axis=0))
    n_cls = nonempty.size
    assert dense[clips, classes].all()
    full = clips.size // n_cls
    rounds = classes[: full * n_cls].reshape(full, n_cls)
    assert (np.sort(rounds, axis=1) == nonempty).all()
    for c in nonempty:
        members = np.flatnonzero(dense[:, c])
        drawn = clips[classes == c]
        for lo in range(0, drawn.size, members.size):
            part = drawn[lo: lo + members.size]
            assert np.unique(part).size == part.size
            if part.size == members.size:
                assert (np.sort(part) == members).all()
        per_clip = np.bincount(drawn, minlength=dense.shape[0])[members]
        q, r = divmod(drawn.size, members.size)
        assert (per_clip >= q).all() and (per_clip <= q + (r > 0)).all()


# --- ShuffleSampler -------------------------------------------------------------------------


def test_shuffle_every_clip_once_and_shuffled():
    s = ShuffleSampler(1000, seed=3)
    seq = np.array(list(s))
    assert len(s) == 1000 and np.array_equal(np.sort(seq), np.arange(1000))
    assert not np.array_equal(seq, np.arange(1000))
    assert list(ShuffleSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]


def test_shuffle_four_replicas_pad_by_wrapping():
    full = ShuffleSampler(103, seed=1).indices()
    shards = [ShuffleSampler(103, seed=1, num_replicas=4, rank=r) for r in range(4)]
    assert {len(s) for s in shards} == {26}
    got = [np.array(list(s)) for s in shards]
    padded = np.concatenate([full, full[:1]])
    for r in range(4):
        assert np.array_equal(got[r], padded[r::4])
    allitems = np.concatenate(got)
    assert np.array_equal(np.unique(allitems), np.arange(103))
    assert np.bincount(allitems).max() == 2 and np.bincount(allitems).sum() == 104


def test_shuffle_drop_last_ranks_disjoint():
    shards = [ShuffleSampler(103, seed=1, num_replicas=4, rank=r, drop_last=True).indices()
              for r in range(4)]
    assert {s.size for s in shards} == {25}
    assert np.unique(np.concatenate(shards)).size == 100


def test_shuffle_more_replicas_than_clips():
    shards = [ShuffleSampler(3, num_replicas=8, rank=r).indices() for r in range(8)]
    assert {s.size for s in shards} == {1}
    assert set(np.concatenate(shards).tolist()) == {0, 1, 2}


# --- BalancedSampler ------------------------------------------------------------------------


def test_balanced_equalises_a_skewed_label_set():
    targets = skewed_targets()
    dense = targets.toarray()
    n_draws = 11 * 400
    balanced = BalancedSampler(targets, num_samples=n_draws, seed=0).indices()
    shuffled = np.random.default_rng(0).choice(dense.shape[0], size=n_draws, replace=False)
    per_class_b = dense[balanced].sum(axis=0)[:11]
    per_class_s = dense[shuffled].sum(axis=0)[:11]
    # Each class is drawn for itself 400 times; multi-labelled clips drawn for another class
    # add a little (class 0 is on 15 of the 385 rare clips, which take 4000 draws: ~40% more).
    assert (per_class_b >= 400).all() and (per_class_b <= 1.6 * 400).all()
    assert per_class_s[0] > 20 * per_class_s[1:].max()
    assert dense[balanced, 11].sum() == 0


def test_balanced_structure_and_reference_loop_agree():
    targets = skewed_targets()
    for num_samples in (11 * 300, 11 * 300 + 7):
        s = BalancedSampler(targets, num_samples=num_samples, seed=5)
        clips, classes = s.draws()
        assert np.array_equal(clips, s.indices())
        check_balanced_structure(targets, clips, classes)
        ref_clips, ref_classes = reference_balanced(targets, num_samples, seed=5)
        check_balanced_structure(targets, np.array(ref_clips), np.array(ref_classes))
        # the same per-class draw counts (which classes the last partial round reaches is
        # random in both)
        assert np.array_equal(np.sort(np.bincount(classes, minlength=N_CLASSES)),
                              np.sort(np.bincount(ref_classes, minlength=N_CLASSES)))


def test_balanced_big_class_draws_distinct_clips():
    targets = skewed_targets()
    s = BalancedSampler(targets, num_samples=11 * 1000, seed=2)
    clips, classes = s.draws()
    big = clips[classes == 0]
    assert big.size == 1000 and np.unique(big).size == 1000  # fewer rounds than clips


def test_balanced_deterministic_per_seed_and_epoch():
    targets = skewed_targets()
    a = BalancedSampler(targets, seed=1)
    b = BalancedSampler(targets.toarray(), seed=1)
    first = a.indices()
    assert np.array_equal(first, b.indices())
    a.set_epoch(1)
    assert not np.array_equal(first, a.indices())
    assert not np.array_equal(first, BalancedSampler(targets, seed=2).indices())
    a.set_epoch(0)
    assert np.array_equal(first, a.indices())


def test_balanced_positions_are_pure():
    s = BalancedSampler(skewed_targets(), num_samples=5000, seed=4)
    clips, classes = s.draws()
    for lo, hi in [(0, 1), (123, 987), (4999, 5000), (64 * 11, 64 * 11 * 3 + 5)]:
        part_clips, part_classes = s.draws(lo, hi)
        assert np.array_equal(part_clips, clips[lo:hi])
        assert np.array_equal(part_classes, classes[lo:hi])


# --- Distributed ----------------------------------------------------------------------------


def _make(kind: str, **kw):
    targets = skewed_targets()
    if kind == "shuffle":
        return ShuffleSampler(targets.shape[0], **kw)
    if kind == "balanced":
        return BalancedSampler(targets, num_samples=2003, **kw)
    if kind == "weighted":
        return WeightedSampler(targets, num_samples=2003, **kw)
    return WeightedSampler(targets, replacement=False, num_samples=2003, **kw)


@pytest.mark.parametrize("kind", ["shuffle", "balanced", "weighted", "weighted-noreplace"])
@pytest.mark.parametrize("drop_last", [False, True])
def test_shards_equal_disjoint_and_union_is_the_global_sequence(kind, drop_last):
    full = _make(kind, seed=7).indices()
    shards = [_make(kind, seed=7, num_replicas=3, rank=r, drop_last=drop_last).indices()
              for r in range(3)]
    assert len({s.size for s in shards}) == 1
    total = 3 * shards[0].size
    glob = np.concatenate([full, full])[:total]
    assert total == (full.size // 3 * 3 if drop_last else -(-full.size // 3) * 3)
    interleaved = np.empty(total, dtype=np.int64)
    for r in range(3):
        interleaved[r::3] = shards[r]
    assert np.array_equal(interleaved, glob)


def test_distributed_classes_default_to_one_replica_and_share_state_kind():
    targets = skewed_targets()
    d = DistributedBalancedSampler(targets, seed=3)
    assert (d.num_replicas, d.rank) == (1, 0)
    assert np.array_equal(d.indices(), BalancedSampler(targets, seed=3).indices())
    w = DistributedWeightedSampler(targets, num_replicas=4, rank=3)
    assert (w.num_replicas, w.rank) == (4, 3)
    s = DistributedShuffleSampler(10, num_replicas=2, rank=1)
    plain = ShuffleSampler(10, num_replicas=2, rank=1)
    plain.load_state_dict(s.state_dict(position=2))
    assert list(plain) == list(s)[2:]


# --- Resume ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["shuffle", "balanced", "weighted", "weighted-noreplace"])
def test_resume_continues_identical_sequence(kind):
    ref = _make(kind, seed=9, num_replicas=2, rank=1)
    ref.set_epoch(4)
    full = list(ref)
    assert ref.position == 0  # reset after a completed epoch
    rank0 = _make(kind, seed=9, num_replicas=2, rank=0)
    rank0.set_epoch(4)
    other0 = list(rank0)
    for k in (0, 1, 37, len(ref) - 1, len(ref)):
        live = _make(kind, seed=9, num_replicas=2, rank=1)
        live.set_epoch(4)
        taken = list(itertools.islice(iter(live), k))
        assert taken == full[:k] and live.position == k
        for state in (json.loads(json.dumps(live.state_dict())),
                      pickle.loads(pickle.dumps(live.state_dict()))):
            fresh = _make(kind, seed=0, num_replicas=2, rank=1)  # seed comes from the state
            fresh.load_state_dict(state)
            fresh.set_epoch(4)  # the usual loop call keeps the restored position
            assert list(fresh) == full[k:]
            assert fresh.position == 0
            # rank 0 may load rank 1's state: same length, so the same position
            other = _make(kind, seed=0, num_replicas=2, rank=0)
            other.load_state_dict(state)
            assert list(other) == other0[k:]


def test_state_position_override_and_new_epoch_resets():
    s = BalancedSampler(skewed_targets(), num_samples=300, seed=1)
    full = s.indices()
    it = iter(s)
    for _ in range(50):  # a DataLoader has prefetched 50 items
        next(it)
    state = s.state_dict(position=20)  # but the trainer consumed only 20
    assert state["position"] == 20 and set(state) >= {"seed", "epoch", "num_samples",
                                                     "num_replicas", "kind"}
    t = BalancedSampler(skewed_targets(), num_samples=300)
    t.load_state_dict({**state, "position": 20})
    assert np.array_equal(t.indices(), full[20:])
    t.set_epoch(1)
    assert t.position == 0 and len(t.indices()) == 300


def test_unfinished_iteration_is_continued_and_start_is_checked():
    s = ShuffleSampler(50, seed=2)
    full = s.indices()
    first = list(itertools.islice(iter(s), 15))
    assert first + list(s) == full.tolist()
    assert s.position == 0 and np.array_equal(s.indices(), full)
    assert np.array_equal(s.indices(start=45), full[45:])
    with pytest.raises(ConfigError, match="past the end"):
        s.indices(start=51)


def test_state_validation_names_the_field():
    targets = skewed_targets()
    state = BalancedSampler(targets, num_samples=300).state_dict()
    with pytest.raises(ConfigError, match="'kind'"):
        WeightedSampler(targets, num_samples=300).load_state_dict(state)
    with pytest.raises(ConfigError, match="'num_replicas'"):
        BalancedSampler(targets, num_samples=300, num_replicas=2).load_state_dict(state)
    with pytest.raises(ConfigError, match="'n'"):
        BalancedSampler(targets[:-1], num_samples=300).load_state_dict(state)
    with pytest.raises(ConfigError, match="'fingerprint'"):
        other = targets.tolil()
        other[0, 5] = True
        BalancedSampler(other, num_samples=300).load_state_dict(state)
    with pytest.raises(ConfigError, match="'position'"):
        BalancedSampler(targets, num_samples=300).load_state_dict({**state, "position": 301})
    with pytest.raises(ConfigError, match="'seed'"):
        BalancedSampler(targets, num_samples=300).load_state_dict(
            {k: v for k, v in state.items() if k != "seed"})
    with pytest.raises(ConfigError, match="'n'"):
        ShuffleSampler(10).load_state_dict(ShuffleSampler(11, num_replicas=1).state_dict())


# --- Weights --------------------------------------------------------------------------------


def test_label_weights_formula():
    dense = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=bool)
    want = np.array([1000 / 103, 1000 / 103 + 1000 / 101, 0.0, 1000 / 103])
    assert np.allclose(label_weights(dense), want)
    assert np.allclose(label_weights(sparse.csr_matrix(dense)), want)
    assert np.allclose(label_weights(dense, offset=0.0, scale=6.0), [2, 8, 0, 2])
    assert label_weights(dense, unlabeled_weight=0.5)[2] == 0.5


def test_weighted_with_replacement_frequencies_follow_weights():
    w = np.array([1.0, 2.0, 3.0, 4.0, 0.0, 10.0])
    n = 200_000
    draws = WeightedSampler(weights=w, num_samples=n, seed=11).indices()
    counts = np.bincount(draws, minlength=w.size)
    assert counts[4] == 0
    expected = n * w / w.sum()
    keep = w > 0
    chi2 = (((counts - expected) ** 2)[keep] / expected[keep]).sum()
    assert chi2 < 18.47  # chi-square 99.9% quantile, 4 degrees of freedom


def test_weighted_from_labels_draws_each_clip_by_its_weight():
    dense = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 1], [0, 1, 1], [0, 0, 1],
                      [1, 0, 0]], dtype=bool)
    n = 300_000
    s = WeightedSampler(dense, num_samples=n, seed=4)
    w = label_weights(dense)
    assert np.array_equal(s.weights, w)
    counts = np.bincount(s.indices(), minlength=dense.shape[0])
    assert counts[2] == 0
    expected = n * w / w.sum()
    keep = w > 0
    chi2 = (((counts - expected) ** 2)[keep] / expected[keep]).sum()
    assert chi2 < 22.46  # chi-square 99.9% quantile, 6 degrees of freedom
    # the same weights given directly make another (equally valid) sequence; a state from one
    # must not resume the other
    direct = WeightedSampler(weights=w, num_samples=n, seed=4)
    with pytest.raises(ConfigError, match="'from_labels'"):
        direct.load_state_dict(s.state_dict())


def test_weighted_label_rule_equalises_the_skewed_set():
    targets = skewed_targets()
    dense = targets.toarray()
    n = 50_000
    draws = WeightedSampler(targets, num_samples=n, seed=0).indices()
    per_class = dense[draws].sum(axis=0)[:11]
    w = label_weights(targets)
    expected = n * (w @ dense)[:11] / w.sum()
    assert np.allclose(per_class, expected, rtol=0.06)
    assert per_class[0] < 20 * per_class[1]  # 5000 / 7 ≈ 714x in the clips


def test_weighted_without_replacement_no_duplicates_and_favours_heavy():
    w = np.ones(1000)
    w[:100] = 20.0
    w[-10:] = 0.0
    picks = WeightedSampler(weights=w, num_samples=200, replacement=False, seed=1).indices()
    assert np.unique(picks).size == 200 and (picks < 990).all()
    assert (picks < 100).sum() > 80  # 20 if the weights were ignored
    every = WeightedSampler(weights=w, replacement=False, seed=1)
    seq = every.indices()
    assert len(every) == 990 and np.array_equal(np.sort(seq), np.arange(990))
    rank = np.empty(990)
    rank[seq] = np.arange(990)
    assert rank[:100].mean() < 0.5 * rank[100:990].mean()


# --- Errors ---------------------------------------------------------------------------------


def test_errors():
    targets = skewed_targets()
    with pytest.raises(ConfigError, match="empty"):
        BalancedSampler(np.zeros((0, 5), bool))
    with pytest.raises(ConfigError, match="no labels"):
        BalancedSampler(np.zeros((4, 5), bool))
    with pytest.raises(ConfigError, match="2-D"):
        BalancedSampler(np.zeros(5, bool))
    with pytest.raises(ConfigError, match="weight 2 is -1"):
        WeightedSampler(weights=[1.0, 0.0, -1.0])
    with pytest.raises(ConfigError, match="every weight is zero"):
        WeightedSampler(weights=[0.0, 0.0])
    with pytest.raises(ConfigError, match="finite"):
        WeightedSampler(weights=[1.0, np.nan])
    with pytest.raises(ConfigError, match="exactly one"):
        WeightedSampler(targets, weights=np.ones(targets.shape[0]))
    with pytest.raises(ConfigError, match="exactly one"):
        WeightedSampler()
    with pytest.raises(ConfigError, match="exceeds the 2 clips"):
        WeightedSampler(weights=[1.0, 0.0, 2.0], num_samples=3, replacement=False)
    with pytest.raises(ConfigError, match="rank must be < num_replicas"):
        ShuffleSampler(10, num_replicas=2, rank=2)
    with pytest.raises(ConfigError, match="seed"):
        ShuffleSampler(10, seed=-1)
    with pytest.raises(ConfigError, match="n must be"):
        ShuffleSampler(0)
    with pytest.raises(ConfigError, match="drop_last leaves no items"):
        ShuffleSampler(3, num_replicas=4, rank=0, drop_last=True)
    with pytest.raises(ConfigError, match="offset"):
        label_weights(targets, offset=-1.0)


# --- Integration ----------------------------------------------------------------------------


def test_torch_dataloader_accepts_the_sampler():
    torch_data = pytest.importorskip("torch.utils.data")
    s = BalancedSampler(skewed_targets(), num_samples=64, seed=2)
    loader = torch_data.DataLoader(list(range(5600)), sampler=s, batch_size=16)
    got = np.concatenate([b.numpy() for b in loader])
    assert np.array_equal(got, BalancedSampler(skewed_targets(), num_samples=64,
                                               seed=2).indices())


def test_torch_is_imported_lazily_only():
    tree = ast.parse(Path(samplers_module.__file__).read_text())
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
            assert not any(n.split(".")[0] == "torch" for n in names)
    epochs = Path(samplers_module.__file__).with_name("sampler_epochs.py").read_text()
    assert "torch" not in epochs


# --- Real labels ----------------------------------------------------------------------------


def test_real_eval_labels(eval_seg, label_index):
    from audioset_data.segments.targets import labels_to_matrix

    targets = labels_to_matrix(eval_seg, label_index).matrix
    dense = targets.toarray()
    counts = dense.sum(axis=0)
    n_cls = int((counts > 0).sum())
    s = BalancedSampler(targets, num_samples=n_cls * 12, seed=0)
    clips, classes = s.draws()
    check_balanced_structure(targets, clips, classes)
    w = label_weights(targets)
    row = int(np.flatnonzero(dense.sum(axis=1) >= 2)[0])
    cols = np.flatnonzero(dense[row])
    assert w[row] == pytest.approx(sum(1000.0 / (counts[c] + 100.0) for c in cols))


def test_real_class_counts_skew(shared_data):
    """One label per clip, class sizes the real training counts / 200 (Speech 4688 clips, the
    rarest class 1): balanced draws hit every class equally; label weights flatten the skew to
    the predicted class masses."""
    import csv

    with open(shared_data / "segments" / "train_class_counts_panns.csv", newline="") as fh:
        real = np.array([int(r["count"]) for r in csv.DictReader(fh)])
    sizes = np.maximum(1, real // 200)
    cls_of = np.repeat(np.arange(sizes.size), sizes)
    targets = sparse.csr_matrix((np.ones(cls_of.size, bool), (np.arange(cls_of.size), cls_of)),
                                shape=(cls_of.size, sizes.size))
    n = sizes.size * 40
    per_class = np.bincount(cls_of[BalancedSampler(targets, num_samples=n).indices()],
                            minlength=sizes.size)
    assert (per_class == 40).all()
    plain = np.bincount(cls_of[ShuffleSampler(cls_of.size).indices()[:n]], minlength=sizes.size)
    assert plain.max() > 100 * max(1, plain.min())
    draws = 200_000
    got = np.bincount(cls_of[WeightedSampler(targets, num_samples=draws, seed=3).indices()],
                      minlength=sizes.size)
    mass = sizes * 1000.0 / (sizes + 100.0)
    expected = draws * mass / mass.sum()
    assert abs(got - expected).max() < 5 * np.sqrt(expected.max())
    assert got.max() / got.min() < 0.05 * sizes.max() / sizes.min()
