"""Scores of a real-data reconstruction that need no ground truth.

Beamline scans come without a known object, so :mod:`ptycho.metrics` cannot score them.
Two standard checks can:

- the **data residual** (:func:`data_residual`): the reconstruction (object, probe,
  positions) pushed through the forward model of :mod:`ptycho.physics` and compared with
  the measured amplitudes, pattern by pattern. One global scale is fitted (the network's
  object and the file's probe carry no absolute scale); a per-pattern scale would hide
  amplitude errors. For counts data the residual a perfect reconstruction would leave under
  Poisson noise is computed too (:func:`poisson_amplitude_mse`), so a residual reads as
  "x times the noise";
- the **half-scan FRC** (:func:`split_scan`, :func:`half_scan_frc`): two reconstructions
  from interleaved halves of the scan are independent measurements of one object; where
  their Fourier ring correlation falls below the half-bit threshold is the usual
  resolution estimate of real data.

numpy/scipy only; float64 throughout.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ptycho import physics
from ptycho.metrics import FRCCurve, frc_curve, remove_phase_ramp

logger = logging.getLogger(__name__)

MIN_LIT = 0.99
"""Share of a pattern's probe power that must fall on reconstructed pixels for its residual
to count in the summary (patterns at the scan's edge see the canvas end)."""
SPLITS = ('alternate', 'checkerboard')
_CHUNK = 128
_WORST = 5


# --------------------------------------------------------------------------- Poisson floor
@functools.lru_cache(maxsize=1)
def _sqrt_poisson_table() -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``lambda`` grid and ``E[(sqrt(X) - sqrt(lambda))**2]`` for X ~ Poisson(lambda)."""
    from scipy.special import gammaln

    lam = np.concatenate([[0.0], np.logspace(-4, 3, 400)])
    mse = np.empty_like(lam)
    for i, value in enumerate(lam):
        if value == 0:
            mse[i] = 0.0
            continue
        k = np.arange(int(value + 15 * np.sqrt(value) + 30), dtype=np.float64)
        pmf = np.exp(k * np.log(value) - value - gammaln(k + 1))
        mse[i] = 2 * value - 2 * np.sqrt(value) * float(np.sum(np.sqrt(k) * pmf))
    return lam, mse


def poisson_amplitude_mse(intensity: ArrayLike) -> NDArray[np.float64]:
    """Expected ``(sqrt(X) - sqrt(lambda))**2`` for X ~ Poisson(``intensity``): what a
    perfect model leaves per pixel of ``sqrt(counts)`` data (-> 1/4 for bright pixels)."""
    lam = np.asarray(intensity, dtype=np.float64)
    grid, mse = _sqrt_poisson_table()
    return np.where(lam > grid[-1], 0.25, np.interp(lam, grid, mse))


# --------------------------------------------------------------------------- data residual
@dataclass
class DataResidual:
    """Per-pattern misfit of a reconstruction to the measured amplitudes."""

    residual: NDArray[np.float64]
    """(M,) ``||s A - D|| / ||D||``: A the forward model's amplitude, D the measured one."""
    lit_fraction: NDArray[np.float64]
    """(M,) share of the probe power on reconstructed pixels."""
    noise_floor: NDArray[np.float64] | None
    """(M,) the residual a perfect reconstruction leaves under Poisson noise (counts only)."""
    scale: float
    """The global scale s fitted over the evaluated patterns."""
    positions_xy: NDArray[np.float64]
    min_lit: float = MIN_LIT

    @property
    def evaluated(self) -> NDArray[np.bool_]:
        """Patterns whose probe lies on reconstructed pixels (``lit_fraction >= min_lit``)."""
        return self.lit_fraction >= self.min_lit

    def summary(self) -> dict[str, Any]:
        """Median, 90th percentile and worst patterns of the evaluated ones."""
        used = np.flatnonzero(self.evaluated)
        out: dict[str, Any] = {'n_patterns': int(len(self.residual)),
                               'n_evaluated': int(len(used)), 'min_lit_fraction': self.min_lit,
                               'scale': self.scale}
        if len(used) == 0:
            return out
        values = self.residual[used]
        worst = used[np.argsort(values)[::-1][:_WORST]]
        out.update(median=float(np.median(values)), p90=float(np.percentile(values, 90)),
                   max=float(values.max()),
                   worst=[{'index': int(i), 'x': float(self.positions_xy[i, 0]),
                           'y': float(self.positions_xy[i, 1]),
                           'residual': float(self.residual[i])} for i in worst])
        if self.noise_floor is not None:
            ratio = values / np.maximum(self.noise_floor[used], 1e-300)
            out.update(noise_floor_median=float(np.median(self.noise_floor[used])),
                       over_noise_median=float(np.median(ratio)),
                       over_noise_p90=float(np.percentile(ratio, 90)))
        return out


def data_residual(obj: ArrayLike, probe: ArrayLike, positions_xy: ArrayLike,
                  measured: ArrayLike, *, origin_xy: Sequence[float] = (0.0, 0.0),
                  covered: ArrayLike | None = None, bad_pixels: ArrayLike | None = None,
                  counts: bool = False, min_lit: float = MIN_LIT) -> DataResidual:
    """The reconstruction's misfit to the data, pattern by pattern.

    ``obj`` (H, W) complex canvas whose pixel (0, 0) is object coordinate ``origin_xy``;
    ``probe`` (N, N); ``positions_xy`` (M, 2) patch centres in object pixels; ``measured``
    (M, N, N) amplitudes (DC centred). ``covered`` (H, W) marks reconstructed pixels (default
    all); ``bad_pixels`` (N, N) are left out of every sum. ``counts``: the amplitudes are
    ``sqrt(counts)``, so the Poisson noise floor is computed. The global scale is the least-
    squares one over the patterns that are at least ``min_lit`` lit.
    """
    obj = np.asarray(obj)
    probe = np.asarray(probe, dtype=np.complex128)
    D = np.asarray(measured)
    positions = np.asarray(positions_xy, dtype=np.float64).reshape(-1, 2)
    M, N = D.shape[0], D.shape[-1]
    if obj.ndim != 2 or probe.shape != (N, N) or positions.shape[0] != M:
        raise ValueError(f'data_residual: expected a 2-D object, an ({N}, {N}) probe and {M} '
                         f'positions, found object {obj.shape}, probe {probe.shape}, '
                         f'{positions.shape[0]} positions')
    valid = (np.ones((N, N)) if bad_pixels is None
             else ~np.asarray(bad_pixels, dtype=bool)).astype(np.float64)
    canvas_xy = positions - np.asarray(origin_xy, dtype=np.float64).reshape(1, 2)
    cover = (np.ones(obj.shape) if covered is None
             else np.asarray(covered, dtype=np.float64))
    power = np.abs(probe) ** 2
    sums = np.zeros((4, M))  # sum A*D, sum A^2, sum D^2, lit fraction

    def model(part: slice) -> NDArray[np.float64]:
        return physics.forward_amplitude(physics.extract_patches_fast(obj, canvas_xy[part], N),
                                         probe)

    parts = [slice(start, min(start + _CHUNK, M)) for start in range(0, M, _CHUNK)]
    for part in parts:
        A = model(part)
        d = np.asarray(D[part], dtype=np.float64)
        sums[0, part] = np.sum(A * d * valid, axis=(1, 2))
        sums[1, part] = np.sum(A * A * valid, axis=(1, 2))
        sums[2, part] = np.sum(d * d * valid, axis=(1, 2))
        lit = physics.extract_patches_fast(cover, canvas_xy[part], N)
        sums[3, part] = np.sum(np.clip(lit, 0, 1) * power, axis=(1, 2)) / power.sum()
    lit_fraction = sums[3]
    used = lit_fraction >= min_lit
    if not used.any():
        logger.warning('data_residual: no pattern has %.0f%% of its probe power on the '
                       'reconstruction; the scale is fitted over all patterns', 100 * min_lit)
        used = np.ones(M, bool)
    scale = float(sums[0, used].sum() / max(sums[1, used].sum(), 1e-300))
    misfit = np.maximum(scale ** 2 * sums[1] - 2 * scale * sums[0] + sums[2], 0.0)
    norm = np.sqrt(np.maximum(sums[2], 1e-300))
    residual = np.sqrt(misfit) / norm
    floor = None
    if counts:  # second pass: the floor needs the fitted scale (storing A would cost M N^2)
        floor = np.empty(M)
        for part in parts:
            expected = poisson_amplitude_mse((scale * model(part)) ** 2) * valid
            floor[part] = np.sqrt(np.sum(expected, axis=(1, 2)))
        floor /= norm
    return DataResidual(residual, lit_fraction, floor, scale, positions, min_lit)


# --------------------------------------------------------------------------- half-scan FRC
def split_scan(positions_xy: ArrayLike, scheme: str = 'alternate'
               ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Two interleaved halves of a scan (indices): ``'alternate'`` even/odd positions in scan
    order; ``'checkerboard'`` the parity of (row + column) of a raster, its step the median
    nearest-neighbour distance."""
    positions = np.asarray(positions_xy, dtype=np.float64).reshape(-1, 2)
    index = np.arange(len(positions))
    if scheme == 'alternate':
        return index[0::2], index[1::2]
    if scheme != 'checkerboard':
        raise ValueError(f'split_scan: scheme must be one of {list(SPLITS)}, found {scheme!r}')
    from scipy.spatial import cKDTree

    distance, _ = cKDTree(positions).query(positions, k=2)
    step = float(np.median(distance[:, 1]))
    if step <= 0:
        raise ValueError('split_scan: positions coincide; no raster step to split by')
    cells = np.round((positions - positions.min(axis=0)) / step).astype(np.int64)
    odd = (cells[:, 0] + cells[:, 1]) % 2 == 1
    return index[~odd], index[odd]


@dataclass
class HalfScanFRC:
    """FRC of the amplitude and phase of two half-scan reconstructions."""

    amp: FRCCurve
    phase: FRCCurve
    n_pixels: int
    box: tuple[int, int, int, int]
    """(row0, row1, col0, col1) of the compared window on the canvas."""
    phase_plane: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Phase plane of the second half relative to the first, removed before the FRC: (offset
    rad, ramp rad/px along rows, along columns)."""

    def summary(self, pixel_size_m: float | None = None) -> dict[str, Any]:
        """Half-bit crossings (cycles/px) and the resolution they mean, per image."""
        offset, ramp_y, ramp_x = self.phase_plane
        out: dict[str, Any] = {'n_pixels': self.n_pixels, 'box_rows_cols': list(self.box),
                               'phase_offset': offset, 'phase_ramp_y': ramp_y,
                               'phase_ramp_x': ramp_x}
        for name, curve in (('amp', self.amp), ('phase', self.phase)):
            out.update(resolution(curve, name, pixel_size_m))
        return out


RECOVERY_RINGS = 3
"""Consecutive rings above the half-bit curve, after the first crossing, that count as the
curve recovering (a large-scale disagreement of the halves, not a resolution limit)."""


def resolution(curve: FRCCurve, name: str, pixel_size_m: float | None = None
               ) -> dict[str, float | None]:
    """The first half-bit crossing of ``curve`` as ``{name}_frc_halfbit`` (cycles/px) and the
    full-period resolution ``{name}_resolution_px = 1 / crossing`` (None when nothing is
    resolved); in metres too when ``pixel_size_m`` is known. Never crossing = Nyquist, 2 px.

    ``{name}_frc_recovers_to``: when the curve comes back above half-bit for at least
    :data:`RECOVERY_RINGS` rings after the first crossing, the frequency where that stretch
    ends (the halves agree on fine detail but not on large scales: phase jumps between
    regions, say); else None.
    """
    crossing = curve.crossing('halfbit')
    period = 1.0 / crossing if crossing > 0 else None
    out: dict[str, float | None] = {f'{name}_frc_halfbit': crossing,
                                    f'{name}_resolution_px': period,
                                    f'{name}_frc_recovers_to': _recovery(curve, crossing)}
    if pixel_size_m:
        out[f'{name}_resolution_m'] = None if period is None else period * pixel_size_m
    return out


def _recovery(curve: FRCCurve, crossing: float) -> float | None:
    """End of the last run of >= RECOVERY_RINGS rings above half-bit beyond ``crossing``."""
    above = (curve.frc >= curve.halfbit) & (curve.frequency > crossing)
    end = None
    run = 0
    for i, flag in enumerate(above):
        run = run + 1 if flag else 0
        if run >= RECOVERY_RINGS:
            end = float(curve.frequency[i])
    return end


def half_scan_frc(obj_a: ArrayLike, obj_b: ArrayLike, mask: ArrayLike) -> HalfScanFRC:
    """FRC of two complex reconstructions on one canvas over ``mask`` (pixels both cover).

    The constant phase and linear phase ramp of ``obj_b`` relative to ``obj_a`` are removed
    (:func:`ptycho.metrics.remove_phase_ramp`: ambiguities of ptychography, not differences
    of the halves; the same removal as the scoring against ground truth); both are cut to
    the bounding box of ``mask`` and pixels outside it take the image's mean over the mask,
    so the window and mean removal of :func:`ptycho.metrics.frc_curve` see no edge.
    """
    a = np.asarray(obj_a, dtype=np.complex128)
    b = np.asarray(obj_b, dtype=np.complex128)
    region = np.asarray(mask, dtype=bool)
    if a.shape != b.shape or region.shape != a.shape:
        raise ValueError(f'half_scan_frc: expected two images and a mask of one shape, found '
                         f'{a.shape}, {b.shape}, {region.shape}')
    if region.sum() < 16:
        raise ValueError(f'half_scan_frc: the halves share {int(region.sum())} reconstructed '
                         f'pixels; expected at least 16 (is the scan too sparse to halve?)')
    b, plane = remove_phase_ramp(b, a, region)
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
    window = (slice(box[0], box[1]), slice(box[2], box[3]))
    inside = region[window]

    def filled(image: NDArray) -> NDArray:
        cut = image[window]
        return np.where(inside, cut, cut[inside].mean())

    amp_a, amp_b = filled(np.abs(a)), filled(np.abs(b))
    phase_a, phase_b = filled(np.angle(a)), filled(np.angle(b))
    return HalfScanFRC(frc_curve(amp_a, amp_b), frc_curve(phase_a, phase_b),
                       int(region.sum()), box, plane)
