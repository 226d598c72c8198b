"""Conventions real files bring (specs/data_contracts.md section 8): each detected and fixed
where the data tell, each an explicit option where they do not, inputs never modified."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from ptycho.cli import build_parser
from ptycho.cli_config import conventions_from_args
from ptycho.conventions import DataConventions, dc_at_corner
from ptycho.data_files import load_data
from ptycho.raw_data import RawData
from ptycho.simulation import simulate_dataset

N = 64


@pytest.fixture(scope='module')
def scan() -> RawData:
    return simulate_dataset(N=N, n_positions=30, nphotons=1e6, seed=7)


def _write(path: Path, scan: RawData, **changes: np.ndarray) -> Path:
    arrays = scan.to_dict()
    arrays.update(changes)
    np.savez(path, **arrays)
    return path


def _corner(stack: np.ndarray) -> np.ndarray:
    return np.fft.ifftshift(stack, axes=(-2, -1))


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# --------------------------------------------------------------------------- DC position
def test_dc_at_the_corner_is_detected_and_centred(tmp_path: Path, scan: RawData,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    bad = np.zeros((N, N), bool)
    bad[N // 2 + 3, N // 2 - 5] = True
    stored = _corner(scan.diff3d)
    path = _write(tmp_path / 'corner.npz', scan, diffraction=stored, bad_pixels=_corner(bad))
    assert dc_at_corner(stored) and not dc_at_corner(scan.diff3d)
    with caplog.at_level(logging.WARNING):
        raw = RawData.from_file(path)
    np.testing.assert_array_equal(raw.diff3d, scan.diff3d)
    np.testing.assert_array_equal(raw.bad_pixels, bad)  # the mask moves with the patterns
    [message] = [m for m in _warnings(caplog) if 'DC' in m]
    assert 'corner' in message and 'fftshift' in message and '--dc centre' in message
    with np.load(path) as data:  # the file is as it was
        np.testing.assert_array_equal(data['diffraction'], stored)


@pytest.mark.parametrize('phase', ['weak', 'strong'])
def test_dc_detection_on_experimental_probe_data(phase: str) -> None:
    """A strong-phase sample spreads the far field (about a third of the energy near the DC
    at N = 64): still told apart, both ways."""
    from ptycho.simulation import RealisticScanSpec, realistic_scan

    data = realistic_scan(RealisticScanSpec(N=N, object_kind='lines', phase=phase,
                                            scan='fermat', n_positions=24,
                                            nphotons=1e4)).diffraction
    assert not dc_at_corner(data) and dc_at_corner(_corner(data))


def test_in_memory_corner_data_are_centred_without_touching_the_input(scan: RawData) -> None:
    stored = _corner(scan.diff3d)
    before = stored.copy()
    raw = RawData(scan.xcoords, scan.ycoords, None, None, stored, scan.probeGuess, None)
    np.testing.assert_array_equal(raw.diff3d, scan.diff3d)
    np.testing.assert_array_equal(stored, before)


def test_dc_options_override_the_detection(tmp_path: Path, scan: RawData,
                                           caplog: pytest.LogCaptureFixture) -> None:
    path = _write(tmp_path / 'corner.npz', scan, diffraction=_corner(scan.diff3d))
    with caplog.at_level(logging.WARNING):
        kept = RawData.from_file(path, DataConventions(dc='centre'))
    np.testing.assert_array_equal(kept.diff3d, _corner(scan.diff3d))
    assert not _warnings(caplog)
    # 'corner' shifts whatever the detection would say
    centred = _write(tmp_path / 'centred.npz', scan)
    forced = RawData.from_file(centred, DataConventions(dc='corner'))
    np.testing.assert_array_equal(forced.diff3d, np.fft.fftshift(scan.diff3d, axes=(-2, -1)))


def test_centred_and_flat_patterns_are_left_alone(scan: RawData) -> None:
    raw = RawData(scan.xcoords, scan.ycoords, None, None, scan.diff3d, scan.probeGuess, None)
    np.testing.assert_array_equal(raw.diff3d, scan.diff3d)
    flat = np.random.default_rng(0).random((5, N, N)).astype(np.float32)
    assert not dc_at_corner(flat)
    # a ring (a central stop): neither centre nor corner dominates, nothing is done
    r = np.hypot(*np.meshgrid(np.arange(N) - N / 2, np.arange(N) - N / 2, indexing='ij'))
    ring = np.broadcast_to(((r > 14) & (r < 22)).astype(np.float32), (3, N, N))
    assert not dc_at_corner(ring)


# --------------------------------------------------------------------------- positions
def test_corner_positions_are_named_then_converted(tmp_path: Path, scan: RawData,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    path = _write(tmp_path / 'corners.npz', scan, xcoords=scan.xcoords - N / 2,
                  ycoords=scan.ycoords - N / 2, xcoords_start=scan.xcoords_start - N / 2,
                  ycoords_start=scan.ycoords_start - N / 2)
    with caplog.at_level(logging.WARNING):
        as_read = RawData.from_file(path)
    np.testing.assert_array_equal(as_read.xcoords, scan.xcoords - N / 2)  # used as read
    [message] = [m for m in _warnings(caplog) if 'objectGuess' in m]
    assert '--positions corner' in message
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        raw = RawData.from_file(path, DataConventions(positions='corner'))
    assert not _warnings(caplog)
    np.testing.assert_allclose(raw.positions_xy, scan.positions_xy)
    np.testing.assert_allclose(raw.xcoords_start, scan.xcoords_start)


def test_swapped_xy_is_named_then_exchanged(tmp_path: Path, scan: RawData,
                                            caplog: pytest.LogCaptureFixture) -> None:
    # a wide object: only one reading of x and y keeps the scan on it
    H, W = scan.objectGuess.shape
    wide = np.ones((H, 2 * W), np.complex64)
    x, y = scan.xcoords + W, scan.ycoords
    path = _write(tmp_path / 'swapped.npz', scan, objectGuess=wide, xcoords=y, ycoords=x,
                  xcoords_start=y, ycoords_start=x)
    with caplog.at_level(logging.WARNING):
        RawData.from_file(path)
    [message] = [m for m in _warnings(caplog) if 'objectGuess' in m]
    assert '--positions centre --swap-xy' in message
    raw = RawData.from_file(path, DataConventions(swap_xy=True))
    np.testing.assert_array_equal(raw.xcoords, x)
    np.testing.assert_array_equal(raw.ycoords_start, y)


# --------------------------------------------------------------------------- units
def test_units_option_overrides_the_file_and_the_detection(tmp_path: Path, scan: RawData
                                                           ) -> None:
    counts = scan.diff3d.astype(np.float64) ** 2 * 0.93  # flat-field corrected: not integers
    path = _write(tmp_path / 'scaled_counts.npz', scan, diffraction=counts)
    as_amplitude = RawData.from_file(path)  # marked 'amplitude' by to_dict, not whole numbers
    np.testing.assert_allclose(as_amplitude.diff3d, counts, rtol=1e-6)
    converted = RawData.from_file(path, DataConventions(units='counts'))
    np.testing.assert_allclose(converted.diff3d, np.sqrt(counts), rtol=1e-6)
    ones = _write(tmp_path / 'integer_amplitude.npz', scan,
                  diffraction=np.round(scan.diff3d).astype(np.float32),
                  diffraction_units=np.array('auto'))
    with pytest.warns(UserWarning, match='counts'):
        RawData.from_file(ones)  # whole numbers above 1: taken for counts
    kept = RawData.from_file(ones, DataConventions(units='amplitude'))
    np.testing.assert_array_equal(kept.diff3d, np.round(scan.diff3d))


# --------------------------------------------------------------------------- command line
def test_flags_build_the_conventions_and_ptychodus_input_refuses_them(tmp_path: Path) -> None:
    for command in (['train'], ['infer'], ['evaluate', '--reconstruction', 'r.npz']):
        args = build_parser().parse_args([*command, '--dc', 'corner', '--positions', 'corner',
                                          '--swap-xy', '--diffraction-units', 'counts'])
        assert conventions_from_args(args) == DataConventions('corner', 'corner', True,
                                                              'counts')
        assert conventions_from_args(build_parser().parse_args(command)).is_contract
    with pytest.raises(ValueError, match='NPZ files only'):
        load_data(tmp_path / 'diffraction.h5', DataConventions(positions='corner'))
    with pytest.raises(ValueError, match='DataConventions.dc'):
        DataConventions(dc='middle')
