"""Conventions real data files bring, and how each is made the contract's, loudly.

The contract (``specs/data_contracts.md`` section 8) wants the diffraction DC at pixel
``(N/2, N/2)`` (``fftshift`` applied), positions that name patch *centres* with ``x`` the
column, and amplitudes ``sqrt(counts)``. Files from other tools differ in each. What can be
told from the data reliably is detected and fixed with a warning (DC at the array corner;
counts, in :mod:`ptycho.raw_data`); what cannot is an explicit option
(:class:`DataConventions`: the CLI's ``--dc``, ``--positions``, ``--swap-xy``,
``--diffraction-units``), and a reading of the positions that puts the scan outside the file's
own object is warned about, naming the option that would fit. Nothing here modifies its
input. numpy only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

DC_CHOICES = ('auto', 'centre', 'corner')
POSITION_CHOICES = ('centre', 'corner')
UNITS_CHOICES = ('auto', 'amplitude', 'counts')

DC_RADIUS = 0.25
"""Radius (in units of N) of the disks about the centre and about the corners whose shares of
the mean pattern's energy decide where the DC is."""
DC_SHARE = 0.2
"""The corner disks must hold at least this share of the energy (flat patterns: ~0.2 in each
disk; a strong-phase sample with the experimental probe at N = 64: 0.32 near the DC) ..."""
DC_RATIO = 5.0
"""... and this many times the centre disk's, for the DC to count as at the corner (centred
real patterns: 11x to 190x the other way, issue 13's realistic benchmark)."""


@dataclass(frozen=True)
class DataConventions:
    """How a file differs from the contract; the defaults mean "as the contract says"."""

    dc: str = 'auto'
    """'auto' (detect a corner DC, fix it with a warning), 'centre' (as stored), 'corner'
    (DC at pixel (0, 0): fftshift every pattern and the bad-pixel mask)."""
    positions: str = 'centre'
    """'centre': positions name patch centres; 'corner': they name the top-left corner of the
    N x N window (the centre is corner + N/2)."""
    swap_xy: bool = False
    """The file's ``xcoords`` hold rows and ``ycoords`` columns: exchange them."""
    units: str = 'auto'
    """'auto' (counts recognised), 'amplitude' or 'counts': overrides ``diffraction_units``."""

    def __post_init__(self) -> None:
        for name, value, choices in (('dc', self.dc, DC_CHOICES),
                                     ('positions', self.positions, POSITION_CHOICES),
                                     ('units', self.units, UNITS_CHOICES)):
            if value not in choices:
                raise ValueError(f'DataConventions.{name}: expected one of {list(choices)}, '
                                 f'found {value!r}')
        if not isinstance(self.swap_xy, bool):
            raise ValueError(f'DataConventions.swap_xy: expected true or false, found '
                             f'{self.swap_xy!r}')

    @property
    def is_contract(self) -> bool:
        """True when nothing is asked beyond the contract and its detections."""
        return self == DataConventions()


