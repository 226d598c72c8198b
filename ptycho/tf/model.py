"""Keras 3 PtychoPINN network with the physics as layers (architecture.md sections 5 and 6).

:func:`create_model` builds two models that share every weight:

* ``autoencoder`` (training): inputs ``[X, local_offsets]`` with X the normalised measured
  amplitudes (B, N, N, C); output the predicted far-field amplitudes (B, N, N, C) of the
  gained object (PINN), or ``[gained amplitude, phase]`` stacked on the channel axis
  (supervised). :func:`pinn_loss` / :func:`supervised_loss` compare them with the targets.
* ``diffraction_to_obj`` (inference): inputs ``[X * s, local_offsets]`` with s the trained
  intensity scale (what Ptychodus multiplies by); output the complex object (B, N, N, 1).

The network sees X, or with ``input_features='backprojection'`` ``[X, Re(b), Im(b)]`` (3C
channels; b the group back-projection of the unscaled X with the model's probe).

There is no module-level model: every call builds fresh layers from the config.

Legacy path: ``ptycho.model`` (an alias of this module).
"""

from __future__ import annotations

import functools
import logging
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from ptycho import network_layout as layout
from ptycho import physics, progress
from ptycho.tf import physics as tf_physics
from ptycho.config.config import (DEFAULT_NPHOTONS, InferenceConfig, ModelConfig,  # noqa: F401
                                  TrainingConfig)
from ptycho.photons import nphotons_or_default

logger = logging.getLogger(__name__)

NLL_EPS = 1e-6


