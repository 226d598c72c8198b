"""ptycho.simulation's beamline-realistic scans: probe, perturbation, photons, errors, splits."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from ptycho import physics, simulation
from ptycho.raw_data import RawData
from ptycho.simulation import ProbePerturbation, RealisticScanSpec

#: A small scan (fast); the statistics tests use the preset's 500 positions.
SMALL = RealisticScanSpec(N=64, n_positions=80, nphotons=1e5)


@pytest.fixture(scope='module')
def small() -> simulation.RealisticScan:
    return simulation.realistic_scan(SMALL)


@pytest.fixture(scope='module')
def preset_train() -> simulation.RealisticScan:
    return simulation.realistic_scan(simulation.realistic_preset('siemens-weak-64-1e6'))


def _centroid(field: np.ndarray) -> np.ndarray:
    power = np.abs(field) ** 2
    rows, cols = np.indices(power.shape)
    return np.array([np.sum(power * cols), np.sum(power * rows)]) / np.sum(power)


def _chirped_gaussian(N: int, sigma: float, centre_xy: tuple[float, float],
                      chirp: float) -> np.ndarray:
    """exp(-r**2 / 2 sigma**2 + i chirp r**2), r from (N/2 + cx, N/2 + cy): band-limited."""
    rows, cols = np.indices((N, N), dtype=np.float64)
    r2 = (cols - N // 2 - centre_xy[0]) ** 2 + (rows - N // 2 - centre_xy[1]) ** 2
    return np.exp(-r2 / (2 * sigma ** 2) + 1j * chirp * r2)


# --------------------------------------------------------------------------- probe


def test_experimental_probe_loads_from_the_package_and_resamples_conserving_energy():
    probe128 = simulation.load_experimental_probe(128)
    probe64 = simulation.load_experimental_probe(64)
    assert probe128.shape == (128, 128) and probe64.shape == (64, 64)
    assert probe128.dtype == np.complex128
    energy128 = float(np.sum(np.abs(probe128) ** 2))
    energy64 = float(np.sum(np.abs(probe64) ** 2))
    assert 0.99 * energy128 <= energy64 <= energy128  # only the far field beyond the crop goes
    # The pixel doubles: a centroid (x, y) at 128 sits at N/2 + (c - 64)/2 at 64.
    expected = 32 + (_centroid(probe128) - 64) / 2
    np.testing.assert_allclose(_centroid(probe64), expected, atol=0.05)
    assert np.all(np.abs(_centroid(probe128) - 64) < 4)  # about 2 px off centre (README)
    assert simulation.probe_energy_fraction(probe64) > 0.95  # fits the network's support


def test_resampling_a_band_limited_gaussian_halves_it_on_the_coarse_grid():
    fine = _chirped_gaussian(128, 6.0, (3.0, -2.0), 0.002)
    coarse = simulation.resample_probe(fine, 64)
    # The same physical field on pixels twice as large: lengths halve, r**2 quarters, and
    # the values double (a quarter of the pixels carry the same power).
    reference = 2.0 * _chirped_gaussian(64, 3.0, (1.5, -1.0), 0.008)
    np.testing.assert_allclose(coarse, reference, atol=1e-6)
    np.testing.assert_array_equal(simulation.resample_probe(fine, 128), fine)
    with pytest.raises(ValueError, match='resample_probe'):
        simulation.resample_probe(fine, 130)
    with pytest.raises(ValueError, match='experimental probe exists for N in'):
        simulation.load_experimental_probe(256)


# --------------------------------------------------------------------------- perturbation


def test_fourier_shift_moves_content_by_plus_t():
    field = np.zeros((16, 16), dtype=np.complex128)
    field[5, 7] = 1.0
    moved = simulation.fourier_shift(field, (2.0, -3.0))  # x (column) +2, y (row) -3
    np.testing.assert_allclose(moved, np.roll(field, (-3, 2), axis=(0, 1)), atol=1e-12)


def test_no_perturbation_gives_the_true_probe_and_each_part_perturbs_as_specified():
    probe = simulation.load_experimental_probe(64) * 30.0
    power = float(np.sum(np.abs(probe) ** 2))
    np.testing.assert_allclose(simulation.perturb_probe(probe, ProbePerturbation()), probe,
                               atol=1e-12 * np.abs(probe).max())

    shifted = simulation.perturb_probe(probe, ProbePerturbation(shift_xy=(0.4, -0.25)))
    np.testing.assert_allclose(shifted, simulation.fourier_shift(probe, (0.4, -0.25)),
                               atol=1e-9 * np.abs(probe).max())
    compact = _chirped_gaussian(64, 4.0, (0.0, 0.0), 0.01)  # no power at the edges to wrap
    moved = simulation.perturb_probe(compact, ProbePerturbation(shift_xy=(0.4, -0.25)))
    np.testing.assert_allclose(_centroid(moved) - _centroid(compact), (0.4, -0.25), atol=1e-6)

    defocused = simulation.perturb_probe(probe, ProbePerturbation(defocus=1.0))
    reference = simulation.fresnel_propagate(probe, 1.0)  # unitary: power unchanged
    np.testing.assert_allclose(defocused, reference, atol=1e-9 * np.abs(probe).max())

    def rms_radius(field: np.ndarray) -> float:
        p = np.abs(field) ** 2
        rows, cols = np.indices(p.shape)
        cx, cy = _centroid(field)
        return math.sqrt(float(np.sum(p * ((cols - cx) ** 2 + (rows - cy) ** 2)) / np.sum(p)))

    magnified = simulation.perturb_probe(probe, ProbePerturbation(scale=1.05))
    grown = simulation.perturb_probe(compact, ProbePerturbation(scale=1.05))
    assert rms_radius(grown) / rms_radius(compact) == pytest.approx(1.05, abs=1e-3)

    for guess in (shifted, defocused, magnified):
        assert float(np.sum(np.abs(guess) ** 2)) == pytest.approx(power, rel=1e-9)
        assert simulation.probe_relative_error(guess, probe) > 0.05
    # The error ignores a global complex factor, which the data cannot fix.
    assert simulation.probe_relative_error(probe * 2j, probe) < 1e-12


def test_scan_probe_guess_is_the_typical_perturbation_of_the_true_probe(small):
    expected = simulation.perturb_probe(small.probe, ProbePerturbation.typical(64))
    np.testing.assert_allclose(small.probe_guess, expected, atol=1e-9)
    assert 0.3 < small.probe_error < 0.7
    exact = simulation.realistic_scan(dataclasses.replace(SMALL, probe_error=ProbePerturbation()))
    assert exact.probe_error < 1e-12


# --------------------------------------------------------------------------- data


def test_photons_per_pattern_match_the_request(preset_train):
    scan, spec = preset_train, preset_train.spec
    assert float(np.sum(np.abs(scan.probe) ** 2)) == pytest.approx(spec.nphotons, rel=1e-9)
    good = ~scan.bad_pixels
    patches = physics.extract_patches_fast(scan.object, scan.positions_true, spec.N)
    expected = physics.forward_amplitude(patches, scan.probe) ** 2
    expected_total = float(np.sum(expected[:, good]))
    measured = scan.diffraction.astype(np.float64) ** 2
    np.testing.assert_allclose(measured, np.round(measured), rtol=1e-6)  # whole counts
    # Poisson: the sum of all good pixels has std sqrt(mean).
    assert abs(float(np.sum(measured[:, good])) - expected_total) < 5 * math.sqrt(expected_total)
    per_pattern = expected_total / len(expected)
    assert 0.9 * spec.nphotons < per_pattern < 1.1 * spec.nphotons  # unit-mean weak object


def test_position_errors_have_the_requested_std():
    for std in (1.0, 2.5):
        scan = simulation.realistic_scan(RealisticScanSpec(N=64, n_positions=500,
                                                           position_error_std=std, seed=3))
        error = scan.positions_given - scan.positions_true
        np.testing.assert_allclose(error.std(axis=0), std, rtol=0.1)
        assert np.all(np.abs(error.mean(axis=0)) < 4 * std / math.sqrt(500))
    exact = simulation.realistic_scan(dataclasses.replace(SMALL, position_error_std=0.0))
    np.testing.assert_array_equal(exact.positions_given, exact.positions_true)


def test_scan_density_and_object_fit(preset_train):
    scan, spec = preset_train, preset_train.spec
    positions = scan.positions_true
    assert positions.shape == (500, 2)
    assert spec.step == pytest.approx(64 / 9)
    nearest = np.sort(np.hypot(*(positions[:, None, :] - positions[None, :, :]).T), axis=0)[1]
    assert np.median(nearest) == pytest.approx(spec.step, rel=0.2)
    size = scan.object.shape[0]
    assert positions.min() >= spec.N / 2 and positions.max() <= size - spec.N / 2 - 1
    fermat = simulation.realistic_positions('fermat', 500, 7.0, 0.0, np.random.default_rng(0))
    hull_area = math.pi * (np.hypot(*fermat.T).max()) ** 2
    assert hull_area / 500 == pytest.approx(49.0, rel=0.05)  # step**2 of area per position


def test_bad_pixels_are_where_the_mask_says(small):
    clean = simulation.realistic_scan(dataclasses.replace(SMALL, n_bad_pixels=0))
    mask = small.bad_pixels
    assert mask.shape == (64, 64) and int(mask.sum()) == SMALL.n_bad_pixels
    assert clean.bad_pixels.sum() == 0
    changed = np.any(small.diffraction != clean.diffraction, axis=0)
    assert np.all(changed <= mask)  # nothing outside the mask differs
    dead = mask & np.all(small.diffraction == 0, axis=0)
    hot = mask & ~dead
    assert dead.sum() == 3 and hot.sum() == 3
    hot_level = max(simulation.HOT_PIXEL_MIN_COUNTS, simulation.HOT_PIXEL_FRACTION * 1e5)
    extra = small.diffraction[:, hot].astype(np.float64) ** 2 - clean.diffraction[:, hot] ** 2
    assert float(extra.mean()) == pytest.approx(hot_level, rel=0.1)
    radius = np.hypot(*(np.argwhere(mask) - 32).T)
    assert np.all(radius >= 64 * simulation.BAD_PIXEL_MIN_RADIUS)


@pytest.mark.parametrize('phase', ['weak', 'strong'])
def test_objects_have_the_stated_ranges(phase):
    strength = simulation.PHASE_STRENGTHS[phase]
    for kind in simulation.REALISTIC_OBJECT_KINDS:
        obj = simulation.make_realistic_object(kind, 120, phase, np.random.default_rng(1))
        amplitude, angle = np.abs(obj), np.angle(obj)
        assert amplitude.min() == pytest.approx(strength.amplitude_low, abs=1e-9)
        assert amplitude.max() == pytest.approx(strength.amplitude_high, abs=1e-9)
        assert angle.max() - angle.min() == pytest.approx(strength.phase_span, abs=1e-9)
        # Phase and absorption share the thickness: strongly (anti)correlated, not equal.
        corr = np.corrcoef(amplitude.ravel(), angle.ravel())[0, 1]
        assert abs(corr) > 0.5, kind


def test_train_and_test_are_different_scans_of_the_same_sample_kind(small):
    test = simulation.realistic_scan(dataclasses.replace(SMALL, split='test'))
    assert not np.allclose(test.object, small.object)
    assert not np.allclose(test.positions_true, small.positions_true)
    np.testing.assert_array_equal(test.probe, small.probe)  # one beamline, one probe
    np.testing.assert_array_equal(test.probe_guess, small.probe_guess)
    np.testing.assert_array_equal(test.bad_pixels, small.bad_pixels)  # one detector
    # The texture's splits read disjoint halves of one image, whatever the random stream.
    a, b = (simulation.make_realistic_object('texture', 100, 'weak', np.random.default_rng(5),
                                             split=split) for split in ('train', 'test'))
    assert abs(np.corrcoef(np.angle(a).ravel(), np.angle(b).ravel())[0, 1]) < 0.3
    train = simulation.realistic_preset('lines-weak-64-1e4')
    assert simulation.realistic_preset('lines-weak-64-1e4', 'test') == \
        dataclasses.replace(train, split='test')


def test_same_spec_same_scan_other_seed_other_scan(small):
    again = simulation.realistic_scan(SMALL)
    for key in ('object', 'probe', 'probe_guess', 'positions_true', 'positions_given',
                'diffraction', 'bad_pixels'):
        np.testing.assert_array_equal(getattr(again, key), getattr(small, key))
    other = simulation.realistic_scan(dataclasses.replace(SMALL, seed=SMALL.seed + 1))
    assert not np.array_equal(other.diffraction, small.diffraction)
    assert not np.array_equal(other.bad_pixels, small.bad_pixels)


def test_raw_data_is_what_a_user_has_and_passes_validation(small, tmp_path):
    raw = small.raw_data()
    assert isinstance(raw, RawData) and len(raw) == SMALL.n_positions and raw.N == 64
    np.testing.assert_array_equal(raw.xcoords, small.positions_given[:, 0])
    np.testing.assert_array_equal(raw.ycoords, small.positions_given[:, 1])
    np.testing.assert_array_equal(raw.probeGuess, small.probe_guess.astype(np.complex64))
    np.testing.assert_array_equal(raw.bad_pixels, small.bad_pixels)
    assert raw.objectGuess is not None
    raw.generate_grouped_data(64, K=7, nsamples=1, gridsize=2)

    path = small.to_file(tmp_path / 'scan.npz')
    back = RawData.from_file(path)
    for key in ('xcoords', 'ycoords', 'diff3d', 'probeGuess', 'objectGuess', 'bad_pixels'):
        np.testing.assert_array_equal(getattr(back, key), getattr(raw, key))
    with np.load(path) as data:
        np.testing.assert_array_equal(data['probe_true'], small.probe.astype(np.complex64))
        np.testing.assert_array_equal(data['xcoords_true'], small.positions_true[:, 0])
        assert json.loads(str(data['realistic_spec']))['nphotons'] == SMALL.nphotons


def test_presets_and_dataset():
    assert 'siemens-weak-64-1e6' in simulation.REALISTIC_PRESETS
    assert len(simulation.REALISTIC_PRESETS) == 36
    for name, spec in simulation.REALISTIC_PRESETS.items():
        kind, phase, N, photons = name.split('-')
        assert (spec.object_kind, spec.phase, spec.N, spec.nphotons) == \
            (kind, phase, int(N), float(photons))
        assert spec.n_positions == 500 and spec.split == 'train'
    raw = simulation.realistic_dataset('texture-strong-64-1e4', 'test')
    assert len(raw) == 500 and raw.N == 64
    with pytest.raises(ValueError, match='realistic preset must be one of'):
        simulation.realistic_preset('nonsense')


@pytest.mark.parametrize('change, message', [
    (dict(N=32), 'N must be one of'), (dict(object_kind='cat'), 'object_kind'),
    (dict(phase='medium'), 'phase'), (dict(scan='random'), 'scan'),
    (dict(split='val'), 'split'), (dict(n_positions=0), 'n_positions'),
    (dict(nphotons=-1.0), 'nphotons'), (dict(jitter=0.7), 'jitter'),
    (dict(position_error_std=float('nan')), 'position_error_std'),
    (dict(step=0.0), 'step'), (dict(n_bad_pixels=-1), 'n_bad_pixels'),
    (dict(probe_error='x'), 'probe_error'),
])
def test_bad_specs_are_refused_by_name(change, message):
    with pytest.raises(ValueError, match=message):
        RealisticScanSpec(**change)
    with pytest.raises(ValueError, match='scale'):
        ProbePerturbation(scale=0.0)


# --------------------------------------------------------------------------- command line


def test_cli_preset_names_match_the_simulation_module():
    from ptycho.cli.simulate import realistic_choices

    assert realistic_choices() == tuple(simulation.REALISTIC_PRESETS)


def test_cli_simulate_realistic_writes_the_preset_and_refuses_idealised_flags(tmp_path, capsys):
    from ptycho.cli import main

    out = tmp_path / 'scan.npz'
    assert main(['simulate', '--realistic', 'lines-strong-64-1e4', '--split', 'test',
                 '-o', str(out)]) == 0
    raw = RawData.from_file(out)
    expected = simulation.realistic_dataset('lines-strong-64-1e4', 'test')
    np.testing.assert_array_equal(raw.diff3d, expected.diff3d)
    np.testing.assert_array_equal(raw.probeGuess, expected.probeGuess)
    assert out.with_suffix('.png').exists()
    assert main(['simulate', '--realistic', 'lines-strong-64-1e4', '--N', '128',
                 '-o', str(tmp_path / 'x.npz')]) == 2
    assert main(['simulate', '--split', 'test', '-o', str(tmp_path / 'y.npz')]) == 2
    assert 'drop --N' in capsys.readouterr().err
    assert not (tmp_path / 'x.npz').exists() and not (tmp_path / 'y.npz').exists()
