"""User errors end with exit status 2 and one line on stderr that names the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_user_error, run_cli


def test_missing_training_file(tmp_path: Path) -> None:
    result = run_cli('train', '--train-data', tmp_path / 'nope.npz', '--output-dir',
                     tmp_path / 'out', cwd=tmp_path)
    assert_user_error(result, 'nope.npz', 'not found')


def test_missing_test_file_named(tmp_path: Path, small_sim: Path) -> None:
    result = run_cli('train', '--train-data', small_sim, '--test-data', tmp_path / 'gone.npz',
                     '--output-dir', tmp_path / 'out', cwd=tmp_path)
    assert_user_error(result, 'gone.npz')


def test_no_training_data_given(tmp_path: Path) -> None:
    assert_user_error(run_cli('train', cwd=tmp_path), '--train-data')


def test_contract_violation_names_file_and_key(tmp_path: Path, small_sim: Path) -> None:
    with np.load(small_sim) as data:
        arrays = {k: data[k] for k in data.files if k != 'probeGuess'}
    bad = tmp_path / 'noprobe.npz'
    np.savez(bad, **arrays)
    result = run_cli('train', '--train-data', bad, '--output-dir', tmp_path / 'o', cwd=tmp_path)
    assert_user_error(result, 'noprobe.npz', 'probeGuess')


def test_patch_size_mismatch(tmp_path: Path, small_sim: Path) -> None:
    result = run_cli('train', '--train-data', small_sim, '--N', 128, '--output-dir',
                     tmp_path / 'o', cwd=tmp_path)
    assert_user_error(result, '64', '128')


@pytest.mark.parametrize('backend,checkpoint', [('pytorch', 'last.ckpt'),
                                                ('tensorflow', 'last.npz')])
def test_resume_without_checkpoint(tmp_path: Path, small_sim: Path, backend: str,
                                   checkpoint: str) -> None:
    result = run_cli('train', '--train-data', small_sim, '--backend', backend, '--resume',
                     '--output-dir', tmp_path / 'fresh', cwd=tmp_path)
    assert_user_error(result, checkpoint)


def test_infer_without_bundle(tmp_path: Path, small_sim: Path) -> None:
    (tmp_path / 'empty').mkdir()
    result = run_cli('infer', '--model', tmp_path / 'empty', '--test-data', small_sim,
                     '--output-dir', tmp_path / 'o', cwd=tmp_path)
    assert_user_error(result, 'wts.h5.zip', 'not found')


def test_infer_corrupt_bundle(tmp_path: Path, small_sim: Path) -> None:
    model = tmp_path / 'model'
    model.mkdir()
    (model / 'wts.h5.zip').write_bytes(b'PK\x03\x04 this is not really a zip')
    result = run_cli('infer', '--model', model, '--test-data', small_sim, '--output-dir',
                     tmp_path / 'o', cwd=tmp_path)
    assert_user_error(result, 'wts.h5.zip', 'corrupt')


def test_infer_backend_mismatch_names_both(tmp_path: Path, small_sim: Path) -> None:
    from ptycho.bundle import write_bundle
    from ptycho.config.config import TrainingConfig, to_dict

    write_bundle(tmp_path / 'model', 'tensorflow', {'weights.bin': b'0'},
                 config=to_dict(TrainingConfig()), intensity_scale=1.0,
                 model_names=['autoencoder'])
    result = run_cli('infer', '--model', tmp_path / 'model', '--test-data', small_sim,
                     '--backend', 'pytorch', '--output-dir', tmp_path / 'o', cwd=tmp_path)
    assert_user_error(result, 'tensorflow', 'pytorch')
    assert not (tmp_path / 'o').exists()


def test_infer_requires_model_and_data(tmp_path: Path, small_sim: Path) -> None:
    assert_user_error(run_cli('infer', '--test-data', small_sim, cwd=tmp_path), '--model')
    assert_user_error(run_cli('infer', '--model', tmp_path, cwd=tmp_path), '--test-data')


def test_unknown_command_and_flag(tmp_path: Path) -> None:
    assert_user_error(run_cli('fly', cwd=tmp_path), 'fly')
    assert_user_error(run_cli('train', '--no-such-flag', cwd=tmp_path), '--no-such-flag')


def test_ptychodus_missing_is_a_clear_error(tmp_path: Path) -> None:
    """With Ptychodus absent, Ptychodus input says how to install it."""
    stub = tmp_path / 'stub' / 'ptychodus'
    stub.mkdir(parents=True)
    (stub / '__init__.py').write_text("raise ImportError('No module named ptychodus')\n")
    (tmp_path / 'scan').mkdir()
    result = run_cli('train', '--train-data', tmp_path / 'scan', '--output-dir', tmp_path / 'o',
                     cwd=tmp_path, extra_path=tmp_path / 'stub')
    assert_user_error(result, 'ptychodus', 'pip install')


def test_ptychodus_directory_without_files(tmp_path: Path) -> None:
    (tmp_path / 'scan').mkdir()
    result = run_cli('train', '--train-data', tmp_path / 'scan', '--output-dir', tmp_path / 'o',
                     cwd=tmp_path)
    assert_user_error(result, 'diffraction.h5', 'not found')


def test_missing_backend_package_is_a_user_error(tmp_path: Path, small_sim: Path) -> None:
    """torch absent: the dispatcher's install hint, as one line, before any work starts."""
    stub = tmp_path / 'stub' / 'torch'
    stub.mkdir(parents=True)
    (stub / '__init__.py').write_text("raise ImportError('No module named torch')\n")
    result = run_cli('train', '--train-data', small_sim, '--backend', 'pytorch',
                     '--output-dir', tmp_path / 'o', cwd=tmp_path, extra_path=tmp_path / 'stub')
    assert_user_error(result, 'torch', 'pip install')


