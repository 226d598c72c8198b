"""Both backends' physics against the float64 numpy reference, with one set of tests.

Tolerance: relative 1e-5 of the reference's largest value (float32 arithmetic inside), so
the two backends also agree with each other to 2e-5. Backend-only layers (Keras layers,
torch's sparse placement, gradients) keep their own files.
"""

from __future__ import annotations

import numpy as np
import pytest

from conformance_backends import backprojection_case, gaussian_probe, random_complex, rel_err
from ptycho import physics

RTOL = 1e-5


def test_one_bright_pixel_moves_by_plus_t(physics_backend) -> None:
    image = np.zeros((1, 16, 16))
    image[0, 5, 7] = 1.0  # row 5, column 7
    out = physics_backend.translate(image, np.array([[3.0, -2.0]]))[0]  # tx=3, ty=-2
    assert out[3, 10] == pytest.approx(1.0) and out.sum() == pytest.approx(1.0)
    half = physics_backend.translate(image, np.array([[0.5, 0.0]]))[0]
    assert half[5, 7] == pytest.approx(0.5) and half[5, 8] == pytest.approx(0.5)


def test_patch_of_a_bright_pixel_is_centred(physics_backend) -> None:
    obj = np.zeros((40, 50), np.complex64)
    obj[17, 23] = 2.0 + 1.0j  # (x, y) = (23, 17)
    patch = physics_backend.extract_patches(obj, np.array([[23.0, 17.0]]), 16)[0]
    assert patch[8, 8] == pytest.approx(2.0 + 1.0j)  # pixel N/2 sits on (x, y)
    assert np.count_nonzero(np.abs(patch) > 1e-7) == 1


def test_sampling_matches_reference(physics_backend, rng) -> None:
    images = random_complex(rng, 3, 24, 24)
    shifts = rng.uniform(-6, 6, size=(3, 2))
    expected = np.stack([physics.translate(im, s) for im, s in zip(images, shifts)])
    assert rel_err(physics_backend.translate(images, shifts), expected) <= RTOL
    obj = random_complex(rng, 90, 110)
    positions = rng.uniform(-10, 120, size=(12, 2))  # some patches partly outside
    assert rel_err(physics_backend.extract_patches(obj, positions, 32),
                   physics.extract_patches(obj, positions, 32)) <= RTOL


@pytest.mark.parametrize('gridsize', [1, 2])
@pytest.mark.parametrize('pad_object', [True, False])
def test_forward_model_matches_reference(physics_backend, rng, gridsize: int,
                                         pad_object: bool) -> None:
    N, C, B = 64, gridsize ** 2, 3
    patches = random_complex(rng, B, C, N, N)
    probe = random_complex(rng, N, N)
    offsets = rng.uniform(-7, 7, size=(B, C, 2))
    support = physics.central_window_mask(N) if pad_object else None
    expected = np.stack([physics.forward_group(p, probe, o, support)
                         for p, o in zip(patches, offsets)])
    found = physics_backend.forward_group(patches, probe, offsets, support)
    assert rel_err(found, expected) <= RTOL


@pytest.mark.parametrize('pad_object', [True, False])
def test_overlap_constraint_and_group_object_match_reference(physics_backend, rng,
                                                             pad_object: bool) -> None:
    N = 32
    patches = random_complex(rng, 2, 4, N, N)
    offsets = rng.uniform(-7, 7, size=(2, 4, 2))
    support = physics.central_window_mask(N) if pad_object else None
    merged = physics_backend.enforce_overlap(patches, offsets, support)
    grouped = physics_backend.group_object(patches, offsets, support)
    for b in range(2):
        assert rel_err(merged[b], physics.enforce_overlap(patches[b], offsets[b], support)) <= RTOL
        assert rel_err(grouped[b], physics.group_object(patches[b], offsets[b], support)) <= RTOL


def test_far_field_is_orthonormal(physics_backend, rng) -> None:
    psi = random_complex(rng, 2, 64, 64)
    amplitude = physics_backend.far_field_amplitude(psi)
    np.testing.assert_allclose((amplitude ** 2).sum(axis=(1, 2)),
                               (np.abs(psi) ** 2).sum(axis=(1, 2)), rtol=1e-5)


