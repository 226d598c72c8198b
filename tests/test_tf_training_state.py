"""TensorFlow training logs (CSV, TensorBoard, MLflow) and resume, as in the torch backend.

Three tiny runs (N=64, 48 positions, n_filters_scale 1) shared by the tests: two epochs
straight (TensorBoard log), and one epoch (CSV log) then ``resume=True`` to two (MLflow
log). The logger does not touch the numbers, so the pair must match the straight run.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip('tensorflow')

from ptycho.atomic import find_temporaries  # noqa: E402
from ptycho.config.config import ModelConfig, TrainingConfig  # noqa: E402
from ptycho.simulation import simulate_dataset  # noqa: E402
from ptycho.tf.checkpoint import load_state  # noqa: E402
from ptycho.tf.training_logs import logger_callbacks  # noqa: E402
from ptycho.workflows.backend_selector import get_backend  # noqa: E402
from ptycho.workflows.training_files import resume_path  # noqa: E402

HAS_MLFLOW = importlib.util.find_spec('mlflow') is not None


def _config(out: Path, nepochs: int, **changes: object) -> TrainingConfig:
    values: dict[str, object] = dict(
        model=ModelConfig(N=64, gridsize=1, n_filters_scale=1), nepochs=nepochs, batch_size=16,
        output_dir=out, backend='tensorflow', validation_split=0.25, accelerator='cpu',
        lr_plateau_patience=1, early_stopping_patience=5)  # both rules' state is resumed
    values.update(changes)
    return TrainingConfig(**values)  # type: ignore[arg-type]


@pytest.fixture(scope='module')
def scan():
    return simulate_dataset(N=64, n_positions=48, object_size=110, seed=1)


@pytest.fixture(scope='module')
def runs(tmp_path_factory, scan):
    root = tmp_path_factory.mktemp('tf_resume')
    backend = get_backend('tensorflow')
    tensorboard = 'tensorboard' if importlib.util.find_spec('tensorboard') else 'none'
    straight = backend.train(scan, None, _config(root / 'straight', 2, logger=tensorboard),
                             save_bundle=False)
    first = backend.train(scan, None, _config(root / 'resumed', 1, logger='csv'),
                          save_bundle=False)
    with pytest.MonkeyPatch.context() as env:
        env.delenv('MLFLOW_TRACKING_URI', raising=False)
        resumed = backend.train(scan, None, _config(root / 'resumed', 2, logger='mlflow'
                                                    if HAS_MLFLOW else 'csv'),
                                resume=True, save_bundle=False)
    return root, straight, first, resumed


def test_resume_continues_as_if_never_interrupted(runs) -> None:
    root, straight, first, resumed = runs
    assert len(first.history['train_loss']) == 1 and first.epochs_run == 1
    assert resumed.history == straight.history  # the epoch before the resume included
    assert resumed.epochs_run == 2
    for a, b in zip(straight.model.handle.autoencoder.get_weights(),
                    resumed.model.handle.autoencoder.get_weights()):
        np.testing.assert_array_equal(a, b)
    # The final checkpoints agree too: optimizer, counters of both rules, best weights.
    one, two = (load_state(r.checkpoint_path) for r in (straight, resumed))
    assert resumed.checkpoint_path == root / 'resumed' / 'checkpoints' / 'last.npz'
    assert (one.epoch, one.history, one.plateau, one.early_stopping) == (
        two.epoch, two.history, two.plateau, two.early_stopping)
    for name in ('weights', 'optimizer', 'best_weights'):
        for a, b in zip(getattr(one, name), getattr(two, name), strict=True):
            np.testing.assert_array_equal(a, b)
    for run in ('straight', 'resumed'):
        assert find_temporaries(root / run / 'checkpoints') == []


def test_csv_log_has_one_row_per_epoch(runs) -> None:
    root = runs[0]
    with open(root / 'resumed' / 'logs' / 'version_0' / 'metrics.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert [row['epoch'] for row in rows] == ['0']
    assert float(rows[0]['loss']) == pytest.approx(runs[2].history['train_loss'][0])
    assert {'val_loss', 'learning_rate'} <= set(rows[0])


def test_tensorboard_log_holds_each_epoch(runs) -> None:
    pytest.importorskip('tensorboard')
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = runs[0] / 'straight' / 'logs' / 'version_0'
    assert list(folder.rglob('events.out.tfevents.*'))
    for sub in ('train', 'validation'):
        events = EventAccumulator(str(folder / sub))
        events.Reload()
        assert [e.step for e in events.Tensors('epoch_loss')] == [0, 1]


@pytest.mark.skipif(not HAS_MLFLOW, reason='mlflow is not installed')
def test_mlflow_records_the_resumed_epochs(runs) -> None:
    runs_dir = runs[0] / 'resumed' / 'mlruns'
    [train_loss] = list(runs_dir.rglob('metrics/train_loss'))
    lines = train_loss.read_text().split()
    assert len(lines) == 3 * 1  # "timestamp value step" for epoch index 1 only
    assert float(lines[1]) == pytest.approx(runs[3].history['train_loss'][1]) and lines[2] == '1'
    meta = (train_loss.parents[1] / 'meta.yaml').read_text()
    assert 'status: 3' in meta  # FINISHED
    assert (train_loss.parents[1] / 'params' / 'model.N').read_text() == '64'


def test_resume_refuses_a_checkpoint_of_another_model(runs, scan, tmp_path) -> None:
    checkpoint = runs[3].checkpoint_path
    with pytest.raises(ValueError, match=r'last\.npz.*n_filters_scale'):
        get_backend('tensorflow').train(
            scan, None, _config(tmp_path, 3, logger='none',
                                model=ModelConfig(N=64, gridsize=1, n_filters_scale=2)),
            resume=checkpoint, save_bundle=False)
    assert not (tmp_path / 'checkpoints').exists()


def test_resume_path_rules(tmp_path, caplog) -> None:
    """As in torch: resume=True without a checkpoint trains from scratch with a warning; a
    named checkpoint must exist; a file that is not one is named."""
    with caplog.at_level(logging.WARNING, logger='ptycho.workflows.training_files'):
        assert resume_path(True, tmp_path, 'tensorflow') is None
    assert 'last.npz does not exist: training from scratch' in caplog.text
    assert resume_path(False, tmp_path, 'tensorflow') is None
    with pytest.raises(FileNotFoundError, match='gone.npz'):
        resume_path(tmp_path / 'gone.npz', tmp_path, 'tensorflow')
    bad = tmp_path / 'bad.npz'
    np.savez(bad, meta=np.array(json.dumps({'format': 'other'})))
    with pytest.raises(ValueError, match=r'bad\.npz: not a TensorFlow training checkpoint'):
        load_state(bad)


def test_missing_logger_packages_are_named(tmp_path, monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *rest: None if name in (
        'tensorboard', 'mlflow') else real(name, *rest))
    with pytest.raises(RuntimeError, match=r"logger='tensorboard' needs the 'tensorboard'"):
        logger_callbacks(_config(tmp_path, 1, logger='tensorboard'), tmp_path)
    with pytest.raises(RuntimeError, match=r"logger='mlflow' needs the 'mlflow'"):
        logger_callbacks(_config(tmp_path, 1, logger='mlflow'), tmp_path)
    assert not (tmp_path / 'logs').exists()
