"""TensorFlow physics against the float64 numpy reference (and torch when it is installed)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

tf = pytest.importorskip('tensorflow')

from ptycho import physics  # noqa: E402
from ptycho import tf_helper  # noqa: E402

RTOL = 1e-5


def rel_err(found: np.ndarray, expected: np.ndarray) -> float:
    found = np.asarray(found)
    expected = np.asarray(expected)
    assert found.shape == expected.shape
    return float(np.max(np.abs(found - expected)) / np.max(np.abs(expected)))


def random_complex(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.normal(size=shape) + 1j * rng.normal(size=shape)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def test_one_bright_pixel_moves_by_plus_t() -> None:
    image = np.zeros((1, 16, 16))
    image[0, 5, 7] = 1.0  # row 5, column 7
    out = tf_helper.translate(image, [[3.0, -2.0]]).numpy()[0]  # tx=3 (columns), ty=-2 (rows)
    assert out[3, 10] == pytest.approx(1.0)
    assert out.sum() == pytest.approx(1.0)
    half = tf_helper.translate(image, [[0.5, 0.0]]).numpy()[0]
    assert half[5, 7] == pytest.approx(0.5) and half[5, 8] == pytest.approx(0.5)


def test_patch_of_bright_pixel_is_centred() -> None:
    obj = np.zeros((40, 50), np.complex64)
    obj[17, 23] = 2.0 + 1.0j  # (x, y) = (23, 17)
    patch = tf_helper.extract_patches(obj, [[23.0, 17.0]], 16).numpy()[0]
    assert patch[8, 8] == pytest.approx(2.0 + 1.0j)
    assert np.count_nonzero(np.abs(patch) > 1e-7) == 1


def test_sampling_matches_reference(rng: np.random.Generator) -> None:
    images = random_complex(rng, (3, 24, 24))
    shifts = rng.uniform(-6, 6, size=(3, 2))
    expected = np.stack([physics.translate(im, s) for im, s in zip(images, shifts)])
    assert rel_err(tf_helper.translate(images, shifts), expected) <= RTOL
    obj = random_complex(rng, (90, 110))
    positions = rng.uniform(20, 80, size=(6, 2))
    assert rel_err(tf_helper.extract_patches(obj, positions, 32),
                   physics.extract_patches(obj, positions, 32)) <= RTOL


@pytest.mark.parametrize('gridsize', [1, 2])
@pytest.mark.parametrize('pad_object', [True, False])
def test_forward_model_matches_reference(rng: np.random.Generator, gridsize: int,
                                         pad_object: bool) -> None:
    from ptycho.model import EnforceOverlap, FarFieldAmplitude, ProbeIllumination

    N, C, B = 64, gridsize ** 2, 3
    patches = random_complex(rng, (B, C, N, N))
    probe = random_complex(rng, (N, N))
    offsets = rng.uniform(-7, 7, size=(B, C, 2))
    support = physics.central_window_mask(N) if pad_object else None
    expected = np.stack([physics.forward_group(p, probe, o, support)
                         for p, o in zip(patches, offsets)])
    found = tf_helper.forward_group(patches, probe, offsets, support).numpy()
    assert rel_err(found, expected) <= RTOL

    # The Keras layers the model uses: channels-last, offsets in container layout (B,1,2,C).
    obj = tf.constant(np.transpose(patches, (0, 2, 3, 1)).astype(np.complex64))
    container_offsets = np.transpose(offsets, (0, 2, 1))[:, None].astype(np.float32)
    if C > 1:
        sup = support if support is not None else np.ones((N, N))
        obj = EnforceOverlap(sup)(obj, tf.constant(container_offsets))
    amp = FarFieldAmplitude()(ProbeIllumination(probe, False)(obj)).numpy()
    assert rel_err(np.transpose(amp, (0, 3, 1, 2)), expected) <= RTOL


def test_group_object_matches_reference(rng: np.random.Generator) -> None:
    N, C = 32, 4
    patches = random_complex(rng, (2, C, N, N))
    offsets = rng.uniform(-5, 5, size=(2, C, 2))
    support = physics.central_window_mask(N)
    expected = np.stack([physics.group_object(p, o, support) for p, o in zip(patches, offsets)])
    assert rel_err(tf_helper.group_object(patches, offsets, support), expected) <= RTOL


def test_far_field_is_orthonormal(rng: np.random.Generator) -> None:
    psi = random_complex(rng, (2, 64, 64))
    amp = tf_helper.far_field_amplitude(psi).numpy()
    np.testing.assert_allclose((amp ** 2).sum(axis=(1, 2)), (np.abs(psi) ** 2).sum(axis=(1, 2)),
                               rtol=1e-5)


def test_gradient_is_finite_through_zero_field() -> None:
    obj = tf.Variable(tf.zeros((1, 1, 16, 16), tf.complex64))
    probe = np.ones((16, 16), np.complex64)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf_helper.forward_group(obj, probe, np.zeros((1, 1, 2))))
    grad = tape.gradient(loss, obj)
    assert np.all(np.isfinite(grad.numpy()))


def gaussian_probe(rng: np.random.Generator, N: int, sigma: float = 10.0) -> np.ndarray:
    """Random complex probe under a Gaussian envelope: weak at the edges, so alpha matters."""
    yy, xx = np.mgrid[:N, :N] - N / 2
    envelope = np.exp(-(yy ** 2 + xx ** 2) / (2 * sigma ** 2))
    return (1.0 + 0.3 * random_complex(rng, (N, N))) * envelope


@pytest.mark.parametrize('gridsize', [1, 2])
@pytest.mark.parametrize('iterations', [1, 4])
def test_backprojection_matches_reference(rng: np.random.Generator, gridsize: int,
                                          iterations: int) -> None:
    from ptycho.model import BackProjection

    N, C, B = 64, gridsize ** 2, 3
    probe = gaussian_probe(rng, N)
    objects = np.exp(1j * rng.uniform(-1, 1, size=(B, C, N, N)))
    X = np.abs(np.fft.fftshift(np.fft.fft2(probe * objects, norm='ortho'), axes=(-2, -1)))
    offsets = rng.uniform(-7, 7, size=(B, C, 2)) if C > 1 else None
    expected = np.stack([physics.backprojection(x, probe, None if offsets is None else o,
                                                iterations)
                         for x, o in zip(X, offsets if offsets is not None else [None] * B)])
    found = tf_helper.backprojection(X.astype(np.float32), probe.astype(np.complex64),
                                     None if offsets is None else offsets.astype(np.float32),
                                     iterations)
    assert found.dtype == tf.complex64
    assert rel_err(found, expected) <= RTOL

    # The Keras layer: channels-last [Re(b), Im(b)], offsets in container layout (B, 1, 2, C).
    container_offsets = (np.zeros((B, 1, 2, C)) if offsets is None
                         else np.transpose(offsets, (0, 2, 1))[:, None])
    probe_t = tf.constant(probe.astype(np.complex64))
    layer = BackProjection(lambda: probe_t, iterations, trainable_probe=False)
    out = layer(tf.constant(np.transpose(X, (0, 2, 3, 1)).astype(np.float32)),
                tf.constant(container_offsets.astype(np.float32))).numpy()
    assert out.shape == (B, N, N, 2 * C)
    out = np.transpose(out, (0, 3, 1, 2))
    assert rel_err(out[:, :C] + 1j * out[:, C:], expected) <= RTOL


def test_backprojection_float64(rng: np.random.Generator) -> None:
    N, C = 32, 4
    probe = gaussian_probe(rng, N, sigma=6.0)
    X = rng.uniform(0, 2, size=(2, C, N, N))
    offsets = rng.uniform(-4, 4, size=(2, C, 2))
    expected = np.stack([physics.backprojection(x, probe, o, 2) for x, o in zip(X, offsets)])
    found = tf_helper.backprojection(tf.constant(X), probe, offsets, 2)
    assert found.dtype == tf.complex128
    assert rel_err(found, expected) <= 1e-12


@pytest.mark.parametrize('gridsize', [1, 2])
def test_backprojection_of_flat_object_is_zero(rng: np.random.Generator, gridsize: int) -> None:
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
    found = tf_helper.backprojection(X.astype(np.float32), probe.astype(np.complex64),
                                     offsets, iterations=4).numpy()
    assert np.max(np.abs(found)) < 1e-5


def test_backprojection_rejects_bad_iterations() -> None:
    with pytest.raises(ValueError, match='iterations'):
        tf_helper.backprojection(np.ones((1, 1, 16, 16)), np.ones((16, 16)), None, 0)


@pytest.mark.parametrize('M', [16, 20, 32])
def test_stitch_matches_reference(rng: np.random.Generator, M: int) -> None:
    patches = random_complex(rng, (25, 32, 32))
    positions = rng.uniform(20, 70, size=(25, 2))
    ref_image, ref_cov = physics.stitch(patches, positions, M)
    image, coverage = tf_helper.stitch(patches, positions, M)
    assert rel_err(image, ref_image) <= RTOL
    assert rel_err(coverage, ref_cov) <= RTOL
    # A given canvas that cuts some crops off.
    ref_image, ref_cov = physics.stitch(patches, positions, M, canvas_shape=(40, 45),
                                        origin_xy=(30.5, 25.0))
    image, coverage = tf_helper.stitch(patches, positions, M, canvas_shape=(40, 45),
                                       origin_xy=(30.5, 25.0))
    assert rel_err(image, ref_image) <= RTOL
    assert rel_err(coverage, ref_cov) <= RTOL


def test_reassemble_position_legacy_layout(rng: np.random.Generator) -> None:
    patches = random_complex(rng, (10, 64, 64, 1)).astype(np.complex64)
    positions = rng.uniform(40, 90, size=(10, 2))
    global_offsets = positions[:, None, :, None]  # (B, 1, 2, 1)
    image = tf_helper.reassemble_position(patches, global_offsets, M=20)
    ref_image, _ = physics.stitch(patches[..., 0], positions, 20)
    assert image.shape == ref_image.shape + (1,)
    assert np.iscomplexobj(image)
    assert rel_err(image[..., 0], ref_image) <= RTOL
    with pytest.raises(ValueError, match='global_offsets'):
        tf_helper.reassemble_position(patches, global_offsets[:5], M=20)


@pytest.mark.skipif(importlib.util.find_spec('torch') is None
                    or importlib.util.find_spec('ptycho_torch.physics') is None,
                    reason='torch backend not installed')
def test_three_way_tf_torch_numpy(rng: np.random.Generator) -> None:
    import torch

    from ptycho_torch import physics as tphys

    N, C, B = 64, 4, 2
    patches = random_complex(rng, (B, C, N, N))
    probe = random_complex(rng, (N, N))
    offsets = rng.uniform(-6, 6, size=(B, C, 2))
    support = physics.central_window_mask(N)
    expected = np.stack([physics.forward_group(p, probe, o, support)
                         for p, o in zip(patches, offsets)])
    found_tf = tf_helper.forward_group(patches, probe, offsets, support).numpy()
    t_patches = torch.tensor(patches, dtype=torch.complex64)
    t_merged = tphys.enforce_overlap(t_patches, torch.tensor(offsets),
                                     torch.tensor(support, dtype=torch.float32))
    found_torch = tphys.forward_amplitude(t_merged, torch.tensor(probe, dtype=torch.complex64))
    assert rel_err(found_tf, expected) <= RTOL
    assert rel_err(found_torch.numpy(), expected) <= RTOL
    assert rel_err(found_tf, found_torch.numpy()) <= RTOL

    X = np.abs(rng.normal(size=(B, C, N, N)))
    probe_env = gaussian_probe(rng, N)
    expected = np.stack([physics.backprojection(x, probe_env, o, 4) for x, o in zip(X, offsets)])
    found_tf = tf_helper.backprojection(X.astype(np.float32), probe_env.astype(np.complex64),
                                        offsets, 4).numpy()
    found_torch = tphys.backprojection(torch.tensor(X, dtype=torch.float32),
                                       torch.tensor(probe_env, dtype=torch.complex64),
                                       torch.tensor(offsets), 4).numpy()
    assert rel_err(found_tf, expected) <= RTOL
    assert rel_err(found_torch, expected) <= RTOL
    assert rel_err(found_tf, found_torch) <= RTOL

    crops = random_complex(rng, (12, N, N))
    positions = rng.uniform(40, 90, size=(12, 2))
    ref_image, _ = physics.stitch(crops, positions, 20)
    tf_image, _ = tf_helper.stitch(crops, positions, 20)
    torch_image, _ = tphys.stitch(torch.tensor(crops, dtype=torch.complex64),
                                  torch.tensor(positions), 20)
    assert rel_err(tf_image, ref_image) <= RTOL
    assert rel_err(torch_image.numpy(), ref_image) <= RTOL


def test_backprojection_features_for_two_patch_sizes_in_one_process() -> None:
    """A worker may load a 64-pixel model and then a 128-pixel one."""
    from ptycho.config.config import ModelConfig, TrainingConfig
    from ptycho.model import create_model

    rng = np.random.default_rng(0)
    for N, batch in ((64, 3), (128, 2), (64, 5)):
        config = TrainingConfig(model=ModelConfig(N=N, gridsize=2, n_filters_scale=1))
        models = create_model(config, np.full((N, N), 0.5, np.complex64))
        X = rng.random((batch, N, N, 4)).astype(np.float32)
        offsets = rng.normal(size=(batch, 1, 2, 4)).astype(np.float32)
        assert models.backprojection_features(X, offsets).shape == (batch, N, N, 8)
