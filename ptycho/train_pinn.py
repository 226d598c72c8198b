"""Keras training loop for the TensorFlow PtychoPINN models.

:func:`train` compiles the ``autoencoder`` of a :class:`ptycho.model.PtychoModels` with the
PINN (or supervised) loss and fits it. Validation uses the test container when given,
otherwise a seeded random ``validation_split`` of the training groups. A non-finite loss
stops training at once: the weights of the last finite epoch are restored and
:class:`NonFiniteLossError` is raised, so nothing downstream silently saves a broken model.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import timedelta
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ptycho.atomic import remove_stale_temporaries
from ptycho.config.config import TrainingConfig
from ptycho.loader import PtychoDataContainer
from ptycho.model import PtychoModels, pinn_loss, supervised_loss, supervised_targets

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
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
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


def _training_batches(x: list[np.ndarray], y: np.ndarray, batch_size: int, seed: int
                      ) -> tf.data.Dataset:
    """Endless shuffled batches of ``(tuple(x), y)``; fit with ``steps_per_epoch``.

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

    return order.batch(batch_size).map(gather).repeat().prefetch(2)


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


def compile_models(models: PtychoModels, config: TrainingConfig,
                   model: keras.Model | None = None) -> None:
    """Attach optimizer and loss to ``model`` (default the autoencoder; Adam at
    ``config.learning_rate``)."""
    if config.model.model_type == 'supervised':
        loss = supervised_loss
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


def train(models: PtychoModels, train_container: PtychoDataContainer, config: TrainingConfig,
          test_container: PtychoDataContainer | None = None,
          callbacks: list[keras.callbacks.Callback] | None = None,
          max_time: float | timedelta | None = None) -> dict[str, list[float]]:
    """Fit ``models.autoencoder``; return ``{'train_loss': [...], 'val_loss': [...]}`` per epoch.

    With a back-projection input and a fixed probe the fit runs on
    ``models.cached_input_model`` (same weights) with the back-projection computed once.
    ``max_time`` (seconds or a timedelta) stops training once that much time has passed,
    data preparation included.

    Raises :class:`NonFiniteLossError` (weights restored to the last finite epoch) when the
    loss becomes NaN/Inf. Temporaries a killed earlier run left in ``config.output_dir``
    are removed first (every TensorFlow training entry comes through here).
    """
    started = time.perf_counter()
    if config.output_dir.is_dir():
        remove_stale_temporaries(config.output_dir)
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

    compile_models(models, config, trainee)
    guard = _NonFiniteGuard(config.nepochs)
    cbs: list[keras.callbacks.Callback] = [guard]
    if config.lr_plateau_patience > 0:
        cbs.append(lr_plateau_callback(config, monitor))
    if config.early_stopping_patience > 0:
        cbs.append(keras.callbacks.EarlyStopping(
            monitor=monitor, patience=config.early_stopping_patience,
            restore_best_weights=True, verbose=1 if config.debug else 0))
    if max_time is not None:  # the budget includes the data preparation above
        seconds = max_time.total_seconds() if isinstance(max_time, timedelta) else float(max_time)
        cbs.append(_TimeLimit(max(seconds - (time.perf_counter() - started), 1.0)))
    cbs.extend(callbacks or [])

    logger.info('Training TensorFlow PtychoPINN: %d groups (%d validation), %d epochs, '
                'batch %d', len(y_train), 0 if validation is None else len(validation[1]),
                config.nepochs, config.batch_size)
    fit = trainee.fit(
        _training_batches(x_train, y_train, config.batch_size, config.seed),
        steps_per_epoch=math.ceil(len(y_train) / config.batch_size), epochs=config.nepochs,
        shuffle=False,  # the dataset reshuffles itself; Keras would warn it ignores this
        # numpy validation data: no stall measured (the eval iterator is rebuilt anyway)
        validation_data=None if validation is None else (tuple(validation[0]), validation[1]),
        validation_batch_size=config.batch_size,
        callbacks=cbs, verbose=2 if config.debug else 0)
    raw = fit.history
    n_good = len(raw.get('loss', []))
    history = {'train_loss': [float(v) for v in raw.get('loss', [])],
               'val_loss': [float(v) for v in raw.get('val_loss', [])]}
    if guard.failure is not None:
        if guard.good_weights is not None:
            trainee.set_weights(guard.good_weights)
        finite = {k: [v for v in vals if math.isfinite(v)] for k, vals in history.items()}
        raise NonFiniteLossError(
            f'TensorFlow training stopped: {guard.failure}. The weights after the last finite '
            f'epoch ({len(finite["train_loss"])} of {n_good} completed) were restored. Lower '
            f'learning_rate (now {config.learning_rate}) or check the data for NaN/Inf or bad '
            f'normalisation.',
            finite)
    return history
