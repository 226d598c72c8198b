"""RawData: the NPZ contract, its error messages, counts handling, and grouping."""

from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest

from ptycho import physics
from ptycho.physics import extract_patches_fast
from ptycho.raw_data import CountsConversionWarning, DataContractError, RawData

N = 8
M = 12


def _arrays(M: int = M, N: int = N, seed: int = 0) -> dict[str, np.ndarray]:
    """A small valid dataset on a 4 x 3 grid of positions (amplitudes, not counts)."""
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.arange(4) * 3.0 + 10, np.arange(M // 4) * 3.0 + 10)
    probe = (rng.random((N, N)) + 0.5) * np.exp(1j * rng.random((N, N)))
    return {
        'xcoords': gx.ravel()[:M] + 0.25,
        'ycoords': gy.ravel()[:M] - 0.5,
        'diffraction': (rng.random((M, N, N)) * 3 + 0.1).astype(np.float32),
        'probeGuess': probe.astype(np.complex64),
        'objectGuess': (rng.random((40, 40)) * np.exp(1j * rng.random((40, 40)))).astype(np.complex64),
        'scan_index': np.zeros(M, dtype=np.int64),
    }


def _write(path: Path, **arrays: np.ndarray) -> Path:
    with open(path, 'wb') as handle:
        np.savez(handle, **arrays)
    return path


def _raw(**overrides) -> RawData:
    a = {**_arrays(), **overrides}
    return RawData(a['xcoords'], a['ycoords'], None, None, a['diffraction'], a['probeGuess'],
                   a['scan_index'], objectGuess=a['objectGuess'])


# ---------------------------------------------------------------- malformed files

def _drop(key):
    def edit(a):
        del a[key]
    return edit


def _set(key, value_fn):
    def edit(a):
        a[key] = value_fn(a)
    return edit


def _nan(a):
    a['diffraction'] = a['diffraction'].copy()
    a['diffraction'][3, 2, 2] = np.nan


MALFORMED = [
    ('no_diffraction', _drop('diffraction'), ['diffraction', 'diff3d', 'keys']),
    ('no_xcoords', _drop('xcoords'), ['xcoords', 'required']),
    ('no_probe', _drop('probeGuess'), ['probeGuess']),
    ('diff_2d', _set('diffraction', lambda a: a['diffraction'][0]), ['diffraction', '3-D', 'shape (8, 8)']),
    ('diff_nonsquare', _set('diffraction', lambda a: a['diffraction'][:, :, :6]), ['diffraction', 'square', '(12, 8, 6)']),
    ('coords_short', _set('ycoords', lambda a: a['ycoords'][:-1]), ['ycoords', '12 positions', '11']),
    ('diff_count', _set('diffraction', lambda a: a['diffraction'][:-2]), ['diffraction', '12 patterns', '10 patterns']),
    ('scan_index_len', _set('scan_index', lambda a: a['scan_index'][:5]), ['scan_index', '12 integers', '(5,)']),
    ('nan_diffraction', _nan, ['diffraction', 'finite', '1 NaN/Inf']),
    ('inf_coords', _set('ycoords', lambda a: np.where(np.arange(M) == 4, np.inf, a['ycoords'])), ['ycoords', 'finite']),
    ('nan_probe', _set('probeGuess', lambda a: np.full((N, N), np.nan, np.complex64)), ['probeGuess', 'finite']),
    ('negative', _set('diffraction', lambda a: a['diffraction'] - 1.0), ['diffraction', 'non-negative', 'negative value']),
    ('complex_diff', _set('diffraction', lambda a: a['diffraction'].astype(np.complex64)), ['diffraction', 'not complex', 'complex64']),
    ('probe_size', _set('probeGuess', lambda a: np.ones((16, 16), np.complex64)), ['probeGuess', '(8, 8)', '(16, 16)']),
    ('probe_4d_wrong', _set('probeGuess', lambda a: np.ones((1, 1, 1, N, N, 1), np.complex64)), ['probeGuess', 'shape (N, N)']),
    ('zero_probe', _set('probeGuess', lambda a: np.zeros((N, N), np.complex64)), ['probeGuess', 'non-zero power']),
    ('empty', lambda a: a.update(xcoords=np.zeros(0), ycoords=np.zeros(0), scan_index=np.zeros(0, int),
                                 diffraction=np.zeros((0, N, N), np.float32)), ['xcoords', 'non-empty', 'shape (0,)']),
    ('coords_2d', _set('xcoords', lambda a: a['xcoords'][:, None]), ['xcoords', '1-D', '(12, 1)']),
    ('object_1d', _set('objectGuess', lambda a: np.ones(40, np.complex64)), ['objectGuess', '2-D', '(40,)']),
    ('string_coords', _set('xcoords', lambda a: np.array(['a'] * M)), ['xcoords', 'dtype <U1']),
    ('bad_pixels_shape', _set('bad_pixels', lambda a: np.zeros((4, 4), bool)), ['bad_pixels', '(8, 8)', '(4, 4)']),
]


@pytest.mark.parametrize('name, edit, fragments', MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_file_names_file_key_and_problem(tmp_path, name, edit, fragments):
    arrays = _arrays()
    edit(arrays)
    path = _write(tmp_path / f'{name}.npz', **arrays)
    with pytest.raises(ValueError) as info:
        RawData.from_file(path)
    message = str(info.value)
    assert isinstance(info.value, DataContractError)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    if 'required' not in fragments and name != 'no_diffraction':
        assert 'expected' in message and 'found' in message


def _valid_bytes(tmp_path: Path) -> bytes:
    return _write(tmp_path / 'valid.npz', **_arrays()).read_bytes()


def test_truncated_archive(tmp_path):
    path = tmp_path / 'truncated.npz'
    path.write_bytes(_valid_bytes(tmp_path)[:900])
    with pytest.raises(ValueError, match='truncated') as info:
        RawData.from_file(path)
    assert str(path) in str(info.value)


def test_corrupt_member_crc(tmp_path):
    data = bytearray(_valid_bytes(tmp_path))
    marker = data.find(b'diffraction.npy')
    data[marker + 400] ^= 0xFF  # inside the stored diffraction array
    path = tmp_path / 'corrupt.npz'
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match='corrupt') as info:
        RawData.from_file(path)
    assert str(path) in str(info.value) and 'diffraction' in str(info.value)


def test_not_an_npz(tmp_path):
    text = tmp_path / 'notes.txt'
    text.write_text('hello')
    single = tmp_path / 'single.npy'
    np.save(single, np.ones(3))
    for path in (text, single):
        with pytest.raises(ValueError, match='not a zip archive') as info:
            RawData.from_file(path)
        assert str(path) in str(info.value)
    with pytest.raises(ValueError, match='file not found'):
        RawData.from_file(tmp_path / 'missing.npz')
    with pytest.raises(ValueError, match='directory'):
        RawData.from_file(tmp_path)


def test_pickled_object_array_refused(tmp_path):
    arrays = _arrays()
    arrays['probeGuess'] = np.array([{'a': 1}], dtype=object)
    path = _write(tmp_path / 'pickled.npz', **arrays)
    with pytest.raises(ValueError, match='pickled') as info:
        RawData.from_file(path)
    assert 'probeGuess' in str(info.value) and str(path) in str(info.value)


# ---------------------------------------------------------------- happy paths

def test_round_trip_is_lossless_including_optional_keys(tmp_path):
    a = _arrays()
    rng = np.random.default_rng(3)
    stack = (rng.random((3, N, N)) + 1j * rng.random((3, N, N))).astype(np.complex64)
    bad = np.zeros((N, N), bool)
    bad[1, 2] = True
    raw = RawData(a['xcoords'], a['ycoords'], a['xcoords'] + 0.5, a['ycoords'] - 0.5,
                  a['diffraction'], stack, np.arange(M) % 2, objectGuess=a['objectGuess'],
                  Y=(rng.random((M, N, N)) + 0j).astype(np.complex64), norm_Y_I=2.5,
                  source='memory', bad_pixels=bad)
    path = raw.to_file(tmp_path / 'sub' / 'out.npz')
    assert path == tmp_path / 'sub' / 'out.npz'
    assert [p.name for p in path.parent.iterdir()] == ['out.npz']  # no temp file left
    back = RawData.from_file(str(path))
    for key in ('xcoords', 'ycoords', 'xcoords_start', 'ycoords_start', 'diff3d', 'probeGuess',
                'probe_modes', 'scan_index', 'objectGuess', 'Y', 'bad_pixels'):
        mine, theirs = getattr(raw, key), getattr(back, key)
        assert theirs.dtype == mine.dtype, key
        np.testing.assert_array_equal(theirs, mine, err_msg=key)
    assert back.norm_Y_I == 2.5
    # A second write of the re-read data gives the same arrays again.
    again = RawData.from_file(back.to_file(tmp_path / 'again.npz'))
    np.testing.assert_array_equal(again.probeGuess, raw.probeGuess)


def test_round_trip_keeps_integral_amplitudes(tmp_path):
    """Amplitudes that happen to be integers must not be square-rooted again on reload."""
    a = _arrays()
    twos = np.full((M, N, N), 2.0, np.float32)
    with pytest.warns(CountsConversionWarning):  # auto mode alone would take them for counts
        RawData(a['xcoords'], a['ycoords'], None, None, twos, a['probeGuess'], None)
    amp = RawData(a['xcoords'], a['ycoords'], None, None, twos, a['probeGuess'], None,
                  diffraction_units='amplitude')
    np.testing.assert_array_equal(amp.diff3d, 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        back = RawData.from_file(amp.to_file(tmp_path / 'ints.npz'))
    np.testing.assert_array_equal(back.diff3d, 2.0)


def test_loading_leaves_file_and_arrays_untouched(tmp_path):
    a = _arrays()
    counts = np.random.default_rng(1).poisson(4, (M, N, N)).astype(np.uint16)
    path = _write(tmp_path / 'ptychodus.npz', xcoords=a['xcoords'], ycoords=a['ycoords'],
                  diff3d=counts, probeGuess=a['probeGuess'][None])
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    mtime = path.stat().st_mtime_ns
    with pytest.warns(CountsConversionWarning):
        RawData.from_file(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert path.stat().st_mtime_ns == mtime

    before = {k: v.copy() for k, v in a.items()}
    raw = _raw(**a)
    for key, value in a.items():
        np.testing.assert_array_equal(value, before[key])
    assert not np.shares_memory(raw.diff3d, a['diffraction'])
    assert not np.shares_memory(raw.xcoords, a['xcoords'])
    raw.diff3d[:] = 0
    np.testing.assert_array_equal(a['diffraction'], before['diffraction'])


def test_ptychodus_style_file_counts_become_amplitude(tmp_path, caplog):
    """The exact keys Ptychodus 1.7.0's save_ptychopinn_training_data writes."""
    a = _arrays()
    counts = np.random.default_rng(2).poisson(9, (M, N, N)).astype(np.int32)
    modes = np.stack([a['probeGuess'], 0.1 * a['probeGuess']])
    path = _write(tmp_path / 'train_data.npz', xcoords=a['xcoords'], ycoords=a['ycoords'],
                  xcoords_start=a['xcoords'], ycoords_start=a['ycoords'], diff3d=counts,
                  bad_pixels=np.zeros((N, N), bool), probeGuess=modes,
                  objectGuess=a['objectGuess'], scan_index=np.zeros(M, dtype=int))
    with caplog.at_level(logging.WARNING), pytest.warns(CountsConversionWarning, match='sqrt'):
        raw = RawData.from_file(path)
    assert 'detector counts' in caplog.text
    assert raw.diff3d.dtype == np.float32 and raw.diff3d.shape == (M, N, N)
    np.testing.assert_allclose(raw.diff3d, np.sqrt(counts), rtol=1e-6)
    assert raw.probeGuess.shape == (N, N) and raw.probe_modes.shape == (2, N, N)
    assert raw.bad_pixels.dtype == bool


def test_counts_heuristic():
    a = _arrays()
    args = (a['xcoords'], a['ycoords'], None, None)
    integral = np.random.default_rng(4).poisson(5, (M, N, N)).astype(np.float64)
    with pytest.warns(CountsConversionWarning):
        raw = RawData(*args, integral, a['probeGuess'], None)
    np.testing.assert_allclose(raw.diff3d, np.sqrt(integral), rtol=1e-6)
    binary = (integral > 5).astype(np.float32)  # 0/1 amplitudes: not obviously counts
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        np.testing.assert_array_equal(RawData(*args, binary, a['probeGuess'], None).diff3d, binary)
        np.testing.assert_array_equal(RawData(*args, a['diffraction'], a['probeGuess'], None).diff3d,
                                      a['diffraction'])
    with pytest.warns(CountsConversionWarning):
        forced = RawData(*args, a['diffraction'], a['probeGuess'], None, diffraction_units='counts')
    np.testing.assert_allclose(forced.diff3d, np.sqrt(a['diffraction']), rtol=1e-6)


def test_from_coords_without_pc_keyword_call():
    a = _arrays()
    counts = np.random.default_rng(5).poisson(3, (M, N, N))
    with pytest.warns(CountsConversionWarning):
        raw = RawData.from_coords_without_pc(
            xcoords=a['xcoords'], ycoords=a['ycoords'], diff3d=counts,
            probeGuess=a['probeGuess'][None], scan_index=np.zeros(M, dtype=int),
            objectGuess=a['objectGuess'])
    np.testing.assert_array_equal(raw.xcoords_start, a['xcoords'])
    assert len(raw) == M and raw.N == N and raw.objectGuess.dtype == np.complex64
    with pytest.raises(ValueError, match="from_coords_without_pc: key 'diff3d'"), \
            pytest.warns(CountsConversionWarning):
        RawData.from_coords_without_pc(a['xcoords'], a['ycoords'], counts[:3], a['probeGuess'], None)


def test_legacy_layout_is_transposed(tmp_path, caplog):
    a = _arrays()
    legacy = np.transpose(a['diffraction'], (1, 2, 0)).copy()  # (N, N, M)
    path = _write(tmp_path / 'legacy.npz', xcoords=a['xcoords'], ycoords=a['ycoords'],
                  diff3d=legacy, probeGuess=a['probeGuess'])
    with caplog.at_level(logging.WARNING):
        raw = RawData.from_file(path)
    assert 'legacy (N, N, M)' in caplog.text
    np.testing.assert_array_equal(raw.diff3d, a['diffraction'])
    np.testing.assert_array_equal(raw.scan_index, np.zeros(M))
    np.testing.assert_array_equal(raw.xcoords_start, raw.xcoords)


def test_probe_stacks_are_reduced():
    rng = np.random.default_rng(6)
    modes = (rng.random((3, N, N)) + 1j * rng.random((3, N, N))).astype(np.complex64)
    modes[1] *= 3  # strongest mode
    raw = _raw(probeGuess=modes)
    powers = np.sum(np.abs(modes.astype(np.complex128)) ** 2, axis=(1, 2))
    expected = modes[1] * np.sqrt(powers.sum() / powers[1])
    np.testing.assert_allclose(raw.probeGuess, expected, rtol=1e-5)
    np.testing.assert_allclose(np.sum(np.abs(raw.probeGuess) ** 2), powers.sum(), rtol=1e-5)
    np.testing.assert_array_equal(raw.probe_modes, modes)
    opr = np.stack([modes, modes[::-1] * 7])  # (OPR, modes, N, N): OPR 0 is used
    np.testing.assert_allclose(_raw(probeGuess=opr).probeGuess, expected, rtol=1e-5)
    real = _raw(probeGuess=np.ones((N, N)))
    assert real.probeGuess.dtype == np.complex64 and real.probe_modes is None


# ---------------------------------------------------------------- grouping

def test_grouping_gridsize_one():
    raw = _raw()
    g = raw.generate_grouped_data(N, K=0)
    assert g['diffraction'].shape == (M, N, N, 1) and g['diffraction'].dtype == np.float32
    assert g['coords_offsets'].shape == (M, 1, 2, 1) and g['coords_relative'].shape == (M, 1, 2, 1)
    np.testing.assert_array_equal(g['coords_relative'], 0)
    np.testing.assert_array_equal(np.sort(g['nn_indices'][:, 0]), np.arange(M))
    idx = g['nn_indices'][:, 0]
    np.testing.assert_array_equal(g['coords_offsets'][:, 0, 0, 0], raw.xcoords[idx])
    np.testing.assert_array_equal(g['coords_offsets'][:, 0, 1, 0], raw.ycoords[idx])
    seq = raw.generate_grouped_data(N, gridsize=1, n_groups=5, sequential_sampling=True)
    np.testing.assert_array_equal(seq['nn_indices'][:, 0], np.arange(5))
    assert raw.generate_grouped_data(N, n_groups=100)['diffraction'].shape[0] == M


def test_grouping_gridsize_two_shapes_and_consistency():
    raw = _raw()
    K = 5
    g = raw.generate_grouped_data(N, K=K, nsamples=2, seed=7, gridsize=2)
    B = 2 * M
    assert g['diffraction'].shape == (B, N, N, 4)
    assert g['coords_nn'].shape == (B, 1, 2, 4) and g['coords_offsets'].shape == (B, 1, 2, 1)
    assert g['nn_indices'].shape == (B, 4) and g['nn_indices'].dtype == np.int64
    assert g['Y'].shape == (B, N, N, 4) and g['Y'].dtype == np.complex64
    np.testing.assert_allclose(g['coords_nn'], g['coords_offsets'] + g['coords_relative'], atol=1e-12)
    np.testing.assert_allclose(g['coords_relative'].mean(axis=3), 0, atol=1e-12)
    nn = g['nn_indices']
    np.testing.assert_array_equal(g['diffraction'], np.transpose(raw.diff3d[nn], (0, 2, 3, 1)))
    np.testing.assert_array_equal(g['coords_nn'][:, 0, 0], raw.xcoords[nn])
    np.testing.assert_array_equal(g['coords_nn'][:, 0, 1], raw.ycoords[nn])
    # every seed position appears nsamples times, members are distinct near neighbours
    np.testing.assert_array_equal(np.bincount(nn[:, 0], minlength=M), 2)
    assert all(len(set(row)) == 4 for row in nn.tolist())
    pos = raw.positions_xy
    for row in nn:
        dist = np.linalg.norm(pos - pos[row[0]], axis=1)
        kth = np.sort(dist)[K]  # distance of the K-th nearest other position
        assert np.all(dist[row[1:]] <= kth + 1e-9)
    # ground-truth patches at the member positions
    ref = physics.extract_patches(raw.objectGuess, pos[nn[0]], N)
    np.testing.assert_allclose(np.transpose(g['Y'][0], (2, 0, 1)), ref, atol=1e-6)
    assert g['objectGuess'] is raw.objectGuess


def test_grouping_reproducible_and_capped():
    raw = _raw()
    a = raw.generate_grouped_data(N, K=6, seed=11, gridsize=2, nsamples=3, n_groups=20)
    b = raw.generate_grouped_data(N, K=6, seed=11, gridsize=2, nsamples=3, n_groups=20)
    c = raw.generate_grouped_data(N, K=6, seed=12, gridsize=2, nsamples=3, n_groups=20)
    assert a['nn_indices'].shape == (20, 4)
    np.testing.assert_array_equal(a['nn_indices'], b['nn_indices'])
    assert not np.array_equal(a['nn_indices'], c['nn_indices'])
    s1 = raw.generate_grouped_data(N, K=6, gridsize=2, sequential_sampling=True)
    s2 = raw.generate_grouped_data(N, K=6, gridsize=2, sequential_sampling=True)
    np.testing.assert_array_equal(s1['nn_indices'], s2['nn_indices'])
    np.testing.assert_array_equal(s1['nn_indices'][:, 0], np.arange(M))


def test_grouping_with_duplicate_positions_and_large_K():
    a = _arrays()
    x = np.repeat(a['xcoords'][:6], 2)
    y = np.repeat(a['ycoords'][:6], 2)
    raw = RawData(x, y, None, None, a['diffraction'], a['probeGuess'], None)
    g = raw.generate_grouped_data(N, K=50, seed=0, gridsize=3)
    assert g['nn_indices'].shape == (M, 9) and g['Y'] is None
    assert all(len(set(row)) == 9 for row in g['nn_indices'].tolist())


def test_grouping_errors():
    raw = _raw()
    with pytest.raises(ValueError, match='K=2 .* 3 partners'):
        raw.generate_grouped_data(N, K=2, gridsize=2)
    with pytest.raises(ValueError, match='N=16 does not match the diffraction pattern size 8'):
        raw.generate_grouped_data(16)
    with pytest.raises(ValueError, match='at least 16 scan positions'):
        raw.generate_grouped_data(N, K=20, gridsize=4)
    with pytest.raises(ValueError, match='gridsize must be an integer >= 1'):
        raw.generate_grouped_data(N, gridsize=0)
    with pytest.raises(ValueError, match='n_groups'):
        raw.generate_grouped_data(N, n_groups=0)


def test_fast_patch_extraction_matches_reference():
    rng = np.random.default_rng(8)
    obj = (rng.random((30, 30)) + 1j * rng.random((30, 30))).astype(np.complex64)
    pos = np.array([[15, 15], [15.3, 14.75], [0.5, 2.2], [-3.5, 29.9], [29.2, 31.0],
                    [-40, 5], [100, 100], [4, 4.5]])
    np.testing.assert_allclose(extract_patches_fast(obj, pos, N),
                               physics.extract_patches(obj, pos, N), atol=1e-6)


def test_grouping_many_positions_is_vectorised():
    """5,000 positions group in well under a second of work (no per-group Python loop)."""
    rng = np.random.default_rng(9)
    n = 5000
    raw = RawData(rng.random(n) * 200 + 5, rng.random(n) * 200 + 5, None, None,
                  np.full((n, 4, 4), 0.5, np.float32), np.ones((4, 4)), None,
                  objectGuess=np.ones((210, 210), np.complex64))
    g = raw.generate_grouped_data(4, K=7, seed=0, gridsize=2)
    assert g['diffraction'].shape == (n, 4, 4, 4)
    np.testing.assert_allclose(np.abs(g['Y'][:, 1:3, 1:3]), 1.0, atol=1e-6)


def _ptychodus_input(counts: np.ndarray, xs: np.ndarray, ys: np.ndarray, obj: np.ndarray,
                     probe_modes: np.ndarray):
    """A ReconstructInput built with Ptychodus 1.7.0's own API classes."""
    from ptychodus.api.geometry import PixelGeometry
    from ptychodus.api.object import Object, ObjectCenter
    from ptychodus.api.probe import ProbeSequence
    from ptychodus.api.probe_positions import ProbePosition, ProbePositionSequence
    from ptychodus.api.product import Product, ProductMetadata
    from ptychodus.api.reconstruct import ReconstructInput

    pixel = PixelGeometry(width_m=1e-8, height_m=1e-8)
    height, width = obj.shape
    positions = ProbePositionSequence([
        ProbePosition(index=i, x_m=(x - (width - 1) / 2) * 1e-8, y_m=(y - (height - 1) / 2) * 1e-8)
        for i, (x, y) in enumerate(zip(xs, ys))])
    metadata = ProductMetadata(name='t', comments='', detector_distance_m=1.0,
                               photon_energy_eV=1e4, probe_photon_count=0.0, exposure_time_s=1.0,
                               mass_attenuation_m2_per_kg=0.0, tomography_angle_deg=0.0)
    product = Product(metadata=metadata, probe_positions=positions,
                      probes=ProbeSequence(probe_modes.astype(np.complex128), None, pixel),
                      object_=Object(obj.astype(np.complex128), pixel, ObjectCenter(0.0, 0.0)),
                      losses=[])
    return ReconstructInput(diffraction_patterns=counts, bad_pixels=np.zeros(counts.shape[1:], bool),
                            product=product)


def test_real_ptychodus_export_and_in_memory_path(tmp_path):
    """Ptychodus' own NPZ writer and its in-memory RawData call both load correctly."""
    pytest.importorskip('ptychodus')
    from ptychodus.api.io import save_ptychopinn_training_data
    from ptychodus.model.ptychopinn._subprocess import _create_raw_data

    a = _arrays()
    counts = np.random.default_rng(10).poisson(6, (M, N, N)).astype(np.uint32)
    modes = np.stack([a['probeGuess'], 0.2 * a['probeGuess']])
    parameters = _ptychodus_input(counts, a['xcoords'], a['ycoords'], a['objectGuess'], modes)
    path = tmp_path / 'train_data.npz'
    save_ptychopinn_training_data(path, parameters)
    with pytest.warns(CountsConversionWarning):
        from_disk = RawData.from_file(path)
    with pytest.warns(CountsConversionWarning):
        in_memory = _create_raw_data(parameters)
    for raw in (from_disk, in_memory):
        np.testing.assert_allclose(raw.xcoords, a['xcoords'], atol=1e-6)
        np.testing.assert_allclose(raw.ycoords, a['ycoords'], atol=1e-6)
        np.testing.assert_allclose(raw.diff3d, np.sqrt(counts), rtol=1e-6)
        np.testing.assert_allclose(raw.objectGuess, a['objectGuess'], rtol=1e-6)
        assert raw.probeGuess.shape == (N, N) and raw.probe_modes.shape == (2, N, N)
    g = in_memory.generate_grouped_data(N, K=7, nsamples=1, gridsize=2)
    assert g['diffraction'].shape == (M, N, N, 4)