# ------------------------------------------------------------------ malformed input files
# Every kind of file the package reads, malformed: one named error (the file, the key, what
# was expected and what was found), and the file left exactly as it was (bytes and mtime).

def _snapshot(*paths: Path) -> list[tuple[bytes, int]]:
    return [(p.read_bytes(), p.stat().st_mtime_ns) for p in paths]


def _replace(h5: object, key: str, array: np.ndarray) -> None:
    """Rewrite dataset ``key`` of an open h5py file with ``array``, keeping its attributes."""
    attrs = dict(h5[key].attrs)  # type: ignore[index]
    del h5[key]  # type: ignore[attr-defined]
    h5[key] = array  # type: ignore[index]
    h5[key].attrs.update(attrs)  # type: ignore[index]


@pytest.fixture(scope='module')
def ptychodus_pair(tmp_path_factory: pytest.TempPathFactory, small_sim: Path) -> Path:
    pytest.importorskip('ptychodus')
    from cli_helpers import write_ptychodus_pair

    return write_ptychodus_pair(small_sim, tmp_path_factory.mktemp('pair') / 'scan')


PAIR_CASES = {
    # name: (file edited, edit of the open h5py file, words the error must contain); the
    # error names the edited file unless the words name the other one
    'no patterns': ('diffraction.h5', lambda h: h.__delitem__('patterns'),
                    ("'patterns'", 'expected the dataset', 'found no such dataset')),
    'no indexes': ('diffraction.h5', lambda h: h.__delitem__('indexes'),
                   ("'indexes'", 'found no such dataset')),
    '2-D patterns': ('diffraction.h5', lambda h: _replace(h, 'patterns', h['patterns'][:, 0]),
                     ("'patterns'", 'expected a 3-D dataset', 'found shape (100, 64)')),
    'non-square patterns': ('diffraction.h5',
                            lambda h: _replace(h, 'patterns', h['patterns'][:, :, :60]),
                            ("'patterns'", 'expected square patterns', 'found 64x60')),
    'fewer indexes than patterns': ('diffraction.h5',
                                    lambda h: _replace(h, 'indexes', h['indexes'][:90]),
                                    ("'indexes'", 'expected one scan index per pattern (100)',
                                     'found 90')),
    'repeated indexes': ('diffraction.h5',
                         lambda h: _replace(h, 'indexes', np.zeros(100, np.int64)),
                         ("'indexes'", 'expected one pattern per scan index', 'found repeated')),
    'bad-pixel mask shape': ('diffraction.h5',
                             lambda h: _replace(h, 'bad_pixels', np.zeros((32, 32), bool)),
                             ("'bad_pixels'", 'expected a mask of the pattern shape (64, 64)',
                              'found (32, 32)')),
    'no positions': ('product.h5', lambda h: h.__delitem__('probe_position_x_m'),
                     ("'probe_position_x_m'", 'found no such dataset')),
    'short x positions': ('product.h5', lambda h: _replace(h, 'probe_position_x_m',
                                                           h['probe_position_x_m'][:80]),
                          ("'probe_position_x_m'", 'expected one value per entry',
                           '(100), found 80')),
    'more positions than patterns': (
        'product.h5', lambda h: [_replace(h, k, np.concatenate([h[k][:], h[k][:10]]))
                                 for k in ('probe_position_x_m', 'probe_position_y_m')]
        + [_replace(h, 'probe_position_indexes', np.arange(110))],
        ("diffraction.h5: key 'indexes'", 'expected a pattern for every scan index',
         'product.h5, found none for [100')),
    'NaN positions': ('product.h5',
                      lambda h: _replace(h, 'probe_position_y_m', np.full(100, np.nan)),
                      ("'probe_position_y_m'", 'expected finite positions', 'found 100 NaN')),
    'probe of another size': ('product.h5',
                              lambda h: _replace(h, 'probe', h['probe'][..., :32, :32]),
                              ("'probe'", 'expected probes of the pattern size 64x64',
                               'found shape (1, 1, 32, 32)')),
    'no object': ('product.h5', lambda h: h.__delitem__('object'),
                  ("'object'", 'found no such dataset')),
    'not HDF5': ('product.h5', None, ('expected a Ptychodus product file (HDF5)', 'found')),
}


