"""Physics refinement after the network, in TensorFlow (see :mod:`ptycho.refinement`).

The twin of ``ptycho_torch.refine`` for users without torch: the same problem, loss
(Poisson likelihood and total variation prior), mini-batch order, learning-rate schedule and
Adam update (written out, in torch's form), through
:mod:`ptycho.tf.physics` (bilinear patch extraction by gathers, whose gradient is a
scatter-add into the canvas). One compiled step per mini-batch; nothing loops per pattern.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import tensorflow as tf

from ptycho import refinement
from ptycho.config.config import InferenceConfig
from ptycho.tf import physics
from ptycho.tf.backend import inference_scope
from ptycho.workflows.contract import Reconstruction

_EPS = 1e-12
"""Added to the far-field intensity under the square root (a finite gradient at zero)."""
_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8


def _intensity(obj: tf.Tensor, probe: tf.Tensor, positions: tf.Tensor, N: int) -> tf.Tensor:
    """Far-field intensity in unshifted FFT order, orthonormal."""
    psi = probe * physics.extract_patches(obj, positions, N)
    spectrum = tf.signal.fft2d(psi) / tf.complex(float(N), 0.0)
    return tf.math.real(spectrum) ** 2 + tf.math.imag(spectrum) ** 2


def _amplitude(obj: tf.Tensor, probe: tf.Tensor, positions: tf.Tensor, N: int) -> tf.Tensor:
    """Far-field amplitude in unshifted FFT order, orthonormal."""
    return tf.sqrt(_intensity(obj, probe, positions, N) + _EPS)


def total_variation(re: tf.Tensor, im: tf.Tensor) -> tf.Tensor:
    """Isotropic total variation of ``re + i im``, as ``ptycho_torch.refine``'s."""
    dr = re[1:, :-1] - re[:-1, :-1]
    dc = re[:-1, 1:] - re[:-1, :-1]
    di = im[1:, :-1] - im[:-1, :-1]
    dj = im[:-1, 1:] - im[:-1, :-1]
    return tf.reduce_sum(tf.sqrt(dr ** 2 + dc ** 2 + di ** 2 + dj ** 2
                                 + refinement.TV_EPS ** 2))


class _Adam:
    """Adam on a list of variables, torch's formula: ``p -= lr m_hat / (sqrt(v_hat) + eps)``."""

    def __init__(self, variables: list[tf.Variable]) -> None:
        self.variables = variables
        self.m = [tf.Variable(tf.zeros_like(v)) for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v)) for v in variables]

    def apply(self, grads: list[tf.Tensor], lr: tf.Tensor, t: tf.Tensor) -> None:
        b1, b2 = _BETAS
        for var, g, m, v in zip(self.variables, grads, self.m, self.v):
            g = tf.convert_to_tensor(g)  # a gathered variable's gradient is IndexedSlices
            c1 = 1.0 - tf.pow(tf.cast(b1, var.dtype), tf.cast(t, var.dtype))
            c2 = 1.0 - tf.pow(tf.cast(b2, var.dtype), tf.cast(t, var.dtype))
            m.assign(b1 * m + (1.0 - b1) * g)
            v.assign(b2 * v + (1.0 - b2) * g * g)
            var.assign_sub(tf.cast(lr, var.dtype) * (m / c1) / (tf.sqrt(v / c2) + _ADAM_EPS))


def refine(scan: Any, recon: Reconstruction, config: InferenceConfig) -> Reconstruction:
    """``recon`` refined on ``scan``'s data for ``config.refine_epochs`` epochs."""
    tic = time.perf_counter()
    problem = refinement.prepare(scan, recon, config)
    with inference_scope(config.device):
        obj, probe, losses, positions = _optimise(problem)
    return refinement.finish(problem, recon, obj, probe, losses, time.perf_counter() - tic,
                             positions)


