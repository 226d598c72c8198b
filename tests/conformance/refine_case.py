"""A small scan with a known probe, its probe guess defocused, and a network-like start.

What the refinement tests start from (``ptycho.refinement``): the reconstruction a network
might give (the true object blurred, its amplitude contrast and phase flattened, stitched
from central crops as inference does), and the probe given with the data off by a defocus.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ptycho import physics
from ptycho.raw_data import RawData
from ptycho.simulation import fresnel_propagate, simulate_dataset
from ptycho.workflows.contract import GroupObjects, Reconstruction


@dataclass(frozen=True)
class RefineCase:
    scan: RawData
    """The data, with the defocused probe guess as ``probeGuess``."""
    probe: np.ndarray
    """The probe that made the data."""
    start: Reconstruction
    """A network-like reconstruction to refine."""


def refine_case(n_positions: int = 120, defocus: float = 40.0, seed: int = 3) -> RefineCase:
    N = 64
    sim = simulate_dataset(N=N, n_positions=n_positions, seed=seed, nphotons=1e6)
    guess = fresnel_propagate(sim.probeGuess.astype(np.complex128), defocus)
    scan = RawData(sim.xcoords, sim.ycoords, None, None, sim.diff3d, guess.astype(np.complex64),
                   sim.scan_index, objectGuess=sim.objectGuess, diffraction_units='amplitude')
    truth = np.asarray(sim.objectGuess, np.complex128)
    blurred = ndimage.gaussian_filter(truth.real, 2) + 1j * ndimage.gaussian_filter(truth.imag, 2)
    start_object = np.abs(blurred) ** 0.3 * np.exp(0.6j * np.angle(blurred))
    positions = sim.positions_xy
    M = physics.default_crop(N)
    shape, origin = physics.canvas_geometry(positions, M)
    patches = physics.extract_patches_fast(start_object, positions, N)
    obj, coverage = physics.stitch(patches, positions, M, shape, origin)
    start = Reconstruction(obj.astype(np.complex64), coverage.astype(np.float32),
                           (float(origin[0]), float(origin[1])), M, 'test',
                           GroupObjects(patches.astype(np.complex64), positions))
    return RefineCase(scan, np.asarray(sim.probeGuess), start)
