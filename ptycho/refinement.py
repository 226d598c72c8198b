"""Physics refinement after the network: the framework-free half (numpy only).

The network's stitched object is a good start but not the answer: its probe is the one
given with the data, which for a beamline scan is only an estimate. Refinement takes the
stitched object as the starting point of a few epochs of gradient descent on the scan's
own diffraction data (no ground truth), through the backend's differentiable forward model
(DESIGN.md section 4), optimising the object and, with ``refine_probe``, the probe (with ``refine_positions``,
the scan positions too):

    I_j = |fftshift(fft2(P * O_patch(x_j)))|**2 / N**2,   n_j = D_j**2
    loss = [sum m (I_j - n_j log(I_j + eps)) + w TV(O)] / sum m n_j

with ``m`` the detector's good pixels (``RawData.bad_pixels`` masked out): the Poisson
negative log-likelihood of the counts, plus, when the data are detector counts, a total
variation prior on the object (:data:`TV_WEIGHT`). The data residual reported per epoch is
the amplitude misfit ``sqrt(sum m (sqrt(I) - D)**2 / sum m D**2)``, as before.

Why not the amplitude misfit ``sum m (sqrt(I) - D)**2`` (the loss until session 9)? It is
the Poisson likelihood only for large counts; at 1e4 photons per 64 x 64 pattern most of the
dark field holds 0-2 counts, where ``E[sqrt(n)] < sqrt(E[n])`` biases it. Measured on
siemens-weak-64-1e4 (``bench/refine.py``, the same model and 20 epochs): probe error
0.098 -> 0.036, amplitude SSIM 0.457 -> 0.480; at 1e6 photons the two agree (0.972/0.902
and 0.970/0.892).

Why the prior: at low dose the unregularised optimum is noisy. Even with the TRUE probe and
positions (an oracle run), 20-200 epochs give amplitude SSIM 0.56 at 1e4 photons, below
pty-chi LSQML-100's 0.63, which is smoother because it is less converged (its phase 0.73 is
below ours, 0.77-0.81). A total variation prior in count units is weighed against the
likelihood, which grows with the dose: it is strong where the data are weak (1e4) and
negligible at 1e6. Measured (20 epochs, ``bench/refine.py``), amplitude/phase SSIM:

    scan                  no prior      w = 3         w = 10        w = 30
    siemens-weak-64-1e4   0.480/0.767   0.723/0.838   0.862/0.848   0.812/0.746
    texture-weak-64-1e4   0.052/0.347   0.251/0.633   0.522/0.733
    siemens-weak-64-1e6   0.970/0.891   0.972/0.889   0.975/0.893
    texture-weak-64-1e6   0.890/0.939   0.899/0.942   0.909/0.945

Data that are not counts (their squares are not whole numbers) carry no noise level, so
they get no prior (``RefineProblem.tv_weight`` 0) and a log line says so.

A preconditioned object step (the gradient over the batch's illumination, as PIE/LSQML,
instead of Adam's per-pixel normalisation) was tried and not kept: at 1e4 it moved
amplitude against phase (0.55/0.75), at 1e6 it lost phase (0.76 against 0.90).

Defaults (``InferenceConfig``: 20 epochs, probe and positions refined) come from
``bench/refine.py`` on the realistic benchmark's unseen scans (500 positions, N = 64,
1e6 photons, models of 15 epochs): siemens-weak-64-1e6 (raster), PyTorch: the network alone
scores amplitude/phase SSIM 0.56/0.48; 20 epochs of the object alone 0.33/0.58, with the
probe 0.78/0.67, with the probe and the positions 0.97/0.90 (pty-chi LSQML-100 with its
probe refined: 0.78/0.67). texture-weak-64-1e6 (Fermat spiral): 0.20/0.48 -> 0.89/0.94.
The given probe is what holds a beamline scan back.

The object's Adam step (:data:`OBJECT_LR`) was first 0.2: on the Fermat-spiral presets
(lines, texture) the residual then rose for several epochs and the probe ended orthogonal
to the truth (SSIM 0.00/0.00); 0.05 converges on every preset tried, and further on the
raster star too (residual 0.039 against 0.056, the Poisson floor being 0.032).

What the backends share lives here: the padded starting canvas (:func:`prepare`), the
mini-batch order and learning-rate schedule (the same numbers in both backends), and the
handling of the ambiguities of the data, which the optimiser cannot resolve
(:func:`finish`):

- **Scale** (``P -> c P``, ``O -> O / c``): the probe is first scaled by the least-squares
  amplitude factor that fits the data with the network's object, then its power
  ``sum |P|**2`` is held at that value (a projection after each step). The object keeps the
  network's amplitude scale; the probe carries the data's units (``|F(P O)| ~ D``).
- **Linear phase ramp** (``P -> P exp(i k.r)``, ``O -> O exp(-i k.r)``: every exit wave only
  gains a constant phase): after refinement the ramp is moved into the object so that the
  probe's far-field centroid is the guess's (the direct beam stays where the given probe put
  it); the object then holds the rest. An object ramp is what scoring removes anyway.
- **Translation** (probe and object shifted together) is not fixed: the refined probe sits
  where the data put it; the object moves with it (registration removes that when scoring).
  With ``refine_positions`` each position gets a correction (the given positions of a real
  scan are off by about a pixel); their mean is held at zero, so they cannot drift
  together with the object.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ptycho.physics import COVERAGE_EPS

if TYPE_CHECKING:
    from ptycho.config.config import InferenceConfig
    from ptycho.workflows.contract import Reconstruction

logger = logging.getLogger(__name__)

BATCH_SIZE = 16
"""Patterns per gradient step: several steps per epoch; small batches converge in fewer
epochs (measured in bench/refine.py)."""
OBJECT_LR = 0.05
"""Adam step of the object (its amplitude is ~1), decayed to 0 by a cosine over the run;
at 0.2 refinement diverged on Fermat-spiral scans (see the module docstring)."""
PROBE_LR = 0.1
"""Adam step of the probe, in units of its peak amplitude (same cosine decay)."""
POSITION_LR = 0.05
"""Adam step of the position corrections, pixels (same schedule); their mean is held at 0."""
MARGIN = 2
"""Pixels beyond every patch (and its bilinear neighbour) kept on the padded canvas."""
TV_WEIGHT = 10.0
"""Weight of the object's total variation against the Poisson likelihood of the counts
(count units, so the prior fades as the dose grows); chosen in the table above."""
TV_EPS = 1e-3
"""Smoothing of the total variation ``sqrt(|grad O|**2 + TV_EPS**2)`` (a gradient at 0)."""
POISSON_EPS = 4e-3
"""Added to the predicted intensity under the logarithm, as a fraction of the mean measured
count per pixel (0.01 counts at 1e4 photons, N = 64): keeps the dark field finite."""


@dataclass(frozen=True)
class RefineProblem:
    """What both backends' optimisers start from, in float32/complex64 numpy.

    Canvas pixel ``(r, c)`` is object coordinate ``(c + origin_xy[0], r + origin_xy[1])``;
    ``positions`` are the patch centres in canvas pixels; ``inner`` is the input
    reconstruction's canvas inside the padded one.
    """

    diffraction: NDArray[np.float32]
    mask: NDArray[np.float32]
    positions: NDArray[np.float64]
    canvas: NDArray[np.complex64]
    origin_xy: tuple[float, float]
    inner: tuple[slice, slice]
    probe: NDArray[np.complex64]
    epochs: int
    refine_probe: bool
    batches: tuple[tuple[NDArray[np.int64], ...], ...]
    """Per epoch, the pattern indices of each step (a seeded shuffle)."""
    refine_positions: bool = False
    tv_weight: float = 0.0
    """Weight of the object's total variation (:data:`TV_WEIGHT` for counts, else 0)."""
    poisson_eps: float = 1e-6
    """Added to the predicted intensity under the logarithm (data units)."""
    batch_size: int = BATCH_SIZE
    object_lr: float = OBJECT_LR
    probe_lr: float = PROBE_LR
    position_lr: float = POSITION_LR

    @property
    def N(self) -> int:
        return int(self.probe.shape[-1])

    @property
    def steps(self) -> int:
        return sum(len(epoch) for epoch in self.batches)

    def prior_weight(self, batch: int) -> float:
        """The total variation's weight in a step over ``batch`` patterns: its share of one
        epoch, so that an epoch adds the prior once."""
        return self.tv_weight * batch / max(len(self.diffraction), 1)

    def learning_rate_factor(self, step: int) -> float:
        """Linear warm-up over the first epoch, then cosine decay towards 0 at the last step.

        Adam's first steps move every pixel by about the full step whatever its gradient;
        the warm-up keeps them from scrambling a good start (the network's object)."""
        warm = min(1.0, (step + 1) / max(len(self.batches[0]) if self.batches else 1, 1))
        return warm * 0.5 * (1.0 + math.cos(math.pi * step / max(self.steps, 1)))


