"""Seeded synthetic ptychography datasets with known ground truth.

The quality benchmark, ``make demo`` and most tests need data whose true object is known.
This module builds it from three independent seeded parts (object, probe, scan) and
pushes them through the reference physics of :mod:`ptycho.physics`, so a simulated
dataset obeys exactly the conventions every backend is checked against:

* positions ``(x, y)`` are patch centres in object pixels, kept at least ``N/2`` inside;
* the probe is scaled so that ``sum |P|**2 == nphotons``: a unit object then gives
  ``nphotons`` expected counts per pattern (the far field is orthonormal);
* the files hold amplitudes ``sqrt(Poisson(|fftshift(fft2(P * O_patch))|**2 / N**2))``.

Two families: the idealised one (:func:`simulate_dataset`, :func:`standard_dataset`: an
ideal probe known exactly, positions exact) and the beamline-realistic one
(:class:`RealisticScanSpec`, :func:`realistic_scan`, :func:`realistic_dataset`): the
experimental probe shipped in ``ptycho/resources``, a perturbed guess of it given to the
reconstruction, position errors, bad detector pixels, ~500 positions, 1e4-1e6 photons.

Only numpy, scipy and (lazily, for the preview) matplotlib are imported.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import io
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ptycho import physics, progress
from ptycho.atomic import atomic_path

if TYPE_CHECKING:  # pragma: no cover - import only for annotations
    from ptycho.raw_data import RawData

logger = logging.getLogger(__name__)

OBJECT_KINDS = ('lines', 'siemens')
PROBE_KINDS = ('focused', 'disk', 'gaussian')
SCAN_KINDS = ('fermat', 'raster', 'random')

#: Mean scan step as a fraction of N. The probes below are about 0.3 N across, so the
#: default step (N/10) gives roughly 2/3 linear overlap between neighbouring positions.
STEP_FRACTION = 0.1
#: Probe aperture diameter as a fraction of N: keeps nearly all the probe's energy inside
#: the central N/2 window, which is the network's object support (architecture.md section 5).
PROBE_DIAMETER_FRACTION = 0.3
_PATCH_BATCH = 256
_GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


# --------------------------------------------------------------------------- arguments

def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f'simulation: {name} must be one of {list(choices)}, found {value!r}')


def _check_patch_size(N: int) -> None:
    if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N < 8 or N % 2:
        raise ValueError(f'simulation: N must be an even integer >= 8, found {N!r}')


def default_object_size(N: int, n_positions: int) -> int:
    """Object side that a scan of ``n_positions`` covers with step ``STEP_FRACTION * N``.

    The scanned square (patch centres) has side ``step * sqrt(n_positions)``; the object
    adds ``N/2`` on each side (plus one pixel for sub-pixel interpolation).
    """
    _check_patch_size(N)
    step = STEP_FRACTION * N
    return int(N + 1 + math.ceil(step * math.sqrt(max(int(n_positions), 1))))


# --------------------------------------------------------------------------- objects

def _normalise01(image: NDArray) -> NDArray:
    low, high = float(image.min()), float(image.max())
    if high - low < 1e-12:
        return np.zeros_like(image)
    return (image - low) / (high - low)


def _smooth_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> NDArray:
    """Zero-mean, unit-peak smooth random field (low-frequency background)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode='wrap')
    field -= field.mean()
    peak = float(np.abs(field).max())
    return field / peak if peak > 0 else field


def _segment_profile(size: int, x0: float, y0: float, x1: float, y1: float,
                     width: float) -> tuple[tuple[slice, slice], NDArray]:
    """Anti-aliased stroke of ``width`` px along a segment, computed in its bounding box."""
    pad = width / 2.0 + 2.0
    r_lo = max(int(math.floor(min(y0, y1) - pad)), 0)
    r_hi = min(int(math.ceil(max(y0, y1) + pad)) + 1, size)
    c_lo = max(int(math.floor(min(x0, x1) - pad)), 0)
    c_hi = min(int(math.ceil(max(x0, x1) + pad)) + 1, size)
    window = (slice(r_lo, max(r_hi, r_lo)), slice(c_lo, max(c_hi, c_lo)))
    rows, cols = np.meshgrid(np.arange(r_lo, max(r_hi, r_lo), dtype=np.float64),
                             np.arange(c_lo, max(c_hi, c_lo), dtype=np.float64), indexing='ij')
    dx, dy = x1 - x0, y1 - y0
    length2 = dx * dx + dy * dy
    t = np.clip(((cols - x0) * dx + (rows - y0) * dy) / max(length2, 1e-12), 0.0, 1.0)
    distance = np.hypot(cols - (x0 + t * dx), rows - (y0 + t * dy))
    return window, np.clip(width / 2.0 + 0.5 - distance, 0.0, 1.0)


def make_lines_object(size: int, rng: np.random.Generator, N: int = 64) -> NDArray:
    """Random strokes of varied width and orientation; amplitude 0.5..1, phase -1..1 rad.

    Most strokes appear in both amplitude and phase (with independent weights), some in
    only one of them, and the phase carries an extra smooth background: the two channels
    are correlated but not identical, so a reconstruction must get both right.
    """
    n_segments = max(8, int(round(size * size / 500.0)))
    amp_map = np.zeros((size, size))
    phase_map = np.zeros((size, size))
    for _ in range(n_segments):
        cx, cy = rng.uniform(0, size, 2)
        length = rng.uniform(0.25 * N, 1.5 * N)
        angle = rng.uniform(0.0, math.pi)
        width = rng.uniform(1.5, 5.0)
        hx, hy = 0.5 * length * math.cos(angle), 0.5 * length * math.sin(angle)
        window, profile = _segment_profile(size, cx - hx, cy - hy, cx + hx, cy + hy, width)
        channel = rng.uniform()
        if channel < 0.8:  # amplitude (alone or with phase)
            amp_map[window] = np.maximum(amp_map[window], rng.uniform(0.3, 1.0) * profile)
        if channel >= 0.6 or channel < 0.4:  # phase (alone or with amplitude)
            sign = 1.0 if rng.uniform() < 0.7 else -1.0
            phase_map[window] += sign * rng.uniform(0.4, 1.0) * profile
    amp_map = ndimage.gaussian_filter(np.clip(amp_map, 0.0, 1.0), 0.7)
    phase_map = ndimage.gaussian_filter(np.clip(phase_map, -1.0, 1.0), 0.7)
    background = _smooth_noise((size, size), max(size / 10.0, 2.0), rng)
    amp_background = 0.5 + 0.5 * _smooth_noise((size, size), max(size / 12.0, 2.0), rng)
    amplitude = 1.0 - 0.42 * amp_map - 0.08 * amp_background
    phase = np.clip(0.8 * phase_map + 0.3 * background, -1.0, 1.0)
    return (amplitude * np.exp(1j * phase)).astype(np.complex128)


