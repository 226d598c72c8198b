"""Seeded synthetic ptychography datasets with known ground truth.

The quality benchmark, ``make demo`` and most tests need data whose true object is known.
This module builds it from three independent seeded parts (object, probe, scan) and
pushes them through the reference physics of :mod:`ptycho.physics`, so a simulated
dataset obeys exactly the conventions every backend is checked against:

* positions ``(x, y)`` are patch centres in object pixels, kept at least ``N/2`` inside;
* the probe is scaled so that ``sum |P|**2 == nphotons``: a unit object then gives
  ``nphotons`` expected counts per pattern (the far field is orthonormal);
* the files hold amplitudes ``sqrt(Poisson(|fftshift(fft2(P * O_patch))|**2 / N**2))``.

Only numpy, scipy and (lazily, for the preview) matplotlib are imported.
"""

from __future__ import annotations

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
