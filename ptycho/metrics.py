"""Reconstruction quality against a known object: SSIM, PSNR and FRC.

A ptychographic reconstruction is only defined up to a global phase offset, and the
PINN's absolute amplitude scale is not fixed by the data, so raw pixel comparisons would
punish ambiguities rather than errors. :func:`evaluate_reconstruction` therefore

1. restricts both images to the region the scan covered (``mask``; cropped to its
   bounding box and optionally eroded),
2. registers the reconstruction to the ground truth with sub-pixel accuracy
   (upsampled phase cross-correlation, then a cubic-spline shift),
3. removes the global phase offset ``angle(sum(rec * conj(gt)))`` (with
   ``remove_ramp=True`` first a best-fit linear phase ramp: a probe refined with the
   object can carry a tilt that the object takes up as a ramp, an ambiguity of the data,
   not an error) and fits a global amplitude scale by least squares,

and only then scores amplitude and phase. Data ranges for SSIM/PSNR come from the
ground truth, so a result does not depend on how noisy the reconstruction is.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage
from scipy.signal.windows import tukey
from skimage.metrics import structural_similarity
from skimage.registration import phase_cross_correlation

logger = logging.getLogger(__name__)

SSIM_WINDOW = 7
METRIC_KEYS = ('amp_ssim', 'phase_ssim', 'amp_psnr', 'phase_psnr', 'amp_frc50', 'phase_frc50')


# --------------------------------------------------------------------------- validation

def _as_image(name: str, value: ArrayLike) -> NDArray[np.complex128]:
    """A 2-D complex128 copy; singleton leading/trailing axes (1, H, W), (H, W, 1) dropped."""
    array = np.asarray(value)
    if array.dtype.kind not in 'biufc':
        raise ValueError(f'metrics: {name} must be a numeric 2-D (H, W) array, '
                         f'found dtype {array.dtype}')
    while array.ndim > 2 and array.shape[-1] == 1:
        array = array[..., 0]
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f'metrics: {name} must be a 2-D (H, W) image, found shape '
                         f'{np.asarray(value).shape}')
    if min(array.shape) < SSIM_WINDOW:
        raise ValueError(f'metrics: {name} must be at least {SSIM_WINDOW}x{SSIM_WINDOW} '
                         f'pixels, found shape {array.shape}')
    return np.array(array, dtype=np.complex128, copy=True)


def _as_mask(mask: ArrayLike | None, shape: tuple[int, ...]) -> NDArray[np.bool_]:
    if mask is None:
        return np.ones(shape, dtype=bool)
    array = np.asarray(mask)
    while array.ndim > 2 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.shape != shape:
        raise ValueError(f'metrics: mask must have the image shape {shape}, found '
                         f'{np.asarray(mask).shape}')
    if array.dtype.kind not in 'biuf':
        raise ValueError(f'metrics: mask must be boolean (or 0/1 numbers), found dtype '
                         f'{array.dtype}')
    array = np.asarray(array != 0)
    if not array.any():
        raise ValueError('metrics: mask selects no pixels')
    return array


def _check_finite(name: str, image: NDArray, mask: NDArray[np.bool_]) -> None:
    bad = ~np.isfinite(image) & mask
    if bad.any():
        raise ValueError(f'metrics: {name} has {int(bad.sum())} non-finite value(s) inside '
                         f'the evaluated region')


def _bounding_box(mask: NDArray[np.bool_]) -> tuple[slice, slice]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


# --------------------------------------------------------------------------- alignment

def _fill_outside(image: NDArray, mask: NDArray[np.bool_]) -> NDArray:
    """Replace pixels outside ``mask`` by the mean inside (no artificial edges)."""
    return np.where(mask, image, image[mask].mean())


def register_shift(reconstruction: ArrayLike, ground_truth: ArrayLike,
                   mask: ArrayLike | None = None, upsample_factor: int = 20
                   ) -> tuple[float, float]:
    """Sub-pixel ``(dy, dx)`` that, applied to the reconstruction, aligns it to the truth.

    Works on the complex images (a global phase offset or amplitude scale does not move
    the correlation peak); pixels outside ``mask`` are replaced by the in-mask mean.
    """
    rec = _as_image('reconstruction', reconstruction)
    gt = _as_image('ground_truth', ground_truth)
    if rec.shape != gt.shape:
        raise ValueError(f'metrics: reconstruction shape {rec.shape} differs from '
                         f'ground_truth shape {gt.shape}')
    region = _as_mask(mask, rec.shape)
    rec = _fill_outside(np.where(region, rec, 0), region)
    gt = _fill_outside(gt, region)
    window = np.outer(tukey(rec.shape[0], 0.3), tukey(rec.shape[1], 0.3))
    shift, _, _ = phase_cross_correlation((gt - gt.mean()) * window, (rec - rec.mean()) * window,
                                          upsample_factor=upsample_factor,
                                          normalization=None)
    return float(shift[0]), float(shift[1])


def shift_image(image: ArrayLike, shift_yx: tuple[float, float]
                ) -> tuple[NDArray[np.complex128], NDArray[np.bool_]]:
    """Shift content by ``(dy, dx)`` (cubic spline); returns ``(shifted, valid)``.

    ``valid`` is False where the shifted image draws on pixels from outside the input
    (plus a one-pixel margin for the spline's support).
    """
    image = np.asarray(image, dtype=np.complex128)
    if shift_yx[0] == 0 and shift_yx[1] == 0:
        return image.copy(), np.ones(image.shape, dtype=bool)
    shifted = (ndimage.shift(image.real, shift_yx, order=3, mode='nearest')
               + 1j * ndimage.shift(image.imag, shift_yx, order=3, mode='nearest'))
    support = ndimage.shift(np.ones(image.shape), shift_yx, order=1, mode='constant', cval=0.0)
    valid = ndimage.binary_erosion(support > 1.0 - 1e-6, iterations=1, border_value=0)
    return shifted, valid


def align_phase(reconstruction: ArrayLike, ground_truth: ArrayLike,
                mask: ArrayLike | None = None) -> tuple[NDArray[np.complex128], float]:
    """Remove the global phase offset: returns ``(rec * exp(-i c), c)``.

    ``c = angle(sum(rec * conj(gt)))`` over ``mask``: the least-squares optimal offset,
    weighted by amplitude, and immune to phase wrapping.
    """
    rec = np.asarray(reconstruction, dtype=np.complex128)
    gt = np.asarray(ground_truth, dtype=np.complex128)
    if rec.shape != gt.shape:
        raise ValueError(f'metrics: reconstruction shape {rec.shape} differs from '
                         f'ground_truth shape {gt.shape}')
    region = np.ones(rec.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    offset = float(np.angle(np.sum(rec[region] * np.conj(gt[region]))))
    return rec * np.exp(-1j * offset), offset


def remove_phase_ramp(reconstruction: ArrayLike, ground_truth: ArrayLike,
                      mask: ArrayLike | None = None, iterations: int = 3
                      ) -> tuple[NDArray[np.complex128], tuple[float, float, float]]:
    """Remove the best-fit plane ``c + gy*row + gx*col`` from the phase of ``rec / gt``.

    Returns ``(rec * exp(-i plane), (c, gy, gx))`` (radians, radians per pixel; rows and
    columns counted from the array's top-left pixel). The slopes start from the
    amplitude-weighted mean phase step between neighbouring pixels inside ``mask`` (immune
    to 2 pi wraps for slopes below pi per pixel) and are refined by weighted least squares
    on the wrapped residual, so a ramp of many radians across the image is found exactly.
    """
    rec = np.asarray(reconstruction, dtype=np.complex128)
    gt = np.asarray(ground_truth, dtype=np.complex128)
    if rec.shape != gt.shape or rec.ndim != 2:
        raise ValueError(f'metrics: reconstruction {rec.shape} and ground_truth {gt.shape} '
                         f'must be 2-D images of one shape')
    region = np.ones(rec.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    product = np.where(region, rec * np.conj(gt), 0)
    rows, cols = np.indices(rec.shape, dtype=np.float64)
    step_y = np.sum(product[1:, :] * np.conj(product[:-1, :]))
    step_x = np.sum(product[:, 1:] * np.conj(product[:, :-1]))
    gy = float(np.angle(step_y)) if abs(step_y) > 0 else 0.0
    gx = float(np.angle(step_x)) if abs(step_x) > 0 else 0.0
    offset = 0.0
    weights = np.abs(product[region])
    if weights.sum() <= 0:
        return rec.copy(), (0.0, 0.0, 0.0)
    design = np.stack([np.ones(weights.size), rows[region], cols[region]], axis=1)
    for _ in range(max(int(iterations), 1)):
        plane = gy * rows + gx * cols
        residual = product * np.exp(-1j * plane)
        offset = float(np.angle(np.sum(residual[region])))
        phase = wrap_phase(np.angle(residual[region]) - offset)
        root = np.sqrt(weights)
        coef, *_ = np.linalg.lstsq(design * root[:, None], phase * root, rcond=None)
        offset += float(coef[0])
        gy += float(coef[1])
        gx += float(coef[2])
    plane = offset + gy * rows + gx * cols
    return rec * np.exp(-1j * plane), (offset, gy, gx)


def fit_amplitude_scale(reconstruction_amp: ArrayLike, ground_truth_amp: ArrayLike,
                        mask: ArrayLike | None = None) -> float:
    """Least-squares ``a`` minimising ``sum (a * rec - gt)**2`` over ``mask`` (1 if rec == 0)."""
    rec = np.asarray(reconstruction_amp, dtype=np.float64)
    gt = np.asarray(ground_truth_amp, dtype=np.float64)
    region = np.ones(rec.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    denominator = float(np.sum(rec[region] ** 2))
    return float(np.sum(rec[region] * gt[region]) / denominator) if denominator > 0 else 1.0


def wrap_phase(phase: ArrayLike) -> NDArray[np.float64]:
    """Map angles to [-pi, pi)."""
    return (np.asarray(phase, dtype=np.float64) + math.pi) % (2 * math.pi) - math.pi


@dataclass
class AlignedPair:
    """Reconstruction and truth after registration, cropping and ambiguity removal.

    Arrays are cropped to the bounding box of ``region``; outside ``region`` both images
    hold the truth's in-region mean, so window-based scores see no artificial edges.
    ``rec_phase`` is unwrapped relative to ``gt_phase`` (``gt + wrap(rec - gt)``).
    """

    rec_amp: NDArray[np.float64]
    rec_phase: NDArray[np.float64]
    gt_amp: NDArray[np.float64]
    gt_phase: NDArray[np.float64]
    region: NDArray[np.bool_]
    shift_yx: tuple[float, float]
    phase_offset: float
    amp_scale: float
    phase_ramp_yx: tuple[float, float] = (0.0, 0.0)


def align_reconstruction(reconstruction: ArrayLike, ground_truth: ArrayLike,
                         mask: ArrayLike | None = None, *, register: bool = True,
                         upsample_factor: int = 20, max_shift: float | None = None,
                         erode: int = 0, remove_ramp: bool = False) -> AlignedPair:
    """Registration, region restriction, phase-offset removal and amplitude scale fit.

    ``mask`` marks the reconstruction's valid (covered) pixels, default all. A shift
    larger than ``max_shift`` (default a quarter of the region's smaller side) is not
    trusted: it is logged and not applied. ``remove_ramp`` also removes the best-fit
    linear phase ramp (:func:`remove_phase_ramp`), before registration (a strong ramp
    weakens the correlation peak) and again on the registered pair.
    """
    rec = _as_image('reconstruction', reconstruction)
    gt = _as_image('ground_truth', ground_truth)
    if rec.shape != gt.shape:
        raise ValueError(f'metrics: reconstruction shape {rec.shape} differs from '
                         f'ground_truth shape {gt.shape}; crop or place the reconstruction '
                         f'on the ground-truth grid first')
    region = _as_mask(mask, rec.shape)
    if erode > 0:
        region = ndimage.binary_erosion(region, iterations=int(erode), border_value=0)
        if not region.any():
            raise ValueError(f'metrics: mask eroded by {erode} px selects no pixels')
    _check_finite('reconstruction', rec, region)
    _check_finite('ground_truth', gt, region)
    box = _bounding_box(region)
    rec, gt, region = rec[box], gt[box], region[box]
    if min(region.shape) < SSIM_WINDOW:
        raise ValueError(f'metrics: evaluated region must span at least {SSIM_WINDOW}x'
                         f'{SSIM_WINDOW} pixels, found {region.shape}')
    rec = _fill_outside(np.where(region, rec, 0), region)
    ramp_yx = (0.0, 0.0)
    if remove_ramp:
        rec, (_, gy, gx) = remove_phase_ramp(rec, gt, region)
        ramp_yx = (gy, gx)

    shift: tuple[float, float] = (0.0, 0.0)
    if register:
        shift = register_shift(rec, gt, region, upsample_factor)
        limit = min(region.shape) / 4.0 if max_shift is None else float(max_shift)
        if math.hypot(*shift) > limit:
            logger.warning('metrics: registration shift (%.2f, %.2f) px exceeds %.1f px; '
                           'not applied', shift[0], shift[1], limit)
            shift = (0.0, 0.0)
    if shift != (0.0, 0.0):
        rec, valid = shift_image(rec, shift)
        moved = ndimage.shift(region.astype(np.float64), shift, order=1, mode='constant',
                              cval=0.0) > 1.0 - 1e-6
        region = moved & valid
        if not region.any():
            raise ValueError(f'metrics: no pixels left after registration shift {shift}')
        box = _bounding_box(region)
        rec, gt, region = rec[box], gt[box], region[box]
        if min(region.shape) < SSIM_WINDOW:
            raise ValueError(f'metrics: registered region smaller than {SSIM_WINDOW}x'
                             f'{SSIM_WINDOW} pixels: {region.shape}')

    if remove_ramp:
        rec, (_, gy, gx) = remove_phase_ramp(rec, gt, region)
        ramp_yx = (ramp_yx[0] + gy, ramp_yx[1] + gx)
    rec, offset = align_phase(rec, gt, region)
    gt_amp, gt_phase = np.abs(gt), np.angle(gt)
    scale = fit_amplitude_scale(np.abs(rec), gt_amp, region)
    rec_amp = scale * np.abs(rec)
    rec_phase = gt_phase + wrap_phase(np.angle(rec) - gt_phase)
    fill_amp, fill_phase = float(gt_amp[region].mean()), float(gt_phase[region].mean())
    return AlignedPair(
        rec_amp=np.where(region, rec_amp, fill_amp), rec_phase=np.where(region, rec_phase,
                                                                        fill_phase),
        gt_amp=np.where(region, gt_amp, fill_amp), gt_phase=np.where(region, gt_phase,
                                                                     fill_phase),
        region=region, shift_yx=shift, phase_offset=offset, amp_scale=scale,
        phase_ramp_yx=ramp_yx)


# --------------------------------------------------------------------------- scores

def _data_range(truth: NDArray, region: NDArray[np.bool_], what: str) -> float:
    values = truth[region]
    span = float(values.max() - values.min())
    if span < 1e-12:
        logger.warning('metrics: ground-truth %s is flat; using data_range 1', what)
        return 1.0
    return span


def masked_ssim(test: NDArray, truth: NDArray, region: NDArray[np.bool_],
                data_range: float) -> float:
    """Mean SSIM over ``region`` (shrunk by the window half-width when it can be)."""
    _, ssim_map = structural_similarity(truth, test, data_range=data_range, full=True,
                                        win_size=SSIM_WINDOW)
    inner = ndimage.binary_erosion(region, iterations=SSIM_WINDOW // 2, border_value=0)
    use = inner if inner.any() else region
    return float(ssim_map[use].mean())


def masked_psnr(test: NDArray, truth: NDArray, region: NDArray[np.bool_],
                data_range: float) -> float:
    """PSNR in dB over ``region``; ``inf`` for identical images."""
    mse = float(np.mean((test[region] - truth[region]) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range ** 2 / mse)


@dataclass
class FRCCurve:
    """Fourier ring correlation of two images against spatial frequency (cycles/px)."""

    frequency: NDArray[np.float64]
    frc: NDArray[np.float64]
    halfbit: NDArray[np.float64]
    n_pixels: NDArray[np.int64]

    def crossing(self, threshold: float | NDArray | str = 0.5) -> float:
        """First frequency where the curve falls below ``threshold`` (a number, an array,
        or ``'halfbit'``), linearly interpolated; Nyquist (0.5) if it never does."""
        if isinstance(threshold, str):
            if threshold != 'halfbit':
                raise ValueError(f"FRCCurve.crossing: threshold must be a number, an array or "
                                 f"'halfbit', found {threshold!r}")
            limit = self.halfbit
        else:
            limit = np.broadcast_to(np.asarray(threshold, dtype=np.float64), self.frc.shape)
        below = np.flatnonzero(self.frc < limit)
        if below.size == 0:
            return float(self.frequency[-1])
        i = int(below[0])
        if i == 0:  # below threshold from the first ring: nothing is resolved
            return 0.0
        d0, d1 = self.frc[i - 1] - limit[i - 1], self.frc[i] - limit[i]
        t = min(max(d0 / (d0 - d1), 0.0), 1.0) if d0 != d1 else 0.0
        return float(self.frequency[i - 1] + t * (self.frequency[i] - self.frequency[i - 1]))


def frc_curve(image_a: ArrayLike, image_b: ArrayLike) -> FRCCurve:
    """FRC of two real images of equal shape (means removed, Tukey-windowed).

    Rings are one Fourier pixel of the smaller side wide, out to Nyquist (0.5 cycles/px);
    the half-bit threshold is van Heel & Schatz (2005).
    """
    a = np.asarray(image_a, dtype=np.float64)
    b = np.asarray(image_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f'frc_curve: expected two 2-D images of one shape, found {a.shape} '
                         f'and {b.shape}')
    window = np.outer(tukey(a.shape[0], 0.25), tukey(a.shape[1], 0.25))
    fa = np.fft.fft2((a - a.mean()) * window)
    fb = np.fft.fft2((b - b.mean()) * window)
    fy = np.fft.fftfreq(a.shape[0])[:, None]
    fx = np.fft.fftfreq(a.shape[1])[None, :]
    radius = np.hypot(fy, fx)
    n_rings = min(a.shape) // 2
    ring = np.floor(radius * min(a.shape) + 0.5).astype(np.int64)
    keep = (ring >= 1) & (ring <= n_rings)
    ring, cross = ring[keep], (fa * np.conj(fb))[keep]
    power_a, power_b = (np.abs(fa) ** 2)[keep], (np.abs(fb) ** 2)[keep]
    bins = n_rings + 1
    num = np.bincount(ring, cross.real, bins)[1:]
    den = np.sqrt(np.bincount(ring, power_a, bins)[1:] * np.bincount(ring, power_b, bins)[1:])
    counts = np.bincount(ring, minlength=bins)[1:].astype(np.int64)
    frc = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    root = np.sqrt(np.maximum(counts, 1))
    halfbit = (0.2071 + 1.9102 / root) / (1.2071 + 0.9102 / root)
    frequency = np.arange(1, n_rings + 1) / min(a.shape)
    return FRCCurve(frequency, frc, halfbit, counts)


def frc_curves(reconstruction: ArrayLike, ground_truth: ArrayLike,
               mask: ArrayLike | None = None, **align_options: object) -> dict[str, FRCCurve]:
    """``{'amp': FRCCurve, 'phase': FRCCurve}`` after :func:`align_reconstruction`."""
    pair = align_reconstruction(reconstruction, ground_truth, mask, **align_options)
    return {'amp': frc_curve(pair.rec_amp, pair.gt_amp),
            'phase': frc_curve(pair.rec_phase, pair.gt_phase)}


def evaluate_reconstruction(reconstruction: ArrayLike, ground_truth: ArrayLike,
                            mask: ArrayLike | None = None, *, register: bool = True,
                            upsample_factor: int = 20, max_shift: float | None = None,
                            erode: int = 0, remove_ramp: bool = False) -> dict[str, float]:
    """Scores of a complex reconstruction against the complex ground truth (same grid).

    Returns ``amp_ssim, phase_ssim, amp_psnr, phase_psnr, amp_frc50, phase_frc50``
    (FRC in cycles/px at the 0.5 crossing), the half-bit crossings ``amp_frc_halfbit,
    phase_frc_halfbit``, and the alignment applied: ``shift_y, shift_x, phase_offset,
    amp_scale, n_pixels`` and the phase ramp removed, ``phase_ramp_y, phase_ramp_x`` (rad/px,
    zero unless ``remove_ramp``).
    """
    pair = align_reconstruction(reconstruction, ground_truth, mask, register=register,
                                upsample_factor=upsample_factor, max_shift=max_shift,
                                erode=erode, remove_ramp=remove_ramp)
    return score_aligned(pair)


def score_aligned(pair: AlignedPair) -> dict[str, float]:
    """The scores of :func:`evaluate_reconstruction` for an already aligned pair
    (lets a caller that also draws the aligned images align only once)."""
    region = pair.region
    amp_range = _data_range(pair.gt_amp, region, 'amplitude')
    phase_range = _data_range(pair.gt_phase, region, 'phase')
    amp_frc = frc_curve(pair.rec_amp, pair.gt_amp)
    phase_frc = frc_curve(pair.rec_phase, pair.gt_phase)
    return {
        'amp_ssim': masked_ssim(pair.rec_amp, pair.gt_amp, region, amp_range),
        'phase_ssim': masked_ssim(pair.rec_phase, pair.gt_phase, region, phase_range),
        'amp_psnr': masked_psnr(pair.rec_amp, pair.gt_amp, region, amp_range),
        'phase_psnr': masked_psnr(pair.rec_phase, pair.gt_phase, region, phase_range),
        'amp_frc50': amp_frc.crossing(0.5),
        'phase_frc50': phase_frc.crossing(0.5),
        'amp_frc_halfbit': amp_frc.crossing('halfbit'),
        'phase_frc_halfbit': phase_frc.crossing('halfbit'),
        'shift_y': pair.shift_yx[0],
        'shift_x': pair.shift_yx[1],
        'phase_offset': pair.phase_offset,
        'amp_scale': pair.amp_scale,
        'phase_ramp_y': pair.phase_ramp_yx[0],
        'phase_ramp_x': pair.phase_ramp_yx[1],
        'n_pixels': int(region.sum()),
    }