def make_siemens_object(size: int, rng: np.random.Generator, n_spokes: int | None = None
                        ) -> NDArray:
    """Siemens star (amplitude 0.5..1, phase -0.8..0.8 rad) with a few phase-only rings."""
    n_spokes = int(n_spokes or rng.integers(16, 41))
    centre = (size - 1) / 2.0
    rows, cols = np.meshgrid(np.arange(size) - centre, np.arange(size) - centre, indexing='ij')
    radius = np.hypot(rows, cols)
    theta = np.arctan2(rows, cols) + rng.uniform(0, 2 * math.pi)
    outer = 0.45 * size
    inside = np.clip(outer + 0.5 - radius, 0.0, 1.0)
    # Supersampling the spoke edges is unnecessary: a light Gaussian filter anti-aliases.
    spokes = ndimage.gaussian_filter((np.sin(n_spokes * theta) > 0).astype(np.float64), 0.7)
    rings = 0.5 + 0.5 * np.cos(2 * math.pi * radius / max(outer / 4.0, 4.0))
    amplitude = 1.0 - 0.5 * spokes * inside
    phase = (0.8 * (2.0 * spokes - 1.0) * (0.75 + 0.25 * rings)) * inside
    return (amplitude * np.exp(1j * phase)).astype(np.complex128)


def make_object(kind: str, size: int, rng: np.random.Generator, N: int = 64) -> NDArray:
    """Complex (size, size) object of the named ``kind`` (see ``OBJECT_KINDS``)."""
    _check_choice('object_kind', kind, OBJECT_KINDS)
    if kind == 'lines':
        return make_lines_object(size, rng, N)
    return make_siemens_object(size, rng)


# --------------------------------------------------------------------------- probes

def _disk(N: int, diameter: float) -> NDArray:
    """Anti-aliased disk centred at (N/2, N/2), the centre of the patch grid."""
    coords = np.arange(N, dtype=np.float64) - N // 2
    radius = np.hypot(*np.meshgrid(coords, coords, indexing='ij'))
    return np.clip(diameter / 2.0 + 0.5 - radius, 0.0, 1.0)


def fresnel_propagate(field: NDArray, alpha: float) -> NDArray:
    """Paraxial propagation with transfer function ``exp(-i pi alpha f**2)``.

    ``alpha = lambda z / dx**2`` in px**2 (f in cycles/px); a disk of radius a then has
    Fresnel number ``a**2 / alpha``.
    """
    N = field.shape[-1]
    f = np.fft.fftfreq(N)
    f2 = f[:, None] ** 2 + f[None, :] ** 2
    kernel = np.exp(-1j * math.pi * alpha * f2)
    centred = np.fft.ifftshift(field)
    return np.fft.fftshift(np.fft.ifft2(np.fft.fft2(centred) * kernel))


def make_probe(kind: str, N: int, nphotons: float = 1.0) -> NDArray:
    """Complex (N, N) probe centred at (N/2, N/2) with ``sum |P|**2 == nphotons``.

    * ``focused``: a disk aperture Fresnel-propagated to Fresnel number 3 -- the ringed,
      phase-curved spot of a slightly defocused zone-plate or KB focus.
    * ``disk``: the bare aperture (flat phase).
    * ``gaussian``: a Gaussian of FWHM 0.2 N with mild phase curvature.
    """
    _check_choice('probe_kind', kind, PROBE_KINDS)
    _check_patch_size(N)
    if not (np.isfinite(nphotons) and nphotons > 0):
        raise ValueError(f'simulation: nphotons must be finite and > 0, found {nphotons!r}')
    diameter = PROBE_DIAMETER_FRACTION * N
    if kind == 'focused':
        aperture = _disk(N, diameter)
        probe = fresnel_propagate(aperture.astype(np.complex128), (diameter / 2.0) ** 2 / 3.0)
    elif kind == 'disk':
        probe = _disk(N, diameter).astype(np.complex128)
    else:
        coords = np.arange(N, dtype=np.float64) - N // 2
        r2 = sum(c ** 2 for c in np.meshgrid(coords, coords, indexing='ij'))
        sigma = 0.2 * N / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        probe = np.exp(-r2 / (2.0 * sigma ** 2)) * np.exp(1j * r2 / (0.5 * N) ** 2)
    probe = probe * math.sqrt(nphotons / float(np.sum(np.abs(probe) ** 2)))
    return probe.astype(np.complex128)


def probe_energy_fraction(probe: NDArray) -> float:
    """Fraction of ``sum |P|**2`` inside the central N/2 window (the network's support)."""
    power = np.abs(np.asarray(probe)) ** 2
    return float(np.sum(power * physics.central_window_mask(power.shape[-1])) / np.sum(power))


# --------------------------------------------------------------------------- scans