@pytest.mark.parametrize('case', list(PAIR_CASES))
def test_malformed_ptychodus_pair(tmp_path: Path, ptychodus_pair: Path, case: str) -> None:
    import shutil

    import h5py

    from ptycho.data_files import load_data

    name, edit, words = PAIR_CASES[case]
    scan = tmp_path / 'scan'
    shutil.copytree(ptychodus_pair, scan)
    if edit is None:
        (scan / name).write_text('not an HDF5 file\n')
    else:
        with h5py.File(scan / name, 'r+') as h5:
            edit(h5)
    files = [scan / 'diffraction.h5', scan / 'product.h5']
    before = _snapshot(*files)
    with pytest.raises(ValueError) as info:
        load_data(scan)
    message = str(info.value)
    named = 'diffraction.h5' if 'diffraction.h5:' in ' '.join(words) else name
    assert message.startswith(f'{scan / named}: '), message
    for word in words:
        assert word in message, (word, message)
    assert _snapshot(*files) == before


def test_malformed_ptychodus_pair_at_the_command_line(tmp_path: Path,
                                                      ptychodus_pair: Path) -> None:
    import shutil

    import h5py

    scan = tmp_path / 'scan'
    shutil.copytree(ptychodus_pair, scan)
    with h5py.File(scan / 'product.h5', 'r+') as h5:
        _replace(h5, 'probe_position_x_m', h5['probe_position_x_m'][:50])
    before = _snapshot(scan / 'diffraction.h5', scan / 'product.h5')
    result = run_cli('train', '--train-data', scan, '--output-dir', tmp_path / 'o', cwd=tmp_path)
    assert_user_error(result, 'product.h5', 'probe_position_x_m', 'expected', 'found 50')
    assert _snapshot(scan / 'diffraction.h5', scan / 'product.h5') == before
    assert not (tmp_path / 'o').exists()


