"""Pin the conventions of ptycho.physics, the float64 reference every backend must match."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ptycho import physics

N = 16


def _smooth_object(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    amp = 0.6 + 0.4 * ndimage.gaussian_filter(rng.uniform(size=shape), 2.0, mode='wrap')
    phase = ndimage.gaussian_filter(rng.uniform(-3, 3, size=shape), 2.0, mode='wrap')
    return amp * np.exp(1j * phase)


def test_translate_moves_content_by_plus_t():
    image = np.zeros((N, N))
    image[5, 7] = 1.0
    out = physics.translate(image, (2, 3))  # t = (tx, ty): x = column, y = row
    assert out[5 + 3, 7 + 2] == pytest.approx(1.0)
    assert out.sum() == pytest.approx(1.0)


def test_subpixel_translate_matches_scipy_bilinear():
    rng = np.random.default_rng(0)
    image = rng.standard_normal((N, N + 3))
    shift_xy = (1.3, -2.6)
    expected = ndimage.shift(image, (shift_xy[1], shift_xy[0]), order=1, mode='grid-constant',
                             cval=0.0)
    np.testing.assert_allclose(physics.translate(image, shift_xy), expected, atol=1e-12)
    complex_image = image + 1j * rng.standard_normal(image.shape)
    out = physics.translate(complex_image, shift_xy)
    np.testing.assert_allclose(out.imag, ndimage.shift(complex_image.imag, (-2.6, 1.3), order=1,
                                                       mode='grid-constant'), atol=1e-12)


def test_far_field_is_orthonormal_and_centred():
    rng = np.random.default_rng(1)
    psi = rng.standard_normal((3, N, N)) + 1j * rng.standard_normal((3, N, N))
    amplitude = physics.far_field_amplitude(psi)
    np.testing.assert_allclose((amplitude ** 2).sum(axis=(1, 2)),
                               (np.abs(psi) ** 2).sum(axis=(1, 2)), rtol=1e-12)
    np.testing.assert_allclose(amplitude, np.abs(np.fft.fftshift(np.fft.fft2(psi), axes=(1, 2)))
                               / N, rtol=1e-12)
    flat = physics.far_field_amplitude(np.ones((N, N)))
    assert flat[N // 2, N // 2] == pytest.approx(N)  # DC sits at the centre pixel
    assert flat.sum() == pytest.approx(N)


def test_flat_object_scales_the_probe_diffraction():
    rng = np.random.default_rng(2)
    probe = rng.standard_normal((N, N)) + 1j * rng.standard_normal((N, N))
    c = 0.7 * np.exp(0.4j)
    np.testing.assert_allclose(physics.forward_amplitude(np.full((N, N), c), probe),
                               abs(c) * physics.far_field_amplitude(probe), rtol=1e-12)


def test_point_probe_gives_flat_diffraction():
    probe = np.zeros((N, N), dtype=complex)
    probe[N // 2, N // 2] = 3.0
    amplitude = physics.forward_amplitude(_smooth_object((N, N)), probe)
    value = abs(_smooth_object((N, N))[N // 2, N // 2]) * 3.0 / N
    np.testing.assert_allclose(amplitude, value, rtol=1e-12)


def test_extract_then_stitch_returns_the_object_and_reports_gaps():
    obj = _smooth_object((40, 40))
    positions = np.array([(8, 8), (16, 8), (24, 8), (8, 20), (16, 20)], dtype=float)  # (x, y)
    patches = physics.extract_patches(obj, positions, N)
    np.testing.assert_array_equal(patches[1], obj[0:16, 8:24])  # rows y-N/2.., cols x-N/2..
    image, coverage = physics.stitch(patches, positions, N, canvas_shape=obj.shape,
                                     origin_xy=(0, 0))
    covered = coverage > 0
    assert covered.any() and (~covered).any()
    np.testing.assert_allclose(image[covered], obj[covered], atol=1e-12)
    assert np.all(image[~covered] == 0)
    np.testing.assert_array_equal(coverage[0, [0, 8, 16, 24, 32]], [1, 2, 2, 1, 0])
    assert coverage[14, 10] == 4
    assert coverage[30, 35] == 0  # beyond every patch


def test_stitch_default_canvas_holds_every_crop():
    obj = _smooth_object((48, 48))
    positions = np.array([(20.5, 20.25), (27.0, 22.0), (24.0, 28.75)])
    M = N // 2
    patches = physics.extract_patches(obj, positions, N)
    image, coverage = physics.stitch(patches, positions, M)
    shape, origin = physics.canvas_geometry(positions, M)
    assert image.shape == coverage.shape == shape
    assert np.isclose(coverage.sum(), len(positions) * M * M)
    assert np.all(np.isfinite(image))


def test_enforce_overlap_keeps_consistent_patches():
    obj = _smooth_object((64, 64), seed=3)
    centre = np.array([32.0, 32.0])
    offsets = np.array([(-3, -2), (4, -1), (-2, 5), (3, 3)], dtype=float)  # gridsize 2, C = 4
    patches = physics.extract_patches(obj, centre + offsets, N)
    merged = physics.enforce_overlap(patches, offsets)
    np.testing.assert_allclose(merged, patches, atol=1e-12)
    # sub-pixel offsets: interpolation blurs a smooth object only slightly in the interior
    sub = offsets + np.array([(0.5, 0.25), (-0.25, 0.5), (0.0, -0.5), (0.75, 0.0)])
    patches = physics.extract_patches(obj, centre + sub, N)
    merged = physics.enforce_overlap(patches, sub)
    interior = (slice(2, N - 2), slice(2, N - 2))
    assert np.max(np.abs(merged[:, interior[0], interior[1]] - patches[:, interior[0],
                                                                        interior[1]])) < 0.05


def test_merge_coverage_never_divides_by_zero():
    rng = np.random.default_rng(4)
    patches = rng.uniform(0.5, 1.0, (4, N, N)) * np.exp(1j * rng.uniform(-1, 1, (4, N, N)))
    offsets = np.array([(-N / 2 + 0.3, 0), (N / 2 - 0.2, 0.1), (0, -N / 2 + 0.7), (0.4, 6.9)])
    support = physics.central_window_mask(N)
    patches = patches * support  # pad_object: the network's patches vanish outside the window
    merged, coverage = physics.merge_group(patches, offsets, support)
    assert np.all(np.isfinite(merged))
    assert (coverage == 0).any() and ((coverage > 0) & (coverage < 0.1)).any()
    assert np.all(merged[coverage == 0] == 0)
    assert np.abs(merged).max() <= np.abs(patches).max() + 1e-12  # no blow-up at thin coverage
    out = physics.enforce_overlap(patches, offsets, support)
    assert out.shape == patches.shape and np.all(np.isfinite(out))


def test_group_object_is_centred_on_the_group():
    obj = _smooth_object((64, 64), seed=5)
    centre = np.array([30.0, 33.0])
    offsets = np.array([(-2, -2), (2, -2), (-2, 2), (2, 2)], dtype=float)
    patches = physics.extract_patches(obj, centre + offsets, N)
    group = physics.group_object(patches, offsets)
    np.testing.assert_allclose(group, physics.extract_patch(obj, *centre, N), atol=1e-12)


def test_central_window_mask():
    mask = physics.central_window_mask(N)
    assert mask.sum() == (N // 2) ** 2
    assert mask[N // 2, N // 2] == 1 and mask[N // 4 - 1, N // 2] == 0 and mask[N // 4, N // 4] == 1


def test_poisson_diffraction_mean_matches_intensity():
    rng = np.random.default_rng(6)
    amplitude = np.array([0.5, 2.0, 10.0])
    scale = 3.0
    samples = physics.poisson_diffraction(np.broadcast_to(amplitude, (20000, 3)), scale, rng)
    counts = (scale * samples) ** 2
    np.testing.assert_allclose(counts.mean(axis=0), (scale * amplitude) ** 2, rtol=0.03)
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-6)  # integer counts
    assert np.all(samples >= 0)


# --------------------------------------------------------------------------- back-projection
def _focused_probe(n: int) -> np.ndarray:
    from ptycho.simulation import make_probe

    return make_probe('focused', n, (n / 2) ** 2)


def _group_data(obj: np.ndarray, probe: np.ndarray, centre: tuple[float, float],
                offsets: np.ndarray) -> np.ndarray:
    n = probe.shape[-1]
    patches = physics.extract_patches(obj, np.asarray(centre) + offsets, n)
    return physics.forward_amplitude(patches, probe)


@pytest.mark.parametrize('phase', [0.0, 1.3])
def test_backprojection_of_flat_object_is_zero(phase):
    """A flat object (any constant phase: it is unobservable) is its own fixed point."""
    probe = _focused_probe(32)
    offsets = np.array([[-3.0, 1.5], [2.0, -2.25], [0.5, 3.0], [0.0, 0.0]])
    X = physics.forward_amplitude(np.full((4, 32, 32), np.exp(1j * phase)), probe)
    for iterations in (1, 3):
        out = physics.backprojection(X, probe, offsets, iterations)
        assert out.shape == (4, 32, 32)
        assert np.abs(out).max() < 1e-12


def test_backprojection_one_step_is_the_gradient_at_a_flat_object():
    """K = 1 is a preconditioned steepest-descent step of 0.5 ||A(P O) - X||^2 from O = 1."""
    probe = _focused_probe(32)
    obj = _smooth_object((64, 64))
    X = physics.forward_amplitude(physics.extract_patches(obj, [[32.0, 32.0]], 32), probe)[0]
    out = physics.backprojection(X, probe, None, 1)[0]
    # Wirtinger gradient d/d conj(O) at O = 1: conj(P) (psi - projection(psi)) / 2.
    psi = probe.astype(np.complex128)
    gradient = np.conj(probe) * (psi - physics.fourier_projection(psi, X))
    peak = np.max(np.abs(probe)) ** 2
    expected = -gradient / peak / (np.abs(probe) ** 2 / peak + physics.BACKPROJECTION_ALPHA)
    assert np.allclose(out, expected, atol=1e-12 * np.abs(expected).max())


def test_backprojection_iterations_reduce_the_data_misfit():
    """More projection steps explain the group's measurements better (parallel PIE)."""
    probe = _focused_probe(32)
    obj = _smooth_object((96, 96), seed=3)
    offsets = np.array([[-4.0, -3.5], [4.5, -3.0], [-3.0, 4.0], [3.5, 4.5]])
    X = _group_data(obj, probe, (48.0, 48.0), offsets)
    misfits = []
    for iterations in (1, 2, 4, 8):
        estimate = 1.0 + physics.backprojection(X, probe, offsets, iterations)
        misfits.append(np.linalg.norm(physics.forward_amplitude(estimate, probe) - X))
    flat = np.linalg.norm(physics.forward_amplitude(np.ones_like(X), probe) - X)
    assert misfits[0] < flat
    assert all(b < a for a, b in zip(misfits, misfits[1:])), misfits


def test_backprojection_rejects_bad_iterations():
    probe = _focused_probe(32)
    with pytest.raises(ValueError, match='iterations must be an integer >= 1, found 0'):
        physics.backprojection(np.ones((1, 32, 32)), probe, None, 0)
