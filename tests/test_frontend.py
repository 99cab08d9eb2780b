"""The log-mel front end, its resampler and SpecAugment, against independent references.

The VGGish reference below is written from the published definition with NumPy only (strided
framing, periodic Hann, ``rfft`` magnitude, mel-space triangles with the DC bin zeroed,
``log(x + 0.01)``); the PANNs reference uses librosa's filter bank, as PANNs itself does, and
NumPy for the rest. Test audio is noise with clicks, so that misplaced frames show.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import resample_poly

from audioset_data.errors import ConfigError
from audioset_data.loaders.frontend import (
    PANNS,
    VGGISH,
    FrontEndConfig,
    LogMel,
    frame_of_time,
    hz_to_mel,
    mel_matrix,
    mel_to_hz,
)
from audioset_data.loaders.resample import (
    Resampler,
    polyphase_kernels,
    rate_ratio,
    resample_waveform,
    resampled_length,
)
from audioset_data.loaders.specaugment import SpecAugment

librosa = pytest.importorskip("librosa")


def _noisy_clicks(rng: np.random.Generator, n: int, rate: int, clicks=(0.37, 1.51)) -> np.ndarray:
    """Quiet noise with a few unit clicks at the given times (seconds)."""
    x = 0.01 * rng.standard_normal(n)
    for t in clicks:
        if int(t * rate) < n:
            x[int(t * rate)] = 1.0
    return x


# ---- the independent VGGish reference ----------------------------------------------------

def _vggish_mel_reference(rate: int, n_fft: int, n_mels: int, lo: float, hi: float) -> np.ndarray:
    """Mel weights the VGGish way, band by band: triangles linear in HTK mel."""
    def mel(f):
        return 1127.0 * np.log(1.0 + np.asarray(f, dtype=float) / 700.0)

    n_bins = n_fft // 2 + 1
    bin_mel = mel(np.arange(n_bins) * (rate / 2) / (n_bins - 1))
    edges = mel(lo) + (mel(hi) - mel(lo)) * np.arange(n_mels + 2) / (n_mels + 1)
    out = np.zeros((n_bins, n_mels))
    for b in range(n_mels):
        left, centre, right = edges[b], edges[b + 1], edges[b + 2]
        for k in range(1, n_bins):  # the DC bin keeps weight 0
            m = bin_mel[k]
            if left < m <= centre:
                out[k, b] = (m - left) / (centre - left)
            elif centre < m < right:
                out[k, b] = (right - m) / (right - centre)
    return out


def _vggish_reference(x: np.ndarray) -> np.ndarray:
    """Log-mel ``(frames, 64)`` of one 16-kHz float64 clip, VGGish's way."""
    win, hop, n_fft = 400, 160, 512
    count = 1 + (len(x) - win) // hop
    frames = np.lib.stride_tricks.as_strided(x, shape=(count, win),
                                             strides=(hop * x.strides[0], x.strides[0]))
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    magnitude = np.abs(np.fft.rfft(frames * hann, n=n_fft))
    weights = _vggish_mel_reference(16000, n_fft, 64, 125.0, 7500.0)
    return np.log(magnitude @ weights + 0.01)


