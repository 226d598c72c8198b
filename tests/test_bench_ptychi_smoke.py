"""bench/compare_ptychi.py and bench/ptychi_runner.py without pty-chi installed.

What runs everywhere: the phase-ramp removal of the shared scoring against an analytic
ramp, the runner's NPZ contract, its position and intensity conventions checked against
pty-chi's formulas (restated here from pty-chi 2.2.0's source), the torchvision
``GaussianBlur`` stand-in (needs torch, skipped without), and the comparison's lit region,
scoring and table. SKIPPED unless ``.venv-ptychi`` exists (``bench/ptychi_env.sh``): one
real pty-chi run on a tiny noise-free scan, which must reconstruct the phase.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from ptycho.metrics import evaluate_reconstruction, remove_phase_ramp
from ptycho.physics import extract_patches_fast, far_field_amplitude

REPO = Path(__file__).resolve().parents[1]
PTYCHI_PYTHON = REPO / '.venv-ptychi' / 'bin' / 'python'


def _load(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / 'bench' / f'{name}.py')
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


runner = _load('ptychi_runner')


def _textured(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    amp = 0.6 + 0.4 * ndimage.gaussian_filter(rng.random(shape), 2) / 0.6
    phase = 3.0 * ndimage.gaussian_filter(rng.standard_normal(shape), 3)
    return amp * np.exp(1j * phase)


# --------------------------------------------------------------------------- scoring

def test_phase_ramp_removal_finds_an_analytic_ramp() -> None:
    truth = _textured((96, 96))
    rows, cols = np.indices(truth.shape)
    plane = 0.7 + 0.11 * rows - 0.23 * cols  # ~30 rad across: many wraps
    corrected, (offset, gy, gx) = remove_phase_ramp(truth * np.exp(1j * plane), truth)
    assert (offset, gy, gx) == pytest.approx((0.7, 0.11, -0.23), abs=1e-9)
    assert np.abs(corrected - truth).max() < 1e-9


def test_scoring_with_ramp_removal_forgives_ramp_and_shift_only() -> None:
    truth = _textured((96, 96), seed=1)
    rows, cols = np.indices(truth.shape)
    mask = np.zeros(truth.shape, bool)
    mask[12:84, 10:86] = True
    moved = np.roll(truth, (2, -1), axis=(0, 1)) * np.exp(1j * (0.05 * rows + 0.03 * cols - 1))
    plain = evaluate_reconstruction(moved, truth, mask=mask)
    fair = evaluate_reconstruction(moved, truth, mask=mask, remove_ramp=True)
    assert plain['phase_ssim'] < 0.5 and plain['phase_ramp_y'] == 0.0
    assert fair['phase_ssim'] > 0.99 and fair['amp_ssim'] > 0.99
    assert (fair['shift_y'], fair['shift_x']) == pytest.approx((-2, 1), abs=0.15)
    assert (fair['phase_ramp_y'], fair['phase_ramp_x']) == pytest.approx((0.05, 0.03), abs=1e-3)
    noisy = truth * np.exp(1j * np.random.default_rng(2).normal(0, 0.5, truth.shape))
    assert evaluate_reconstruction(noisy, truth, mask=mask,
                                   remove_ramp=True)['phase_ssim'] < 0.9


# --------------------------------------------------------------------------- runner contract

def test_runner_npz_contract_round_trip(tmp_path: Path) -> None:
    n, N = 5, 16
    diffraction = np.random.default_rng(0).random((n, N, N)).astype(np.float32)
    positions = np.column_stack([np.linspace(10, 30, n), np.linspace(12, 20, n)])
    probe = np.ones((N, N), np.complex64)
    path = runner.write_input(tmp_path / 'in.npz', diffraction, positions, probe, (48, 50))
    with np.load(path) as data:
        assert data['diffraction'].shape == (n, N, N)
        assert tuple(data['object_shape']) == (48, 50)
        assert str(data['diffraction_kind']) == 'amplitude'
    bad = np.zeros((N, N), bool)
    bad[3, 4] = True
    with np.load(runner.write_input(tmp_path / 'bad.npz', diffraction, positions, probe,
                                    (48, 50), bad_pixels=bad)) as data:
        assert data['bad_pixels'].sum() == 1
    with pytest.raises(ValueError, match='bad_pixels'):
        runner.write_input(tmp_path / 'x.npz', diffraction, positions, probe, (48, 50),
                           bad_pixels=bad[:4])
    with pytest.raises(ValueError, match='positions_xy'):
        runner.write_input(tmp_path / 'x.npz', diffraction, positions[:3], probe, (48, 50))
    with pytest.raises(ValueError, match='probe'):
        runner.write_input(tmp_path / 'x.npz', diffraction, positions, probe[:8], (48, 50))
    with pytest.raises(ValueError, match='diffraction_kind'):
        runner.write_input(tmp_path / 'x.npz', diffraction, positions, probe, (48, 50),
                           diffraction_kind='counts')
    # An output as the runner writes it reads back with its scalars and options.
    out = tmp_path / 'out.npz'
    np.savez(out, object=np.ones((48, 50), np.complex64), probe=probe[None],
             positions_xy=positions, positions_ptychi_yx=positions[:, ::-1],
             seconds=np.float64(2.5), run_seconds=np.float64(2.0), loss=np.array([3.0, 1.0]),
             probe_scale=np.float64(0.1), options=np.asarray('{"algorithm": "lsqml"}'))
    result = runner.read_output(out)
    assert result['seconds'] == 2.5 and result['options'] == {'algorithm': 'lsqml'}
    np.savez(out, object=np.ones((2, 2)))
    with pytest.raises(ValueError, match='lacks'):
        runner.read_output(out)


@pytest.mark.parametrize('shape', [(352, 352), (129, 200)])
def test_positions_match_ptychi_patch_placement(shape: tuple[int, int]) -> None:
    """pty-chi 2.2.0: buffer index = pos + round(shape/2) - 0.5 (object.py,
    update_pos_origin_coords, SUPPORT; torch.round is half-to-even); a patch centred at
    index c starts at c - (N-1)/2 (image_proc.py, extract_patches_fourier_shift)."""
    N = 64
    positions = np.array([[40.0, 50.0], [100.25, 77.5], [shape[1] - 33.0, shape[0] - 33.0]])
    pos_yx = runner.to_ptychi_positions(positions, shape)
    origin = np.round(np.asarray(shape) / 2.0) - 0.5
    start_yx = pos_yx + origin - (N - 1) / 2.0
    ours_yx = positions[:, ::-1] - N // 2  # physics.extract_patches_fast: top-left = pos - N//2
    np.testing.assert_allclose(start_yx, ours_yx)
    np.testing.assert_allclose(runner.from_ptychi_positions(pos_yx, shape), positions)


def test_probe_scale_matches_the_unnormalised_fft() -> None:
    """pty-chi predicts |fft2(P O)|**2 (propagate.py FourierPropagator(norm=None)); ours
    are orthonormal amplitudes. After probe_scale the two agree for a unit object."""
    N = 32
    rows, cols = np.indices((N, N)) - N / 2
    probe = np.exp(-(rows ** 2 + cols ** 2) / 40.0) * np.exp(0.3j * rows)
    obj = np.ones((80, 80), np.complex128)
    positions = np.array([[30.0, 30.0], [40.0, 45.0]])
    ours = far_field_amplitude(extract_patches_fast(obj, positions, N) * probe * 123.0)
    intensity = runner.intensities(ours, 'amplitude')
    scale = runner.probe_scale(intensity, probe)
    predicted = np.abs(np.fft.fft2(probe * scale)) ** 2
    # fft_shift=True (data.py): pty-chi shifts our DC-centred data to the corner.
    np.testing.assert_allclose(np.fft.fftshift(intensity[0]), predicted, rtol=2e-4,
                               atol=1e-6 * predicted.max())
    assert runner.intensities(intensity, 'intensity') is not None


def test_torchvision_stand_in_blurs_like_torchvision() -> None:
    torch = pytest.importorskip('torch')
    namespace: dict[str, object] = {}
    exec(compile(runner.TORCHVISION_TRANSFORMS, 'transforms', 'exec'), namespace)
    blur = namespace['GaussianBlur'](kernel_size=(9, 9), sigma=(3, 3))  # as pty-chi calls it
    image = torch.zeros(1, 1, 31, 33)
    image[0, 0, 15, 16] = 1.0
    out = blur(image)
    assert out.shape == image.shape
    x = np.linspace(-4, 4, 9)
    kernel = np.exp(-0.5 * (x / 3.0) ** 2)
    kernel /= kernel.sum()
    np.testing.assert_allclose(out[0, 0, 11:20, 12:21].numpy(), np.outer(kernel, kernel),
                               rtol=1e-5, atol=1e-7)
    assert float(out.sum()) == pytest.approx(1.0, rel=1e-5)
    flat = torch.full((1, 1, 12, 12), 0.9)  # reflect padding keeps a constant image
    assert torch.allclose(blur(flat), flat, atol=1e-6)
    with pytest.raises(ValueError):
        namespace['GaussianBlur'](kernel_size=4)


# --------------------------------------------------------------------------- comparison helpers

def test_lit_region_scoring_and_table() -> None:
    compare = _load('compare_ptychi')
    N = 16
    probe = np.zeros((N, N), np.complex64)
    probe[4:12, 4:12] = 1.0
    positions = np.array([[20.0, 20.0], [26.0, 20.0], [20.0, 26.0], [26.0, 26.0]])
    illum = compare.illumination((48, 48), positions, probe)
    assert illum[22, 22] == 4 and illum[16, 16] == 1 and illum[0, 0] == 0 and illum.sum() == 4 * 64
    lit = compare.lit_region(illum, 0.1)
    assert lit[16:22, 16:22].all() and not lit[:10].any()
    truth = _textured((48, 48), seed=3)
    rows, cols = np.indices(truth.shape)
    big = np.zeros_like(lit)
    big[8:40, 8:40] = True
    metrics = compare.score(truth * np.exp(1j * (0.02 * cols + 1.0)), truth, big)
    assert metrics['phase_ssim'] > 0.99 and metrics['amp_ssim'] > 0.99
    result = compare.MethodResult('pty-chi LSQML-100 (probe known)', truth, big, 12.3,
                                  info={'load_average_1min_at_start': 0.4}, metrics=metrics)
    text = compare.table([result])
    assert 'pty-chi LSQML-100 (probe known)' in text and '12.3' in text and '0.40' in text


# --------------------------------------------------------------------------- pty-chi itself

@pytest.mark.skipif(not PTYCHI_PYTHON.exists(),
                    reason='pty-chi not installed: build .venv-ptychi with bench/ptychi_env.sh')
def test_ptychi_reconstructs_a_noise_free_scan(tmp_path: Path) -> None:
    """SKIPPED without .venv-ptychi. With the known probe, LSQML recovers the phase."""
    from ptycho.simulation import simulate_arrays

    sim = simulate_arrays(N=64, n_positions=60, object_size=128, seed=4, poisson=False)
    inp = runner.write_input(tmp_path / 'in.npz', sim.diffraction, sim.positions_xy, sim.probe,
                             sim.object.shape)
    out = tmp_path / 'out.npz'
    run = subprocess.run([str(PTYCHI_PYTHON), str(REPO / 'bench' / 'ptychi_runner.py'),
                          str(inp), str(out), '--algorithm', 'lsqml', '--probe', 'fixed',
                          '--epochs', '15', '--batch-size', '20', '--threads', '1', '--quiet'],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = runner.read_output(out)
    assert result['object'].shape == sim.object.shape and result['loss'].size == 15
    assert result['loss'][-1] < 0.2 * result['loss'][0]
    mask = np.zeros(sim.object.shape, bool)
    mask[40:88, 40:88] = True
    rec, truth = result['object'][mask], sim.object[mask]
    offset = np.angle(np.sum(rec * np.conj(truth)))
    corr = np.corrcoef(np.angle(rec * np.exp(-1j * offset)), np.angle(truth))[0, 1]
    assert corr > 0.9, corr