def _padding(low: float, high: float, size: int, N: int) -> tuple[int, int]:
    """Pixels to add before and after an axis of ``size`` so that every patch centred in
    ``[low, high]`` (canvas pixels) lies inside, with :data:`MARGIN` to spare."""
    before = max(0, int(math.ceil(N // 2 - low)) + MARGIN)
    after = max(0, int(math.ceil(high + N - N // 2 - size)) + MARGIN)
    return before, after


def _fill_uncovered(obj: NDArray[np.complex128], covered: NDArray[np.bool_]
                    ) -> NDArray[np.complex128]:
    """Pixels outside ``covered`` take the value of the nearest covered pixel (a start
    continuous with the network's object where the probe reaches beyond its crops)."""
    from scipy import ndimage

    if covered.all():
        return obj
    if not covered.any():
        return np.ones_like(obj)
    nearest = ndimage.distance_transform_edt(~covered, return_distances=False,
                                             return_indices=True)
    return obj[tuple(nearest)]


def prepare(scan: Any, recon: 'Reconstruction', config: 'InferenceConfig') -> RefineProblem:
    """The refinement of ``recon`` (the network's stitched object of ``scan``, a
    ``RawData``) as arrays: the canvas padded to hold every N x N patch, uncovered pixels
    filled from their covered neighbours, the scan's probe, bad pixels masked."""
    D = np.asarray(scan.diff3d, dtype=np.float32)
    N = int(D.shape[-1])
    probe = np.asarray(scan.probeGuess, dtype=np.complex64)
    if probe.shape != (N, N):
        raise ValueError(f'refine: probeGuess: expected ({N}, {N}) to match the patterns, '
                         f'found {probe.shape}')
    obj = np.asarray(recon.obj)
    if obj.ndim != 2 or recon.coverage.shape != obj.shape:
        raise ValueError(f'refine: reconstruction: expected a 2-D object and a coverage map '
                         f'of its shape, found {obj.shape} and {recon.coverage.shape}')
    positions = np.stack([np.asarray(scan.xcoords, np.float64),
                          np.asarray(scan.ycoords, np.float64)], axis=1)
    ox, oy = (float(v) for v in recon.origin_xy)
    local = positions - [ox, oy]
    height, width = obj.shape
    top, bottom = _padding(local[:, 1].min(), local[:, 1].max(), height, N)
    left, right = _padding(local[:, 0].min(), local[:, 0].max(), width, N)
    covered = np.zeros((height + top + bottom, width + left + right), bool)
    inner = (slice(top, top + height), slice(left, left + width))
    covered[inner] = np.asarray(recon.coverage) >= COVERAGE_EPS
    canvas = np.zeros(covered.shape, np.complex128)
    canvas[inner] = obj
    canvas = _fill_uncovered(canvas, covered)
    bad = getattr(scan, 'bad_pixels', None)
    mask = np.ones((N, N), np.float32) if bad is None else (~np.asarray(bad, bool)).astype(
        np.float32)
    from ptycho.photons import are_counts

    counts = are_counts(D)
    if not counts:
        logger.info('refine: the patterns are not detector counts (their squares are not whole '
                    'numbers): no noise level to weigh a prior against, so the object gets no '
                    'total variation prior')
    level = float(np.mean(np.square(D, dtype=np.float64) * mask))
    rng = np.random.default_rng([int(config.seed), 7])
    n = len(D)
    batches = tuple(tuple(np.sort(part) for part in np.array_split(
        rng.permutation(n), max(1, math.ceil(n / BATCH_SIZE))))
        for _ in range(int(config.refine_epochs)))
    return RefineProblem(
        diffraction=D, mask=mask, positions=local + [left, top],
        canvas=canvas.astype(np.complex64), origin_xy=(ox - left, oy - top), inner=inner,
        probe=probe, epochs=int(config.refine_epochs), refine_probe=bool(config.refine_probe),
        batches=batches, refine_positions=bool(config.refine_positions),
        tv_weight=TV_WEIGHT if counts else 0.0, poisson_eps=max(POISSON_EPS * level, 1e-12))


def far_field_centroid(probe: ArrayLike) -> NDArray[np.float64]:
    """``(kx, ky)``: the intensity centroid of ``|fftshift(fft2(P))|**2`` in detector pixels."""
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(np.asarray(probe, np.complex128)))) ** 2
    rows, cols = np.indices(spectrum.shape, dtype=np.float64)
    total = spectrum.sum()
    return np.array([(spectrum * cols).sum() / total, (spectrum * rows).sum() / total])


def _ramp(k_xy: NDArray[np.float64], shape: tuple[int, int], N: int) -> NDArray[np.complex128]:
    """``exp(2 pi i (kx col + ky row) / N)`` on an array of ``shape``: moves a far field by
    ``+k`` detector pixels."""
    rows, cols = np.indices(shape, dtype=np.float64)
    return np.exp(2j * np.pi * (k_xy[0] * cols + k_xy[1] * rows) / N)


def finish(problem: RefineProblem, recon: 'Reconstruction', canvas: NDArray,
           probe: NDArray, losses: list[float], seconds: float,
           positions: NDArray | None = None) -> 'Reconstruction':
    """The refined :class:`~ptycho.workflows.contract.Reconstruction`: the probe's phase
    ramp relative to the guess moved into the object, the object cropped back to the input
    canvas (uncovered pixels stay zero), ``probe`` the refined probe (or the input probe
    when only the object was refined), ``losses`` the data residual after each epoch,
    ``positions`` the refined patch centres in canvas pixels (object pixels in the result;
    kept only when ``problem.refine_positions``)."""
    N = problem.N
    canvas = np.asarray(canvas, np.complex128)
    probe = np.asarray(probe, np.complex128)
    if problem.refine_probe:
        k = far_field_centroid(probe) - far_field_centroid(problem.probe)
        probe = probe * np.conj(_ramp(k, (N, N), N))
        canvas = canvas * _ramp(k, canvas.shape, N)
        out_probe = probe.astype(np.complex64)
    else:
        out_probe = np.array(problem.probe, copy=True)
    obj = canvas[problem.inner]
    covered = np.asarray(recon.coverage) >= COVERAGE_EPS
    obj = np.where(covered, obj, 0).astype(np.complex64)
    refined_positions = None
    if problem.refine_positions and positions is not None:
        refined_positions = np.asarray(positions, np.float64) + problem.origin_xy
        moved = np.hypot(*(np.asarray(positions, np.float64) - problem.positions).T)
        logger.info('Refined positions: moved %.2f px rms, %.2f px at most',
                    float(np.sqrt(np.mean(moved ** 2))), float(moved.max(initial=0.0)))
    timings = dict(recon.timings)
    timings['refine_s'] = float(seconds)
    logger.info('Refinement: %d epochs (probe %s), data residual %s -> %.4f, %.2f s',
                problem.epochs, 'refined' if problem.refine_probe else 'fixed',
                f'{losses[0]:.4f}' if losses else '-', losses[-1] if losses else float('nan'),
                seconds)
    return dataclasses.replace(recon, obj=obj, probe=out_probe,
                               probe_refined=problem.refine_probe, losses=tuple(losses),
                               timings=timings, positions_xy=refined_positions)


def probe_error(probe: ArrayLike, reference: ArrayLike, *, lit: float = 0.01) -> float:
    """Relative L2 distance of ``probe`` from ``reference`` after removing what the data
    cannot tell apart: a sub-pixel shift, a linear phase ramp, a constant phase and a scale.

    Counted where ``|reference|**2`` exceeds ``lit`` times its peak.
    """
    from ptycho.metrics import register_shift, remove_phase_ramp, shift_image

    found = np.asarray(probe, np.complex128)
    truth = np.asarray(reference, np.complex128)
    if found.shape != truth.shape or found.ndim != 2:
        raise ValueError(f'probe_error: expected two probes of one (N, N) shape, found '
                         f'{found.shape} and {truth.shape}')
    region = np.abs(truth) ** 2 >= lit * np.max(np.abs(truth) ** 2)
    shift = register_shift(np.abs(found), np.abs(truth))
    found, valid = shift_image(found, shift)
    region &= valid
    found, _ = remove_phase_ramp(found, truth, region)
    f, t = found[region], truth[region]
    scale = np.vdot(f, t) / max(np.vdot(f, f).real, 1e-300)
    return float(np.linalg.norm(scale * f - t) / np.linalg.norm(t))
