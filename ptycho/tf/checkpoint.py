"""The TensorFlow backend's resumable training checkpoint, ``checkpoints/last.npz``.

After every epoch :class:`EpochCheckpoint` writes the whole training state: the model's
weights, the optimizer's variables (Adam moments, step count, learning rate), the loss
history, and the state of the stateful callbacks (the learning-rate plateau counter and
early stopping's best loss and best weights). ``resume`` loads it into a freshly built
model and continues to ``nepochs``; with the same seed, the losses and weights are those
of an uninterrupted run (the data order is restored by :func:`ptycho.tf.training.train`).

Why not ``keras.callbacks.BackupAndRestore``: it saves the weights and the epoch only
(the plateau and early-stopping counters and the history restart from zero, so a resumed
run diverges from an uninterrupted one as soon as either rule is on); it writes
``latest.weights.h5`` in place, so a kill during the write leaves a truncated file
(``double_checkpoint`` keeps a copy, it does not make the write atomic); and it restores
whenever a backup exists, so "start afresh" and "resume" could not be told apart.

The file is one NPZ written through :func:`ptycho.atomic.atomic_path` (temporary beside
it, fsync, rename, fsync of the folder): a kill leaves the previous checkpoint whole and
at most a ``.last.<random>.npz`` temporary, which the next run's start removes.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np

from ptycho.atomic import atomic_path

logger = logging.getLogger(__name__)

FORMAT = 'ptychopinn-tensorflow-training-checkpoint'
VERSION = 1


@dataclass
class TrainingState:
    """What a checkpoint holds (``epoch`` = completed epochs, all of them in ``history``)."""

    epoch: int
    weights: list[np.ndarray]
    optimizer: list[np.ndarray]
    history: dict[str, list[float]]
    model_config: dict[str, Any]
    steps_per_epoch: int
    plateau: dict[str, Any] | None = None
    early_stopping: dict[str, Any] | None = None
    best_weights: list[np.ndarray] | None = None
    path: Path | None = field(default=None, compare=False)


def _arrays(prefix: str, values: list[np.ndarray] | None) -> dict[str, np.ndarray]:
    return {f'{prefix}_{i:04d}': np.asarray(v) for i, v in enumerate(values or [])}


def save_state(path: str | os.PathLike[str], state: TrainingState) -> Path:
    """Write ``state`` to ``path`` atomically and durably."""
    meta = {'format': FORMAT, 'version': VERSION, 'epoch': state.epoch,
            'history': state.history, 'model_config': state.model_config,
            'steps_per_epoch': state.steps_per_epoch, 'plateau': state.plateau,
            'early_stopping': state.early_stopping,
            'counts': {'weights': len(state.weights), 'optimizer': len(state.optimizer),
                       'best_weights': len(state.best_weights or [])}}
    arrays: dict[str, Any] = {'meta': np.array(json.dumps(meta)),
                              **_arrays('weights', state.weights),
                              **_arrays('optimizer', state.optimizer),
                              **_arrays('best_weights', state.best_weights)}
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)
    return Path(path)


def load_state(path: str | os.PathLike[str]) -> TrainingState:
    """Read a checkpoint written by :func:`save_state`; ValueError naming the file otherwise."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data['meta']))
            if meta.get('format') != FORMAT:
                raise ValueError(f'format {meta.get("format")!r}')
            counts = meta['counts']

            def arrays(prefix: str) -> list[np.ndarray]:
                return [data[f'{prefix}_{i:04d}'] for i in range(int(counts[prefix]))]
            weights, optimizer, best = (arrays('weights'), arrays('optimizer'),
                                        arrays('best_weights'))
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f'{path}: not a TensorFlow training checkpoint of this package '
                         f'({type(exc).__name__}: {exc}); expected the checkpoints/last.npz '
                         f'a TensorFlow training run writes') from None
    if int(meta.get('version', 0)) > VERSION:
        raise ValueError(f'{path}: checkpoint version {meta["version"]} is newer than this '
                         f'package reads ({VERSION}); upgrade ptychopinn')
    return TrainingState(int(meta['epoch']), weights, optimizer,
                         {k: [float(v) for v in vals] for k, vals in meta['history'].items()},
                         meta['model_config'], int(meta['steps_per_epoch']), meta['plateau'],
                         meta['early_stopping'], best if meta['early_stopping'] else None, path)


