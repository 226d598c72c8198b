"""Keras training loop for the TensorFlow PtychoPINN models.

Legacy path: ``ptycho.train_pinn`` (an alias of this module).

:func:`train` compiles the ``autoencoder`` of a :class:`ptycho.tf.model.PtychoModels` with the
PINN (or supervised) loss and fits it. Validation uses the test container when given,
otherwise a seeded random ``validation_split`` of the training groups. A non-finite loss
stops training at once: the weights of the last finite epoch are restored and
:class:`NonFiniteLossError` is raised, so nothing downstream silently saves a broken model.

Beside the run (``config.output_dir``; :mod:`ptycho.workflows.training_files`): the
training log ``config.logger`` chooses (:mod:`ptycho.tf.training_logs`) and, after every
epoch, the resumable checkpoint ``checkpoints/last.npz`` (:mod:`ptycho.tf.checkpoint`)
that ``resume_from`` continues from.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ptycho.atomic import remove_stale_temporaries
from ptycho.config.config import TrainingConfig, to_dict
from ptycho.loader import PtychoDataContainer
from ptycho.tf.model import PtychoModels, pinn_loss, supervised_loss, supervised_targets
from ptycho.tf.checkpoint import EpochCheckpoint, TrainingState, load_state, restore_model
from ptycho.tf.training_logs import learning_rate, logger_callbacks
from ptycho.workflows.training_files import CHECKPOINT_DIR, checkpoint_path, uses_output_dir

logger = logging.getLogger(__name__)

MIN_LR = 1e-6
LR_FACTOR = 0.5


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/Inf loss; ``history`` holds the finite epochs before it."""

    def __init__(self, message: str, history: dict[str, list[float]]) -> None:
        super().__init__(message)
        self.history = history


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, numpy and TensorFlow (call before building the model) and, when
    ``deterministic``, ask TensorFlow for deterministic kernels."""
    keras.utils.set_random_seed(int(seed))
    if deterministic:
        try:
            tf.config.experimental.enable_op_determinism()
        except Exception as exc:  # pragma: no cover - depends on the TF build
            logger.warning('Could not enable TensorFlow op determinism: %s', exc)


class _NonFiniteGuard(keras.callbacks.Callback):
    """Stop at the first non-finite batch loss; keep the weights of the last finite epoch."""

    def __init__(self, nepochs: int) -> None:
        super().__init__()
        self.nepochs = nepochs
        self.good_weights: list[np.ndarray] | None = None
        self.failure: str | None = None
        self.epoch = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.good_weights = self.model.get_weights()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get('loss')
        if loss is not None and not math.isfinite(float(loss)):
            self.failure = (f'training loss became {float(loss)} at epoch {self.epoch + 1}, '
                            f'batch {batch + 1}')
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if self.failure is None:
            val = logs.get('val_loss')
            if val is not None and not math.isfinite(float(val)):
                self.failure = f'validation loss became {float(val)} at epoch {epoch + 1}'
                self.model.stop_training = True
                return
            self.good_weights = self.model.get_weights()
            lr = learning_rate(self.model)
            logger.info('epoch %d/%d: loss %.6g%s lr %.3g', epoch + 1, self.nepochs,
                        float(logs.get('loss', float('nan'))),
                        '' if val is None else f' val_loss {float(val):.6g}', lr)


class _TimeLimit(keras.callbacks.Callback):
    """Stop after ``seconds`` of training (checked after every batch)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.start = 0.0
        self.reached = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if time.perf_counter() - self.start >= self.seconds:
            self.reached = True
            self.model.stop_training = True


def _inputs(container: PtychoDataContainer) -> list[np.ndarray]:
    return [np.asarray(container.X, dtype=np.float32),
            np.asarray(container.local_offsets, dtype=np.float32)]


