"""torch physics against the float64 numpy reference (rel <= 1e-5) and its sign conventions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ptycho.physics as ref
from ptycho_torch import physics as tp
from ptycho_torch.torch_config import ModelConfig
from ptycho_torch.model import PtychoPINN

RTOL = 1e-5
N = 32


def rel_err(found, expected) -> float:
    found = found.detach().numpy() if isinstance(found, torch.Tensor) else np.asarray(found)
    return float(np.abs(found - expected).max() / np.abs(expected).max())


def c64(array) -> torch.Tensor:
    return torch.tensor(np.asarray(array), dtype=torch.complex64)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def random_complex(rng, *shape):
    return rng.normal(size=shape) + 1j * rng.normal(size=shape)


def test_one_bright_pixel_moves_by_plus_t():
    image = torch.zeros(1, 16, 16)
    image[0, 5, 7] = 1.0  # row 5, column 7
    out = tp.translate(image, torch.tensor([[2.0, 3.0]]))  # tx=2 (columns), ty=3 (rows)
    assert out[0, 8, 9] == 1.0 and out.sum() == 1.0
    half = tp.translate(image, torch.tensor([[0.5, 0.0]]))
    assert half[0, 5, 7] == pytest.approx(0.5) and half[0, 5, 8] == pytest.approx(0.5)


def test_extract_patch_centre_convention():
    obj = torch.zeros(40, 50)
    obj[20, 30] = 1.0  # row 20, column 30 = object point (x=30, y=20)
    patch = tp.extract_patches(obj, torch.tensor([[30.0, 20.0]]), 8)[0]
    assert patch[4, 4] == 1.0  # the centre pixel N/2 of the patch sits on (x, y)


def test_translate_and_extract_match_reference(rng):
    images = random_complex(rng, 3, N, N)
    shifts = rng.uniform(-6, 6, size=(3, 2))
    out = tp.translate(c64(images), torch.tensor(shifts))
    for i in range(3):
        assert rel_err(out[i], ref.translate(images[i], shifts[i])) <= RTOL
    obj = random_complex(rng, 90, 110)
    positions = rng.uniform(-10, 120, size=(12, 2))  # includes patches partly outside
    assert rel_err(tp.extract_patches(c64(obj), positions, N),
                   ref.extract_patches(obj, positions, N)) <= RTOL


@pytest.mark.parametrize('pad_object', [True, False])
def test_merge_extract_match_reference(rng, pad_object):
    patches = random_complex(rng, 2, 4, N, N)
    offsets = rng.uniform(-7, 7, size=(2, 4, 2))
    support = ref.central_window_mask(N) if pad_object else None
    t_support = None if support is None else torch.tensor(support, dtype=torch.float32)
    merged = tp.enforce_overlap(c64(patches), torch.tensor(offsets), t_support)
    grouped = tp.group_object(c64(patches), torch.tensor(offsets), t_support)
    for b in range(2):
        assert rel_err(merged[b], ref.enforce_overlap(patches[b], offsets[b], support)) <= RTOL
        assert rel_err(grouped[b], ref.group_object(patches[b], offsets[b], support)) <= RTOL


def test_consistent_patches_are_a_fixed_point_of_the_overlap_constraint(rng):
    obj = random_complex(rng, 80, 80)
    centre = np.array([40.0, 40.0])
    offsets = np.array([[-3, -2], [4, -1], [-2, 5], [3, 3]], dtype=np.float64)
    patches = ref.extract_patches(obj, centre + offsets, N)[None]
    merged = tp.enforce_overlap(c64(patches), torch.tensor(offsets[None]))
    np.testing.assert_allclose(merged.numpy(), patches, rtol=0, atol=1e-5)
    grouped = tp.group_object(c64(patches), torch.tensor(offsets[None]))[0].numpy()
    truth = ref.extract_patches(obj, centre[None], N)[0]
    covered = slice(5, N - 5)  # every member covers the central region
    np.testing.assert_allclose(grouped[covered, covered], truth[covered, covered], atol=1e-5)


@pytest.mark.parametrize('gridsize,probe_big', [(1, True), (2, True), (2, False)])
def test_model_forward_physics_matches_reference(rng, gridsize, probe_big):
    C = gridsize * gridsize
    config = ModelConfig(N=N, grid_size=(gridsize, gridsize), n_filters_scale=1,
                         probe_big=probe_big)
    probe = random_complex(rng, N, N)
    model = PtychoPINN(config, nphotons=1e6, probe=probe.astype(np.complex64))
    obj = random_complex(rng, 3, C, N, N).astype(np.complex64)
    offsets = rng.uniform(-5, 5, size=(3, C, 2))
    intensity = model.predicted_intensity(torch.tensor(obj), torch.tensor(offsets))
    # The window support applies only when the patch is zero outside it (no probe_big).
    support = None if probe_big else ref.central_window_mask(N)
    for b in range(3):
        expected = ref.forward_group(obj[b], probe.astype(np.complex64),
                                     offsets[b] if C > 1 else None, support)
        assert rel_err(torch.sqrt(intensity[b]), expected) <= RTOL
        assert rel_err(intensity[b], expected ** 2) <= 2 * RTOL
    amplitude = tp.forward_amplitude(torch.tensor(obj), c64(probe))
    assert rel_err(amplitude, ref.forward_amplitude(obj, probe)) <= RTOL


def test_far_field_is_orthonormal(rng):
    psi = c64(random_complex(rng, 2, N, N))
    amplitude = tp.far_field_amplitude(psi)
    torch.testing.assert_close(amplitude.square().sum(dim=(-2, -1)),
                               psi.abs().square().sum(dim=(-2, -1)), rtol=1e-5, atol=0)


@pytest.mark.parametrize('custom_canvas', [False, True])
def test_stitch_matches_reference(rng, custom_canvas):
    patches = random_complex(rng, 25, N, N)
    positions = rng.uniform(20, 70, size=(25, 2))
    kwargs = dict(canvas_shape=(60, 75), origin_xy=(30, 12)) if custom_canvas else {}
    image, coverage = tp.stitch(c64(patches), torch.tensor(positions), 16, chunk=7, **kwargs)
    expected, expected_cov = ref.stitch(patches, positions, 16, **kwargs)
    assert image.shape == expected.shape
    assert rel_err(image, expected) <= RTOL
    assert rel_err(coverage, expected_cov) <= RTOL
    assert ((coverage.numpy() < ref.COVERAGE_EPS) == (expected_cov < ref.COVERAGE_EPS)).all()


def test_stitch_rejects_bad_crop():
    with pytest.raises(ValueError, match='crop size M'):
        tp.stitch(torch.zeros(2, 8, 8), torch.zeros(2, 2), 9)


def test_translate_gradient_is_exact():
    images = torch.randn(2, 6, 6, dtype=torch.float64, requires_grad=True)
    shifts = torch.tensor([[0.3, -1.7], [2.2, 0.6]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda im: tp.translate(im, shifts), (images,))


@pytest.mark.parametrize('gridsize', [1, 2])
def test_ground_truth_explains_the_measurements(gridsize, tmp_path):
    """Loader normalisation + the model's physics path (overlap merge included, default
    pad_object + probe_big): the true object reproduces X up to one scale."""
    from _torch_data import tiny_config, tiny_raw
    from ptycho_torch.data import as_torch_container

    container = as_torch_container(tiny_raw(), tiny_config(tmp_path, gridsize=gridsize))
    config = ModelConfig(N=64, grid_size=(gridsize, gridsize), n_filters_scale=1)
    assert config.pad_object and config.probe_big
    model = PtychoPINN(config, nphotons=1e9, probe=container.probe)
    predicted = torch.sqrt(model.predicted_intensity(container.Y, container.local_offsets))
    scale = (predicted * container.X).sum() / predicted.square().sum()
    residual = (container.X - scale * predicted).norm() / container.X.norm()
    # Poisson noise (~0.1%) plus, for gridsize 2, bilinear blur of the merge (~1.5%).
    assert float(residual) < (0.005 if gridsize == 1 else 0.03)


@pytest.mark.parametrize('gridsize,iterations', [(1, 1), (1, 4), (2, 1), (2, 4)])
def test_backprojection_matches_reference(rng, gridsize, iterations):
    from ptycho.simulation import make_probe

    C = gridsize ** 2
    probe = make_probe('focused', N, (N / 2) ** 2)
    obj = np.exp(1j * rng.uniform(-0.6, 0.6, (96, 96))) * rng.uniform(0.6, 1.0, (96, 96))
    offsets = rng.uniform(-5, 5, (3, C, 2)) if C > 1 else np.zeros((3, 1, 2))
    centres = rng.uniform(40, 56, (3, 1, 2))
    X = np.stack([ref.forward_amplitude(ref.extract_patches(obj, c + o, N), probe)
                  for c, o in zip(centres, offsets)])
    expected = np.stack([ref.backprojection(x, probe, o, iterations) for x, o in zip(X, offsets)])
    found = tp.backprojection(torch.tensor(X, dtype=torch.float32), c64(probe),
                              torch.tensor(offsets, dtype=torch.float32), iterations)
    assert found.dtype == torch.complex64 and found.shape == (3, C, N, N)
    assert rel_err(found, expected) <= RTOL
    # chunking is an implementation detail: one pass over the batch gives the same numbers
    whole = tp.backprojection(torch.tensor(X, dtype=torch.float32), c64(probe),
                              torch.tensor(offsets, dtype=torch.float32), iterations, chunk=3)
    torch.testing.assert_close(found, whole, rtol=1e-5, atol=1e-7)


def test_sparse_group_placement_equals_dense_matrices(rng):
    offsets = torch.tensor(rng.uniform(-7, 7, (2, 4, 2)))
    patches = torch.tensor(random_complex(rng, 2, 4, N, N), dtype=torch.complex64)
    canvas = torch.tensor(random_complex(rng, 2, 2 * N, 2 * N), dtype=torch.complex64)
    rows, cols = tp.group_matrices(offsets, N, torch.float32)
    sparse = tp.GroupPlacement(offsets, N, torch.float32)
    dense_place = torch.stack([sum(rows[b, c].to(torch.complex64) @ patches[b, c]
                                   @ cols[b, c].T.to(torch.complex64) for c in range(4))
                               for b in range(2)])
    torch.testing.assert_close(sparse.place(patches), dense_place, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sparse.read(canvas), tp.extract_group(canvas, offsets, N),
                               rtol=1e-5, atol=1e-5)
