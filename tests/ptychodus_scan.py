"""A simulated scan as Ptychodus hands it to a built-in library's child process.

Shared by the tests of Ptychodus' built-in PtychoPINN (TensorFlow) and PtychoPINN-Torch
libraries: detector counts, a probe mode stack, positions in metres on an object grid.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ptychodus.api.geometry import PixelGeometry
from ptychodus.api.object import Object, ObjectCenter
from ptychodus.api.probe import ProbeSequence
from ptychodus.api.probe_positions import ProbePosition, ProbePositionSequence
from ptychodus.api.product import Product, ProductMetadata
from ptychodus.api.reconstruct import ReconstructInput

from ptycho.simulation import simulate_arrays

N = 64
PIXEL_M = 1e-8
NPHOTONS = 1e9


class Queue:
    """Stands in for the multiprocessing queue the child writes its results to."""

    def __init__(self) -> None:
        self.items: list[tuple[str, object]] = []

    def put(self, item: tuple[str, object]) -> None:
        self.items.append(item)


def simulated_scan() -> tuple[Any, np.ndarray, np.ndarray]:
    """(simulation, uint32 counts, (2, N, N) probe mode stack) of a 320-position scan."""
    sim = simulate_arrays(object_kind='lines', N=N, n_positions=320, nphotons=NPHOTONS,
                          object_size=150, seed=3)
    counts = np.rint(sim.diffraction ** 2).astype(np.uint32)  # what a detector delivers
    rng = np.random.default_rng(0)
    weak = 0.05 * sim.probe * np.exp(1j * rng.uniform(0, 2 * np.pi, sim.probe.shape))
    probe_stack = np.stack([sim.probe, weak]).astype(np.complex64)  # (modes, N, N)
    return sim, counts, probe_stack


def reconstruct_input(counts: np.ndarray, positions_xy: np.ndarray, probe_stack: np.ndarray,
                      obj: np.ndarray) -> ReconstructInput:
    """Ptychodus' input: ``obj`` is the product's object (its grid places the positions)."""
    height, width = obj.shape
    # ObjectGeometry maps x_px = (x_m - centre_x) / pixel + (width - 1) / 2.
    points = [ProbePosition(i, (x - (width - 1) / 2) * PIXEL_M, (y - (height - 1) / 2) * PIXEL_M)
              for i, (x, y) in enumerate(positions_xy)]
    metadata = ProductMetadata(name='sim', comments='', detector_distance_m=1.0,
                               photon_energy_eV=10000.0, probe_photon_count=NPHOTONS,
                               exposure_time_s=1.0, mass_attenuation_m2_per_kg=0.0,
                               tomography_angle_deg=0.0)
    product = Product(metadata=metadata, probe_positions=ProbePositionSequence(points),
                      probes=ProbeSequence(probe_stack, None, PixelGeometry(PIXEL_M, PIXEL_M)),
                      object_=Object(obj.astype(np.complex64), PixelGeometry(PIXEL_M, PIXEL_M),
                                     ObjectCenter(0.0, 0.0)),
                      losses=[])
    return ReconstructInput(diffraction_patterns=counts,
                            bad_pixels=np.zeros(counts.shape[1:], dtype=bool), product=product)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))


def phase_correlation(rec: np.ndarray, ref: np.ndarray) -> float:
    """Pearson correlation of the phases after removing the best constant phase."""
    return pearson(np.angle(rec * np.exp(-1j * np.angle(np.vdot(ref, rec)))), np.angle(ref))