def _targets(container: PtychoDataContainer, model_type: str, what: str) -> np.ndarray:
    if model_type == 'supervised':
        if container.Y is None:
            raise ValueError(f'train: model_type="supervised" needs ground-truth object patches, '
                             f'but the {what} data have no objectGuess (container.Y is None)')
        return supervised_targets(container.Y)
    return np.asarray(container.X, dtype=np.float32)


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random train/validation index split (groups are often in scan order)."""
    n_val = int(round(n * fraction))
    if fraction <= 0 or n_val < 1 or n - n_val < 1:
        return np.arange(n), np.arange(0)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _training_batches(x: list[np.ndarray], y: np.ndarray, batch_size: int, seed: int,
                      skip_epochs: int = 0) -> tf.data.Dataset:
    """Endless shuffled batches of ``(tuple(x), y)``; fit with ``steps_per_epoch``.

    ``skip_epochs``: start at that epoch's order, as a resumed run must (the orders of the
    skipped epochs are drawn, which is cheap: indices only, no rows gathered).

    Keras then keeps one iterator for the whole fit. Given numpy arrays, it made a new one
    at each epoch start, and dropping the old one stalled ~9 s in about half the epochs on
    the 2-core reference machine (20 s instead of 11.5 s for 125 steps). The arrays become
    tensors once; each batch gathers its rows by index; the order is reshuffled each epoch.
    """
    tensors: dict[int, tf.Tensor] = {}  # the PINN's target is its input X: copy it once

    def tensor(array: np.ndarray) -> tf.Tensor:
        if id(array) not in tensors:
            tensors[id(array)] = tf.constant(array)
        return tensors[id(array)]
    inputs = tuple(tensor(a) for a in x)
    targets = tensor(y)
    order = tf.data.Dataset.range(len(y)).shuffle(len(y), seed=seed,
                                                  reshuffle_each_iteration=True)

    @tf.autograph.experimental.do_not_convert
    def gather(index: tf.Tensor) -> tuple[tuple[tf.Tensor, ...], tf.Tensor]:
        return tuple(tf.gather(t, index) for t in inputs), tf.gather(targets, index)

    batches = order.batch(batch_size).repeat()
    if skip_epochs:
        batches = batches.skip(skip_epochs * math.ceil(len(y) / batch_size))
    return batches.map(gather).prefetch(2)


def lr_plateau_callback(config: TrainingConfig, monitor: str
                        ) -> keras.callbacks.ReduceLROnPlateau:
    """Halve the learning rate after ``lr_plateau_patience`` epochs without any decrease.

    ``min_delta=0``: the PINN loss per pixel is ~-3.876 and still falls by ~1e-5 an epoch
    late in training; Keras' default 1e-4 took that for a plateau and had the rate down to
    2e-6 by epoch 50 (the PyTorch backend uses the same rule).
    """
    return keras.callbacks.ReduceLROnPlateau(
        monitor=monitor, factor=LR_FACTOR, patience=config.lr_plateau_patience, min_delta=0.0,
        min_lr=MIN_LR, verbose=1 if config.debug else 0)


def early_stopping_callback(config: TrainingConfig, monitor: str
                            ) -> keras.callbacks.EarlyStopping:
    """Stop after ``early_stopping_patience`` epochs in a row without a lower ``monitor``;
    training ends with the best epoch's weights (the PyTorch backend's rule,
    :func:`ptycho_torch.workflows.training.early_stopping_callbacks`)."""
    return keras.callbacks.EarlyStopping(
        monitor=monitor, patience=config.early_stopping_patience, min_delta=0.0, mode='min',
        restore_best_weights=True, verbose=1 if config.debug else 0)


def compile_models(models: PtychoModels, config: TrainingConfig,
                   model: keras.Model | None = None) -> None:
    """Attach optimizer and loss to ``model`` (default the autoencoder; Adam at
    ``config.learning_rate``)."""
    if config.model.model_type == 'supervised':
        loss = supervised_loss(config.realspace_mae_weight, config.realspace_weight)
    else:
        loss = pinn_loss(models.s0, config.nll_weight, config.mae_weight)
    (model or models.autoencoder).compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                                          loss=loss, jit_compile=False)


def _with_cached_input(models: PtychoModels, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """``[X, offsets]`` plus the back-projection channels, computed once (timed, logged)."""
    start = time.perf_counter()
    features = models.backprojection_features(inputs[0], inputs[1])
    logger.info('Back-projection input of %d groups (%d iterations) computed in %.1f s',
                len(features), models.model_config.backprojection_iterations,
                time.perf_counter() - start)
    return [*inputs, features]


def _resume_state(resume_from: str | os.PathLike[str] | None, config: TrainingConfig,
                  steps_per_epoch: int) -> TrainingState | None:
    """The checkpoint to continue from (None: a fresh run), with what it means logged."""
    if resume_from is None:
        return None
    state = load_state(resume_from)
    if state.steps_per_epoch != steps_per_epoch:
        logger.warning('%s was written with %d steps per epoch, this run has %d (other data, '
                       'n_groups or batch_size): it continues, but not as the interrupted run '
                       'would have', state.path, state.steps_per_epoch, steps_per_epoch)
    if state.epoch >= config.nepochs:
        logger.info('%s already holds %d epochs (nepochs=%d): nothing left to train',
                    state.path, state.epoch, config.nepochs)
    else:
        logger.info('Resuming from %s after epoch %d of %d', state.path, state.epoch,
                    config.nepochs)
    return state


def train(models: PtychoModels, train_container: PtychoDataContainer, config: TrainingConfig,
          test_container: PtychoDataContainer | None = None,
          callbacks: list[keras.callbacks.Callback] | None = None,
          max_time: float | timedelta | None = None,
          resume_from: str | os.PathLike[str] | None = None) -> dict[str, list[float]]:
    """Fit ``models.autoencoder``; return ``{'train_loss': [...], 'val_loss': [...]}`` per epoch.

    With a back-projection input and a fixed probe the fit runs on
    ``models.cached_input_model`` (same weights) with the back-projection computed once.
    ``max_time`` (seconds or a timedelta) stops training once that much time has passed,
    data preparation included.

    With a real ``config.output_dir`` (not ``''``/``'.'``) the log ``config.logger`` chooses
    is written there and, after every epoch, ``checkpoints/last.npz``. ``resume_from``: such
    a checkpoint; training continues after its epoch up to ``nepochs`` (the model, the
    optimizer, the data order, the plateau and early-stopping counters as they were), and
    the history returned starts with the checkpoint's.

    Raises :class:`NonFiniteLossError` (weights restored to the last finite epoch) when the
    loss becomes NaN/Inf. Temporaries a killed earlier run left in ``config.output_dir``
    and its checkpoints folder are removed first (every TensorFlow training entry comes
    through here).
    """
    started = time.perf_counter()
    run_dir = Path(config.output_dir) if uses_output_dir(config.output_dir) else None
    if resume_from is not None and run_dir is None:
        raise ValueError(f'resume: TrainingConfig.output_dir is unset ({str(config.output_dir)!r})'
                         f'; a resumed run keeps writing its checkpoint there')
    if run_dir is not None and run_dir.is_dir():
        remove_stale_temporaries(run_dir, run_dir / CHECKPOINT_DIR)
    model_type = config.model.model_type
    trainee = models.cached_input_model or models.autoencoder
    x_all = _inputs(train_container)
    if models.cached_input_model is not None:
        x_all = _with_cached_input(models, x_all)
    y_all = _targets(train_container, model_type, 'training')
    validation: tuple[Any, Any] | None = None
    if test_container is not None:
        x_test = _inputs(test_container)
        if models.cached_input_model is not None:
            x_test = _with_cached_input(models, x_test)
        validation = (x_test, _targets(test_container, model_type, 'test'))
        x_train, y_train = x_all, y_all
    else:
        keep, held = _split(len(y_all), config.validation_split, config.seed)
        x_train = [a[keep] for a in x_all]
        y_train = x_train[0] if y_all is x_all[0] else y_all[keep]
        if len(held):
            validation = ([a[held] for a in x_all], y_all[held])
    monitor = 'val_loss' if validation is not None else 'loss'
    steps_per_epoch = math.ceil(len(y_train) / config.batch_size)

    compile_models(models, config, trainee)
    model_config = json.loads(json.dumps(to_dict(config.model), default=str))
    state = _resume_state(resume_from, config, steps_per_epoch)
    if state is not None:
        restore_model(state, trainee, model_config)
    guard = _NonFiniteGuard(config.nepochs)
    cbs: list[keras.callbacks.Callback] = [guard]
    logs = logger_callbacks(config, run_dir) if run_dir is not None else []
    cbs.extend(logs)  # before the plateau rule: they log the rate the epoch ran with
    plateau = early = None
    if config.lr_plateau_patience > 0:
        plateau = lr_plateau_callback(config, monitor)
        cbs.append(plateau)
    if config.early_stopping_patience > 0:
        early = early_stopping_callback(config, monitor)
        cbs.append(early)
    if run_dir is not None:  # after the plateau and early-stopping rules: their state in it
        cbs.append(EpochCheckpoint(checkpoint_path(run_dir, 'tensorflow'),
                                   model_config=model_config, steps_per_epoch=steps_per_epoch,
                                   failed=lambda: guard.failure is not None, plateau=plateau,
                                   early_stopping=early, resume_from=state))
    if max_time is not None:  # the budget includes the data preparation above
        seconds = max_time.total_seconds() if isinstance(max_time, timedelta) else float(max_time)
        cbs.append(_TimeLimit(max(seconds - (time.perf_counter() - started), 1.0)))
    cbs.extend(callbacks or [])

    first = 0 if state is None else state.epoch
    logger.info('Training TensorFlow PtychoPINN: %d groups (%d validation), %d epochs%s, '
                'batch %d', len(y_train), 0 if validation is None else len(validation[1]),
                config.nepochs, f' from epoch {first + 1}' if 0 < first < config.nepochs else '',
                config.batch_size)
    try:
        fit = trainee.fit(
            _training_batches(x_train, y_train, config.batch_size, config.seed, first),
            steps_per_epoch=steps_per_epoch, epochs=config.nepochs, initial_epoch=first,
            shuffle=False,  # the dataset reshuffles itself; Keras would warn it ignores this
            # numpy validation data: no stall measured (the eval iterator is rebuilt anyway)
            validation_data=None if validation is None else (tuple(validation[0]),
                                                             validation[1]),
            validation_batch_size=config.batch_size,
            callbacks=cbs, verbose=2 if config.debug else 0)
    except BaseException as exc:
        for callback in logs:
            if hasattr(callback, 'finish'):
                callback.finish('KILLED' if isinstance(exc, KeyboardInterrupt) else 'FAILED')
        raise
    raw = fit.history
    n_good = len(raw.get('loss', []))
    before = state.history if state is not None else {}
    history = {key: [*before.get(key, []), *(float(v) for v in raw.get(name, []))]
               for key, name in (('train_loss', 'loss'), ('val_loss', 'val_loss'))}
    if guard.failure is not None:
        if guard.good_weights is not None:
            trainee.set_weights(guard.good_weights)
        finite = {k: [v for v in vals if math.isfinite(v)] for k, vals in history.items()}
        raise NonFiniteLossError(
            f'TensorFlow training stopped: {guard.failure}. The weights after the last finite '
            f'epoch ({len(finite["train_loss"])} of {first + n_good} completed) were restored. '
            f'Lower learning_rate (now {config.learning_rate}) or check the data for NaN/Inf '
            f'or bad normalisation.',
            finite)
    return history
