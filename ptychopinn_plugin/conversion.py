"""The plugin's side of the Ptychodus <-> PtychoPINN conversion (numpy only).

Ptychodus hands a reconstructor detector *counts* (any dtype), a separate bad-pixel
mask, a probe stack and positions in metres. PtychoPINN works on *amplitudes*
(``sqrt(counts)``) and positions in object pixels. The conventions (positions, object
frame, probe, bad pixels, the output product) are :mod:`ptycho.ptychodus_convert`'s,
shared with the CLI's Ptychodus files; this module packs an in-memory scan for the
worker. Everything here runs in the Ptychodus process, so it must stay free of
TensorFlow and torch; the probe-mode reduction rule is applied in the worker by
``ptycho.probe`` so that it is written once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy
from numpy.typing import NDArray

from ptychodus.api.product import Product
from ptychodus.api.reconstruct import ReconstructInput

from ptycho.atomic import atomic_path
from ptycho.ptychodus_convert import (
    Frame, inpaint, object_guess, patch_centres_px, probe_stack, replace_object,
)

logger = logging.getLogger(__name__)


@dataclass
class ScanData:
    """One scan in PtychoPINN terms; picklable, sent to the worker as is."""

    amplitudes: NDArray[numpy.float32]      # (M, N, N) sqrt(counts), bad pixels repaired
    x_px: NDArray[numpy.float64]            # (M,) patch centres, object-pixel columns
    y_px: NDArray[numpy.float64]            # (M,) patch centres, object-pixel rows
    probe: NDArray[numpy.complex64]         # (N, N) or (modes, N, N); reduced in the worker
    object_shape: tuple[int, int]           # (H, W) of the Ptychodus object grid
    object_guess: NDArray[numpy.complex64] | None = None
    bad_pixels: NDArray[numpy.bool_] | None = None
    source: str = '<ptychodus>'
    notes: list[str] = field(default_factory=list)

    @property
    def pattern_size(self) -> int:
        return int(self.amplitudes.shape[-1])

    def __len__(self) -> int:
        return int(self.amplitudes.shape[0])


def counts_to_amplitude(counts: NDArray, bad_pixels: NDArray | None,
                        what: str = 'diffraction patterns') -> NDArray[numpy.float32]:
    """``sqrt(counts)`` as float32, after inpainting bad pixels; the input is not modified.

    Negative counts (e.g. after a dark-frame subtraction) are clipped to zero with a
    warning; NaN/Inf are an error, since a network cannot be trusted on them.
    """
    patterns = numpy.asarray(counts)
    if patterns.ndim != 3:
        raise ValueError(f'{what}: expected a (patterns, height, width) stack, '
                         f'found shape {patterns.shape}')
    if patterns.shape[0] == 0:
        raise ValueError(f'{what}: expected at least one pattern, found none')
    if patterns.dtype.kind not in 'biuf':
        raise ValueError(f'{what}: expected real detector counts, found dtype {patterns.dtype}')
    if bad_pixels is not None:
        bad_pixels = numpy.asarray(bad_pixels, dtype=bool)
        if bad_pixels.shape != patterns.shape[1:]:
            raise ValueError(f'{what}: bad-pixel mask shape {bad_pixels.shape} does not match '
                             f'the pattern shape {patterns.shape[1:]}')
        patterns = inpaint(patterns, bad_pixels, what)
    data = patterns.astype(numpy.float32)  # astype copies: the caller's array is untouched
    if not numpy.all(numpy.isfinite(data)):
        raise ValueError(f'{what}: expected finite detector counts, found NaN or Inf')
    negative = data < 0
    if negative.any():
        logger.warning('%s: %d negative counts clipped to 0', what, int(negative.sum()))
        numpy.maximum(data, 0, out=data)
    return numpy.sqrt(data, out=data)


def scan_from_input(parameters: ReconstructInput) -> ScanData:
    """Convert Ptychodus' reconstruct input to :class:`ScanData` (metres -> object px,
    :func:`ptycho.ptychodus_convert.patch_centres_px`)."""
    product = parameters.product
    patterns = parameters.diffraction_patterns
    if patterns.ndim != 3 or patterns.shape[-1] != patterns.shape[-2]:
        raise ValueError(f'diffraction patterns: PtychoPINN needs square patterns, found '
                         f'shape {patterns.shape[1:]} (crop them to 64, 128 or 256 pixels)')
    n_positions = len(product.probe_positions)
    if n_positions != patterns.shape[0]:
        raise ValueError(f'product "{product.metadata.name}": {n_positions} probe positions '
                         f'but {patterns.shape[0]} diffraction patterns')
    obj = product.object_
    geometry = obj.get_geometry()
    if geometry.width_px == 0 or geometry.height_px == 0:
        raise ValueError(f'product "{product.metadata.name}": the object is empty; build an '
                         f'object first (its pixel grid is where the result is stitched)')
    x_px, y_px = patch_centres_px(product)
    probe = probe_stack(product)
    if probe.ndim == 3 and probe.shape[0] == 1:
        probe = probe[0]
    if probe.shape[-2:] != patterns.shape[-2:]:
        raise ValueError(f'probe: expected {patterns.shape[-2:]} pixels to match the '
                         f'diffraction patterns, found {probe.shape[-2:]}')
    return ScanData(
        amplitudes=counts_to_amplitude(patterns, parameters.bad_pixels),
        x_px=x_px,
        y_px=y_px,
        probe=probe.astype(numpy.complex64),
        object_shape=(geometry.height_px, geometry.width_px),
        object_guess=numpy.asarray(object_guess(product), dtype=numpy.complex64),
        bad_pixels=None if parameters.bad_pixels is None
        else numpy.array(parameters.bad_pixels, dtype=bool),
        source=f'product "{product.metadata.name}"',
    )


def write_contract_npz(path: Path, scan: ScanData, *, include_object: bool = True) -> Path:
    """Write the scan as a PtychoPINN data-contract NPZ (amplitudes), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, NDArray] = {
        'xcoords': scan.x_px,
        'ycoords': scan.y_px,
        'xcoords_start': scan.x_px,
        'ycoords_start': scan.y_px,
        'diffraction': scan.amplitudes,
        'diffraction_units': numpy.array('amplitude'),
        'probeGuess': scan.probe,
        'scan_index': numpy.zeros(len(scan), dtype=numpy.int64),
    }
    if include_object and scan.object_guess is not None:
        arrays['objectGuess'] = scan.object_guess
    if scan.bad_pixels is not None:
        arrays['bad_pixels'] = scan.bad_pixels
    with atomic_path(path) as tmp, open(tmp, 'wb') as handle:
        numpy.savez(handle, **arrays)
    logger.info('Wrote %d patterns (amplitudes) to %s', len(scan), path)
    return path


def result_product(parameters: ReconstructInput, image: NDArray[numpy.complexfloating],
                   losses: Sequence[float] = (),
                   probe: NDArray[numpy.complexfloating] | None = None,
                   positions_xy: NDArray[numpy.floating] | None = None) -> Product:
    """The output product: the input product with the reconstructed object on its grid
    (in the input object's complex dtype); with ``probe`` (refined with the object) in place
    of the input probe, with ``positions_xy`` ((M, 2) patch centres in object pixels,
    refined with the object) in place of the input positions."""
    product = parameters.product
    dtype = product.object_.get_array().dtype
    array = numpy.asarray(image, dtype=dtype if dtype.kind == 'c' else numpy.complex64)
    positions = None if positions_xy is None else Frame.of_object(product.object_).positions_m(
        positions_xy, like=product.probe_positions)
    return replace_object(product, array, losses=losses, probe=probe, positions=positions)