YAML_CASES = {
    'unknown key': ('nepochs: 3\nepocs: 4\n', ("unknown config keys ['epocs']",
                                               "did you mean 'epocs' -> 'nepochs'")),
    'unknown model key': ('model:\n  grid_size: 2\n', ("['grid_size']", "-> 'gridsize'")),
    'wrong type': ('nepochs: ten\n', ('TrainingConfig.nepochs', 'expected an integer >= 1',
                                      "found 'ten'")),
    'wrong type in model': ('model:\n  gridsize: [2, 2]\n',
                            ('ModelConfig.gridsize', 'expected an integer', 'found [2, 2]')),
    'model not a mapping': ('model: 64\n', ('key "model"', 'expected a mapping', 'found 64')),
    'path not a path': ('output_dir: [a, b]\n', ('TrainingConfig.output_dir',
                                                 'expected a file path', "found ['a', 'b']")),
    'not a mapping': ('- nepochs\n- 3\n', ('expected a YAML mapping', 'found list')),
    'not YAML': ('nepochs: [3\n', ('not valid YAML',)),
}


@pytest.mark.parametrize('case', list(YAML_CASES))
def test_malformed_yaml_config(tmp_path: Path, case: str) -> None:
    from ptycho.config.config import TrainingConfig, load_yaml

    text, words = YAML_CASES[case]
    path = tmp_path / 'run.yaml'
    path.write_text(text)
    before = _snapshot(path)
    with pytest.raises(ValueError) as info:
        load_yaml(TrainingConfig, path)
    assert str(info.value).startswith(f'{path}: '), str(info.value)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    assert _snapshot(path) == before


@pytest.mark.parametrize('command,text,words', [
    ('train', 'nepochs: 3\nlearning_rat: 0.01\n', ("['learning_rat']", "'learning_rate'")),
    ('infer', 'batch_size: many\n', ('InferenceConfig.batch_size', "found 'many'")),
])
def test_malformed_yaml_at_the_command_line(tmp_path: Path, small_sim: Path, command: str,
                                            text: str, words: tuple[str, ...]) -> None:
    path = tmp_path / 'run.yaml'
    path.write_text(text)
    before = _snapshot(path)
    data = ('--train-data', small_sim) if command == 'train' else ('--model', tmp_path,
                                                                    '--test-data', small_sim)
    result = run_cli(command, '--config', path, *data, '--output-dir', tmp_path / 'o',
                     cwd=tmp_path)
    assert_user_error(result, 'run.yaml', *words)
    assert _snapshot(path) == before


def _write_manifest_bundle(directory: Path, backend: str = 'pytorch',
                           **manifest: object) -> Path:
    """A bundle holding only a manifest (enough for every check before the weights)."""
    from ptycho.bundle import write_bundle
    from ptycho.config.config import ModelConfig, TrainingConfig, to_dict

    config = manifest.pop('config', None) or to_dict(TrainingConfig(
        model=ModelConfig(N=64, n_filters_scale=1), backend=backend))
    return write_bundle(directory, backend, {}, config=config, intensity_scale=2.0,
                        model_names=[], extra=manifest)


def _tampered(directory: Path, edit: object) -> Path:
    """A bundle whose manifest.json was edited by hand after it was written."""
    import json
    import zipfile

    path = _write_manifest_bundle(directory)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    manifest = edit(json.loads(members['manifest.json']))  # type: ignore[operator]
    members['manifest.json'] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, 'w') as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _set(path: str, value: object) -> object:
    def edit(manifest: dict) -> dict:
        *parents, key = path.split('.')
        target = manifest
        for parent in parents:
            target = target[parent]
        target[key] = value
        return manifest
    return edit


