"""ptycho.metrics: alignment removes the ambiguities, scores fall with the error."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from ptycho import metrics
from ptycho.simulation import make_lines_object

KEYS = ('amp_ssim', 'phase_ssim', 'amp_psnr', 'phase_psnr', 'amp_frc50', 'phase_frc50')


@pytest.fixture(scope='module')
def truth() -> np.ndarray:
    return make_lines_object(128, np.random.default_rng(0), N=64)


def _shift(obj: np.ndarray, shift_yx: tuple[float, float]) -> np.ndarray:
    return (ndimage.shift(obj.real, shift_yx, order=3, mode='nearest')
            + 1j * ndimage.shift(obj.imag, shift_yx, order=3, mode='nearest'))


def test_identical_images_score_perfectly(truth):
    before = truth.copy()
    scores = metrics.evaluate_reconstruction(truth, truth)
    assert set(KEYS) <= set(scores)
    assert scores['amp_ssim'] == pytest.approx(1.0, abs=1e-9)
    assert scores['phase_ssim'] == pytest.approx(1.0, abs=1e-9)
    assert math.isinf(scores['amp_psnr']) and math.isinf(scores['phase_psnr'])
    assert scores['amp_frc50'] == pytest.approx(0.5)
    assert (scores['shift_y'], scores['shift_x']) == (0.0, 0.0)
    np.testing.assert_array_equal(truth, before)  # inputs untouched


def test_subpixel_shift_is_registered(truth):
    moved = _shift(truth, (1.5, -1.5))
    scores = metrics.evaluate_reconstruction(moved, truth)
    assert scores['shift_y'] == pytest.approx(-1.5, abs=0.1)
    assert scores['shift_x'] == pytest.approx(1.5, abs=0.1)
    assert scores['amp_ssim'] > 0.95 and scores['phase_ssim'] > 0.95
    unregistered = metrics.evaluate_reconstruction(moved, truth, register=False)
    assert unregistered['amp_ssim'] < scores['amp_ssim'] - 0.1


def test_phase_offset_and_amplitude_scale_are_removed(truth):
    rec = 0.6 * truth * np.exp(2.5j)  # offset near pi: wrapping must not matter
    scores = metrics.evaluate_reconstruction(rec, truth, register=False)
    assert scores['phase_offset'] == pytest.approx(2.5, abs=1e-9)
    assert scores['amp_scale'] == pytest.approx(1 / 0.6, rel=1e-9)
    assert scores['amp_ssim'] == pytest.approx(1.0, abs=1e-9)
    assert scores['phase_ssim'] == pytest.approx(1.0, abs=1e-9)
    aligned, offset = metrics.align_phase(rec, truth)
    assert offset == pytest.approx(2.5)
    np.testing.assert_allclose(np.angle(aligned), np.angle(truth), atol=1e-9)


def test_scores_fall_monotonically_with_noise(truth):
    rng = np.random.default_rng(1)
    noise = rng.standard_normal(truth.shape) + 1j * rng.standard_normal(truth.shape)
    results = [metrics.evaluate_reconstruction(truth + sigma * noise, truth, register=False)
               for sigma in (0.005, 0.02, 0.08, 0.3)]
    for key in KEYS:
        values = [r[key] for r in results]
        assert all(a >= b for a, b in zip(values, values[1:])), (key, values)
        assert values[0] > values[-1], (key, values)


def test_mask_restricts_the_region(truth):
    rec = truth.copy()
    rec[:, 64:] = 0  # uncovered half: reported by the mask, must not count
    mask = np.zeros(truth.shape, dtype=bool)
    mask[:, :64] = True
    scores = metrics.evaluate_reconstruction(rec, truth, mask)
    assert scores['amp_ssim'] == pytest.approx(1.0, abs=1e-6)
    assert scores['n_pixels'] == 128 * 64
    assert metrics.evaluate_reconstruction(rec, truth)['amp_ssim'] < 0.9


def test_frc_curve_properties(truth):
    curve = metrics.frc_curve(np.abs(truth), np.abs(truth))
    np.testing.assert_allclose(curve.frc, 1.0)
    assert curve.frequency[-1] == pytest.approx(0.5)
    # the half-bit threshold eases towards 0.1716 as rings hold more pixels
    assert curve.halfbit[-1] < curve.halfbit[0] <= 1.0 and curve.halfbit.min() > 0.1716
    assert np.all(curve.n_pixels > 0)
    rng = np.random.default_rng(2)
    independent = metrics.frc_curve(rng.standard_normal((64, 64)), rng.standard_normal((64, 64)))
    assert np.mean(np.abs(independent.frc)) < 0.2
    assert independent.crossing(0.5) < 0.1
    curves = metrics.frc_curves(truth, truth)
    assert set(curves) == {'amp', 'phase'}


def test_score_aligned_equals_evaluate(truth):
    rec = 0.9 * truth * np.exp(0.3j) + 0.01
    pair = metrics.align_reconstruction(rec, truth)
    assert metrics.score_aligned(pair) == metrics.evaluate_reconstruction(rec, truth)


@pytest.mark.parametrize('rec_shape, gt_shape, match', [
    ((64, 64), (64, 65), 'differs from ground_truth'),
    ((4, 64, 64), (4, 64, 64), '2-D'),
    ((5, 5), (5, 5), 'at least 7x7'),
])
def test_bad_shapes_raise(rec_shape, gt_shape, match):
    with pytest.raises(ValueError, match=match):
        metrics.evaluate_reconstruction(np.ones(rec_shape), np.ones(gt_shape))


def test_bad_masks_and_values_raise(truth):
    with pytest.raises(ValueError, match='mask must have the image shape'):
        metrics.evaluate_reconstruction(truth, truth, np.ones((10, 10), dtype=bool))
    with pytest.raises(ValueError, match='selects no pixels'):
        metrics.evaluate_reconstruction(truth, truth, np.zeros(truth.shape, dtype=bool))
    bad = truth.copy()
    bad[5, 5] = np.nan
    with pytest.raises(ValueError, match='non-finite'):
        metrics.evaluate_reconstruction(bad, truth)
    mask = np.ones(truth.shape, dtype=bool)
    mask[5, 5] = False  # NaN outside the evaluated region is allowed
    assert metrics.evaluate_reconstruction(bad, truth, mask, register=False)['amp_ssim'] > 0.99
    # singleton channel axes, as stitched outputs (H, W, 1) have, are accepted
    assert metrics.evaluate_reconstruction(truth[..., None], truth)['phase_ssim'] > 0.999


def test_frc_crossing_is_zero_when_nothing_is_resolved() -> None:
    """A curve below the threshold from the first ring reports 0, never a negative frequency."""
    from ptycho.metrics import FRCCurve

    freq = np.arange(1, 6) / 10.0
    curve = FRCCurve(freq, np.array([0.2, 0.1, 0.6, 0.3, 0.1]), np.full(5, 0.2),
                     np.ones(5, dtype=np.int64))
    assert curve.crossing(0.5) == 0.0
    resolved = FRCCurve(freq, np.array([0.9, 0.7, 0.3, 0.2, 0.1]), np.full(5, 0.2),
                        np.ones(5, dtype=np.int64))
    assert 0.2 < resolved.crossing(0.5) < 0.3
