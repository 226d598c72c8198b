"""Keras 3 PtychoPINN network with the physics as layers (architecture.md sections 5 and 6).

:func:`create_model` builds two models that share every weight:

* ``autoencoder`` (training): inputs ``[X, local_offsets]`` with X the normalised measured
  amplitudes (B, N, N, C); output the predicted far-field amplitudes (B, N, N, C) of the
  gained object (PINN), or ``[gained amplitude, phase]`` stacked on the channel axis
  (supervised). :func:`pinn_loss` / :func:`supervised_loss` compare them with the targets.
* ``diffraction_to_obj`` (inference): inputs ``[X * s, local_offsets]`` with s the trained
  intensity scale (what Ptychodus multiplies by); output the complex object (B, N, N, 1).

There is no module-level model: every call builds fresh layers from the config.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ptycho import tf_helper
from ptycho.config.config import InferenceConfig, ModelConfig, TrainingConfig

logger = logging.getLogger(__name__)

NLL_EPS = 1e-6
DEFAULT_NPHOTONS = 1e9


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
        outside = 1.0 - tf_helper.central_window_mask(self.N)[None, :, :, None]
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
        merged = tf_helper.enforce_overlap(_channels_first(obj), offsets, self.support)
        return _channels_last(merged)


class GroupObject(keras.layers.Layer):
    """The group's merged object cropped to N around its centre: (B, N, N, C) -> (B, N, N, 1)."""

    def __init__(self, support: np.ndarray, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.support = np.asarray(support, dtype=np.float32)

    def call(self, obj: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
        if obj.shape[-1] == 1:
            return obj
        return tf_helper.group_object(_channels_first(obj), offsets, self.support)[..., None]


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


class FarFieldAmplitude(keras.layers.Layer):
    """``|fftshift(fft2(psi))| / N`` per channel, (B, N, N, C) complex -> float32."""

    def call(self, psi: tf.Tensor) -> tf.Tensor:
        return _channels_last(tf_helper.far_field_amplitude(_channels_first(psi)))


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
    N = config.require_size()
    levels = int(round(math.log2(N))) - 3
    return [16 * config.n_filters_scale * 2 ** k for k in range(levels)]


def decoder_widths(config: ModelConfig) -> list[int]:
    widths = filter_widths(config)
    steps = widths[:-1][::-1]
    return steps if config.pad_object else steps + [widths[0]]


def _conv(width: int, name: str) -> keras.layers.Conv2D:
    return keras.layers.Conv2D(width, 3, padding='same', activation='relu', name=name)


def _amp_activation(name: str) -> str:
    return {'swish': 'silu', 'silu': 'silu'}.get(name, name)


def _decoder(features: Any, config: ModelConfig, kind: str) -> Any:
    """One decoder (``kind`` 'amp' or 'phase') from the bottleneck to an N x N x C map."""
    N = config.N
    C = config.n_channels
    x = features
    for i, width in enumerate(decoder_widths(config)):
        x = keras.layers.UpSampling2D(2, interpolation='nearest', name=f'{kind}_up{i}')(x)
        x = _conv(width, f'{kind}_conv{i}a')(x)
        x = _conv(width, f'{kind}_conv{i}b')(x)

    def head(inputs: Any, suffix: str) -> Any:
        out = keras.layers.Conv2D(C, 3, padding='same', name=f'{kind}_{suffix}')(inputs)
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
    up = keras.layers.UpSampling2D(2, interpolation='nearest', name=f'{kind}_periph_up')(x)
    periphery = head(up, 'periph')
    return AddPeriphery(N, name=f'{kind}_combine')(padded, periphery)


def _encoder(x: Any, config: ModelConfig) -> Any:
    for k, width in enumerate(filter_widths(config)):
        x = _conv(width, f'enc_conv{k}a')(x)
        x = _conv(width, f'enc_conv{k}b')(x)
        x = keras.layers.MaxPooling2D(2, name=f'enc_pool{k}')(x)
    return x


def _conv_params(c_in: int, c_out: int) -> int:
    return 9 * c_in * c_out + c_out


def expected_param_count(config: ModelConfig, include_probe: bool = False) -> int:
    """Parameter count that architecture.md section 5 implies (conv weights + ``log_scale``,
    plus the probe's 2 N**2 real numbers when ``include_probe``, i.e. a trainable probe)."""
    C = config.n_channels
    widths = filter_widths(config)
    total = 0
    c_in = C
    for w in widths:
        total += _conv_params(c_in, w) + _conv_params(w, w)
        c_in = w
    for _ in ('amp', 'phase'):
        c = widths[-1]
        dec = 0
        for w in decoder_widths(config):
            dec += _conv_params(c, w) + _conv_params(w, w)
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

    @property
    def intensity_scale(self) -> float:
        """Trained ``s = exp(log_scale)``: ``diffraction_to_obj`` takes normalised X times s."""
        return float(np.exp(float(self.scale_layer.log_scale.numpy())))

    @property
    def probe(self) -> np.ndarray:
        return self.probe_layer.probe().numpy()

    def as_dict(self) -> dict[str, keras.Model]:
        return {'autoencoder': self.autoencoder, 'diffraction_to_obj': self.diffraction_to_obj}


def photon_scale(nphotons: float, N: int) -> float:
    """Initial photon scale ``s0 = sqrt(nphotons) / (N/2)``."""
    return math.sqrt(nphotons) / (N / 2)


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
        nphotons = getattr(config, 'nphotons', DEFAULT_NPHOTONS)
    if intensity_scale_trainable is None:
        intensity_scale_trainable = getattr(config, 'intensity_scale_trainable', True)
    if probe_trainable is None:
        probe_trainable = getattr(config, 'probe_trainable', False)
    probe = np.asarray(probe)
    if probe.shape != (N, N):
        raise ValueError(f'create_model: probe must have shape ({N}, {N}) to match '
                         f'config.model.N={N}, found {probe.shape}')
    s0 = photon_scale(float(nphotons), N)
    # Overlap support: the central window only where the patch really is zero outside it
    # (pad_object without probe_big); the probe_big periphery fills the whole patch.
    support = (tf_helper.physics.central_window_mask(N)
               if model_cfg.pad_object and not model_cfg.probe_big else np.ones((N, N)))
    mask = None
    if model_cfg.probe_mask:
        from ptycho.probe import probe_mask
        mask = probe_mask(N)

    scale = IntensityScale(s0, bool(intensity_scale_trainable), name='intensity_scale')
    illumination = ProbeIllumination(probe, bool(probe_trainable), mask, name='probe')

    X_in = keras.Input((N, N, C), name='X', dtype='float32')
    off_in = keras.Input((1, 2, C), name='local_offsets', dtype='float32')

    # Shared trunk: X -> (amp, phase) maps (B, N, N, C).
    trunk_in = keras.Input((N, N, C), name='X_norm', dtype='float32')
    bottleneck = _encoder(trunk_in, model_cfg)
    amp = _decoder(bottleneck, model_cfg, 'amp')
    phase = _decoder(bottleneck, model_cfg, 'phase')
    trunk = keras.Model(trunk_in, [amp, phase], name='trunk')

    amp_t, phase_t = trunk(X_in)
    amp_g = scale(amp_t, mode='gain')
    obj = ComplexObject(name='object')(amp_g, phase_t)
    if model_cfg.model_type == 'supervised':
        out = keras.layers.Concatenate(axis=-1, name='amp_phase')([amp_g, phase_t])
    else:
        patches = obj
        if C > 1 and model_cfg.object_big:
            patches = EnforceOverlap(support, name='overlap')(obj, off_in)
        out = FarFieldAmplitude(name='far_field')(illumination(patches))
    autoencoder = keras.Model([X_in, off_in], out, name='autoencoder')

    Xs_in = keras.Input((N, N, C), name='X_scaled', dtype='float32')
    offs_in = keras.Input((1, 2, C), name='local_offsets_inf', dtype='float32')
    amp_i, phase_i = trunk(scale(Xs_in, mode='unscale'))
    obj_i = ComplexObject(name='object_inf')(scale(amp_i, mode='gain'), phase_i)
    obj_out = GroupObject(support, name='group_object')(obj_i, offs_in)
    diffraction_to_obj = InferenceModel([Xs_in, offs_in], obj_out, name='diffraction_to_obj')

    logger.info('Built PtychoPINN (TensorFlow) N=%d C=%d widths=%s params=%d', N, C,
                filter_widths(model_cfg), autoencoder.count_params())
    return PtychoModels(autoencoder, diffraction_to_obj, model_cfg, s0, scale, illumination)


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


def supervised_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """``mean|amp - |Y|| + mean|wrap(phase - angle(Y))|``; both stacked [amp, phase] on channels."""
    C = y_pred.shape[-1] // 2
    y_true = tf.cast(y_true, tf.float32)
    amp_err = tf.abs(y_pred[..., :C] - y_true[..., :C])
    diff = y_pred[..., C:] - y_true[..., C:]
    phase_err = tf.abs(tf.math.atan2(tf.sin(diff), tf.cos(diff)))
    return tf.reduce_mean(amp_err, axis=(1, 2, 3)) + tf.reduce_mean(phase_err, axis=(1, 2, 3))


def supervised_targets(Y: np.ndarray) -> np.ndarray:
    """[|Y|, angle(Y)] stacked on the channel axis, the ``supervised_loss`` target layout."""
    Y = np.asarray(Y)
    return np.concatenate([np.abs(Y), np.angle(Y)], axis=-1).astype(np.float32)