BUNDLE_CASES = {
    'manifest not an object': (lambda m: [m], ('manifest.json', 'expected a JSON object',
                                               'found list')),
    'intensity scale not a number': (_set('intensity_scale', 'big'),
                                     ('"intensity_scale"', 'expected a finite number > 0',
                                      "found 'big'")),
    'intensity scale negative': (_set('intensity_scale', -2.0),
                                 ('"intensity_scale"', 'found -2.0')),
    'config missing': (lambda m: {k: v for k, v in m.items() if k != 'config'},
                       ('key "config"', 'expected the run settings', 'found None')),
    'config invalid': (_set('config.model.N', 100),
                       ('key "config"', 'ModelConfig.N', 'expected one of', 'found 100')),
    'config unknown key': (_set('config.epochs', 5), ('key "config"', "['epochs']")),
    'N disagrees with config': (_set('N', 128), ('key "N"', 'expected 64', 'found 128')),
    'backend unknown': (_set('backend', 'jax'), ('key "backend"', 'found \'jax\'')),
}


@pytest.mark.parametrize('case', list(BUNDLE_CASES))
def test_tampered_bundle_manifest(tmp_path: Path, small_sim: Path, case: str) -> None:
    edit, words = BUNDLE_CASES[case]
    path = _tampered(tmp_path / 'model', edit)
    before = _snapshot(path)
    result = run_cli('infer', '--model', tmp_path / 'model', '--test-data', small_sim,
                     '--output-dir', tmp_path / 'o', cwd=tmp_path)
    assert_user_error(result, 'wts.h5.zip', *words)
    assert _snapshot(path) == before
    assert not (tmp_path / 'o').exists()


def test_bundle_of_the_other_backend_is_refused_by_each_loader(tmp_path: Path) -> None:
    from ptycho.bundle import BundleError, read_bundle

    for backend, other in (('tensorflow', 'pytorch'), ('pytorch', 'tensorflow')):
        path = _write_manifest_bundle(tmp_path / backend, backend)
        before = _snapshot(path)
        with pytest.raises(BundleError) as info:
            read_bundle(path, expected_backend=other)
        message = str(info.value)
        assert message.startswith(f'{path}: ') and backend in message and other in message
        assert _snapshot(path) == before


def test_bundle_for_another_patch_size_than_the_data(tmp_path: Path, small_sim: Path) -> None:
    from ptycho.config.config import ModelConfig, TrainingConfig, to_dict

    config = to_dict(TrainingConfig(model=ModelConfig(N=128, n_filters_scale=1),
                                    backend='pytorch'))
    path = _write_manifest_bundle(tmp_path / 'model', config=config)
    before = _snapshot(path, small_sim)
    result = run_cli('infer', '--model', tmp_path / 'model', '--test-data', small_sim,
                     '--output-dir', tmp_path / 'o', cwd=tmp_path)
    assert_user_error(result, small_sim.name, '64x64', '128x128')
    assert _snapshot(path, small_sim) == before


def test_side_files_name_the_file_and_the_key(tmp_path: Path) -> None:
    """The ground truth (--ground-truth) and the probe (follow --probe) are read by one
    helper: a missing file, a missing key and a corrupt file each name the file."""
    from ptycho.cli.follow import _probe_file
    from ptycho.cli.results import load_truth

    with pytest.raises(FileNotFoundError, match='gone.npz: no such file'):
        load_truth(tmp_path / 'gone.npz')
    np.savez(tmp_path / 'other.npz', probe=np.ones((4, 4), np.complex64))
    with pytest.raises(ValueError, match=r'other.npz: key "probeGuess": expected the complex '
                                         r"probe, found no such key \(keys: \['probe'\]\)"):
        _probe_file(tmp_path / 'other.npz')
    (tmp_path / 'broken.npz').write_bytes(b'PK\x03\x04 half a zip')
    with pytest.raises(ValueError, match='broken.npz: not a readable NPZ file'):
        load_truth(tmp_path / 'broken.npz')
    probe = np.arange(16).reshape(4, 4) * (1 + 1j)
    np.savez(tmp_path / 'probe.npz', probeGuess=probe)
    np.testing.assert_array_equal(_probe_file(tmp_path / 'probe.npz'), probe)
    np.savez(tmp_path / 'truth.npz', objectGuess=probe[None], xcoords=[1, 2], ycoords=[3, 4])
    truth, positions = load_truth(tmp_path / 'truth.npz')
    assert truth.shape == (4, 4) and positions.tolist() == [[1, 3], [2, 4]]