def _check_shapes(path: Path | None, what: str, stored: list[np.ndarray],
                  expected: list[Any]) -> None:
    shapes = [tuple(np.shape(v)) for v in expected]
    if len(stored) != len(shapes) or any(tuple(a.shape) != s for a, s in zip(stored, shapes)):
        raise ValueError(f'{path}: the checkpoint\'s {what} ({len(stored)} arrays) do not fit '
                         f'this model ({len(shapes)} arrays); resume with the config the '
                         f'checkpoint was trained with (OUTPUT_DIR/config.yaml)')


def restore_model(state: TrainingState, model: keras.Model,
                  model_config: dict[str, Any]) -> None:
    """Load the checkpoint's weights and optimizer state into a compiled ``model``."""
    if state.model_config != model_config:
        changed = sorted(k for k in set(state.model_config) | set(model_config)
                         if state.model_config.get(k) != model_config.get(k))
        raise ValueError(f'{state.path}: the checkpoint was trained with a different model '
                         f'(ModelConfig {", ".join(changed)} differ); resume with the config '
                         f'it was trained with (OUTPUT_DIR/config.yaml)')
    _check_shapes(state.path, 'weights', state.weights, model.get_weights())
    model.set_weights(state.weights)
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    _check_shapes(state.path, 'optimizer variables', state.optimizer, optimizer.variables)
    for variable, value in zip(optimizer.variables, state.optimizer):
        variable.assign(value)


def _plateau_state(callback: keras.callbacks.ReduceLROnPlateau) -> dict[str, Any]:
    return {'wait': int(callback.wait), 'cooldown_counter': int(callback.cooldown_counter),
            'best': None if callback.best is None else float(callback.best)}


def _early_state(callback: keras.callbacks.EarlyStopping) -> dict[str, Any]:
    return {'wait': int(callback.wait), 'stopped_epoch': int(callback.stopped_epoch),
            'best_epoch': int(callback.best_epoch),
            'best': None if callback.best is None else float(callback.best)}


class EpochCheckpoint(keras.callbacks.Callback):
    """Write :class:`TrainingState` to ``path`` after every epoch whose losses are finite.

    Put it after the plateau and early-stopping callbacks: Keras calls callbacks in list
    order, so their end-of-epoch updates are in the state, and at the start of a resumed
    fit their state is set here after their own ``on_train_begin`` reset it.
    ``failed()`` tells whether the epoch just ended went non-finite (nothing is written
    then, so the checkpoint keeps the last good epoch).
    """

    def __init__(self, path: Path, *, model_config: dict[str, Any], steps_per_epoch: int,
                 failed: Callable[[], bool],
                 plateau: keras.callbacks.ReduceLROnPlateau | None = None,
                 early_stopping: keras.callbacks.EarlyStopping | None = None,
                 resume_from: TrainingState | None = None) -> None:
        super().__init__()
        self.path = path
        self.model_config = model_config
        self.steps_per_epoch = steps_per_epoch
        self.failed = failed
        self.plateau = plateau
        self.early_stopping = early_stopping
        self.resume_from = resume_from
        self.history: dict[str, list[float]] = (
            {k: list(v) for k, v in resume_from.history.items()} if resume_from
            else {'train_loss': [], 'val_loss': []})

    def on_train_begin(self, logs: dict | None = None) -> None:
        state = self.resume_from
        if state is None:
            return
        if self.plateau is not None and state.plateau is not None:
            for key, value in state.plateau.items():
                setattr(self.plateau, key, value)
        if self.early_stopping is not None and state.early_stopping is not None:
            for key, value in state.early_stopping.items():
                setattr(self.early_stopping, key, value)
            self.early_stopping.best_weights = state.best_weights

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if self.failed():
            return
        for key, name in (('train_loss', 'loss'), ('val_loss', 'val_loss')):
            if name in logs:
                self.history.setdefault(key, []).append(float(logs[name]))
        early = self.early_stopping
        state = TrainingState(
            epoch + 1, self.model.get_weights(),
            [np.asarray(v.numpy()) for v in self.model.optimizer.variables],
            self.history, self.model_config, self.steps_per_epoch,
            None if self.plateau is None else _plateau_state(self.plateau),
            None if early is None else _early_state(early),
            None if early is None else early.best_weights)
        save_state(self.path, state)
        logger.debug('Checkpoint of epoch %d written to %s', epoch + 1, self.path)

