"""Simulated scans written as Ptychodus files, for the plugin tests and the benchmark.

The simulation (``ptycho.simulation``) gives amplitudes, positions in object pixels and
the ground-truth object. We write what a beamline would: integer detector counts in
``diffraction.h5`` and positions in metres in ``product.h5``, with Ptychodus' own writers,
so the plugin sees exactly the data path it meets in production.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ptychodus.api.assemble import AssembledDiffractionData
from ptychodus.api.geometry import PixelGeometry
from ptychodus.api.io import save_diffraction_data, save_product
from ptychodus.api.object import Object, ObjectCenter
from ptychodus.api.probe import ProbeSequence
from ptychodus.api.probe_positions import ProbePosition, ProbePositionSequence
from ptychodus.api.product import Product, ProductMetadata
from ptychodus.api.reconstruct import ReconstructInput, prepare_reconstruct_input

DETECTOR_DISTANCE_M = 1.0
DETECTOR_PIXEL_M = 75e-6
PHOTON_ENERGY_EV = 10_000.0


def object_pixel_m(N: int) -> float:
    """Far-field object pixel size lambda * z / (N * detector pixel), as Ptychodus computes it."""
    wavelength_m = 1.239841984e-6 / PHOTON_ENERGY_EV
    return wavelength_m * DETECTOR_DISTANCE_M / (N * DETECTOR_PIXEL_M)

ALGORITHM = {'pinn': 'ptychopinn-dual_pinn', 'supervised': 'ptychopinn-dual_supervised'}


def simulate(n_positions: int = 256, seed: int = 0, N: int = 64, nphotons: float = 1e9,
             object_size: int | None = None) -> Any:
    from ptycho.simulation import simulate_dataset

    return simulate_dataset(N=N, n_positions=n_positions, nphotons=nphotons, seed=seed,
                            object_size=object_size)


def to_ptychodus(raw: Any, *, probe_modes: int = 1, bad_pixel: tuple[int, int] | None = None
                 ) -> tuple[AssembledDiffractionData, Product]:
    """Counts + metres: the Ptychodus view of a simulated ``RawData``."""
    counts = np.rint(np.asarray(raw.diff3d, np.float64) ** 2).astype(np.uint32)
    N = counts.shape[-1]
    bad = np.zeros((N, N), dtype=bool)
    if bad_pixel is not None:
        bad[bad_pixel] = True
        counts[:, bad_pixel[0], bad_pixel[1]] = 2**31  # a hot pixel the mask must hide
    assembled = AssembledDiffractionData(
        np.arange(len(counts)), counts,
        PixelGeometry(width_m=DETECTOR_PIXEL_M, height_m=DETECTOR_PIXEL_M), bad)
    height, width = raw.objectGuess.shape
    pixel_m = object_pixel_m(N)
    # PtychoPINN centres a patch on pixel N/2, Ptychodus on (N-1)/2: shift by half a pixel.
    x_m = pixel_m * (raw.xcoords - 0.5 - (width - 1) / 2)
    y_m = pixel_m * (raw.ycoords - 0.5 - (height - 1) / 2)
    positions = ProbePositionSequence([ProbePosition(i, float(x), float(y))
                                       for i, (x, y) in enumerate(zip(x_m, y_m))])
    probe = np.asarray(raw.probeGuess, np.complex64)[np.newaxis]
    if probe_modes > 1:  # a weak second mode: the reduction keeps the first, rescaled
        weak = 0.1 * np.roll(probe[0], 3, axis=-1)
        probe = np.stack([probe[0], weak] + [0.05 * probe[0]] * (probe_modes - 2))
    pixel = PixelGeometry(width_m=pixel_m, height_m=pixel_m)
    product = Product(
        metadata=ProductMetadata(name='simulated', comments='', detector_distance_m=DETECTOR_DISTANCE_M,
                                 photon_energy_eV=PHOTON_ENERGY_EV, probe_photon_count=0.0,
                                 exposure_time_s=0.0, mass_attenuation_m2_per_kg=0.0,
                                 tomography_angle_deg=0.0),
        probe_positions=positions,
        probes=ProbeSequence(array=probe[np.newaxis], opr_weights=None, pixel_geometry=pixel),
        object_=Object(array=np.ones((height, width), np.complex64), pixel_geometry=pixel,
                       center=ObjectCenter(0.0, 0.0)),
        losses=[],
    )
    return assembled, product


def reconstruct_input(raw: Any, **options: Any) -> ReconstructInput:
    assembled, product = to_ptychodus(raw, **options)
    return prepare_reconstruct_input(assembled, product)


def write_workflow_dir(directory: Path, raw: Any, *, algorithm: str = ALGORITHM['pinn'],
                       settings: dict[str, dict[str, Any]] | None = None) -> Path:
    """IN/ for ``ptychodus -b``: diffraction.h5, product.h5, settings.ini."""
    directory.mkdir(parents=True, exist_ok=True)
    assembled, product = to_ptychodus(raw)
    save_diffraction_data(directory / 'diffraction.h5', assembled)
    save_product(directory / 'product.h5', product)
    sections = {'Processing': {'Algorithm': algorithm}, **(settings or {})}
    text = ''.join(f'[{name}]\n' + ''.join(f'{k} = {v}\n' for k, v in values.items()) + '\n'
                   for name, values in sections.items())
    (directory / 'settings.ini').write_text(text)
    return directory


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b) + 1e-30))


def scanned_region(raw: Any) -> tuple[slice, slice]:
    """Rows/columns inside the bounding box of the scan positions (fully reconstructed)."""
    x0, x1 = int(np.ceil(raw.xcoords.min())), int(np.floor(raw.xcoords.max()))
    y0, y1 = int(np.ceil(raw.ycoords.min())), int(np.floor(raw.ycoords.max()))
    return slice(y0, y1 + 1), slice(x0, x1 + 1)