def dc_shares(diffraction: NDArray) -> tuple[float, float]:
    """Shares of the mean pattern's energy within ``DC_RADIUS * N`` of the array centre
    ``(N/2, N/2)`` and of its corners (distance measured with wrap-around)."""
    stack = np.asarray(diffraction)
    H, W = int(stack.shape[-2]), int(stack.shape[-1])
    mean = np.zeros((H, W), dtype=np.float64)
    for start in range(0, stack.shape[0], 256):
        chunk = np.asarray(stack[start:start + 256], dtype=np.float64)
        mean += np.sum(chunk * chunk, axis=0)
    total = float(mean.sum())
    if total <= 0:
        return 0.0, 0.0
    rows = np.arange(H)[:, None]
    cols = np.arange(W)[None, :]
    radius = DC_RADIUS * min(H, W)
    centre = np.hypot(rows - H // 2, cols - W // 2) <= radius
    corner = np.hypot(np.minimum(rows, H - rows), np.minimum(cols, W - cols)) <= radius
    return float(mean[centre].sum()) / total, float(mean[corner].sum()) / total


def dc_at_corner(diffraction: NDArray) -> bool:
    """True when the mean pattern's energy sits at the array corners, not its centre: the
    DC of an unshifted FFT. Flat or ring-shaped patterns are not called corners."""
    centre, corner = dc_shares(diffraction)
    return corner >= DC_SHARE and corner >= DC_RATIO * centre


def centre_dc(diffraction: NDArray, bad_pixels: NDArray | None, dc: str, source: str,
              key: str) -> tuple[NDArray, NDArray | None]:
    """Patterns (and bad-pixel mask) with the DC at ``(N/2, N/2)`` as ``dc`` says; new arrays
    when shifted, the inputs themselves otherwise (never modified)."""
    if dc not in DC_CHOICES:
        raise ValueError(f'{source}: dc: expected one of {list(DC_CHOICES)}, found {dc!r}')
    if dc == 'centre':
        return diffraction, bad_pixels
    if dc == 'auto':
        if not dc_at_corner(diffraction):
            return diffraction, bad_pixels
        centre, corner = dc_shares(diffraction)
        logger.warning('%s: key %r has its DC at the array corner (%.0f%% of the mean '
                       "pattern's energy near the corners, %.0f%% near the centre); applying "
                       'fftshift so that it sits at (N/2, N/2) as the contract requires (say '
                       '--dc centre to keep the patterns as stored)', source, key,
                       100 * corner, 100 * centre)
    else:
        logger.info('%s: key %r: DC at the array corner as asked (dc=corner); applying fftshift',
                    source, key)
    shifted = np.fft.fftshift(np.asarray(diffraction), axes=(-2, -1))
    mask = None if bad_pixels is None else np.fft.fftshift(np.asarray(bad_pixels), axes=(-2, -1))
    return shifted, mask


def to_centres(x: NDArray, y: NDArray, N: int, conventions: DataConventions
               ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Positions as the contract's patch centres ``(x = column, y = row)``; new arrays."""
    x = np.array(x, dtype=np.float64, copy=True)
    y = np.array(y, dtype=np.float64, copy=True)
    if conventions.swap_xy:
        x, y = y, x
    if conventions.positions == 'corner':
        x += N / 2
        y += N / 2
    return x, y


def _fits(x: NDArray, y: NDArray, N: int, shape: tuple[int, int], slack: float = 1.0) -> bool:
    """Every N x N patch centred on (x, y) lies inside an object of ``shape`` (within slack)."""
    height, width = shape
    return bool(x.min() - N / 2 >= -slack and y.min() - N / 2 >= -slack
                and x.max() + N / 2 <= width + slack and y.max() + N / 2 <= height + slack)


def check_positions(x: NDArray, y: NDArray, N: int, object_shape: tuple[int, int] | None,
                    conventions: DataConventions, source: str) -> None:
    """Warn when the file's positions, read as ``conventions`` say, put patches outside the
    file's own object while another reading (corner/centre, x/y swapped) fits it."""
    if object_shape is None or len(x) == 0:
        return
    cx, cy = to_centres(x, y, N, conventions)
    if _fits(cx, cy, N, object_shape):
        return
    for positions in POSITION_CHOICES:
        for swap in (False, True):
            other = DataConventions(positions=positions, swap_xy=swap)
            if (positions, swap) == (conventions.positions, conventions.swap_xy):
                continue
            ox, oy = to_centres(x, y, N, other)
            if _fits(ox, oy, N, object_shape):
                flags = f'--positions {positions}' + (' --swap-xy' if swap else '')
                logger.warning('%s: read as %s positions%s, the scan puts patches outside '
                               'the file\'s objectGuess %s; read as %s it fits: is this file '
                               'written with %s? (the data are used as read)', source,
                               conventions.positions,
                               ' with x/y swapped' if conventions.swap_xy else '',
                               object_shape, flags.replace('--', ''), flags)
                return
