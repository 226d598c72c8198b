"""loader.load normalisation and container contents; probe normalisation and legacy hooks."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho import params, physics
from ptycho.config.config import ModelConfig, TrainingConfig, InferenceConfig
from ptycho.loader import PtychoDataContainer, container_from_raw, load, normalization_factor
from ptycho.probe import (ProbeError, get_probe_guess, normalize_probe, probe_mask,
                          reduce_probe_modes, set_probe_guess)
from ptycho.raw_data import RawData

N = 8


def _raw(M: int = 16, N: int = N, seed: int = 0) -> RawData:
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.arange(4) * 2.0 + 12, np.arange(M // 4) * 2.0 + 12)
    obj = (0.5 + rng.random((48, 48))) * np.exp(1j * (rng.random((48, 48)) - 0.5))
    return RawData(gx.ravel(), gy.ravel(), None, None,
                   (rng.random((M, N, N)) * 5 + 0.01).astype(np.float32),
                   (rng.random((N, N)) + 1j * rng.random((N, N))).astype(np.complex64), None,
                   objectGuess=obj)


def test_normalisation_value_and_shapes():
    raw = _raw()
    grouped = raw.generate_grouped_data(N, K=4, seed=0, gridsize=2)
    c = load(lambda: grouped, raw.probeGuess)
    assert isinstance(c, PtychoDataContainer)
    B = len(raw)
    D = grouped['diffraction'].astype(np.float64)
    expected = np.sqrt((N / 2) ** 2 / np.mean(np.sum(D ** 2, axis=(1, 2))))
    assert c.norm_factor == pytest.approx(expected, rel=1e-12)
    assert normalization_factor(D) == pytest.approx(expected, rel=1e-12)
    # the mean normalised pattern carries (N/2)**2 of energy
    assert np.mean(np.sum(c.X.astype(np.float64) ** 2, axis=(1, 2))) == pytest.approx((N / 2) ** 2, rel=1e-5)
    np.testing.assert_allclose(c.X, grouped['diffraction'] * expected, rtol=1e-6)
    assert c.X.shape == (B, N, N, 4) and c.X.dtype == np.float32
    assert c.diffraction.dtype == np.float32
    np.testing.assert_array_equal(c.diffraction, grouped['diffraction'])
    assert c.global_offsets.shape == (B, 1, 2, 1) and c.global_offsets.dtype == np.float64
    assert c.local_offsets.shape == (B, 1, 2, 4)
    np.testing.assert_array_equal(c.local_offsets, grouped['coords_relative'])
    np.testing.assert_array_equal(c.coords_nominal, c.local_offsets)
    np.testing.assert_array_equal(c.nn_indices, grouped['nn_indices'])
    assert c.probe.shape == (N, N) and c.probe.dtype == np.complex64
    assert len(c) == B and c.N == N and c.gridsize == 2
    # outputs are not views of the grouped dict
    assert not np.shares_memory(c.local_offsets, grouped['coords_relative'])


def test_ground_truth_amplitude_and_phase():
    raw = _raw()
    grouped = raw.generate_grouped_data(N, seed=1)
    c = load(lambda: grouped, raw.probeGuess)
    assert c.Y.dtype == np.complex64 and c.Y_I.dtype == np.float32 and c.Y_phi.dtype == np.float32
    np.testing.assert_allclose(c.Y_I, np.abs(grouped['Y']), rtol=1e-6)
    np.testing.assert_allclose(c.Y_phi, np.angle(grouped['Y']), atol=1e-6)
    np.testing.assert_allclose(c.Y_I * np.exp(1j * c.Y_phi), c.Y, atol=1e-5)
    first = grouped['nn_indices'][0, 0]
    ref = physics.extract_patch(raw.objectGuess, raw.xcoords[first], raw.ycoords[first], N)
    np.testing.assert_allclose(c.Y[0, :, :, 0], ref, atol=1e-6)
    no_truth = dict(grouped, Y=None)
    c2 = load(lambda: no_truth, raw.probeGuess)
    assert c2.Y is None and c2.Y_I is None and c2.Y_phi is None


def test_probe_normalisation_energy_and_input_untouched():
    rng = np.random.default_rng(2)
    probe = (rng.random((N, N)) + 1j * rng.random((N, N))).astype(np.complex64)
    before = probe.copy()
    p = normalize_probe(probe, N)
    assert p.dtype == np.complex64 and p.shape == (N, N)
    assert np.sum(np.abs(p.astype(np.complex128)) ** 2) == pytest.approx((N / 2) ** 2, rel=1e-5)
    np.testing.assert_allclose(p / probe, (p / probe)[0, 0], rtol=1e-5)  # pure scaling
    np.testing.assert_array_equal(probe, before)
    masked = normalize_probe(probe, N, mask=True)
    assert np.all(masked[probe_mask(N) == 0] == 0)
    assert np.sum(np.abs(masked) ** 2) == pytest.approx((N / 2) ** 2, rel=1e-5)
    mask = probe_mask(64)
    assert mask[32, 32] == 1 and mask[32, 48] == 1 and mask[32, 49] == 0 and mask[0, 0] == 0
    with pytest.raises(ProbeError, match=r'expected shape \(16, 16\)'):
        normalize_probe(probe, 16)
    with pytest.raises(ValueError, match='non-zero power'):
        normalize_probe(np.zeros((N, N)), N)
    with pytest.raises(ValueError, match='finite'):
        normalize_probe(np.full((N, N), np.nan), N)
    with pytest.raises(ValueError, match=r'\(modes, H, W\)'):
        reduce_probe_modes(np.ones(5))


def test_loader_normalises_stacked_probe_and_container_probe_mask():
    raw = _raw()
    stack = np.stack([raw.probeGuess, 0.5 * raw.probeGuess])
    grouped = raw.generate_grouped_data(N)
    c = load(lambda: grouped, stack)
    np.testing.assert_allclose(c.probe, normalize_probe(raw.probeGuess, N), rtol=1e-5)
    m = load(lambda: grouped, raw.probeGuess, probe_mask=True)
    assert np.all(m.probe[probe_mask(N) == 0] == 0)


def test_set_probe_guess_records_normalised_probe(monkeypatch):
    monkeypatch.setattr(params, 'cfg', {})
    probe = (np.ones((3, N, N)) * np.arange(1, 4)[:, None, None]).astype(np.complex64)
    out = set_probe_guess(None, probe)
    assert out.shape == (N, N) and out.dtype == np.complex64
    assert np.sum(np.abs(out) ** 2) == pytest.approx((N / 2) ** 2, rel=1e-5)
    assert params.get('probe') is out and get_probe_guess() is out
    np.testing.assert_array_equal(probe[2], 3)  # input untouched


def test_split_and_argument_errors():
    raw = _raw()
    grouped = raw.generate_grouped_data(N, sequential_sampling=True)
    full = load(lambda: grouped, raw.probeGuess)
    train = load(lambda: grouped, raw.probeGuess, which='train', create_split=True)
    test = load(lambda: grouped, raw.probeGuess, which='test', create_split=True)
    assert len(train) == 8 and len(test) == 8
    assert train.norm_factor == test.norm_factor == full.norm_factor
    np.testing.assert_array_equal(np.concatenate([train.X, test.X]), full.X)
    np.testing.assert_array_equal(test.nn_indices[:, 0], np.arange(8, 16))
    with pytest.raises(ValueError, match="which must be None, 'train' or 'test'"):
        load(lambda: grouped, raw.probeGuess, which='val')
    with pytest.raises(ValueError, match='create_split=True needs'):
        load(lambda: grouped, raw.probeGuess, create_split=True)
    with pytest.raises(ValueError, match=r"lack key\(s\) \['coords_relative'\]"):
        load(lambda: {k: v for k, v in grouped.items() if k != 'coords_relative'}, raw.probeGuess)
    with pytest.raises(ValueError, match=r'expected shape \(B, N, N, C\)'):
        load(lambda: dict(grouped, diffraction=grouped['diffraction'][0]), raw.probeGuess)
    with pytest.raises(ValueError, match='positive total energy'):
        load(lambda: dict(grouped, diffraction=np.zeros_like(grouped['diffraction'])), raw.probeGuess)
    with pytest.raises(ValueError, match='must return the dict'):
        load(lambda: None, raw.probeGuess)
    with pytest.raises(ValueError, match=r'match the patch size N=8'):
        load(lambda: grouped, np.ones((4, 4)))


def test_container_from_raw_follows_config():
    raw = _raw(M=12, N=64)
    config = TrainingConfig(model=ModelConfig(N=64, gridsize=2), neighbor_count=5, n_groups=30,
                            subsample_seed=3)
    c = container_from_raw(raw, config)
    assert c.X.shape == (30, 64, 64, 4)
    again = container_from_raw(raw, config)
    np.testing.assert_array_equal(c.nn_indices, again.nn_indices)
    inference = InferenceConfig(model=ModelConfig(N=64, gridsize=1, probe_mask=True))
    ci = container_from_raw(raw, inference)
    assert ci.X.shape == (12, 64, 64, 1)
    np.testing.assert_array_equal(ci.nn_indices[:, 0], np.arange(12))  # sequential by default
    assert np.all(ci.probe[probe_mask(64) == 0] == 0)
    late = TrainingConfig(model=ModelConfig(N=0))
    with pytest.raises(ValueError, match='never set'):
        container_from_raw(raw, late)
    wrong = TrainingConfig(model=ModelConfig(N=128))
    with pytest.raises(ValueError, match='N=128 does not match'):
        container_from_raw(raw, wrong)
