"""Torch workflows: history, resume, non-finite loss, reassembly, loggers, import walls.

What both backends must do alike (determinism, bundle round trip and refusals) is in
``tests/conformance/test_conformance_workflow.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from _torch_data import tiny_config, tiny_raw
from ptycho.config.config import InferenceConfig
from ptycho_torch.model import NonFiniteLossError, PtychoPINN_Lightning
from ptycho_torch.workflows.components import (_reassemble_cdi_image_torch,
                                               load_inference_bundle_torch,
                                               run_cdi_example_torch)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def cpu_only(monkeypatch):
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '')


def state_of(results) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in results['models']['lightning_module'].state_dict().items()}


@pytest.fixture(scope='module')
def two_epoch_run(tmp_path_factory):
    """One 2-epoch run with validation on a separate scan, reused by several tests."""
    out = tmp_path_factory.mktemp('run_a')
    train, test = tiny_raw(), tiny_raw(48, seed=1)
    diff_before = train.diff3d.copy()
    config = tiny_config(out, n_groups=None)
    amp, phase, results = run_cdi_example_torch(train, test, config)
    assert np.array_equal(train.diff3d, diff_before)  # inputs never modified
    return config, results


def test_history_and_results_contract(two_epoch_run):
    config, results = two_epoch_run
    assert results['backend'] == 'pytorch'
    history = results['history']
    assert set(history) >= {'train_loss', 'val_loss'}
    assert len(history['train_loss']) == len(history['val_loss']) == 2
    assert all(np.isfinite(history['train_loss'] + history['val_loss']))
    assert {'lightning_module', 'diffraction_to_obj'} <= set(results['models'])
    assert len(results['train_container']) == 64 and len(results['test_container']) == 48
    assert (config.output_dir / 'checkpoints' / 'last.ckpt').is_file()
    assert (config.output_dir / 'wts.h5.zip').is_file()
    assert list((config.output_dir / 'logs').rglob('metrics.csv'))


def test_resume_continues_epochs_and_matches_uninterrupted_run(two_epoch_run, tmp_path):
    config, uninterrupted = two_epoch_run
    train, test = tiny_raw(), tiny_raw(48, seed=1)
    _, _, one = run_cdi_example_torch(train, test, tiny_config(tmp_path, n_groups=None, nepochs=1))
    assert len(one['history']['train_loss']) == 1
    _, _, resumed = run_cdi_example_torch(train, test, tiny_config(tmp_path, n_groups=None),
                                          resume=True)
    assert resumed['history'] == uninterrupted['history']  # history survives in last.ckpt
    assert resumed['epochs_run'] == 2
    ckpt = torch.load(tmp_path / 'checkpoints' / 'last.ckpt', weights_only=False)
    reference = torch.load(config.output_dir / 'checkpoints' / 'last.ckpt', weights_only=False)
    assert ckpt['epoch'] == reference['epoch'] and ckpt['global_step'] == reference['global_step']
    for name, value in state_of(uninterrupted).items():
        torch.testing.assert_close(state_of(resumed)[name], value, rtol=1e-5, atol=1e-6,
                                   msg=name)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    real = PtychoPINN_Lightning.compute_loss

    def poisoned(self, batch):
        loss = real(self, batch)
        return loss * float('nan') if self.current_epoch >= 1 else loss

    monkeypatch.setattr(PtychoPINN_Lightning, 'compute_loss', poisoned)
    config = tiny_config(tmp_path, nepochs=3)
    with pytest.raises(NonFiniteLossError, match=r'non-finite training loss.*epoch 1.*last good '
                                                 r'checkpoint kept at .*last\.ckpt'):
        run_cdi_example_torch(tiny_raw(), None, config)
    ckpt = torch.load(tmp_path / 'checkpoints' / 'last.ckpt', weights_only=False)
    assert ckpt['epoch'] == 0
    assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values()
               if v.is_floating_point())
    assert not (tmp_path / 'wts.h5.zip').exists()  # no bundle of a failed run


def test_reassemble_from_bundle_with_inference_config(two_epoch_run):
    config, results = two_epoch_run
    models, loaded = load_inference_bundle_torch(config.output_dir)
    assert loaded.backend == 'pytorch' and loaded.model == config.model
    infer = InferenceConfig(model=loaded.model, model_path=config.output_dir, backend='pytorch',
                            n_groups=32, batch_size=7)
    amp, phase, out = _reassemble_cdi_image_torch(tiny_raw(48, seed=1), infer, flip_x=True, M=20)
    assert out['M'] == 20 and amp.shape == out['coverage'].shape == phase.shape
    assert len(out['patches']) == 32 and np.iscomplexobj(out['reconstruction'])
    assert np.all(out['positions_xy'][:, 0] <= 0)  # flip_x mirrored the scan
    assert np.all(amp[out['coverage'] < 1e-6] == 0)  # uncovered pixels are not invented


def test_tensorboard_logger_names_missing_package(tmp_path, monkeypatch):
    pytest.importorskip('lightning')
    import importlib.util

    from ptycho_torch.workflows.training import make_logger

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *rest: None if name in (
        'tensorboard', 'tensorboardX') else real(name, *rest))
    with pytest.raises(RuntimeError, match="'tensorboard' package"):
        make_logger(tiny_config(tmp_path, logger='tensorboard'), tmp_path)


def test_tensorboard_logger_writes_events(tmp_path):
    pytest.importorskip('tensorboard')
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_cdi_example_torch(tiny_raw(), None, tiny_config(tmp_path, nepochs=2,
                                                        logger='tensorboard'))
    [events] = list((tmp_path / 'logs' / 'version_0').glob('events.out.tfevents.*'))
    accumulator = EventAccumulator(str(events.parent))
    accumulator.Reload()
    assert len(accumulator.Scalars('train_loss')) == 2  # one per epoch


def test_components_import_does_not_import_tensorflow():
    code = ('import sys, ptycho_torch.workflows.components; '
            'bad = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")]; '
            'assert not bad, bad')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]))
    done = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_mlflow_logger_records_metrics(tmp_path, monkeypatch):
    pytest.importorskip('mlflow')
    monkeypatch.delenv('MLFLOW_TRACKING_URI', raising=False)
    run_cdi_example_torch(tiny_raw(), None, tiny_config(tmp_path, nepochs=1, logger='mlflow'))
    assert list((tmp_path / 'mlruns').rglob('metrics/train_loss'))
