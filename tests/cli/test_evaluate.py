"""``ptychopinn evaluate``: scores a reconstruction file against a ground-truth NPZ."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_user_error, run_cli


def _shifted_truth_recon(small_sim: Path, tmp_path: Path, noise: float) -> Path:
    """A 'reconstruction': a window of the truth with a phase offset, scale and noise."""
    from ptycho.run_outputs import Reconstruction, save_recon_npz

    truth = np.load(small_sim)['objectGuess']
    rng = np.random.default_rng(1)
    window = truth[20:100, 30:110]
    rec = 1.7 * window * np.exp(1j * 0.8)
    rec = rec + noise * (rng.standard_normal(rec.shape) + 1j * rng.standard_normal(rec.shape))
    coverage = np.ones(rec.shape)
    coverage[:3] = 0  # an uncovered strip must be ignored
    rec[:3] = 0
    return save_recon_npz(tmp_path / 'recon.npz', Reconstruction(
        obj=rec.astype(np.complex64), coverage=coverage, origin_xy=(30.0, 20.0)))


def test_evaluate_perfect_and_noisy(tmp_path: Path, small_sim: Path) -> None:
    good = _shifted_truth_recon(small_sim, tmp_path, noise=0.0)
    result = run_cli('evaluate', '--reconstruction', good, '--ground-truth', small_sim,
                     '--output-dir', tmp_path / 'eval', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'SSIM' in result.stdout and 'amplitude' in result.stdout
    metrics = json.loads((tmp_path / 'eval' / 'metrics.json').read_text())
    # phase offset and amplitude scale are ambiguities, not errors
    assert metrics['amp_ssim'] > 0.99 and metrics['phase_ssim'] > 0.99
    assert abs(metrics['phase_offset']) == pytest.approx(0.8, abs=1e-3)
    for name in ('comparison.png', 'frc.png'):
        assert (tmp_path / 'eval' / name).read_bytes()[:4] == b'\x89PNG'

    noisy_dir = tmp_path / 'noisy'
    noisy_dir.mkdir()
    noisy = _shifted_truth_recon(small_sim, noisy_dir, noise=0.3)
    result = run_cli('evaluate', '--reconstruction', noisy, '--ground-truth', small_sim,
                     '--output-dir', noisy_dir / 'eval', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    worse = json.loads((noisy_dir / 'eval' / 'metrics.json').read_text())
    assert worse['amp_ssim'] < metrics['amp_ssim'] - 0.1


def test_evaluate_product_h5(tmp_path: Path, small_sim: Path) -> None:
    pytest.importorskip('ptychodus')
    from ptycho.ptychodus_io import write_product
    from ptycho.raw_data import RawData

    raw = RawData.from_file(small_sim)
    window = raw.objectGuess[10:90, 15:95]
    path = write_product(tmp_path / 'product-out.h5', window, (15.0, 10.0),
                         positions_xy=raw.positions_xy, probe=raw.probeGuess)
    result = run_cli('evaluate', '--reconstruction', path, '--ground-truth', small_sim,
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ssim_row = next(line for line in result.stdout.splitlines() if line.startswith('SSIM'))
    assert [float(v) for v in ssim_row.split()[1:]] == pytest.approx([1.0, 1.0], abs=1e-3)


def test_evaluate_errors(tmp_path: Path, small_sim: Path) -> None:
    np.savez(tmp_path / 'real.npz', object=np.ones((20, 20)))
    assert_user_error(run_cli('evaluate', '--reconstruction', tmp_path / 'real.npz',
                              '--ground-truth', small_sim, cwd=tmp_path), 'real.npz', 'complex')
    np.savez(tmp_path / 'other.npz', image=np.ones((20, 20), complex))
    assert_user_error(run_cli('evaluate', '--reconstruction', tmp_path / 'other.npz',
                              '--ground-truth', small_sim, cwd=tmp_path), 'other.npz', 'object')
    good = _shifted_truth_recon(small_sim, tmp_path, 0.0)
    np.savez(tmp_path / 'nogt.npz', x=np.ones(3))
    assert_user_error(run_cli('evaluate', '--reconstruction', good, '--ground-truth',
                              tmp_path / 'nogt.npz', cwd=tmp_path), 'nogt.npz', 'objectGuess')
    assert_user_error(run_cli('evaluate', '--reconstruction', tmp_path / 'absent.npz',
                              '--ground-truth', small_sim, cwd=tmp_path), 'absent.npz')
