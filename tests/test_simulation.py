"""ptycho.simulation: seeded, physically consistent synthetic datasets."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from ptycho import physics, simulation
from ptycho.raw_data import RawData

SMALL = dict(N=32, n_positions=40, nphotons=1e6)


@pytest.fixture(scope='module')
def small_raw() -> RawData:
    return simulation.simulate_dataset(**SMALL, seed=3)


def test_same_seed_same_data_different_seed_different_data(small_raw):
    again = simulation.simulate_dataset(**SMALL, seed=3)
    np.testing.assert_array_equal(small_raw.diff3d, again.diff3d)
    np.testing.assert_array_equal(small_raw.xcoords, again.xcoords)
    np.testing.assert_array_equal(small_raw.objectGuess, again.objectGuess)
    other = simulation.simulate_dataset(**SMALL, seed=4)
    assert not np.allclose(other.objectGuess, small_raw.objectGuess)


def test_object_is_independent_of_scan_length():
    a = simulation.simulate_arrays(N=32, n_positions=20, object_size=80, seed=5, poisson=False)
    b = simulation.simulate_arrays(N=32, n_positions=60, object_size=80, seed=5, poisson=False)
    np.testing.assert_array_equal(a.object, b.object)


def test_raw_data_is_valid_and_round_trips(small_raw, tmp_path):
    raw = small_raw
    assert len(raw) == SMALL['n_positions'] and raw.N == SMALL['N']
    assert raw.diff3d.dtype == np.float32 and raw.diff3d.shape == (40, 32, 32)
    assert raw.probeGuess.dtype == np.complex64 and raw.probeGuess.shape == (32, 32)
    assert raw.objectGuess is not None and raw.objectGuess.dtype == np.complex64
    assert np.all(raw.diff3d >= 0) and np.all(np.isfinite(raw.diff3d))
    np.testing.assert_array_equal(raw.xcoords_start, raw.xcoords)
    assert np.all(raw.scan_index == 0)
    back = RawData.from_file(raw.to_file(tmp_path / 'sim.npz'))
    for key in ('xcoords', 'ycoords', 'diff3d', 'probeGuess', 'objectGuess', 'scan_index'):
        np.testing.assert_array_equal(getattr(back, key), getattr(raw, key))


@pytest.mark.parametrize('scan', simulation.SCAN_KINDS)
def test_positions_keep_patches_inside_the_object(scan):
    N = 32
    sim = simulation.simulate_arrays(N=N, n_positions=50, scan=scan, seed=1, poisson=False)
    size = sim.object.shape[0]
    assert sim.positions_xy.shape == (50, 2)
    assert sim.positions_xy.min() >= N / 2
    assert sim.positions_xy.max() <= size - N / 2 - 1
    spread = sim.positions_xy.max(axis=0) - sim.positions_xy.min(axis=0)
    assert np.all(spread > 0.7 * (size - N - 1))  # the scan covers the object
    assert len(np.unique(sim.positions_xy, axis=0)) == 50


def test_default_scan_overlaps_well():
    sim = simulation.simulate_arrays(N=64, n_positions=200, seed=0, poisson=False)
    step = np.median(np.min(np.hypot(*(sim.positions_xy[:, None] - sim.positions_xy[None])
                                     .transpose(2, 0, 1)) + 1e9 * np.eye(200), axis=1))
    assert step < 0.5 * simulation.PROBE_DIAMETER_FRACTION * 64


@pytest.mark.parametrize('kind', simulation.PROBE_KINDS)
def test_probe_power_and_support(kind):
    probe = simulation.make_probe(kind, 64, nphotons=1e9)
    assert np.sum(np.abs(probe) ** 2) == pytest.approx(1e9, rel=1e-9)
    assert simulation.probe_energy_fraction(probe) > 0.98  # inside the network's N/2 window
    power = np.abs(probe) ** 2
    rows, cols = np.indices(power.shape)
    assert np.sum(rows * power) / power.sum() == pytest.approx(32, abs=0.5)  # centred at N/2
    assert np.sum(cols * power) / power.sum() == pytest.approx(32, abs=0.5)


def test_focused_probe_has_rings_and_curvature():
    probe = simulation.make_probe('focused', 64)
    profile = np.abs(probe[32, 32:52])
    assert np.any((profile[1:-1] < profile[:-2]) & (profile[1:-1] < profile[2:]))  # a ring
    assert np.ptp(np.angle(probe[32, 26:39])) > 0.3  # not a flat wavefront


@pytest.mark.parametrize('kind', simulation.OBJECT_KINDS)
def test_objects_carry_amplitude_and_phase_structure(kind):
    obj = simulation.make_object(kind, 128, np.random.default_rng(0), N=32)
    amp, phase = np.abs(obj), np.angle(obj)
    assert 0.45 <= amp.min() and amp.max() <= 1.0 + 1e-9 and np.ptp(amp) > 0.3
    assert -1.0 - 1e-9 <= phase.min() and phase.max() <= 1.0 + 1e-9 and np.ptp(phase) > 0.8
    correlation = abs(np.corrcoef(amp.ravel(), phase.ravel())[0, 1])
    assert 0.05 < correlation < 0.95  # related, not the same map


def test_counts_per_pattern_match_nphotons():
    nphotons = 1e7
    sim = simulation.simulate_arrays(N=32, n_positions=30, nphotons=nphotons, seed=2)
    counts = (sim.diffraction ** 2).sum(axis=(1, 2))
    patches = physics.extract_patches_fast(sim.object, sim.positions_xy, 32)
    expected = (np.abs(sim.probe * patches) ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose(counts, expected, rtol=5e-3)  # Poisson noise only
    assert np.all((counts > 0.25 * nphotons) & (counts < 1.0001 * nphotons))
    # a unit object would give exactly nphotons
    unit = physics.forward_amplitude(np.ones((32, 32)), sim.probe)
    assert (unit ** 2).sum() == pytest.approx(nphotons, rel=1e-9)
    # and the counts are integers
    np.testing.assert_allclose(sim.diffraction ** 2, np.round(sim.diffraction ** 2), atol=1e-4)


def test_fast_extraction_matches_reference():
    sim = simulation.simulate_arrays(N=32, n_positions=5, seed=7, poisson=False)
    np.testing.assert_allclose(
        physics.extract_patches_fast(sim.object, sim.positions_xy, 32),
        physics.extract_patches(sim.object, sim.positions_xy, 32), rtol=0, atol=1e-12)
    # patches reaching past the edge take the zero-filled general path, as the reference
    edge = np.array([[2.5, 3.25], [sim.object.shape[1] - 4.5, 16.0]])
    np.testing.assert_allclose(physics.extract_patches_fast(sim.object, edge, 32),
                               physics.extract_patches(sim.object, edge, 32), atol=1e-12)
    np.testing.assert_allclose(sim.diffraction, physics.forward_amplitude(
        physics.extract_patches(sim.object, sim.positions_xy, 32), sim.probe), rtol=1e-12)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match='object_kind'):
        simulation.simulate_arrays(object_kind='cat')
    with pytest.raises(ValueError, match='probe_kind'):
        simulation.simulate_arrays(probe_kind='laser')
    with pytest.raises(ValueError, match='scan'):
        simulation.simulate_arrays(scan='zigzag')
    with pytest.raises(ValueError, match='N must be an even integer'):
        simulation.simulate_arrays(N=33)
    with pytest.raises(ValueError, match='object_size'):
        simulation.simulate_arrays(N=32, object_size=20)
    with pytest.raises(ValueError, match='n_positions'):
        simulation.simulate_arrays(n_positions=0)
    with pytest.raises(ValueError, match='nphotons'):
        simulation.simulate_arrays(nphotons=-1.0)


def test_standard_dataset_definition():
    assert dataclasses.is_dataclass(simulation.STANDARD)
    with pytest.raises(dataclasses.FrozenInstanceError):
        simulation.STANDARD.N = 128  # type: ignore[misc]
    assert simulation.STANDARD.object_size == simulation.default_object_size(
        simulation.STANDARD.N, simulation.STANDARD.n_positions)
    train = simulation.standard_dataset('train', n_positions=20)
    test = simulation.standard_dataset('test', n_positions=20)
    assert train.objectGuess.shape == test.objectGuess.shape == (352, 352)
    assert not np.allclose(train.objectGuess, test.objectGuess)
    assert train.N == 64 and len(train) == 20
    with pytest.raises(ValueError, match='split'):
        simulation.standard_dataset('validation')


def test_preview_png_is_written_atomically(small_raw, tmp_path):
    path = simulation.write_preview_png(small_raw, tmp_path / 'out' / 'preview.png')
    assert path.exists() and path.stat().st_size > 1024
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert sorted(p.name for p in path.parent.iterdir()) == ['preview.png']  # no temp left


def test_simulation_is_fast_enough_for_the_benchmark():
    # Correctness of the batch path at scale; the timing itself is measured in bench/.
    sim = simulation.simulate_arrays(N=64, n_positions=300, seed=0)
    assert sim.diffraction.shape == (300, 64, 64)
    assert math.isfinite(float(sim.diffraction.sum()))
