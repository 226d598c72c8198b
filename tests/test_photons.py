"""The photon count per pattern comes from the data when the data are counts."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from ptycho.config.config import DEFAULT_NPHOTONS, TrainingConfig, update_legacy_dict
from ptycho.photons import are_counts, counts_per_pattern, resolve_nphotons
from ptycho.raw_data import RawData
from ptycho.simulation import simulate_dataset


def _raw(diffraction: np.ndarray, **kwargs: object) -> RawData:
    M, N = diffraction.shape[0], diffraction.shape[-1]
    x = np.linspace(40.0, 80.0, M)
    return RawData(x, x[::-1].copy(), None, None, diffraction, np.ones((N, N), np.complex64),
                   None, **kwargs)


@pytest.fixture(scope='module')
def counts_scan() -> RawData:
    """A Poisson scan stored as amplitudes sqrt(counts), float32 (what files hold)."""
    return simulate_dataset(N=64, n_positions=40, nphotons=1e6, seed=5)


def test_amplitudes_of_counts_are_recognised(counts_scan: RawData) -> None:
    assert are_counts(counts_scan.diff3d)
    expected = float(np.mean(np.sum(counts_scan.diff3d.astype(np.float64) ** 2, axis=(1, 2))))
    assert counts_per_pattern(counts_scan) == pytest.approx(expected, rel=1e-12)
    # the simulated probe carries 1e6 photons; the object absorbs some of them
    assert 2e5 < expected <= 1e6


def test_integer_counts_and_their_conversion_agree() -> None:
    rng = np.random.default_rng(0)
    counts = rng.poisson(30.0, (12, 64, 64)).astype(np.uint16)
    with pytest.warns(UserWarning, match='counts'):
        raw = _raw(counts)
    assert are_counts(counts) and are_counts(raw.diff3d)
    assert counts_per_pattern(raw) == pytest.approx(counts.sum(axis=(1, 2)).mean(), rel=1e-5)


def test_real_amplitudes_are_not_counts() -> None:
    noiseless = simulate_dataset(N=64, n_positions=20, nphotons=1e6, seed=5, poisson=False)
    assert not are_counts(noiseless.diff3d)
    assert counts_per_pattern(noiseless) is None
    # too few testable pixels (every count above the float32-exact range): undecided
    assert not are_counts(np.full((4, 8, 8), np.sqrt(2e6), np.float32))


def test_counts_with_a_few_inpainted_pixels_are_still_counts(counts_scan: RawData) -> None:
    patched = counts_scan.diff3d.copy()
    patched[:, 10, 10:14] += 0.37  # bad pixels filled with non-integer estimates
    assert are_counts(patched)


def test_none_becomes_the_data_count(counts_scan: RawData, caplog) -> None:
    config = TrainingConfig()
    assert config.nphotons is None
    with caplog.at_level(logging.INFO, logger='ptycho.photons'):
        resolved = resolve_nphotons(config, counts_scan)
    assert resolved.nphotons == pytest.approx(counts_per_pattern(counts_scan))
    assert config.nphotons is None  # the caller's config is not modified
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_none_without_counts_is_the_default() -> None:
    noiseless = simulate_dataset(N=64, n_positions=20, nphotons=1e6, seed=5, poisson=False)
    assert resolve_nphotons(TrainingConfig(), noiseless).nphotons == DEFAULT_NPHOTONS


def test_explicit_setting_wins_and_far_off_is_warned(counts_scan: RawData, caplog) -> None:
    found = counts_per_pattern(counts_scan)
    with caplog.at_level(logging.WARNING, logger='ptycho.photons'):
        near = resolve_nphotons(TrainingConfig(nphotons=2.0 * found), counts_scan)
    assert near.nphotons == 2.0 * found and not caplog.records
    with caplog.at_level(logging.WARNING, logger='ptycho.photons'):
        far = resolve_nphotons(TrainingConfig(nphotons=1e9), counts_scan)
    assert far.nphotons == 1e9
    [record] = caplog.records
    assert '1e+09' in record.getMessage() and f'{found:.4g}' in record.getMessage()


def test_unset_nphotons_keeps_the_legacy_mirror_working() -> None:
    cfg: dict = {}
    update_legacy_dict(cfg, TrainingConfig())
    assert 'nphotons' not in cfg
    assert cfg['intensity_scale'] == pytest.approx(np.sqrt(DEFAULT_NPHOTONS) / 32)
    with pytest.raises(ValueError, match='TrainingConfig.nphotons'):
        TrainingConfig(nphotons=0)