# --------------------------------------------------------------------------- physics layers
class IntensityScale(keras.layers.Layer):
    """Holds ``log_scale`` (init ``log(s0)``); ``mode='unscale'`` divides the network input by
    ``s = exp(log_scale)``, ``mode='gain'`` multiplies by ``g = s / s0``."""

    def __init__(self, s0: float, trainable_scale: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.s0 = float(s0)
        self.log_scale = self.add_weight(
            name='log_scale', shape=(), initializer=keras.initializers.Constant(math.log(s0)),
            trainable=trainable_scale, dtype='float32')

    def call(self, x: tf.Tensor, mode: str = 'gain') -> tf.Tensor:
        scale = tf.exp(tf.cast(self.log_scale, x.dtype))
        if mode == 'unscale':
            return x / scale
        if mode == 'gain':
            return x * (scale / self.s0)
        raise ValueError(f'IntensityScale: mode must be "unscale" or "gain", found {mode!r}')


class PiTanh(keras.layers.Layer):
    """Phase activation ``pi * tanh``."""

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return math.pi * tf.tanh(x)


class AddPeriphery(keras.layers.Layer):
    """``centre + periphery * (1 - central_window_mask)`` (probe_big with pad_object)."""

    def __init__(self, N: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.N = N

    def call(self, centre: tf.Tensor, periphery: tf.Tensor) -> tf.Tensor:
        outside = 1.0 - tf_physics.central_window_mask(self.N)[None, :, :, None]
        return centre + periphery * tf.cast(outside, periphery.dtype)


class ComplexObject(keras.layers.Layer):
    """``amp * exp(i * phase)`` as complex64."""

    def call(self, amp: tf.Tensor, phase: tf.Tensor) -> tf.Tensor:
        return tf.complex(amp * tf.cos(phase), amp * tf.sin(phase))


def _channels_first(x: tf.Tensor) -> tf.Tensor:
    return tf.transpose(x, (0, 3, 1, 2))


def _channels_last(x: tf.Tensor) -> tf.Tensor:
    return tf.transpose(x, (0, 2, 3, 1))


class EnforceOverlap(keras.layers.Layer):
    """gridsize > 1 with object_big: merge the C patches at their offsets and re-extract."""

    def __init__(self, support: np.ndarray, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.support = np.asarray(support, dtype=np.float32)

    def call(self, obj: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
        merged = tf_physics.enforce_overlap(_channels_first(obj), offsets, self.support)
        return _channels_last(merged)


class GroupObject(keras.layers.Layer):
    """The group's merged object cropped to N around its centre: (B, N, N, C) -> (B, N, N, 1)."""

    def __init__(self, support: np.ndarray, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.support = np.asarray(support, dtype=np.float32)

    def call(self, obj: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
        if obj.shape[-1] == 1:
            return obj
        return tf_physics.group_object(_channels_first(obj), offsets, self.support)[..., None]


class ProbeIllumination(keras.layers.Layer):
    """Exit wave ``P * O`` (with the optional N/4 disk aperture).

    A trainable probe is a pair of weights (real, imaginary: 2 N**2 parameters); a fixed
    probe is a constant and no parameter, as in the torch twin (where it is a buffer), so
    both backends report the same parameter count. Bundles store the probe separately.
    """

    def __init__(self, probe: np.ndarray, trainable_probe: bool, mask: np.ndarray | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        probe = np.asarray(probe, dtype=np.complex64)
        self.mask = None if mask is None else np.asarray(mask, dtype=np.float32)
        self.trainable_probe = bool(trainable_probe)
        if self.trainable_probe:
            self.probe_real = self.add_weight(
                name='probe_real', shape=probe.shape, trainable=True, dtype='float32',
                initializer=keras.initializers.Constant(probe.real))
            self.probe_imag = self.add_weight(
                name='probe_imag', shape=probe.shape, trainable=True, dtype='float32',
                initializer=keras.initializers.Constant(probe.imag))
        else:
            self._fixed_probe = probe

    def probe(self) -> tf.Tensor:
        if self.trainable_probe:
            real = tf.convert_to_tensor(self.probe_real)
            imag = tf.convert_to_tensor(self.probe_imag)
        else:
            real = tf.constant(self._fixed_probe.real)
            imag = tf.constant(self._fixed_probe.imag)
        if self.mask is not None:
            real, imag = real * self.mask, imag * self.mask
        return tf.complex(real, imag)

    def call(self, obj: tf.Tensor) -> tf.Tensor:
        return obj * self.probe()[None, :, :, None]


class BackProjection(keras.layers.Layer):
    """Physics input channels ``[Re(b), Im(b)]`` (B, N, N, 2C) of the group back-projection.

    ``b = tf_physics.backprojection(X, P, offsets, iterations)`` with the model's own probe
    (``probe_fn``, the :class:`ProbeIllumination` layer's ``probe``), so a trainable probe is
    used consistently. No weights: the parameter count changes only through the encoder's
    input channels. With a fixed probe no gradient flows through it, as in the torch twin.
    """

    def __init__(self, probe_fn: Callable[[], tf.Tensor], iterations: int,
                 trainable_probe: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # A bound method, not the layer: Keras would track a layer attribute as a sublayer.
        self._probe_fn = probe_fn
        self.iterations = int(iterations)
        self.trainable_probe = bool(trainable_probe)

    def call(self, X: tf.Tensor, offsets: tf.Tensor, training: bool | None = None
             ) -> tf.Tensor:
        if not training and BACKPROJECTION_XLA:
            out = _backprojection_xla_chunked(X, self._probe_fn(), offsets, self.iterations)
        else:
            out = backprojection_channels(X, self._probe_fn(), offsets, self.iterations)
        return out if self.trainable_probe else tf.stop_gradient(out)


def backprojection_channels(X: Any, probe: tf.Tensor, offsets: Any, iterations: int) -> tf.Tensor:
    """``[Re b, Im b]`` channels-last (B, N, N, 2C) for normalised X (B, N, N, C)."""
    X = tf.convert_to_tensor(X, tf.float32) if not isinstance(X, tf.Tensor) else X
    estimate = tf_physics.backprojection(_channels_first(X), probe, offsets, iterations)
    out = tf.concat([tf.math.real(estimate), tf.math.imag(estimate)], axis=1)
    return _channels_last(tf.cast(out, X.dtype))


# One graph per input shape and iteration count, shared by every call (eager mode was ~1.8x
# slower); the probe is an argument, so a trained probe is never baked in. Not
# reduce_retracing: its relaxed trace has unknown N, which the layer needs as a number, so a
# process that met two patch sizes (a worker loading a 64 and then a 128 model) failed.
_backprojection_graph = tf.function(backprojection_channels, reduce_retracing=False)

BACKPROJECTION_XLA = True
"""Inference computes the back-projection input as one XLA cluster (``jit_compile``): the
elementwise passes of each iteration fuse, 1.8x fewer CPU-seconds per group here. XLA
compiles once per batch shape (seconds), so :func:`ptycho.tf.workflows.predict_objects`
feeds fixed, padded batches. Training keeps the plain graph (gradients, varying shapes)."""

_backprojection_xla = tf.function(backprojection_channels, jit_compile=True,
                                  reduce_retracing=False)


def _backprojection_xla_chunked(X: tf.Tensor, probe: tf.Tensor, offsets: tf.Tensor,
                                iterations: int) -> tf.Tensor:
    """:func:`_backprojection_xla` on chunks of :func:`backprojection_chunk` groups, as many
    at once as the machine has cores (``tf.map_fn``'s parallel iterations; a GPU gets the
    whole batch in one call).

    One XLA back-projection keeps about 1.5 of two cores busy (its FFTs run on one
    thread), and its elementwise passes are faster while a call's working set stays in
    cache. Measured on this machine's two cores, 8 iterations, ms a group:
    N = 64, 64 groups: 2.1-2.3 in chunks of 4, against 5.3 in one call;
    N = 128, 32 groups: 8.2-10.1 one group a chunk, against 20-21 in one call.
    Every chunk has one shape (the batch is padded to a whole number of chunks), so XLA
    compiles once per patch size, whatever the batch. Run eagerly, the chunks follow each
    other.
    """
    workers = backprojection_workers()
    if workers == 1:
        return _backprojection_xla(X, probe, offsets, iterations)
    N, C = int(X.shape[1]), int(X.shape[-1])
    chunk = backprojection_chunk(N)
    batch = tf.shape(X)[0]
    pad = (-batch) % chunk

    def chunks(t: tf.Tensor) -> tf.Tensor:
        padded = tf.pad(t, [[0, pad]] + [[0, 0]] * (t.shape.rank - 1))
        return tf.reshape(padded, tf.concat([[-1, chunk], tf.shape(t)[1:]], axis=0))

    out = tf.map_fn(lambda xo: _backprojection_xla(xo[0], probe, xo[1], iterations),
                    (chunks(X), chunks(offsets)),
                    fn_output_signature=tf.TensorSpec((chunk, N, N, 2 * C), X.dtype),
                    parallel_iterations=workers)
    return tf.reshape(out, (-1, N, N, 2 * C))[:batch]


def backprojection_chunk(N: int) -> int:
    """Groups per XLA back-projection call on a CPU: 4 at N = 64, 1 at N = 128 (measured
    best of 1, 2, 4 and 8 for each; the working set of a call is about the same)."""
    return max(1, (4 * 64 * 64) // (N * N))


@functools.cache
def backprojection_workers() -> int:
    """Back-projection chunks computed at once: one per usable CPU core, or 1 where
    TensorFlow sees a GPU (one call on the whole batch fills it)."""
    if tf.config.list_physical_devices('GPU'):
        return 1
    return max(1, len(os.sched_getaffinity(0)))


class FarFieldAmplitude(keras.layers.Layer):
    """``|fftshift(fft2(psi))| / N`` per channel, (B, N, N, C) complex -> float32."""

    def call(self, psi: tf.Tensor) -> tf.Tensor:
        return _channels_last(tf_physics.far_field_amplitude(_channels_first(psi)))


class InferenceModel(keras.Model):
    """Functional model whose ``predict`` is quiet by default.

    Ptychodus' built-in integration calls ``predict`` without ``verbose`` in its worker;
    Keras would print a progress bar per call there.
    """

    def predict(self, x: Any, batch_size: int | None = None, verbose: Any = 0,
                steps: int | None = None, callbacks: Any = None) -> Any:
        return super().predict(x, batch_size=batch_size, verbose=verbose, steps=steps,
                               callbacks=callbacks)


# --------------------------------------------------------------------------- network
def filter_widths(config: ModelConfig) -> list[int]:
    """``w_k = 16 * n_filters_scale * 2**k`` for the L = log2(N) - 3 levels."""
    return layout.level_widths(config.require_size(), config.n_filters_scale)


def decoder_widths(config: ModelConfig) -> list[int]:
    return layout.decoder_steps(filter_widths(config), config.pad_object)


def input_channels(config: ModelConfig) -> int:
    """Network input channels: C amplitudes, plus 2C back-projection channels (real, imag)."""
    return layout.input_channels(config.n_channels, config.input_features)


def decoder_skips(config: ModelConfig) -> list[tuple[int, int] | None]:
    """The skip plan of the decoder steps (all None without ``skip_connections``)."""
    steps = decoder_widths(config)
    if not config.skip_connections:
        return [None] * len(steps)
    return layout.skip_plan(config.require_size(), filter_widths(config), steps,
                            config.pad_object)


def _conv(width: int, name: str, policy: str = 'float32') -> keras.layers.Conv2D:
    return keras.layers.Conv2D(width, 3, padding='same', activation='relu', name=name,
                               dtype=policy)


def network_policy(precision: str) -> str:
    """Keras dtype policy of the network's layers for ``ModelConfig.network_precision``.

    'auto' takes mixed bfloat16 only where it is native: a GPU of compute capability >= 8
    or a CPU with AMX/AVX512-BF16 (oneDNN then runs the convolutions ~3.8x faster per
    training step here); emulated bfloat16 elsewhere would be slower than float32.
    """
    if precision == 'float32':
        return 'float32'
    if precision == 'bfloat16':
        return 'mixed_bfloat16'
    gpus = tf.config.list_physical_devices('GPU')
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get('compute_capability')
        return 'mixed_bfloat16' if capability and capability[0] >= 8 else 'float32'
    return 'mixed_bfloat16' if _cpu_has_native_bfloat16() else 'float32'


def _cpu_has_native_bfloat16() -> bool:
    try:
        flags = Path('/proc/cpuinfo').read_text()
    except OSError:  # not Linux: stay with float32
        return False
    return any(flag in flags.split() for flag in ('amx_bf16', 'avx512_bf16'))


def _amp_activation(name: str) -> str:
    return {'swish': 'silu', 'silu': 'silu'}.get(name, name)


def _decoder(features: Any, skip_features: list[Any], config: ModelConfig, kind: str,
             policy: str = 'float32') -> Any:
    """One decoder (``kind`` 'amp' or 'phase') from the bottleneck to an N x N x C map.

    With skip connections each step concatenates (decoder features first, as torch) the
    central crop of the encoder level :func:`decoder_skips` names, after its upsampling.
    """
    N = config.N
    C = config.n_channels
    x = features
    for i, (width, skip) in enumerate(zip(decoder_widths(config), decoder_skips(config))):
        x = keras.layers.UpSampling2D(2, interpolation='nearest', name=f'{kind}_up{i}',
                                      dtype=policy)(x)
        if skip is not None:
            level, size = skip
            full = int(skip_features[level].shape[1])
            start = (full - size) // 2
            cropped = skip_features[level]
            if size < full:
                crop = ((start, full - size - start),) * 2
                cropped = keras.layers.Cropping2D(crop, name=f'{kind}_skip{i}_crop',
                                                  dtype=policy)(cropped)
            x = keras.layers.Concatenate(axis=-1, name=f'{kind}_skip{i}',
                                         dtype=policy)([x, cropped])
        x = _conv(width, f'{kind}_conv{i}a', policy)(x)
        x = _conv(width, f'{kind}_conv{i}b', policy)(x)

    def head(inputs: Any, suffix: str) -> Any:
        # The output activations run in float32: the physics and loss after them do.
        out = keras.layers.Conv2D(C, 3, padding='same', name=f'{kind}_{suffix}',
                                  dtype=policy)(inputs)
        if kind == 'amp':
            return keras.layers.Activation(_amp_activation(config.amp_activation),
                                           name=f'{kind}_{suffix}_act')(out)
        return PiTanh(name=f'{kind}_{suffix}_act')(out)

    centre = head(x, 'out')
    if not config.pad_object:
        return centre
    padded = keras.layers.ZeroPadding2D(N // 4, name=f'{kind}_pad')(centre)
    if not config.probe_big:
        return padded
    up = keras.layers.UpSampling2D(2, interpolation='nearest', name=f'{kind}_periph_up',
                                   dtype=policy)(x)
    periphery = head(up, 'periph')
    return AddPeriphery(N, name=f'{kind}_combine')(padded, periphery)


def _encoder(x: Any, config: ModelConfig, policy: str = 'float32') -> tuple[Any, list[Any]]:
    """The bottleneck and each level's features before pooling (the skip sources)."""
    features = []
    for k, width in enumerate(filter_widths(config)):
        x = _conv(width, f'enc_conv{k}a', policy)(x)
        x = _conv(width, f'enc_conv{k}b', policy)(x)
        features.append(x)
        x = keras.layers.MaxPooling2D(2, name=f'enc_pool{k}', dtype=policy)(x)
    return x, features


def _conv_params(c_in: int, c_out: int) -> int:
    return 9 * c_in * c_out + c_out


def expected_param_count(config: ModelConfig, include_probe: bool = False) -> int:
    """Parameter count that architecture.md section 5 implies (conv weights + ``log_scale``,
    plus the probe's 2 N**2 real numbers when ``include_probe``, i.e. a trainable probe).

    The encoder's first conv sees :func:`input_channels`; with skip connections each decoder
    conv pair also sees its skip's encoder width.
    """
    C = config.n_channels
    widths = filter_widths(config)
    total = 0
    c_in = input_channels(config)
    for w in widths:
        total += _conv_params(c_in, w) + _conv_params(w, w)
        c_in = w
    for _ in ('amp', 'phase'):
        c = widths[-1]
        dec = 0
        for w, skip in zip(decoder_widths(config), decoder_skips(config)):
            extra = 0 if skip is None else widths[skip[0]]
            dec += _conv_params(c + extra, w) + _conv_params(w, w)
            c = w
        dec += _conv_params(c, C)
        if config.pad_object and config.probe_big:
            dec += _conv_params(c, C)
        total += dec
    total += 1  # log_scale
    if include_probe:
        total += 2 * config.N * config.N
    return total


# --------------------------------------------------------------------------- factory
@dataclass
class PtychoModels:
    """The two weight-sharing Keras models of one network, plus what the loss needs."""

    autoencoder: keras.Model
    diffraction_to_obj: keras.Model
    model_config: ModelConfig
    s0: float
    scale_layer: IntensityScale
    probe_layer: ProbeIllumination
    cached_input_model: keras.Model | None = None
    """``autoencoder`` taking ``[X, offsets, backprojection]``: with a fixed probe the
    back-projection depends on the data only, so training computes it once
    (:meth:`backprojection_features`) instead of every step. Same weights."""
    precision_twins: dict[str, keras.Model] = field(default_factory=dict, repr=False)
    """``diffraction_to_obj`` rebuilt under another dtype policy, keyed by the policy
    (:meth:`inference_model`): built once per loaded model, weights copied."""

    def backprojection_features(self, X: np.ndarray, offsets: np.ndarray,
                                batch_size: int = 64) -> np.ndarray:
        """The network's back-projection channels (B, N, N, 2C) for normalised X (B, N, N, C)."""
        cfg = self.model_config
        probe = self.probe_layer.probe()
        parts = []
        with progress.bar(len(X), 'Back-projection input', 'group') as shown:
            for start in range(0, len(X), batch_size):
                stop = start + batch_size
                parts.append(_backprojection_graph(
                    tf.constant(X[start:stop], tf.float32), probe,
                    tf.constant(offsets[start:stop], tf.float64),
                    cfg.backprojection_iterations).numpy())
                shown.update(len(parts[-1]))
        N, C = cfg.N, cfg.n_channels
        return np.concatenate(parts) if parts else np.zeros((0, N, N, 2 * C), np.float32)

    @property
    def intensity_scale(self) -> float:
        """Trained ``s = exp(log_scale)``: ``diffraction_to_obj`` takes normalised X times s."""
        return float(np.exp(float(self.scale_layer.log_scale.numpy())))

    @property
    def probe(self) -> np.ndarray:
        return self.probe_layer.probe().numpy()

    def as_dict(self) -> dict[str, keras.Model]:
        return {'autoencoder': self.autoencoder, 'diffraction_to_obj': self.diffraction_to_obj}

    def inference_model(self, precision: str | None = None) -> keras.Model:
        """``diffraction_to_obj``, or its twin with the network in ``precision``
        (``InferenceConfig.precision_override``; None: as trained).

        A Keras dtype policy is fixed when a layer is built, so another precision means
        the same network built again under that policy, holding a copy of these weights
        (float32 variables under either policy).
        """
        if precision is None:
            return self.diffraction_to_obj
        policy = network_policy(precision)
        if policy == network_policy(self.model_config.network_precision):
            return self.diffraction_to_obj
        if policy not in self.precision_twins:
            N = self.model_config.require_size()
            twin = create_model(replace(self.model_config, network_precision=precision),
                                self.probe, nphotons=(self.s0 * N / 2) ** 2,
                                intensity_scale_trainable=bool(
                                    self.scale_layer.log_scale.trainable),
                                probe_trainable=self.probe_layer.trainable_probe)
            twin.diffraction_to_obj.set_weights(self.diffraction_to_obj.get_weights())
            self.precision_twins[policy] = twin.diffraction_to_obj
            logger.info('Network rebuilt for inference in %s (the model was trained in %s)',
                        policy, network_policy(self.model_config.network_precision))
        return self.precision_twins[policy]


def create_model(config: TrainingConfig | InferenceConfig | ModelConfig, probe: Any, *,
                 nphotons: float | None = None, intensity_scale_trainable: bool | None = None,
                 probe_trainable: bool | None = None) -> PtychoModels:
    """Build fresh ``autoencoder`` and ``diffraction_to_obj`` models from ``config``.

    ``probe`` is the normalised (N, N) probe (``container.probe``). ``nphotons`` and the
    trainability flags default to the ``TrainingConfig`` values (1e9 / True / False otherwise).
    """
    model_cfg = config if isinstance(config, ModelConfig) else config.model
    N = model_cfg.require_size()
    C = model_cfg.n_channels
    if nphotons is None:
        nphotons = nphotons_or_default(getattr(config, 'nphotons', None))
    if intensity_scale_trainable is None:
        intensity_scale_trainable = getattr(config, 'intensity_scale_trainable', True)
    if probe_trainable is None:
        probe_trainable = getattr(config, 'probe_trainable', False)
    probe = np.asarray(probe)
    if probe.shape != (N, N):
        raise ValueError(f'create_model: probe must have shape ({N}, {N}) to match '
                         f'config.model.N={N}, found {probe.shape}')
    s0 = physics.photon_scale(float(nphotons), N)
    # Overlap support: the central window only where the patch really is zero outside it
    # (pad_object without probe_big); the probe_big periphery fills the whole patch.
    support = (physics.central_window_mask(N)
               if model_cfg.pad_object and not model_cfg.probe_big else np.ones((N, N)))
    mask = None
    if model_cfg.probe_mask:
        from ptycho.probe import probe_mask
        mask = probe_mask(N)

    scale = IntensityScale(s0, bool(intensity_scale_trainable), name='intensity_scale')
    illumination = ProbeIllumination(probe, bool(probe_trainable), mask, name='probe')

    X_in = keras.Input((N, N, C), name='X', dtype='float32')
    off_in = keras.Input((1, 2, C), name='local_offsets', dtype='float32')

    # Shared trunk: network input (B, N, N, C_in) -> (amp, phase) maps (B, N, N, C).
    trunk_in = keras.Input((N, N, input_channels(model_cfg)), name='X_norm', dtype='float32')
    policy = network_policy(model_cfg.network_precision)
    bottleneck, skip_features = _encoder(trunk_in, model_cfg, policy)
    amp = _decoder(bottleneck, skip_features, model_cfg, 'amp', policy)
    phase = _decoder(bottleneck, skip_features, model_cfg, 'phase', policy)
    trunk = keras.Model(trunk_in, [amp, phase], name='trunk')

    if model_cfg.input_features == 'backprojection':
        backprojection = BackProjection(illumination.probe, model_cfg.backprojection_iterations,
                                        bool(probe_trainable), name='backprojection')
        join = keras.layers.Concatenate(axis=-1, name='network_input')

        def network_input(X: Any, offsets: Any) -> Any:
            """[X, Re(b), Im(b)] on the channel axis (torch: cat([X, real, imag], dim=1))."""
            return join([X, backprojection(X, offsets)])
    else:
        def network_input(X: Any, offsets: Any) -> Any:
            return X

    to_object = ComplexObject(name='object')
    overlap = EnforceOverlap(support, name='overlap') if C > 1 and model_cfg.object_big else None
    far_field = FarFieldAmplitude(name='far_field')
    join_amp_phase = keras.layers.Concatenate(axis=-1, name='amp_phase')

    def training_output(net_in: Any, offsets: Any) -> Any:
        """Network input -> what the loss compares (amplitudes, or amp|phase if supervised)."""
        amp_t, phase_t = trunk(net_in)
        amp_g = scale(amp_t, mode='gain')
        if model_cfg.model_type == 'supervised':
            return join_amp_phase([amp_g, phase_t])
        patches = to_object(amp_g, phase_t)
        if overlap is not None:
            patches = overlap(patches, offsets)
        return far_field(illumination(patches))

    autoencoder = keras.Model([X_in, off_in], training_output(network_input(X_in, off_in), off_in),
                              name='autoencoder')
    cached = None
    if model_cfg.input_features == 'backprojection' and not probe_trainable:
        # Same layers, with the (data-only) back-projection fed in: computed once per dataset.
        Xc_in = keras.Input((N, N, C), name='X_cached', dtype='float32')
        offc_in = keras.Input((1, 2, C), name='local_offsets_cached', dtype='float32')
        feat_in = keras.Input((N, N, 2 * C), name='backprojection_in', dtype='float32')
        cached = keras.Model([Xc_in, offc_in, feat_in],
                             training_output(join([Xc_in, feat_in]), offc_in),
                             name='autoencoder_cached_input')

    Xs_in = keras.Input((N, N, C), name='X_scaled', dtype='float32')
    offs_in = keras.Input((1, 2, C), name='local_offsets_inf', dtype='float32')
    # The back-projection sees the unscaled normalised X, like the autoencoder's.
    amp_i, phase_i = trunk(network_input(scale(Xs_in, mode='unscale'), offs_in))
    obj_i = ComplexObject(name='object_inf')(scale(amp_i, mode='gain'), phase_i)
    obj_out = GroupObject(support, name='group_object')(obj_i, offs_in)
    diffraction_to_obj = InferenceModel([Xs_in, offs_in], obj_out, name='diffraction_to_obj')

    logger.info('Built PtychoPINN (TensorFlow) N=%d C=%d input=%s skips=%s %s widths=%s '
                'params=%d', N, C, model_cfg.input_features, model_cfg.skip_connections, policy,
                filter_widths(model_cfg), autoencoder.count_params())
    return PtychoModels(autoencoder, diffraction_to_obj, model_cfg, s0, scale, illumination,
                        cached)


# --------------------------------------------------------------------------- losses
def pinn_loss(s0: float, nll_weight: float = 1.0, mae_weight: float = 0.0):
    """Poisson NLL (+ amplitude MAE) between measured X (y_true) and predicted Â (y_pred).

    ``nll_weight * mean(λ - y log(λ + eps)) / s0**2 + mae_weight * mean|Â - X|`` with
    ``λ = (s0 Â)**2`` and ``y = (s0 X)**2``; per-sample means, so Keras' batch mean is the
    global mean.
    """
    s0_sq = float(s0) ** 2

    def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        y_true = tf.cast(y_true, tf.float32)
        axes = (1, 2, 3)
        total = 0.0
        if nll_weight:
            lam = s0_sq * tf.square(y_pred)
            obs = s0_sq * tf.square(y_true)
            nll = tf.reduce_mean(lam - obs * tf.math.log(lam + NLL_EPS), axis=axes) / s0_sq
            total = total + nll_weight * nll
        if mae_weight:
            total = total + mae_weight * tf.reduce_mean(tf.abs(y_pred - y_true), axis=axes)
        return total

    loss.__name__ = 'pinn_loss'
    return loss


def supervised_loss(realspace_mae_weight: float = 0.0, realspace_weight: float = 0.0
                    ) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """The supervised loss between ``[amp, phase]`` (y_pred) and ``[|Y|, angle(Y)]`` (y_true),
    both stacked on the channel axis:

    ``mean|amp - |Y|| + mean|wrap(phase - angle(Y))|``
    ``+ realspace_mae_weight * mean(|Re(O - Y)| + |Im(O - Y)|)``
    ``+ realspace_weight * mean|O - Y|**2`` with ``O = amp * exp(i phase)``;

    per-sample means, so Keras' batch mean is the global mean (the torch backend's
    ``ptycho_torch.model.supervised_loss`` is the same formula).
    """
    def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        C = y_pred.shape[-1] // 2
        y_true = tf.cast(y_true, tf.float32)
        amp, phase = y_pred[..., :C], y_pred[..., C:]
        amp_t, phase_t = y_true[..., :C], y_true[..., C:]
        axes = (1, 2, 3)
        diff = phase - phase_t
        total = (tf.reduce_mean(tf.abs(amp - amp_t), axis=axes)
                 + tf.reduce_mean(tf.abs(tf.math.atan2(tf.sin(diff), tf.cos(diff))), axis=axes))
        if realspace_mae_weight or realspace_weight:
            re = amp * tf.cos(phase) - amp_t * tf.cos(phase_t)
            im = amp * tf.sin(phase) - amp_t * tf.sin(phase_t)
            if realspace_mae_weight:
                total = total + realspace_mae_weight * tf.reduce_mean(
                    tf.abs(re) + tf.abs(im), axis=axes)
            if realspace_weight:
                total = total + realspace_weight * tf.reduce_mean(
                    tf.square(re) + tf.square(im), axis=axes)
        return total

    loss.__name__ = 'supervised_loss'
    return loss


def supervised_targets(Y: np.ndarray) -> np.ndarray:
    """[|Y|, angle(Y)] stacked on the channel axis, the ``supervised_loss`` target layout."""
    Y = np.asarray(Y)
    return np.concatenate([np.abs(Y), np.angle(Y)], axis=-1).astype(np.float32)