def make_scan(kind: str, n_positions: int, low: float, high: float,
              rng: np.random.Generator) -> NDArray:
    """``n_positions`` patch centres ``(x, y)`` inside the square ``[low, high]**2``.

    ``fermat``: golden-angle spiral clipped to the square (deterministic, even density);
    ``raster``: row-major grid with uniform jitter of +/- 15 % of the step;
    ``random``: uniform.
    """
    _check_choice('scan', kind, SCAN_KINDS)
    if isinstance(n_positions, bool) or not isinstance(n_positions, (int, np.integer)) \
            or n_positions < 1:
        raise ValueError(f'simulation: n_positions must be an integer >= 1, found {n_positions!r}')
    if not high > low:
        raise ValueError(f'simulation: scan range must have high > low, found [{low}, {high}]')
    side = high - low
    centre = 0.5 * (low + high)
    if kind == 'fermat':
        # Density 1/(pi c**2) puts about n_positions points in the square: bisect c so
        # the clipped spiral holds at least n_positions, then keep the innermost ones.
        k = np.arange(4 * n_positions + 64, dtype=np.float64)
        cos_k, sin_k = np.cos(k * _GOLDEN_ANGLE), np.sin(k * _GOLDEN_ANGLE)

        def clipped(c: float) -> NDArray:
            r = c * np.sqrt(k + 0.5)
            x, y = centre + r * cos_k, centre + r * sin_k
            inside = (x >= low) & (x <= high) & (y >= low) & (y <= high)
            return np.stack([x[inside], y[inside]], axis=1)

        c_lo, c_hi = 0.1 * side / math.sqrt(n_positions), side / math.sqrt(n_positions)
        for _ in range(50):
            c_mid = 0.5 * (c_lo + c_hi)
            if len(clipped(c_mid)) >= n_positions:
                c_lo = c_mid
            else:
                c_hi = c_mid
        return clipped(c_lo)[:n_positions]
    if kind == 'raster':
        n_cols = int(math.ceil(math.sqrt(n_positions)))
        n_rows = int(math.ceil(n_positions / n_cols))
        step = np.array([side / n_cols, side / n_rows])
        xs = low + step[0] * (0.5 + np.arange(n_cols))
        ys = low + step[1] * (0.5 + np.arange(n_rows))
        grid_y, grid_x = np.meshgrid(ys, xs, indexing='ij')
        positions = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)[:n_positions]
        positions = positions + rng.uniform(-0.15, 0.15, positions.shape) * step
        return np.clip(positions, low, high)
    return rng.uniform(low, high, (n_positions, 2))


# --------------------------------------------------------------------------- forward model

def simulate_diffraction(obj: NDArray, probe: NDArray, positions_xy: NDArray,
                         rng: np.random.Generator | None = None, poisson: bool = True
                         ) -> NDArray:
    """Measured amplitudes (M, N, N) float64 of ``probe * obj`` at each position."""
    N = probe.shape[-1]
    out = np.empty((len(positions_xy), N, N), dtype=np.float64)
    with progress.bar(len(positions_xy), 'Simulating diffraction') as shown:
        for start in range(0, len(positions_xy), _PATCH_BATCH):
            batch = positions_xy[start:start + _PATCH_BATCH]
            amplitude = physics.forward_amplitude(physics.extract_patches_fast(obj, batch, N), probe)
            if poisson:
                amplitude = physics.poisson_diffraction(amplitude, 1.0, rng)
            out[start:start + len(batch)] = amplitude
            shown.update(len(batch))
    return out


@dataclass
class SimulatedArrays:
    """Everything a simulation produced, before it is wrapped in a ``RawData``."""

    object: NDArray          # (S, S) complex128 ground truth
    probe: NDArray           # (N, N) complex128, sum |P|**2 == nphotons
    positions_xy: NDArray    # (M, 2) float64 patch centres (x, y)
    diffraction: NDArray     # (M, N, N) float64 amplitudes sqrt(counts)
    parameters: dict[str, Any]


def simulate_arrays(*, object_kind: str = 'lines', N: int = 64, n_positions: int = 512,
                    nphotons: float = 1e9, probe_kind: str = 'focused', scan: str = 'fermat',
                    object_size: int | None = None, seed: int = 0, poisson: bool = True
                    ) -> SimulatedArrays:
    """The arrays of :func:`simulate_dataset` (no ``RawData`` dependency).

    Object, scan and noise draw from independent child streams of ``seed``, so the same
    seed and object size give the same object whatever the number of positions.
    """
    _check_choice('object_kind', object_kind, OBJECT_KINDS)
    _check_choice('probe_kind', probe_kind, PROBE_KINDS)
    _check_choice('scan', scan, SCAN_KINDS)
    _check_patch_size(N)
    if isinstance(n_positions, bool) or not isinstance(n_positions, (int, np.integer)) \
            or n_positions < 1:
        raise ValueError(f'simulation: n_positions must be an integer >= 1, found {n_positions!r}')
    if object_size is None:
        object_size = default_object_size(N, n_positions)
    if isinstance(object_size, bool) or not isinstance(object_size, (int, np.integer)) \
            or object_size < N + 2:
        raise ValueError(f'simulation: object_size must be an integer >= N + 2 = {N + 2}, '
                         f'found {object_size!r}')
    object_size = int(object_size)
    object_rng, scan_rng, noise_rng = (np.random.default_rng(s)
                                       for s in np.random.SeedSequence(seed).spawn(3))
    obj = make_object(object_kind, object_size, object_rng, N)
    probe = make_probe(probe_kind, N, nphotons)
    # Keep every patch (and its bilinear neighbour pixel) inside the object.
    low, high = N / 2.0, object_size - N / 2.0 - 1.0
    positions = make_scan(scan, int(n_positions), low, high, scan_rng)
    diffraction = simulate_diffraction(obj, probe, positions, noise_rng, poisson)
    parameters = dict(object_kind=object_kind, N=int(N), n_positions=int(n_positions),
                      nphotons=float(nphotons), probe_kind=probe_kind, scan=scan,
                      object_size=object_size, seed=seed, poisson=bool(poisson))
    logger.info('simulated %d patterns (N=%d, %s object %dx%d, %s probe, %s scan, seed %s)',
                n_positions, N, object_kind, object_size, object_size, probe_kind, scan, seed)
    return SimulatedArrays(obj, probe, positions, diffraction, parameters)


