"""torch-only physics: the model's forward path, gradients, chunking, sparse placement.

The physics functions themselves are held to the numpy reference, with the same tests as
the TensorFlow backend's, in ``tests/conformance/test_conformance_physics.py``.
"""

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


@pytest.mark.parametrize('gridsize,iterations', [(1, 4), (2, 4)])
def test_backprojection_chunking_does_not_change_numbers(rng, gridsize, iterations):
    """Chunks of groups (CPU cache) and the whole batch in one pass give the same numbers."""
    from ptycho.simulation import make_probe

    C = gridsize ** 2
    probe = make_probe('focused', N, (N / 2) ** 2)
    obj = np.exp(1j * rng.uniform(-0.6, 0.6, (96, 96))) * rng.uniform(0.6, 1.0, (96, 96))
    offsets = rng.uniform(-5, 5, (7, C, 2)) if C > 1 else np.zeros((7, 1, 2))
    centres = rng.uniform(40, 56, (7, 1, 2))
    X = torch.tensor(np.stack([ref.forward_amplitude(ref.extract_patches(obj, c + o, N), probe)
                               for c, o in zip(centres, offsets)]), dtype=torch.float32)
    offsets_t = torch.tensor(offsets, dtype=torch.float32)
    chunked = tp.backprojection(X, c64(probe), offsets_t, iterations, chunk=3)
    whole = tp.backprojection(X, c64(probe), offsets_t, iterations, chunk=7)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-7)
    default = tp.backprojection(X, c64(probe), offsets_t, iterations)  # backprojection_chunk
    torch.testing.assert_close(default, whole, rtol=1e-5, atol=1e-7)
    assert [tp.backprojection_chunk(n) for n in (32, 64, 128, 256)] == [32, 8, 2, 1]


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
