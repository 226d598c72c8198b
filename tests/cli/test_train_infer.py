"""Happy paths through the real backends: train, infer, resume, Ctrl-C, Ptychodus files.

Kept tiny (N=64, ~100 positions, 1 epoch, n_filters_scale=1): these check that the
command line wires things together and writes its outputs, not reconstruction quality.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from cli_helpers import (assert_no_temporaries, assert_user_error, cli_env, run_cli,
                         write_ptychodus_pair)

PNG = b'\x89PNG\r\n\x1a\n'
RECON_FILES = ('recon.npz', 'reconstructed_amplitude.png', 'reconstructed_phase.png',
               'product-out.h5', 'metrics.json', 'comparison.png')


def _needs(module: str) -> None:
    pytest.importorskip(module)
    pytest.importorskip('ptycho.workflows.backend_selector')


def _check_recon_outputs(directory: Path, *, with_truth: bool = True) -> dict:
    names = RECON_FILES if with_truth else RECON_FILES[:4]
    for name in names:
        assert (directory / name).exists(), name
    for name in names:
        if name.endswith('.png'):
            assert (directory / name).read_bytes()[:8] == PNG
    with np.load(directory / 'recon.npz') as recon:
        obj = recon['object']
        assert np.iscomplexobj(obj) and obj.ndim == 2 and np.isfinite(obj).all()
        assert recon['coverage'].shape == obj.shape and recon['positions'].shape[1] == 2
    assert_no_temporaries(directory)
    return json.loads((directory / 'metrics.json').read_text()) if with_truth else {}


def test_pytorch_train_infer_resume_interrupt(tmp_path: Path, small_sim: Path,
                                              small_sim_test: Path) -> None:
    _needs('torch')
    out = tmp_path / 'run'
    run_yaml = tmp_path / 'run.yaml'
    run_yaml.write_text(yaml.safe_dump({'nepochs': 5, 'batch_size': 32, 'backend': 'pytorch',
                                        'model': {'n_filters_scale': 2}}))
    result = run_cli('train', '--config', run_yaml, '--train-data', small_sim, '--test-data',
                     small_sim_test, '--nepochs', 1, '--gridsize', 1, '--n_filters_scale', 1,
                     '--probe_trainable', 'no', '--output-dir', out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    saved = yaml.safe_load((out / 'config.yaml').read_text())
    assert saved['nepochs'] == 1 and saved['model']['n_filters_scale'] == 1  # flags win
    assert saved['batch_size'] == 32 and saved['backend'] == 'pytorch'  # YAML kept
    assert saved['probe_trainable'] is False
    assert (out / 'wts.h5.zip').exists() and (out / 'checkpoints' / 'last.ckpt').exists()
    assert (out / 'loss_curve.png').read_bytes()[:8] == PNG
    history = json.loads((out / 'history.json').read_text())
    assert len(history['train_loss']) == 1
    metrics = _check_recon_outputs(out)
    assert {'amp_ssim', 'phase_ssim', 'amp_psnr', 'phase_psnr'} <= set(metrics)
    assert str(out / 'metrics.json') in result.stdout

    # Inference: backend read from the bundle; stitched outputs written.
    inferred = tmp_path / 'inferred'
    # Two refinement epochs: its outputs are written; its quality is tested elsewhere.
    result = run_cli('infer', '--model', out, '--test-data', small_sim_test, '--output-dir',
                     inferred, '--batch-size', 16, '--refine_epochs', 2, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'pytorch' in result.stdout
    _check_recon_outputs(inferred)
    assert_user_error(run_cli('infer', '--model', out, '--test-data', small_sim_test,
                              '--backend', 'tensorflow', '--output-dir', tmp_path / 'x',
                              cwd=tmp_path), 'pytorch', 'tensorflow')

    # Resume: one more epoch on top of the first, history continued.
    # (no --config: the run's own config.yaml is the base, so n_filters_scale stays 1)
    result = run_cli('train', '--output-dir', out, '--nepochs', 2, '--resume', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    resumed = json.loads((out / 'history.json').read_text())
    assert len(resumed['train_loss']) == 2
    assert resumed['train_loss'][0] == pytest.approx(history['train_loss'][0])

    # Ctrl-C: exit 130, last.ckpt still loadable, and the resume command is printed.
    ckpt = out / 'checkpoints' / 'last.ckpt'
    before = ckpt.stat().st_mtime_ns
    proc = subprocess.Popen([sys.executable, '-m', 'ptycho.cli', 'train', '--config',
                             str(out / 'config.yaml'), '--nepochs', '500', '--resume'],
                            cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while ckpt.stat().st_mtime_ns == before and time.monotonic() < deadline \
            and proc.poll() is None:
        time.sleep(0.2)
    updated = ckpt.stat().st_mtime_ns != before
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, (stdout, stderr)
    assert '--resume' in stderr and 'last.ckpt' in stderr, stderr
    assert 'Traceback' not in stderr
    assert ckpt.exists()
    # What Ctrl-C leaves must be the latest completed epoch, not the state at the start.
    assert updated, 'last.ckpt was not rewritten after an epoch during training'


def test_tensorflow_train_infer_on_ptychodus_files(tmp_path: Path, small_sim: Path,
                                                   small_sim_test: Path) -> None:
    """Ptychodus' own diffraction.h5 + product.h5 in, product-out.h5 that Ptychodus reads;
    --resume continues the TensorFlow run from checkpoints/last.npz."""
    _needs('tensorflow')
    pytest.importorskip('ptychodus')
    from ptychodus.api.io import load_product

    train_dir = write_ptychodus_pair(small_sim, tmp_path / 'train_scan')
    test_dir = write_ptychodus_pair(small_sim_test, tmp_path / 'test_scan')
    out = tmp_path / 'model'
    out.mkdir()
    debris = out / '.recon.k1ll3d_9.npz'  # what a kill -9 inside atomic_path leaves
    debris.write_bytes(b'half')
    os.utime(debris, (0, 0))
    result = run_cli('train', '--train-data', train_dir, '--backend', 'tensorflow',
                     '--nepochs', 1, '--gridsize', 1, '--n-filters-scale', 1, '--batch_size', 16,
                     '--output-dir', out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (out / 'wts.h5.zip').exists() and (out / 'loss_curve.png').exists()
    assert not debris.exists()  # cleared when training started
    assert_no_temporaries(out)
    assert_no_temporaries(out / 'checkpoints')
    assert str(out / 'checkpoints' / 'last.npz') in result.stdout
    history = json.loads((out / 'history.json').read_text())

    # Resume: one more epoch on top of the first, history continued (the run's own
    # config.yaml is the base).
    result = run_cli('train', '--output-dir', out, '--nepochs', 2, '--resume', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    resumed = json.loads((out / 'history.json').read_text())
    assert len(resumed['train_loss']) == 2
    assert resumed['train_loss'][0] == pytest.approx(history['train_loss'][0])

    inferred = tmp_path / 'inferred'
    result = run_cli('infer', '--model', out, '--test-data', test_dir / 'diffraction.h5',
                     '--ground-truth', small_sim_test, '--output-dir', inferred,
                     '--refine_epochs', 2, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'tensorflow' in result.stdout
    _check_recon_outputs(inferred)
    product = load_product(inferred / 'product-out.h5')
    with np.load(inferred / 'recon.npz') as recon:
        np.testing.assert_allclose(product.object_.get_layer(0), recon['object'])
    assert product.metadata.name == 'test scan'  # the input product's metadata is kept
    assert len(product.probe_positions) == 64

    # The exported product scores like the NPZ it came from.
    result = run_cli('evaluate', '--reconstruction', inferred / 'product-out.h5',
                     '--ground-truth', small_sim_test, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_demo_smoke(tmp_path: Path) -> None:
    """The demo end to end at toy size: every promised file exists, metrics are numbers."""
    _needs('torch')
    out = tmp_path / 'demo'
    result = run_cli('demo', '--output-dir', out, '--positions', 64, '--nepochs', 1,
                     '--minutes', 1, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ('reconstructed_amplitude.png', 'reconstructed_phase.png', 'comparison.png',
                 'loss_curve.png', 'metrics.json', 'recon.npz', 'frc.png',
                 'model/wts.h5.zip', 'data/train.npz', 'data/test.png'):
        assert (out / name).exists(), name
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['backend'] == 'pytorch' and metrics['epochs_run'] == 1
    assert all(isinstance(metrics[k], float) for k in ('amp_ssim', 'phase_ssim', 'amp_psnr'))
    assert str(out / 'metrics.json') in result.stdout
    assert str(out / 'comparison.png') in result.stdout
