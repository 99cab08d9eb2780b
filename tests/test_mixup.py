"""Mixup: the two pairings, the lambda distributions, seeding and resuming, torch = NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audioset_data.errors import ConfigError
from audioset_data.loaders.mixup import Mixup


def _batch(n: int = 8, samples: int = 1000):
    """Clip i is a click at a sample unique to i; its target is class i % 5."""
    x = np.zeros((n, samples), dtype=np.float32)
    x[np.arange(n), 37 * np.arange(n) + 3] = 1.0
    y = np.zeros((n, 5), dtype=np.float32)
    y[np.arange(n), np.arange(n) % 5] = 1
    lengths = np.arange(n) * 100 + 50
    return x, y, lengths


def test_pairs_mix_neighbours_and_halve_the_batch():
    x, y, lengths = _batch()
    m = Mixup(alpha=1.0, mode="pairs", seed=3)(torch.from_numpy(x), torch.from_numpy(y),
                                              torch.from_numpy(lengths))
    assert m.inputs.shape == (4, 1000) and m.targets.shape == (4, 5)
    for i in range(4):
        lam = float(m.lam[i])
        row = m.inputs[i].numpy()
        assert np.flatnonzero(row).tolist() == [37 * 2 * i + 3, 37 * (2 * i + 1) + 3]
        assert row[37 * 2 * i + 3] == pytest.approx(lam)
        assert row[37 * (2 * i + 1) + 3] == pytest.approx(1 - lam)
        np.testing.assert_allclose(m.targets[i].numpy(), lam * y[2 * i] + (1 - lam) * y[2 * i + 1],
                                   rtol=1e-6)
        assert int(m.lengths[i]) == lengths[2 * i + 1]


def test_permute_keeps_the_batch_with_random_partners():
    x, y, _ = _batch(16)
    m = Mixup(alpha=0.3, mode="permute", dominant=True, seed=1)(x, y)
    assert m.inputs.shape == x.shape and isinstance(m.inputs, np.ndarray)
    assert sorted(m.second.tolist()) == list(range(16)) and m.second.tolist() != list(range(16))
    assert (m.lam >= 0.5).all()
    np.testing.assert_allclose(m.inputs, m.lam[:, None] * x + (1 - m.lam[:, None]) * x[m.second],
                               rtol=1e-6)


def test_lambda_distributions():
    flat = Mixup(alpha=1.0, mode="pairs", seed=0).draw(40_000)[2]
    hist = np.histogram(flat, bins=10, range=(0, 1))[0] / len(flat)
    assert np.abs(hist - 0.1).max() < 0.01  # Beta(1, 1) is uniform
    u = Mixup(alpha=0.3, mode="pairs", seed=0).draw(40_000)[2]
    edge = ((u < 0.1) | (u > 0.9)).mean()
    assert edge > 0.5  # Beta(0.3, 0.3) piles up near 0 and 1 (exact: about 0.56)


def test_seeded_and_resumable():
    x, y, _ = _batch(8)
    a, b = Mixup(seed=5, mode="permute"), Mixup(seed=5, mode="permute")
    first = [a(x, y).inputs for _ in range(3)]
    assert all(np.array_equal(f, b(x, y).inputs) for f in first)
    state = a.state_dict()
    nxt = a(x, y).inputs
    c = Mixup(seed=99, mode="permute")
    c.load_state_dict(state)
    assert np.array_equal(c(x, y).inputs, nxt)


def test_torch_and_numpy_agree_and_int16_waveforms_become_float():
    x, y, _ = _batch(6)
    pcm = (x * 20000).astype(np.int16)
    t = Mixup(seed=2, mode="permute")(torch.from_numpy(pcm), torch.from_numpy(y))
    n = Mixup(seed=2, mode="permute")(pcm, y)
    assert t.inputs.dtype == torch.float32 and n.inputs.dtype == np.float32
    np.testing.assert_allclose(t.inputs.numpy(), n.inputs, rtol=1e-6)


@pytest.mark.parametrize("kw, call_n, match", [
    ({"alpha": 0}, 4, "alpha"),
    ({"mode": "cutmix"}, 4, "mode"),
    ({"mode": "pairs"}, 5, "even"),
])
def test_bad_input_is_named(kw, call_n, match):
    x, y, _ = _batch(call_n)
    with pytest.raises(ConfigError, match=match):
        Mixup(**kw)(x, y)