def _panns_reference(x: np.ndarray) -> np.ndarray:
    """Log-mel ``(frames, 64)`` of one 32-kHz float64 clip, PANNs' way (torchlibrosa)."""
    n_fft, hop = 1024, 320
    padded = np.pad(x, n_fft // 2, mode="reflect")
    count = 1 + (len(padded) - n_fft) // hop
    frames = np.stack([padded[i * hop: i * hop + n_fft] for i in range(count)])
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    power = np.abs(np.fft.rfft(frames * hann)) ** 2
    weights = librosa.filters.mel(sr=32000, n_fft=n_fft, n_mels=64, fmin=50.0, fmax=14000.0).T
    return 10.0 * np.log10(np.maximum(power @ weights, 1e-10))


# ---- mel matrices ---------------------------------------------------------------------------

def test_mel_matrix_matches_the_vggish_definition_exactly():
    ours = mel_matrix(VGGISH)
    assert ours.shape == (257, 64)
    np.testing.assert_allclose(ours, _vggish_mel_reference(16000, 512, 64, 125.0, 7500.0),
                               atol=1e-12)
    assert not ours[0].any()


def test_htk_mel_matrix_against_librosa_peaks_and_supports():
    """librosa draws its triangles linearly in Hz, VGGish in mel: the band edges agree, so
    peaks and supports must match, and weights differ only inside a triangle's slopes (by up
    to 0.0044 here; we allow 0.01)."""
    ours = mel_matrix(VGGISH)
    theirs = librosa.filters.mel(sr=16000, n_fft=512, n_mels=64, fmin=125.0, fmax=7500.0,
                                 htk=True, norm=None).T
    np.testing.assert_array_equal(ours.argmax(axis=0), theirs.argmax(axis=0))
    np.testing.assert_array_equal(ours[1:] > 0, theirs[1:] > 0)
    assert np.abs(ours - theirs).max() < 0.01
    assert np.abs(ours - theirs).max() > 1e-4  # really two different interpolations


def test_slaney_mel_matrix_is_librosas_default():
    theirs = librosa.filters.mel(sr=32000, n_fft=1024, n_mels=64, fmin=50.0, fmax=14000.0).T
    np.testing.assert_allclose(mel_matrix(PANNS), theirs, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("scale", ["htk", "slaney"])
def test_mel_scale_round_trips_and_matches_librosa(scale):
    """VGGish writes HTK mel as 1127 ln(1 + f/700), librosa as 2595 log10(1 + f/700): the
    constants differ by 5e-6 relative (2595 / ln 10 = 1127.01); Slaney's scale is identical."""
    hz = np.array([0.0, 50.0, 700.0, 999.0, 1000.0, 1001.0, 4000.0, 14000.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(hz, scale), scale), hz, atol=1e-9)
    np.testing.assert_allclose(hz_to_mel(hz, scale), librosa.hz_to_mel(hz, htk=scale == "htk"),
                               rtol=1e-5 if scale == "htk" else 1e-12)


# ---- the VGGish front end -----------------------------------------------------------------

def test_vggish_log_mel_matches_the_numpy_reference():
    """float64: to rounding (1e-9); float32: within 2e-3 in log units (quiet bins in the log
    of float32 sums)."""
    rng = np.random.default_rng(1)
    x = np.stack([_noisy_clicks(rng, 16000 * 2 + 123, 16000),
                  _noisy_clicks(rng, 16000 * 2 + 123, 16000, clicks=(0.05, 1.9))])
    module = LogMel(VGGISH)
    ours64 = module(torch.from_numpy(x))
    assert ours64.dtype == torch.float64
    assert ours64.shape == (2, 1 + (x.shape[1] - 400) // 160, 64)
    ours32 = module(torch.from_numpy(x).float())
    assert ours32.dtype == torch.float32
    for i in range(2):
        ref = _vggish_reference(x[i])
        np.testing.assert_allclose(ours64[i].numpy(), ref, atol=1e-9)
        np.testing.assert_allclose(ours32[i].numpy(), ref, atol=2e-3)


def test_int16_input_is_scaled_to_unit_range():
    rng = np.random.default_rng(2)
    pcm = (rng.standard_normal((2, 8000)) * 3000).astype(np.int16)
    module = LogMel(VGGISH)
    from_int = module(torch.from_numpy(pcm))
    from_float = module(torch.from_numpy(pcm.astype(np.float32) / 32768.0))
    torch.testing.assert_close(from_int, from_float)
    np.testing.assert_allclose(from_int[0].numpy(),
                               _vggish_reference(pcm[0].astype(np.float64) / 32768.0),
                               atol=2e-3)


@pytest.mark.parametrize("rate", [16000, 32000])
def test_clicks_land_in_the_expected_frames(rate):
    """Each click peaks in the frame whose window centre is nearest to it, also after
    resampling from 32 kHz (the resampler must add no delay)."""
    clicks = (0.503, 1.2371, 2.75)
    x = np.zeros(rate * 3)
    for t in clicks:
        x[round(t * rate)] = 1.0
    energy = LogMel(VGGISH, input_rate=rate)(torch.from_numpy(x)[None])[0].exp().sum(-1)
    for t in clicks:
        expected = frame_of_time(VGGISH, t)
        near = energy[expected - 3: expected + 4]
        assert int(near.argmax()) == 3, (t, near)
        # the click is inside the window of the frames around it only
        assert energy[expected + 3] < 0.1 * energy[expected]


def test_panns_clicks_land_on_centred_frames():
    x = np.zeros(32000 * 2)
    x[round(0.8 * 32000)] = 1.0
    energy = LogMel(PANNS)(torch.from_numpy(x)[None])[0].sum(-1)
    assert int(energy.argmax()) == frame_of_time(PANNS, 0.8) == 80


def test_batch_equals_clip_by_clip_inside_each_length():
    rng = np.random.default_rng(3)
    for rate in (16000, 32000):
        lengths = [rate * 3, rate * 2 + 777, rate + 5]
        padded = np.zeros((3, rate * 3))
        for i, n in enumerate(lengths):
            padded[i, :n] = _noisy_clicks(rng, n, rate)
        padded[2, lengths[2]:] = 0.5  # garbage padding must not leak into the clip's frames
        module = LogMel(VGGISH, input_rate=rate)
        given = torch.from_numpy(padded)
        batch = module(given, lengths=lengths)
        assert float(given[2, -1]) == 0.5  # the caller's tensor is left alone
        counts = module.frame_counts(lengths)
        for i, n in enumerate(lengths):
            alone = module(torch.from_numpy(padded[i:i + 1, :n]))[0]
            assert alone.shape[0] == counts[i]
            torch.testing.assert_close(batch[i, : counts[i]], alone, atol=1e-10, rtol=0)


def test_examples_follow_true_lengths():
    """10-s clips give 10 examples, a 4.5-s clip padded to 10 s gives 4, a 0.5-s clip none."""
    rate = 32000
    n = rate * 10
    rng = np.random.default_rng(4)
    pcm = (rng.standard_normal((3, n)) * 1000).astype(np.int16)
    lengths = [n, int(4.5 * rate), rate // 2]
    module = LogMel(VGGISH, input_rate=rate)
    examples, clip_index = module.examples(torch.from_numpy(pcm), lengths=lengths)
    assert examples.shape == (14, 96, 64)
    assert clip_index.tolist() == [0] * 10 + [1] * 4
    logmel = module(torch.from_numpy(pcm), lengths=lengths)
    torch.testing.assert_close(examples[10], logmel[1, :96])
    torch.testing.assert_close(examples[13], logmel[1, 288:384])
    whole, index = module.examples(torch.from_numpy(pcm))
    assert whole.shape[0] == 30 and index.tolist() == [0] * 10 + [1] * 10 + [2] * 10
    assert module.example_seconds() == pytest.approx(0.975)


def test_panns_preset_shapes_and_reference():
    rng = np.random.default_rng(5)
    x = np.stack([_noisy_clicks(rng, 32000 * 2, 32000) for _ in range(2)])
    module = LogMel(PANNS)
    out = module(torch.from_numpy(x))
    assert out.shape == (2, 1 + x.shape[1] // 320, 64)
    for i in range(2):
        np.testing.assert_allclose(out[i].numpy(), _panns_reference(x[i]), atol=1e-6)
    ten_s = module(torch.zeros(1, 320000, dtype=torch.int16))
    assert ten_s.shape == (1, 1001, 64)
    assert float(ten_s.max()) == pytest.approx(-100.0)  # silence floors at 10 log10(1e-10)
    examples, _ = module.examples(torch.zeros(2, 320000), lengths=[320000, 150000])
    assert examples.shape == (10 + 4, 100, 64)


def test_bad_inputs_raise_config_errors():
    with pytest.raises(ConfigError, match="win_length"):
        FrontEndConfig(win_length=1024, n_fft=512)
    with pytest.raises(ConfigError, match="fmax"):
        FrontEndConfig(fmax=9000.0)
    with pytest.raises(ConfigError, match="mel_scale"):
        FrontEndConfig(mel_scale="bark")
    module = LogMel(VGGISH)
    with pytest.raises(ConfigError, match="batch, samples"):
        module(torch.zeros(16000))
    with pytest.raises(ConfigError, match="lengths"):
        module(torch.zeros(2, 16000), lengths=[16000, 16001])
    with pytest.raises(ConfigError, match="int16 or floating"):
        module(torch.zeros(1, 16000, dtype=torch.int32))
    assert module(torch.zeros(2, 399)).shape == (2, 0, 64)


# ---- the resampler --------------------------------------------------------------------------

@pytest.mark.parametrize(("src", "dst"), [(32000, 16000), (16000, 32000), (44100, 16000),
                                          (48000, 32000), (22050, 16000), (48000, 16000)])
def test_resampler_matches_scipy_resample_poly(src, dst):
    """Same filter as scipy's default: float64 within 1e-12, float32 within 1e-5."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3001))
    up, down = rate_ratio(src, dst)
    ref = np.stack([resample_poly(row, up, down) for row in x])
    ours = Resampler(src, dst)(torch.from_numpy(x)).numpy()
    assert ours.shape == ref.shape == (2, resampled_length(3001, src, dst))
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    ours32 = resample_waveform(torch.from_numpy(x[0]).float(), src, dst).numpy()
    np.testing.assert_allclose(ours32, ref[0], atol=1e-5)


def test_resampler_keeps_the_passband_and_removes_what_would_alias():
    t = np.arange(32000) / 32000
    low = np.sin(2 * np.pi * 1000.0 * t)
    high = np.sin(2 * np.pi * 12000.0 * t)  # above the new 8-kHz Nyquist frequency
    module = Resampler(32000, 16000)
    out = module(torch.from_numpy(np.stack([low, high]))).numpy()[:, 1000:-1000]
    rms = np.sqrt((out**2).mean(axis=1))
    assert rms[0] == pytest.approx(np.sqrt(0.5), rel=1e-3)
    assert rms[1] < 1e-3 * np.sqrt(0.5)  # more than 60 dB down


def test_resampler_identity_and_block_layout():
    x = torch.randn(2, 100)
    assert Resampler(16000, 16000)(x) is x
    one, left = polyphase_kernels(1, 2, block=1)
    many, left_many = polyphase_kernels(1, 2, block=16)
    assert left == left_many and many.shape[1] == 16
    np.testing.assert_allclose(many[: one.shape[0], 0], one[:, 0])
    with pytest.raises(ConfigError, match="input_rate"):
        rate_ratio(0, 16000)


# ---- SpecAugment ----------------------------------------------------------------------------

def _runs(row: np.ndarray) -> list[int]:
    """Lengths of the runs of True in a 1-D bool array."""
    edges = np.diff(np.concatenate([[0], row.astype(int), [0]]))
    return list(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1))


def test_specaugment_masks_the_requested_widths():
    x = torch.randn(400, 96, 64) + 10.0  # no cell is 0 before masking
    aug = SpecAugment(time_masks=1, time_width=20, freq_masks=1, freq_width=7,
                      generator=torch.Generator().manual_seed(0))
    out = aug(x).numpy()
    masked = out == 0.0
    time_rows = masked.all(axis=2)  # frames masked across every band
    freq_cols = masked.all(axis=1)  # bands masked across every frame
    time_widths = [sum(_runs(r)) for r in time_rows]
    freq_widths = [sum(_runs(c)) for c in freq_cols]
    assert max(time_widths) == 20 and max(freq_widths) == 7
    assert min(time_widths) == 0 and min(freq_widths) == 0
    assert all(len(_runs(r)) <= 1 for r in time_rows)
    # every masked cell is explained by a masked frame or band
    np.testing.assert_array_equal(masked, time_rows[:, :, None] | freq_cols[:, None, :])


def test_specaugment_is_seeded_vectorised_and_off_in_eval():
    x = torch.randn(8, 96, 64)

    def make(seed):
        return SpecAugment(time_masks=2, time_width=30, freq_masks=2, freq_width=10,
                           generator=torch.Generator().manual_seed(seed))

    torch.testing.assert_close(make(1)(x), make(1)(x))
    assert not torch.equal(make(1)(x), make(2)(x))
    first, second = make(1), make(1)
    second(x)
    assert not torch.equal(first(x), second(x))  # the generator advances between calls
    aug = make(1).eval()
    assert aug(x) is x
    with pytest.raises(ConfigError, match="time_width"):
        SpecAugment(time_width=-1)