def _optimise(problem: refinement.RefineProblem
              ) -> tuple[np.ndarray, np.ndarray, list[float], np.ndarray]:
    """Object, probe, residual per epoch and patch centres (canvas pixels) after the run."""
    N = problem.N
    D = tf.constant(np.fft.ifftshift(problem.diffraction, axes=(-2, -1)))
    mask = tf.constant(np.fft.ifftshift(problem.mask))
    positions = tf.constant(problem.positions, tf.float64)
    canvas = tf.constant(problem.canvas)
    probe = tf.constant(problem.probe)

    fit = np.zeros(3)
    for start in range(0, len(problem.diffraction), 256):
        index = tf.range(start, min(start + 256, len(problem.diffraction)))
        A = _amplitude(canvas, probe, tf.gather(positions, index), N)
        measured = tf.gather(D, index)
        fit += [float(tf.reduce_sum(mask * A * measured)), float(tf.reduce_sum(mask * A * A)),
                float(tf.reduce_sum(mask * measured * measured))]
    scale = float(fit[0] / fit[1])
    start_residual = float(np.sqrt(max(1.0 - fit[0] ** 2 / (fit[1] * fit[2]), 0.0)))
    peak = float(np.abs(problem.probe).max()) * scale
    unit = problem.probe * np.complex64(scale / peak)  # units of its peak: Adam's step is relative
    power = float(np.sum(np.abs(unit) ** 2))

    obj_re = tf.Variable(np.real(problem.canvas))
    obj_im = tf.Variable(np.imag(problem.canvas))
    pr = tf.Variable(np.real(unit))
    pi = tf.Variable(np.imag(unit))
    object_adam = _Adam([obj_re, obj_im])
    probe_adam = _Adam([pr, pi])
    delta = tf.Variable(tf.zeros_like(positions))
    position_adam = _Adam([delta])
    refine_probe, refine_positions = problem.refine_probe, problem.refine_positions

    poisson_eps = problem.poisson_eps
    tv_weight = problem.tv_weight

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([], tf.float32),
                                  tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.float32)])
    def step(index: tf.Tensor, factor: tf.Tensor, t: tf.Tensor, prior: tf.Tensor) -> tf.Tensor:
        measured = tf.gather(D, index)
        counts = measured ** 2
        total_counts = tf.reduce_sum(mask * counts)
        with tf.GradientTape() as tape:
            intensity = _intensity(tf.complex(obj_re, obj_im),
                                   tf.complex(pr, pi) * tf.complex(peak, 0.0),
                                   tf.gather(positions, index) + tf.gather(delta, index), N)
            loss = tf.reduce_sum(mask * (intensity - counts * tf.math.log(intensity + poisson_eps))
                                 ) / total_counts
            if tv_weight:
                loss = loss + prior * total_variation(obj_re, obj_im) / total_counts
        variables = ([obj_re, obj_im] + ([pr, pi] if refine_probe else [])
                     + ([delta] if refine_positions else []))
        grads = tape.gradient(loss, variables)
        object_adam.apply(grads[:2], problem.object_lr * factor, t)
        if refine_probe:
            probe_adam.apply(grads[2:4], problem.probe_lr * factor, t)
            norm = tf.sqrt(power / tf.reduce_sum(pr * pr + pi * pi))
            pr.assign(pr * norm)
            pi.assign(pi * norm)
        if refine_positions:
            position_adam.apply(grads[-1:], problem.position_lr * factor, t)
            delta.assign(delta - tf.reduce_mean(delta, axis=0))
        return (tf.reduce_sum(mask * (tf.sqrt(intensity + _EPS) - measured) ** 2)
                / total_counts)

    losses = [start_residual]
    count = 0
    for epoch in problem.batches:
        total = 0.0
        for batch in epoch:
            loss = step(tf.constant(batch), tf.constant(problem.learning_rate_factor(count),
                                                        tf.float32),
                        tf.constant(count + 1, tf.float32),
                        tf.constant(problem.prior_weight(len(batch)), tf.float32))
            total += float(loss) * len(batch)
            count += 1
        losses.append(float(np.sqrt(total / len(problem.diffraction))))
    obj = (obj_re.numpy() + 1j * obj_im.numpy()).astype(np.complex64)
    refined = ((pr.numpy() + 1j * pi.numpy()) * peak).astype(np.complex64)
    return obj, refined, losses, (positions + delta).numpy()