def simulate_dataset(*, object_kind: str = 'lines', N: int = 64, n_positions: int = 512,
                     nphotons: float = 1e9, probe_kind: str = 'focused', scan: str = 'fermat',
                     object_size: int | None = None, seed: int = 0, poisson: bool = True
                     ) -> 'RawData':
    """A seeded synthetic dataset as ``RawData`` with ground truth ``objectGuess``.

    ``diff3d`` holds float32 amplitudes ``sqrt(counts)``; ``probeGuess`` is the probe used
    (``sum |P|**2 == nphotons``); positions are patch centres, ``scan_index`` all zero.
    """
    from ptycho.raw_data import RawData  # core module, numpy/scipy only

    sim = simulate_arrays(object_kind=object_kind, N=N, n_positions=n_positions,
                          nphotons=nphotons, probe_kind=probe_kind, scan=scan,
                          object_size=object_size, seed=seed, poisson=poisson)
    x = sim.positions_xy[:, 0].astype(np.float64)
    y = sim.positions_xy[:, 1].astype(np.float64)
    return RawData(x, y, x.copy(), y.copy(), sim.diffraction.astype(np.float32),
                   sim.probe.astype(np.complex64), np.zeros(len(x), dtype=np.int64),
                   objectGuess=sim.object.astype(np.complex64),
                   source=f'simulation({object_kind}, seed={seed})',
                   diffraction_units='amplitude')


# --------------------------------------------------------------------------- standard set

@dataclass(frozen=True)
class StandardDataset:
    """Parameters of the project's standard simulated benchmark (train and test splits).

    Both splits share every parameter, including the object size, and differ only in the
    seed: a different object and scan, so the test split measures generalisation.
    """

    object_kind: str = 'lines'
    N: int = 64
    n_positions: int = 2000
    nphotons: float = 1e9
    probe_kind: str = 'focused'
    scan: str = 'fermat'
    object_size: int = 352  # default_object_size(64, 2000)
    train_seed: int = 1
    test_seed: int = 2


STANDARD = StandardDataset()


def standard_dataset(split: str = 'train', n_positions: int | None = None) -> 'RawData':
    """The standard benchmark split; ``n_positions`` thins the scan of the same object."""
    if split not in ('train', 'test'):
        raise ValueError(f"standard_dataset: split must be 'train' or 'test', found {split!r}")
    seed = STANDARD.train_seed if split == 'train' else STANDARD.test_seed
    return simulate_dataset(object_kind=STANDARD.object_kind, N=STANDARD.N,
                            n_positions=STANDARD.n_positions if n_positions is None
                            else n_positions,
                            nphotons=STANDARD.nphotons, probe_kind=STANDARD.probe_kind,
                            scan=STANDARD.scan, object_size=STANDARD.object_size, seed=seed)


# --------------------------------------------------------------------------- beamline-realistic

#: The experimental probe shipped as package data (``ptycho/resources``, see its README).
EXPERIMENTAL_PROBE_FILE = 'experimental_probe_128.npz'
REALISTIC_PATCH_SIZES = (64, 128)
REALISTIC_OBJECT_KINDS = ('siemens', 'lines', 'texture')
REALISTIC_SCANS = ('raster', 'fermat')
SPLITS = ('train', 'test')
#: Mean scan step of the realistic scans as a fraction of N (the experiment behind the
#: probe: ~14.5 px at N = 128).
REALISTIC_STEP_FRACTION = 1.0 / 9.0
#: A hot pixel adds Poisson(max(HOT_PIXEL_MIN_COUNTS, HOT_PIXEL_FRACTION * nphotons))
#: counts to every pattern (dark current / a stuck channel); a dead pixel reads 0.
HOT_PIXEL_FRACTION = 1e-3
HOT_PIXEL_MIN_COUNTS = 50.0
#: Bad pixels are drawn outside this radius (in units of N) around the detector centre,
#: where the zero order sits (a beamstop-free detector keeps its centre working).
BAD_PIXEL_MIN_RADIUS = 1.0 / 8.0
_DETECTOR_STREAM = 2  # seed-sequence key of the detector (shared by the train/test scans)


@dataclass(frozen=True)
class PhaseStrength:
    """How strongly the sample phase-shifts and absorbs: phase ``span * (t - 1/2)`` and
    amplitude ``high - (high - low) * t_abs`` for maps ``t, t_abs`` in [0, 1]."""

    phase_span: float
    amplitude_low: float
    amplitude_high: float


#: ``weak``: a thin sample (phase span 1 rad, amplitude 0.85..1.15 around a unit mean, as
#: the issue's real star); ``strong``: phase span 3 rad (still below 2 pi: no wraps in the
#: truth) with amplitude 0.5..1.0 (a thick, absorbing sample).
PHASE_STRENGTHS: dict[str, PhaseStrength] = {
    'weak': PhaseStrength(1.0, 0.85, 1.15),
    'strong': PhaseStrength(3.0, 0.5, 1.0),
}


def _finite(name: str, value: Any) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f'simulation: {name} must be finite, found {value!r}')
    return number


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f'simulation: {name} must be an integer >= {low}, found {value!r}')
    return int(value)


@dataclass(frozen=True)
class ProbePerturbation:
    """How the probe given to a reconstruction differs from the one that made the data.

    Applied in this order to the true probe, then rescaled to its power:
    ``scale``: magnification about the patch centre (a mis-estimated probe size or pixel
    size); ``defocus``: Fresnel propagation by ``alpha = lambda z / dx**2`` in px**2 of the
    scan's own grid (:func:`fresnel_propagate`; a sample plane away from the probe's);
    ``shift_xy``: translation in px (Fourier shift, content moves by +shift).
    """

    defocus: float = 0.0
    shift_xy: tuple[float, float] = (0.0, 0.0)
    scale: float = 1.0

    def __post_init__(self) -> None:
        _finite('probe defocus', self.defocus)
        shift = tuple(_finite('probe shift_xy', v) for v in np.asarray(self.shift_xy).ravel())
        if len(shift) != 2:
            raise ValueError(f'simulation: probe shift_xy must be (x, y), found {self.shift_xy!r}')
        object.__setattr__(self, 'shift_xy', shift)
        if not _finite('probe scale', self.scale) > 0:
            raise ValueError(f'simulation: probe scale must be > 0, found {self.scale!r}')

    @classmethod
    def typical(cls, N: int) -> 'ProbePerturbation':
        """The benchmark's perturbation, the same physical one at every N: at N = 128 a
        defocus of alpha = 4 px**2, a (0.5, -0.3) px shift and 2 % magnification, each alone
        a relative error of 0.16, 0.37 and 0.24 against the shipped probe, together ~0.5
        (:func:`probe_relative_error`); at N = 64 the pixels are twice as large."""
        ratio = N / 128.0
        return cls(defocus=4.0 * ratio ** 2, shift_xy=(0.5 * ratio, -0.3 * ratio), scale=1.02)


