"""TensorFlow-only physics: the Keras layers the model uses, gradients, the legacy layout.

The physics functions themselves are held to the numpy reference, with the same tests as
the torch backend's, in ``tests/conformance/test_conformance_physics.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip('tensorflow')

sys.path.insert(0, str(Path(__file__).parent / 'conformance'))
from conformance_backends import backprojection_case, rel_err  # noqa: E402
from ptycho import physics  # noqa: E402
from ptycho.tf import physics as tf_helper  # noqa: E402


def random_complex(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.normal(size=shape) + 1j * rng.normal(size=shape)


RTOL = 1e-5


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.mark.parametrize('gridsize', [1, 2])
@pytest.mark.parametrize('pad_object', [True, False])
def test_keras_forward_layers_match_reference(rng: np.random.Generator, gridsize: int,
                                              pad_object: bool) -> None:
    """The layers the model uses: channels-last, offsets in container layout (B, 1, 2, C)."""
    from ptycho.tf.model import EnforceOverlap, FarFieldAmplitude, ProbeIllumination

    N, C, B = 64, gridsize ** 2, 3
    patches = random_complex(rng, (B, C, N, N))
    probe = random_complex(rng, (N, N))
    offsets = rng.uniform(-7, 7, size=(B, C, 2))
    support = physics.central_window_mask(N) if pad_object else None
    expected = np.stack([physics.forward_group(p, probe, o, support)
                         for p, o in zip(patches, offsets)])
    obj = tf.constant(np.transpose(patches, (0, 2, 3, 1)).astype(np.complex64))
    container_offsets = np.transpose(offsets, (0, 2, 1))[:, None].astype(np.float32)
    if C > 1:
        sup = support if support is not None else np.ones((N, N))
        obj = EnforceOverlap(sup)(obj, tf.constant(container_offsets))
    amp = FarFieldAmplitude()(ProbeIllumination(probe, False)(obj)).numpy()
    assert rel_err(np.transpose(amp, (0, 3, 1, 2)), expected) <= RTOL


def test_gradient_is_finite_through_zero_field() -> None:
    obj = tf.Variable(tf.zeros((1, 1, 16, 16), tf.complex64))
    probe = np.ones((16, 16), np.complex64)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf_helper.forward_group(obj, probe, np.zeros((1, 1, 2))))
    grad = tape.gradient(loss, obj)
    assert np.all(np.isfinite(grad.numpy()))


@pytest.mark.parametrize('gridsize', [1, 2])
@pytest.mark.parametrize('iterations', [1, 4])
@pytest.mark.parametrize('training', [False, True])
def test_keras_backprojection_layer_matches_reference(rng: np.random.Generator, gridsize: int,
                                                      iterations: int, training: bool) -> None:
    """Channels-last [Re(b), Im(b)] output, offsets in container layout (B, 1, 2, C); traced
    as the model runs it (its iterations are one ``tf.while_loop``): the XLA graph of
    inference, or the plain graph of training."""
    from ptycho.tf.model import BackProjection

    N, C, B = 64, gridsize ** 2, 3
    case = backprojection_case(rng, gridsize, iterations, N=N, B=B)
    probe, X, offsets, expected = case.probe, case.X, case.offsets, case.expected
    container_offsets = (np.zeros((B, 1, 2, C)) if offsets is None
                         else np.transpose(offsets, (0, 2, 1))[:, None])
    probe_t = tf.constant(probe.astype(np.complex64))
    layer = BackProjection(lambda: probe_t, iterations, trainable_probe=False)
    traced = tf.function(lambda x, o: layer(x, o, training=training))
    out = traced(tf.constant(np.transpose(X, (0, 2, 3, 1)).astype(np.float32)),
                 tf.constant(container_offsets.astype(np.float32))).numpy()
    assert out.shape == (B, N, N, 2 * C)
    out = np.transpose(out, (0, 3, 1, 2))
    assert rel_err(out[:, :C] + 1j * out[:, C:], expected) <= RTOL


def test_backprojection_gradient_through_the_loop_matches_eager(rng: np.random.Generator
                                                                ) -> None:
    """A trainable probe's gradient flows through the traced ``tf.while_loop`` as through
    the eager Python loop."""
    case = backprojection_case(rng, 2, 3, N=32, B=2)
    X = tf.constant(case.X.astype(np.float32))
    offsets = tf.constant(case.offsets)
    probe = tf.Variable(case.probe.astype(np.complex64))

    def gradient() -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.abs(tf_helper.backprojection(X, probe, offsets, 3)) ** 2)
        return tape.gradient(loss, probe)

    eager = gradient().numpy()
    traced = tf.function(gradient)().numpy()
    assert np.all(np.isfinite(traced)) and np.abs(eager).max() > 0
    assert rel_err(traced, eager) <= 1e-4


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


@pytest.mark.parametrize('batch', [1, 5, 9])
def test_inference_backprojection_in_chunks_equals_one_call(rng: np.random.Generator,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            batch: int) -> None:
    """Inference cuts the batch into fixed chunks run side by side (padded to whole
    chunks): the same numbers as one call on the whole batch, for a batch the graph does not
    know in advance (Keras' predict traces with an unknown batch size)."""
    from ptycho.tf import model as tf_model

    monkeypatch.setattr(tf_model, 'backprojection_workers', lambda: 2)
    N, C = 32, 4
    assert tf_model.backprojection_chunk(N) > 1  # so batches 1, 5 and 9 need padding
    case = backprojection_case(rng, 2, 3, N=N, B=batch)
    X = tf.constant(np.transpose(case.X, (0, 2, 3, 1)).astype(np.float32))
    offsets = tf.constant(np.transpose(case.offsets, (0, 2, 1))[:, None])
    probe = tf.constant(case.probe.astype(np.complex64))
    chunked = tf.function(lambda x, o: tf_model._backprojection_xla_chunked(x, probe, o, 3),
                          input_signature=[tf.TensorSpec((None, N, N, C), tf.float32),
                                           tf.TensorSpec((None, 1, 2, C), tf.float64)])
    out = chunked(X, offsets).numpy()
    whole = tf_model._backprojection_xla(X, probe, offsets, 3).numpy()
    assert out.shape == (batch, N, N, 2 * C)
    np.testing.assert_allclose(out, whole, rtol=0, atol=1e-6 * np.abs(whole).max())
    expected = np.transpose(case.expected, (0, 2, 3, 1))
    assert rel_err(out[..., :C] + 1j * out[..., C:], expected) <= RTOL