@pytest.mark.parametrize('gridsize', [1, 2])
@pytest.mark.parametrize('iterations', [1, 4])
def test_backprojection_matches_reference(physics_backend, rng, gridsize: int,
                                          iterations: int) -> None:
    case = backprojection_case(rng, gridsize, iterations)
    found = physics_backend.backprojection(case.X.astype(np.float32),
                                           case.probe.astype(np.complex64),
                                           None if case.offsets is None else
                                           case.offsets.astype(np.float32), iterations)
    assert found.dtype == np.complex64
    assert rel_err(found, case.expected) <= RTOL


def test_backprojection_in_float64(physics_backend, rng) -> None:
    N, C = 32, 4
    probe = gaussian_probe(rng, N, sigma=6.0)
    X = rng.uniform(0, 2, size=(2, C, N, N))
    offsets = rng.uniform(-4, 4, size=(2, C, 2))
    expected = np.stack([physics.backprojection(x, probe, o, 2) for x, o in zip(X, offsets)])
    found = physics_backend.backprojection(X, probe, offsets, 2)
    assert found.dtype == np.complex128
    assert rel_err(found, expected) <= 1e-12


@pytest.mark.parametrize('gridsize', [1, 2])
def test_backprojection_of_a_flat_object_is_zero(physics_backend, rng, gridsize: int) -> None:
    """Noise-free amplitudes of ``probe * 1`` are a fixed point: every correction vanishes.

    The result is in object units (the flat object is 1). In float32 the only error is FFT
    round-off, ~1e-7 of the exit wave; ``conj(P)/max|P|^2`` keeps it below that and the
    update's denominator ``weight + alpha`` (>= alpha = 0.05) amplifies it at most 20x per
    iteration, so 1e-5 bounds 4 iterations with margin (measured: ~2e-7).
    """
    N, C = 64, gridsize ** 2
    probe = 100.0 * gaussian_probe(rng, N)  # the bound must not depend on the probe's scale
    X = np.broadcast_to(physics.far_field_amplitude(probe), (2, C, N, N))
    offsets = rng.uniform(-6, 6, size=(2, C, 2)) if C > 1 else None
    found = physics_backend.backprojection(X.astype(np.float32), probe.astype(np.complex64),
                                           offsets, 4)
    assert np.max(np.abs(found)) < 1e-5


@pytest.mark.parametrize('iterations', [0, 1.5, True])
def test_backprojection_rejects_bad_iterations(physics_backend, iterations) -> None:
    with pytest.raises(ValueError, match='iterations'):
        physics_backend.backprojection(np.ones((1, 1, 16, 16), np.float32),
                                       np.ones((16, 16), np.complex64), None, iterations)


@pytest.mark.parametrize('M', [16, 20, 32])
def test_stitch_matches_reference(physics_backend, rng, M: int) -> None:
    patches = random_complex(rng, 25, 32, 32)
    positions = rng.uniform(20, 70, size=(25, 2))
    expected, expected_cov = physics.stitch(patches, positions, M)
    image, coverage = physics_backend.stitch(patches, positions, M)
    assert rel_err(image, expected) <= RTOL and rel_err(coverage, expected_cov) <= RTOL
    assert ((coverage < physics.COVERAGE_EPS) == (expected_cov < physics.COVERAGE_EPS)).all()
    # A given canvas that cuts some crops off.
    canvas = dict(canvas_shape=(40, 45), origin_xy=(30.5, 25.0))
    expected, expected_cov = physics.stitch(patches, positions, M, **canvas)
    image, coverage = physics_backend.stitch(patches, positions, M, **canvas)
    assert rel_err(image, expected) <= RTOL and rel_err(coverage, expected_cov) <= RTOL


def test_stitch_rejects_a_crop_larger_than_the_patch(physics_backend) -> None:
    with pytest.raises(ValueError, match='crop size M'):
        physics_backend.stitch(np.zeros((2, 8, 8), np.complex64), np.zeros((2, 2)), 9)
