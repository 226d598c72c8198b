"""Helpers for the command-line tests: run ``python -m ptycho.cli`` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def cli_env(extra_path: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(REPO)] + ([str(extra_path)] if extra_path else [])
    if extra_path:
        paths.reverse()
    env['PYTHONPATH'] = os.pathsep.join(paths + [env.get('PYTHONPATH', '')]).rstrip(os.pathsep)
    env['CUDA_VISIBLE_DEVICES'] = ''
    env['TF_CPP_MIN_LOG_LEVEL'] = '3'
    env['MPLBACKEND'] = 'Agg'
    return env


def run_cli(*args: object, cwd: Path, timeout: float = 240,
            extra_path: Path | None = None) -> Result:
    proc = subprocess.run([sys.executable, '-m', 'ptycho.cli', *map(str, args)], cwd=cwd,
                          env=cli_env(extra_path), capture_output=True, text=True,
                          timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_user_error(result: Result, *needles: str) -> str:
    """Exit status 2, exactly one stderr line, no traceback, naming each needle."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert 'Traceback' not in result.stderr, result.stderr
    assert len(result.error_lines) == 1, result.stderr
    line = result.error_lines[0]
    for needle in needles:
        assert needle.lower() in line.lower(), (needle, line)
    return line


def assert_no_temporaries(directory: Path) -> None:
    """No temporary of :func:`ptycho.atomic.atomic_path` anywhere under ``directory``."""
    from ptycho.atomic import find_temporaries

    folders = [directory, *(p for p in directory.rglob('*') if p.is_dir())]
    left = [path for folder in folders for path in find_temporaries(folder)]
    assert not left, f'temporaries left behind: {left}'


def write_ptychodus_pair(npz: Path, directory: Path, pixel_size_m: float = 2e-8) -> Path:
    """Write ``diffraction.h5`` + ``product.h5`` from an NPZ with Ptychodus' own writers.

    Patterns are stored as integer detector counts (what a beamline delivers); positions in
    metres about an object centred at the origin.
    """
    from ptychodus.api.assemble import AssembledDiffractionData
    from ptychodus.api.geometry import PixelGeometry
    from ptychodus.api.io import save_diffraction_data, save_product
    from ptychodus.api.object import Object, ObjectCenter
    from ptychodus.api.probe import ProbeSequence
    from ptychodus.api.probe_positions import ProbePosition, ProbePositionSequence
    from ptychodus.api.product import Product, ProductMetadata

    from ptycho.physics import PTYCHODUS_PIXEL_OFFSET

    data = np.load(npz)
    amplitude = data['diffraction']
    counts = np.rint(amplitude.astype(np.float64) ** 2).astype(np.uint32)
    M, N, _ = counts.shape
    obj = data['objectGuess']
    height, width = obj.shape
    directory.mkdir(parents=True, exist_ok=True)
    indexes = np.arange(M, dtype=np.intp)
    save_diffraction_data(directory / 'diffraction.h5', AssembledDiffractionData(
        indexes, counts, PixelGeometry(75e-6, 75e-6), np.zeros((N, N), dtype=bool)))
    # Our patch centres sit half a pixel after Ptychodus' (ptycho.physics.PTYCHODUS_PIXEL_OFFSET).
    x_m = (data['xcoords'] - PTYCHODUS_PIXEL_OFFSET - (width - 1) / 2) * pixel_size_m
    y_m = (data['ycoords'] - PTYCHODUS_PIXEL_OFFSET - (height - 1) / 2) * pixel_size_m
    pixel = PixelGeometry(pixel_size_m, pixel_size_m)
    product = Product(
        metadata=ProductMetadata(name='test scan', comments='', detector_distance_m=1.0,
                                 photon_energy_eV=10000.0, probe_photon_count=0.0,
                                 exposure_time_s=0.0, mass_attenuation_m2_per_kg=0.0,
                                 tomography_angle_deg=0.0),
        probe_positions=ProbePositionSequence(
            [ProbePosition(int(i), float(x), float(y)) for i, x, y in zip(indexes, x_m, y_m)]),
        probes=ProbeSequence(array=data['probeGuess'].astype(np.complex64), opr_weights=None,
                             pixel_geometry=pixel),
        object_=Object(array=obj.astype(np.complex64), pixel_geometry=pixel,
                       center=ObjectCenter(0.0, 0.0)),
        losses=[],
    )
    save_product(directory / 'product.h5', product)
    return directory