@dataclass(frozen=True)
class RealisticScanSpec:
    """One beamline-realistic scan (see :func:`realistic_scan`). Lengths are in pixels of
    the scan's own grid (object pixel = probe pixel, N of them across a pattern)."""

    N: int = 64
    object_kind: str = 'siemens'
    phase: str = 'weak'
    n_positions: int = 500
    step: float | None = None          # mean step, px; None: N / 9
    scan: str = 'raster'
    jitter: float = 0.15               # uniform +/- this fraction of the step, both scans
    nphotons: float = 1e6              # sum |P|**2: far-field photons per pattern, unit object
    probe_error: ProbePerturbation | None = None  # None: ProbePerturbation.typical(N)
    position_error_std: float = 1.0    # px, per coordinate: given = true + N(0, std**2)
    n_bad_pixels: int = 6              # half dead (0), half hot, fixed detector pixels
    split: str = 'train'               # train and test: other object instance and scan
    seed: int = 13

    def __post_init__(self) -> None:
        if self.N not in REALISTIC_PATCH_SIZES:
            raise ValueError(f'simulation: N must be one of {list(REALISTIC_PATCH_SIZES)} '
                             f'for a realistic scan, found {self.N!r}')
        _check_choice('object_kind', self.object_kind, REALISTIC_OBJECT_KINDS)
        _check_choice('phase', self.phase, tuple(PHASE_STRENGTHS))
        _check_choice('scan', self.scan, REALISTIC_SCANS)
        _check_choice('split', self.split, SPLITS)
        _check_int('n_positions', self.n_positions, 1)
        _check_int('n_bad_pixels', self.n_bad_pixels, 0)
        _check_int('seed', self.seed, 0)
        step = REALISTIC_STEP_FRACTION * self.N if self.step is None else self.step
        if not _finite('step', step) > 0:
            raise ValueError(f'simulation: step must be > 0 px, found {self.step!r}')
        object.__setattr__(self, 'step', float(step))
        if not 0.0 <= _finite('jitter', self.jitter) <= 0.5:
            raise ValueError(f'simulation: jitter must be in [0, 0.5] (a fraction of the '
                             f'step), found {self.jitter!r}')
        if not _finite('nphotons', self.nphotons) > 0:
            raise ValueError(f'simulation: nphotons must be > 0, found {self.nphotons!r}')
        if not _finite('position_error_std', self.position_error_std) >= 0:
            raise ValueError(f'simulation: position_error_std must be >= 0 px, found '
                             f'{self.position_error_std!r}')
        if self.probe_error is None:
            object.__setattr__(self, 'probe_error', ProbePerturbation.typical(self.N))
        elif not isinstance(self.probe_error, ProbePerturbation):
            raise ValueError(f'simulation: probe_error must be a ProbePerturbation, found '
                             f'{type(self.probe_error).__name__}')

    def to_json(self) -> str:
        """The spec as JSON (written into the scan's NPZ, so a file says how it was made)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def load_experimental_probe(N: int = 128) -> NDArray:
    """The shipped experimental probe (complex128), resampled to ``N`` (64 or 128).

    Read from the package (``ptycho/resources``, works from a wheel or a zip too). Its power is
    kept as measured (``sum |P|**2`` ~52); :func:`realistic_scan` scales it to the photons.
    """
    if N not in REALISTIC_PATCH_SIZES:
        raise ValueError(f'simulation: the experimental probe exists for N in '
                         f'{list(REALISTIC_PATCH_SIZES)}, found {N!r}')
    resource = importlib.resources.files('ptycho') / 'resources' / EXPERIMENTAL_PROBE_FILE
    if not resource.is_file():
        raise FileNotFoundError(f'simulation: {resource} is missing: the package data '
                                f'ptycho/resources/{EXPERIMENTAL_PROBE_FILE} was not installed')
    with np.load(io.BytesIO(resource.read_bytes()), allow_pickle=False) as data:
        if 'probeGuess' not in data.files:
            raise ValueError(f"simulation: {resource}: key 'probeGuess': expected the probe, "
                             f'found only {data.files}')
        probe = np.asarray(data['probeGuess'], dtype=np.complex128)
    if probe.shape != (128, 128):
        raise ValueError(f"simulation: {resource}: key 'probeGuess': expected (128, 128), "
                         f'found {probe.shape}')
    return resample_probe(probe, N)


def resample_probe(probe: NDArray, N: int) -> NDArray:
    """The probe as a detector of ``N`` pixels would see it: the central N x N of its far
    field (orthonormal FFT, DC at the centre), back to the sample plane.

    Why the far field and not the sample plane: the detector fixes the sample-plane pixel
    (``dx = lambda z / (N d)``), so reading only the central N of the M detector pixels makes
    the pixel M/N times larger over the same field of view; the probe keeps its physical
    size and shrinks in pixels (the 128 probe's ~28 px radius becomes ~14 px at N = 64, as
    the scan step does). Binning the detector instead would keep the pixel and halve the
    field of view, cutting the probe. The transform is orthonormal, so the values grow by
    M/N and the power is kept but for the far field outside the crop (0.7 % for the shipped
    probe), which is not put back.
    """
    probe = np.asarray(probe, dtype=np.complex128)
    M = probe.shape[-1]
    if probe.shape != (M, M) or N > M or (M - N) % 2 or N % 2:
        raise ValueError(f'simulation: resample_probe needs a square probe at least N={N} '
                         f'across with an even difference, found {probe.shape}')
    if N == M:
        return probe.copy()
    spectrum = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(probe), norm='ortho'))
    low = (M - N) // 2
    crop = spectrum[low:low + N, low:low + N]
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(crop), norm='ortho'))


def fourier_shift(field: NDArray, shift_xy: tuple[float, float]) -> NDArray:
    """Band-limited translation of an (N, N) field: ``out(p) = in(p - t)``, t = (tx, ty)."""
    N = field.shape[-1]
    f = np.fft.fftfreq(N)
    ramp = np.exp(-2j * math.pi * (f[None, :] * shift_xy[0] + f[:, None] * shift_xy[1]))
    spectrum = np.fft.fft2(np.fft.ifftshift(field)) * ramp
    return np.fft.fftshift(np.fft.ifft2(spectrum))


def perturb_probe(probe: NDArray, perturbation: ProbePerturbation) -> NDArray:
    """The probe guess of :class:`ProbePerturbation`, with the power of ``probe``."""
    probe = np.asarray(probe, dtype=np.complex128)
    N = probe.shape[-1]
    guess = probe.copy()
    if perturbation.scale != 1.0:
        centre = N // 2
        coords = (np.indices((N, N), dtype=np.float64) - centre) / perturbation.scale + centre
        guess = (ndimage.map_coordinates(guess.real, coords, order=3, mode='constant')
                 + 1j * ndimage.map_coordinates(guess.imag, coords, order=3, mode='constant'))
    if perturbation.defocus != 0.0:
        guess = fresnel_propagate(guess, perturbation.defocus)
    if perturbation.shift_xy != (0.0, 0.0):
        guess = fourier_shift(guess, perturbation.shift_xy)
    return guess * math.sqrt(float(np.sum(np.abs(probe) ** 2)) / float(np.sum(np.abs(guess) ** 2)))


def probe_relative_error(guess: NDArray, truth: NDArray) -> float:
    """``min_c ||c guess - truth|| / ||truth||`` over complex c: the error of a probe
    estimate up to its global phase and scale (neither of which the data fix)."""
    guess = np.asarray(guess, dtype=np.complex128)
    truth = np.asarray(truth, dtype=np.complex128)
    norm = float(np.vdot(guess, guess).real)
    c = np.vdot(guess, truth) / norm if norm > 0 else 0.0
    return float(np.linalg.norm(c * guess - truth) / np.linalg.norm(truth))


def _texture_map(size: int, rng: np.random.Generator, split: str) -> NDArray:
    """A natural texture (scikit-image's ``gravel``, 512 x 512): the train scan reads a
    256-px square of its left half, the test scan one of its right half (no shared
    pixels), resampled to ``size`` (cubic)."""
    from skimage import data as skimage_data

    image = np.asarray(skimage_data.gravel(), dtype=np.float64)
    side = image.shape[1] // 2
    row = int(rng.integers(0, image.shape[0] - side + 1))
    column = 0 if split == 'train' else side
    region = image[row:row + side, column:column + side]
    zoomed = ndimage.zoom(region, size / side, order=3, mode='mirror')
    if zoomed.shape != (size, size):  # zoom rounds the output shape
        zoomed = np.pad(zoomed, [(0, max(size - n, 0)) for n in zoomed.shape],
                        mode='reflect')[:size, :size]
    return _normalise01(zoomed)


def make_realistic_object(kind: str, size: int, phase: str, rng: np.random.Generator, *,
                          split: str = 'train', N: int = 64) -> NDArray:
    """Complex (size, size) sample with real-sample statistics (``REALISTIC_OBJECT_KINDS``).

    Phase and absorption come from one thickness map ``t`` (as in a real material, both
    scale with it), plus a weak independent smooth field in each (substrate and density
    variations), then :data:`PHASE_STRENGTHS` sets the ranges. ``siemens``: a star
    (:func:`make_siemens_object`'s spokes); ``lines``: :func:`make_lines_object`'s strokes;
    ``texture``: :func:`_texture_map`. The train and test splits of one kind are different
    instances (a different seed, and for the texture a disjoint image region).
    """
    _check_choice('object_kind', kind, REALISTIC_OBJECT_KINDS)
    _check_choice('phase', phase, tuple(PHASE_STRENGTHS))
    _check_choice('split', split, SPLITS)
    if kind == 'siemens':
        star = _normalise01(1.0 - np.abs(make_siemens_object(size, rng)))
        thickness, absorption = star, star
    elif kind == 'lines':
        lines = make_lines_object(size, rng, N)
        thickness = _normalise01(np.angle(lines))
        # Two materials: strokes that mostly absorb and strokes that mostly phase-shift.
        absorption = 0.6 * thickness + 0.4 * _normalise01(1.0 - np.abs(lines))
    else:
        thickness = _texture_map(size, rng, split)
        absorption = thickness
    sigma = max(size / 10.0, 2.0)
    thickness = _normalise01(0.9 * thickness + 0.1 * _smooth_noise((size, size), sigma, rng))
    absorption = _normalise01(0.85 * absorption + 0.15 * _smooth_noise((size, size), sigma, rng))
    strength = PHASE_STRENGTHS[phase]
    amplitude = (strength.amplitude_high
                 - (strength.amplitude_high - strength.amplitude_low) * absorption)
    return (amplitude * np.exp(1j * strength.phase_span * (thickness - 0.5))).astype(np.complex128)


def realistic_positions(kind: str, n_positions: int, step: float, jitter: float,
                        rng: np.random.Generator) -> NDArray:
    """``(x, y)`` of a scan centred on (0, 0), mean step ``step`` px, each position moved
    by a uniform jitter of +/- ``jitter * step`` (deliberate and known, as on a beamline).

    ``raster``: rows of ``ceil(sqrt(n))`` positions at ``step``; ``fermat``: the
    golden-angle spiral ``r = c sqrt(k + 1/2)`` with ``c = step / sqrt(pi)``, so that each
    position has ``step**2`` of area, as in the raster.
    """
    _check_choice('scan', kind, REALISTIC_SCANS)
    n = _check_int('n_positions', n_positions, 1)
    if kind == 'raster':
        n_cols = int(math.ceil(math.sqrt(n)))
        index = np.arange(n)
        positions = step * np.stack([index % n_cols, index // n_cols], axis=1).astype(np.float64)
    else:
        k = np.arange(n, dtype=np.float64)
        radius = step / math.sqrt(math.pi) * np.sqrt(k + 0.5)
        positions = np.stack([radius * np.cos(k * _GOLDEN_ANGLE),
                              radius * np.sin(k * _GOLDEN_ANGLE)], axis=1)
    positions = positions + rng.uniform(-jitter, jitter, positions.shape) * step
    return positions - 0.5 * (positions.min(axis=0) + positions.max(axis=0))


def _bad_pixel_mask(N: int, n_bad: int, rng: np.random.Generator) -> tuple[NDArray, NDArray]:
    """(dead, hot) boolean (N, N) masks at ``n_bad`` distinct pixels away from the centre."""
    coords = np.arange(N) - N // 2
    radius = np.hypot(*np.meshgrid(coords, coords, indexing='ij'))
    allowed = np.flatnonzero(radius.ravel() >= BAD_PIXEL_MIN_RADIUS * N)
    if n_bad > allowed.size:
        raise ValueError(f'simulation: n_bad_pixels must be <= {allowed.size} at N={N}, '
                         f'found {n_bad}')
    chosen = rng.choice(allowed, size=n_bad, replace=False)
    n_dead = (n_bad + 1) // 2
    dead = np.zeros(N * N, dtype=bool)
    hot = np.zeros(N * N, dtype=bool)
    dead[chosen[:n_dead]] = True
    hot[chosen[n_dead:]] = True
    return dead.reshape(N, N), hot.reshape(N, N)


@dataclass(frozen=True)
class RealisticScan:
    """A simulated beamline scan: what made the data, and what a user is given.

    ``object`` (S, S) complex128 truth; ``probe`` (N, N) the true probe and ``probe_guess``
    its perturbed estimate (both ``sum |P|**2 == nphotons``); ``positions_true`` and
    ``positions_given`` (M, 2) patch centres ``(x, y)``; ``diffraction`` (M, N, N) float32
    amplitudes ``sqrt(counts)`` (bad pixels included); ``bad_pixels`` (N, N) bool.
    """

    spec: RealisticScanSpec
    object: NDArray
    probe: NDArray
    probe_guess: NDArray
    positions_true: NDArray
    positions_given: NDArray
    diffraction: NDArray
    bad_pixels: NDArray

    @property
    def probe_error(self) -> float:
        """Relative error of the probe guess (:func:`probe_relative_error`)."""
        return probe_relative_error(self.probe_guess, self.probe)

    def raw_data(self) -> 'RawData':
        """What a user would have: the GIVEN positions, the probe GUESS, the measured
        amplitudes and the bad-pixel mask; ``objectGuess`` is the truth, for scoring only."""
        from ptycho.raw_data import RawData

        x, y = self.positions_given[:, 0], self.positions_given[:, 1]
        return RawData(x, y, x, y, self.diffraction, self.probe_guess.astype(np.complex64),
                       np.zeros(len(x), dtype=np.int64),
                       objectGuess=self.object.astype(np.complex64),
                       source=f'realistic_scan({self.spec.object_kind}, {self.spec.phase}, '
                              f'N={self.spec.N}, {self.spec.nphotons:g} photons, '
                              f'{self.spec.split}, seed={self.spec.seed})',
                       bad_pixels=self.bad_pixels, diffraction_units='amplitude')

    def to_file(self, path: str | os.PathLike[str]) -> Path:
        """The contract NPZ of :meth:`raw_data` plus the truth a benchmark scores with
        (``probe_true``, ``xcoords_true``, ``ycoords_true``; keys the loader ignores) and
        ``realistic_spec`` (JSON). Written atomically."""
        arrays = dict(self.raw_data().to_dict(),
                      probe_true=self.probe.astype(np.complex64),
                      xcoords_true=self.positions_true[:, 0].copy(),
                      ycoords_true=self.positions_true[:, 1].copy(),
                      realistic_spec=np.array(self.spec.to_json()))
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, 'wb') as handle:
            np.savez(handle, **arrays)
        logger.info('wrote realistic scan %s (%d patterns)', path, len(self.positions_given))
        return path


def realistic_scan(spec: RealisticScanSpec) -> RealisticScan:
    """Simulate the scan ``spec`` describes, with the experimental probe.

    Object, scan, position errors and photon noise draw from independent child streams of
    ``(seed, split)``; the bad pixels from ``(seed, detector)`` (one detector for both
    splits); the probe perturbation is deterministic (the same guess for both splits).
    The object fits the true positions with a margin of 3 position-error std.
    """
    if not isinstance(spec, RealisticScanSpec):
        raise ValueError(f'simulation: realistic_scan takes a RealisticScanSpec, found '
                         f'{type(spec).__name__}')
    N = spec.N
    assert spec.step is not None and spec.probe_error is not None  # resolved by the spec
    object_rng, scan_rng, error_rng, noise_rng = (
        np.random.default_rng(s)
        for s in np.random.SeedSequence([spec.seed, SPLITS.index(spec.split)]).spawn(4))
    detector_rng = np.random.default_rng(np.random.SeedSequence([spec.seed, _DETECTOR_STREAM]))

    nominal = realistic_positions(spec.scan, spec.n_positions, spec.step, spec.jitter, scan_rng)
    pad = int(math.ceil(3.0 * spec.position_error_std)) + 1
    extent = float(np.max(nominal.max(axis=0) - nominal.min(axis=0)))
    size = int(math.ceil(extent)) + N + 2 + 2 * pad
    positions_true = nominal + (size - 1) / 2.0
    positions_given = positions_true + error_rng.normal(0.0, spec.position_error_std,
                                                        positions_true.shape)

    obj = make_realistic_object(spec.object_kind, size, spec.phase, object_rng,
                                split=spec.split, N=N)
    probe = load_experimental_probe(N)
    probe = probe * math.sqrt(spec.nphotons / float(np.sum(np.abs(probe) ** 2)))
    guess = perturb_probe(probe, spec.probe_error)

    amplitude = simulate_diffraction(obj, probe, positions_true, noise_rng, poisson=True)
    dead, hot = _bad_pixel_mask(N, spec.n_bad_pixels, detector_rng)
    counts = amplitude ** 2
    counts[:, dead] = 0.0
    hot_level = max(HOT_PIXEL_MIN_COUNTS, HOT_PIXEL_FRACTION * spec.nphotons)
    counts[:, hot] += noise_rng.poisson(hot_level, (len(counts), int(hot.sum())))
    logger.info('realistic scan: %s %s object %dx%d, %d %s positions (step %.1f px), N=%d, '
                '%g photons, probe guess error %.2f, %s split', spec.phase, spec.object_kind,
                size, size, spec.n_positions, spec.scan, spec.step, N, spec.nphotons,
                probe_relative_error(guess, probe), spec.split)
    return RealisticScan(spec=spec, object=obj, probe=probe, probe_guess=guess,
                         positions_true=positions_true, positions_given=positions_given,
                         diffraction=np.sqrt(counts).astype(np.float32),
                         bad_pixels=dead | hot)


def _photons_tag(nphotons: float) -> str:
    return f'1e{int(round(math.log10(nphotons)))}'


def _realistic_presets() -> dict[str, RealisticScanSpec]:
    """Named benchmark scans, ``<object>-<phase>-<N>-<photons>``, e.g. ``siemens-weak-64-1e6``.

    The star is raster-scanned (as the experiment behind the probe), lines and texture on a
    Fermat spiral; 500 positions, step N/9, the typical probe perturbation, 1 px position
    errors and 6 bad pixels everywhere.
    """
    scans = {'siemens': 'raster', 'lines': 'fermat', 'texture': 'fermat'}
    presets = {}
    for kind in REALISTIC_OBJECT_KINDS:
        for phase in PHASE_STRENGTHS:
            for N in REALISTIC_PATCH_SIZES:
                for nphotons in (1e4, 1e5, 1e6):
                    name = f'{kind}-{phase}-{N}-{_photons_tag(nphotons)}'
                    presets[name] = RealisticScanSpec(N=N, object_kind=kind, phase=phase,
                                                      scan=scans[kind], nphotons=nphotons)
    return presets


REALISTIC_PRESETS: dict[str, RealisticScanSpec] = _realistic_presets()


def realistic_preset(name: str, split: str = 'train') -> RealisticScanSpec:
    """The spec of preset ``name`` (:data:`REALISTIC_PRESETS`) for ``split``."""
    if name not in REALISTIC_PRESETS:
        raise ValueError(f'simulation: realistic preset must be one of '
                         f'{sorted(REALISTIC_PRESETS)}, found {name!r}')
    _check_choice('split', split, SPLITS)
    return dataclasses.replace(REALISTIC_PRESETS[name], split=split)


def realistic_dataset(name: str, split: str = 'train') -> 'RawData':
    """A preset's scan as the ``RawData`` a user would have (probe guess, given positions;
    ``objectGuess`` is the truth). Train and test are different scans of one sample kind."""
    return realistic_scan(realistic_preset(name, split)).raw_data()


# --------------------------------------------------------------------------- preview

def write_preview_png(raw: Any, path: str | os.PathLike[str], *, title: str | None = None,
                      dpi: int = 100) -> Path:
    """Overview PNG of a dataset: object amplitude/phase with the scan, probe, one pattern.

    Works for any ``RawData``-like object (``objectGuess`` may be None). Written to a
    temporary file beside ``path`` and renamed into place.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.asarray(raw.xcoords, dtype=np.float64)
    y = np.asarray(raw.ycoords, dtype=np.float64)
    probe = np.asarray(raw.probeGuess)
    if probe.ndim > 2:
        probe = probe.reshape(-1, *probe.shape[-2:])[0]
    diffraction = np.asarray(raw.diff3d)
    obj = getattr(raw, 'objectGuess', None)

    fig = Figure(figsize=(12, 9), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2)
    if obj is not None:
        obj = np.asarray(obj)
        for ax, data, label, cmap in ((axes[0, 0], np.abs(obj), 'object amplitude', 'gray'),
                                      (axes[0, 1], np.angle(obj), 'object phase (rad)',
                                       'coolwarm')):
            image = ax.imshow(data, cmap=cmap, origin='upper')
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
            ax.set_title(label)
        axes[0, 0].plot(x, y, '.', color='tab:red', markersize=1.5, alpha=0.6)
    else:
        axes[0, 0].plot(x, y, '.', color='tab:red', markersize=2)
        axes[0, 0].invert_yaxis()
        axes[0, 0].set_aspect('equal')
        axes[0, 0].set_title('scan positions (no ground truth)')
        axes[0, 1].axis('off')
    image = axes[1, 0].imshow(np.abs(probe), cmap='magma')
    fig.colorbar(image, ax=axes[1, 0], fraction=0.046, pad=0.04)
    axes[1, 0].set_title('probe amplitude')
    pattern = diffraction.reshape(-1, *diffraction.shape[-2:])[0].astype(np.float64) ** 2
    positive = pattern[pattern > 0]
    vmin = float(positive.min()) if positive.size else 1e-3
    image = axes[1, 1].imshow(np.maximum(pattern, vmin), cmap='viridis',
                              norm=LogNorm(vmin=vmin, vmax=max(float(pattern.max()), vmin * 10)))
    fig.colorbar(image, ax=axes[1, 1], fraction=0.046, pad=0.04)
    axes[1, 1].set_title('pattern 0: counts (log)')
    fig.suptitle(title or f'{len(x)} positions, N = {diffraction.shape[-1]}')
    fig.tight_layout()

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format='png')
    logger.info('wrote preview %s', path)
    return path
