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
