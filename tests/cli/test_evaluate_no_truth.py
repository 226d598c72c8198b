"""Scoring without ground truth: the data residual and the half-scan FRC
(``ptycho.no_truth`` and ``ptychopinn evaluate --data [--model]``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_user_error, run_cli
from ptycho.metrics import frc_curve
from ptycho.no_truth import data_residual, half_scan_frc, poisson_amplitude_mse, split_scan
from ptycho.raw_data import RawData
from ptycho.run_outputs import Reconstruction, save_recon_npz
from ptycho.simulation import simulate_dataset

PNG = b'\x89PNG\r\n\x1a\n'


@pytest.fixture(scope='module')
def scan() -> RawData:
    return simulate_dataset(N=64, n_positions=60, nphotons=1e6, seed=3)


# --------------------------------------------------------------------------- data residual
def test_poisson_floor_matches_sampling() -> None:
    rng = np.random.default_rng(0)
    for lam in (0.05, 0.5, 3.0, 30.0, 3000.0):
        draws = rng.poisson(lam, 200_000)
        sampled = np.mean((np.sqrt(draws) - np.sqrt(lam)) ** 2)
        assert poisson_amplitude_mse(lam) == pytest.approx(sampled, rel=0.02)


def test_perfect_reconstruction_sits_at_the_noise_and_a_wrong_one_far_above(scan: RawData
                                                                           ) -> None:
    truth = scan.objectGuess
    perfect = data_residual(truth, scan.probeGuess, scan.positions_xy, scan.diff3d, counts=True)
    summary = perfect.summary()
    assert summary['n_evaluated'] == len(scan)
    assert 0.95 < summary['over_noise_median'] < 1.1
    assert summary['scale'] == pytest.approx(1.0, abs=0.01)
    # a global phase and amplitude scale are not errors
    scaled = data_residual(2.5 * np.exp(0.7j) * truth, scan.probeGuess, scan.positions_xy,
                           scan.diff3d, counts=True)
    np.testing.assert_allclose(scaled.residual, perfect.residual, rtol=1e-9)
    for wrong in (np.ones_like(truth), np.roll(truth, 3, axis=1)):
        bad = data_residual(wrong, scan.probeGuess, scan.positions_xy, scan.diff3d,
                            counts=True).summary()
        assert bad['over_noise_median'] > 3 and bad['median'] > 3 * summary['median']


def test_patterns_whose_probe_leaves_the_reconstruction_are_set_aside(scan: RawData) -> None:
    truth = scan.objectGuess
    covered = np.zeros(truth.shape, bool)
    covered[:, : truth.shape[1] // 2] = True  # only the left half was reconstructed
    result = data_residual(np.where(covered, truth, 0), scan.probeGuess, scan.positions_xy,
                           scan.diff3d, covered=covered)
    inside = scan.xcoords + 32 <= truth.shape[1] // 2
    assert result.evaluated[inside].all() and not result.evaluated[scan.xcoords > 150].any()
    assert 0 < result.summary()['n_evaluated'] < len(scan)


# --------------------------------------------------------------------------- FRC of halves
def test_frc_of_an_image_with_itself_is_one_and_of_independent_noise_about_zero() -> None:
    rng = np.random.default_rng(2)
    image = rng.standard_normal((96, 96))
    np.testing.assert_allclose(frc_curve(image, image).frc, 1.0, atol=1e-12)
    noise = frc_curve(image, rng.standard_normal((96, 96)))
    # each ring's correlation of independent noise is ~ 1/sqrt(pixels in the ring)
    assert abs(noise.frc.mean()) < 0.05
    assert np.all(np.abs(noise.frc) < 5 / np.sqrt(noise.n_pixels))
    obj = np.exp(1j * rng.random((80, 80))) * (0.5 + rng.random((80, 80)))
    mask = np.zeros((80, 80), bool)
    mask[10:70, 5:75] = True
    rows, cols = np.indices(obj.shape)
    ramp = np.exp(1j * (1.3 + 0.05 * rows - 0.08 * cols))  # constant phase and ramp: ambiguities
    same = half_scan_frc(obj, obj * ramp, mask)
    np.testing.assert_allclose(same.phase_plane, (1.3, 0.05, -0.08), atol=1e-9)
    assert same.summary()['phase_frc_halfbit'] == 0.5  # Nyquist: never below half-bit
    assert same.summary()['phase_resolution_px'] == 2.0
    assert same.box == (10, 70, 5, 75)
    assert same.summary()['phase_frc_recovers_to'] is None
    other = half_scan_frc(obj, np.exp(1j * rng.random((80, 80))), mask)
    assert other.summary()['phase_frc_halfbit'] < 0.1


def test_a_curve_that_dips_then_recovers_is_reported_both_ways() -> None:
    from ptycho.metrics import FRCCurve
    from ptycho.no_truth import resolution

    frequency = np.arange(1, 11) / 20
    frc = np.array([0.9, 0.1, 0.8, 0.8, 0.8, 0.8, 0.1, 0.1, 0.1, 0.1])
    curve = FRCCurve(frequency, frc, np.full(10, 0.3), np.full(10, 100))
    found = resolution(curve, 'phase', pixel_size_m=1e-8)
    assert found['phase_frc_halfbit'] == pytest.approx(0.05 + 0.05 * 0.6 / 0.8)
    assert found['phase_resolution_px'] == pytest.approx(1 / found['phase_frc_halfbit'])
    assert found['phase_resolution_m'] == pytest.approx(1e-8 * found['phase_resolution_px'])
    assert found['phase_frc_recovers_to'] == pytest.approx(0.30)


def test_scan_halves_interleave() -> None:
    gx, gy = np.meshgrid(np.arange(6) * 7.0, np.arange(5) * 7.0)
    raster = np.stack([gx.ravel(), gy.ravel()], axis=1) + 0.4 * np.sin(np.arange(30))[:, None]
    a, b = split_scan(raster, 'alternate')
    assert a.tolist() == list(range(0, 30, 2)) and b.tolist() == list(range(1, 30, 2))
    a, b = split_scan(raster, 'checkerboard')
    assert len(a) == len(b) == 15
    cells = np.round(raster / 7.0).astype(int)
    assert set(cells[a].sum(axis=1) % 2) == {0} and set(cells[b].sum(axis=1) % 2) == {1}
    with pytest.raises(ValueError, match='scheme'):
        split_scan(raster, 'random')


# --------------------------------------------------------------------------- command line
def _truth_as_recon(raw: RawData, path: Path) -> Path:
    obj = raw.objectGuess
    return save_recon_npz(path, Reconstruction(obj=obj, coverage=np.ones(obj.shape),
                                               origin_xy=(0.0, 0.0)))


def test_evaluate_data_residual_without_truth(tmp_path: Path, small_sim: Path) -> None:
    raw = RawData.from_file(small_sim)
    recon = _truth_as_recon(raw, tmp_path / 'recon.npz')
    result = run_cli('evaluate', '--reconstruction', recon, '--data', small_sim,
                     '--output-dir', tmp_path / 'eval', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'Data residual' in result.stdout and 'Poisson noise floor' in result.stdout
    scores = json.loads((tmp_path / 'eval' / 'no_truth.json').read_text())
    assert scores['counts'] is True and scores['probe'] == 'data'
    assert 0.9 < scores['data_residual']['over_noise_median'] < 1.1
    assert (tmp_path / 'eval' / 'residual_map.png').read_bytes()[:8] == PNG
    with np.load(tmp_path / 'eval' / 'no_truth.npz') as arrays:
        assert arrays['residual'].shape == (len(raw),)
    assert_user_error(run_cli('evaluate', '--reconstruction', recon, cwd=tmp_path),
                      '--ground-truth', '--data')
    assert_user_error(run_cli('evaluate', '--reconstruction', recon, '--model', tmp_path,
                              cwd=tmp_path), '--data')


def test_evaluate_half_scan_frc_of_a_trained_model(tmp_path: Path, small_sim: Path) -> None:
    pytest.importorskip('torch')
    from ptycho.config.config import ModelConfig, TrainingConfig
    from ptycho.workflows.backend_selector import get_backend
    from ptycho.workflows.contract import inference_config_for, reconstruct

    raw = RawData.from_file(small_sim)
    backend = get_backend('pytorch')
    config = TrainingConfig(model=ModelConfig(N=64, gridsize=1, n_filters_scale=1), nepochs=1,
                            batch_size=16, backend='pytorch', accelerator='cpu',
                            logger='none', output_dir=tmp_path / 'model')
    trained = backend.train(raw, None, config)
    recon = reconstruct(backend, trained.model, raw, inference_config_for(trained.model))
    recon_path = save_recon_npz(tmp_path / 'recon.npz', Reconstruction(
        obj=recon.obj, coverage=recon.coverage, origin_xy=recon.origin_xy))
    result = run_cli('evaluate', '--reconstruction', recon_path, '--data', small_sim,
                     '--model', tmp_path / 'model', '--output-dir', tmp_path / 'eval',
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'Half-scan FRC' in result.stdout
    scores = json.loads((tmp_path / 'eval' / 'no_truth.json').read_text())
    frc = scores['half_scan_frc']
    assert frc['n_a'] + frc['n_b'] == len(raw) and frc['n_pixels'] > 1000
    # two halves of one object through one model agree at low frequencies
    with np.load(tmp_path / 'eval' / 'no_truth.npz') as arrays:
        assert arrays['frc_amp'][0] > 0.5 and arrays['frc_phase'][0] > 0.5
    assert 0 < frc['phase_frc_halfbit'] <= 0.5
    assert frc['phase_resolution_px'] == pytest.approx(1 / frc['phase_frc_halfbit'])
    assert (tmp_path / 'eval' / 'frc_halves.png').read_bytes()[:8] == PNG
    assert scores['data_residual']['n_evaluated'] > 0
