"""Training logs of the TensorFlow backend, chosen by ``TrainingConfig.logger``.

The same choices and places as the PyTorch backend (:mod:`ptycho.workflows.training_files`):

* ``'csv'``: ``keras.callbacks.CSVLogger`` writes ``{output_dir}/logs/version_<n>/metrics.csv``,
  one row per epoch (``epoch``, ``loss``, ``val_loss`` when validating, ``learning_rate``).
* ``'tensorboard'``: ``keras.callbacks.TensorBoard`` writes event files under
  ``{output_dir}/logs/version_<n>/`` (``train/`` and ``validation/``: ``epoch_loss``,
  ``epoch_learning_rate``). Needs the ``tensorboard`` package.
* ``'mlflow'``: :class:`MlflowMetrics` records one MLflow run (the config as parameters;
  ``train_loss``, ``val_loss`` and ``learning_rate`` per epoch) in
  ``MLFLOW_TRACKING_URI`` or the file store ``{output_dir}/mlruns``. Needs ``mlflow``
  (``mlflow-skinny`` is enough). Not ``mlflow.tensorflow.autolog``: that patches every
  Keras ``fit`` in the process and saves a model artefact on its own.
* ``'none'``: nothing.

CSV rows and event records are appended as each epoch ends (a kill keeps every finished
epoch); they are logs, not results, so they are not written atomically.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import keras

from ptycho.config.config import TrainingConfig, to_dict
from ptycho.workflows.training_files import (MLFLOW_EXPERIMENT, mlflow_tracking_uri,
                                             next_version_dir, require_logger_package)

logger = logging.getLogger(__name__)


def learning_rate(model: keras.Model) -> float:
    """The optimizer's current learning rate (read without numpy's ``__array__`` path,
    which warns on every call with TensorFlow variables)."""
    rate = model.optimizer.learning_rate
    return float(rate.numpy() if hasattr(rate, 'numpy') else rate)


class LearningRateInLogs(keras.callbacks.Callback):
    """Put the optimizer's learning rate of the epoch into its logs as ``learning_rate``
    (what ``ReduceLROnPlateau`` does itself; here also when it is off), for the loggers."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs['learning_rate'] = learning_rate(self.model)


def _flat_params(config: TrainingConfig) -> dict[str, str]:
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f'{prefix}{key}.', item)
        else:
            flat[prefix[:-1]] = str(value)[:500]
    walk('', to_dict(config))
    return flat


class MlflowMetrics(keras.callbacks.Callback):
    """One MLflow run per fit: the config as parameters, the losses per epoch.

    Uses an explicit ``MlflowClient`` (no active-run global state). :meth:`finish` ends
    the run; ``on_train_end`` calls it with 'FINISHED', the trainer with 'FAILED' or
    'KILLED' when the fit raised.
    """

    def __init__(self, config: TrainingConfig, tracking_uri: str) -> None:
        super().__init__()
        self.config = config
        self.tracking_uri = tracking_uri
        self.client: Any = None
        self.run_id: str | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        experiment = self.client.get_experiment_by_name(MLFLOW_EXPERIMENT)
        experiment_id = (experiment.experiment_id if experiment is not None
                         else self.client.create_experiment(MLFLOW_EXPERIMENT))
        run = self.client.create_run(experiment_id, tags={'backend': 'tensorflow'})
        self.run_id = run.info.run_id
        self.client.log_batch(self.run_id, params=[
            Param(key, value) for key, value in _flat_params(self.config).items()])
        logger.info('MLflow run %s in %s', self.run_id, self.tracking_uri)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        from mlflow.entities import Metric

        if self.run_id is None:
            return
        logs = logs or {}
        now = int(time.time() * 1000)
        names = {'loss': 'train_loss', 'val_loss': 'val_loss', 'learning_rate': 'learning_rate'}
        self.client.log_batch(self.run_id, metrics=[
            Metric(name, float(logs[key]), now, int(epoch))
            for key, name in names.items() if key in logs])

    def on_train_end(self, logs: dict | None = None) -> None:
        self.finish('FINISHED')

    def finish(self, status: str) -> None:
        """End the run with ``status`` (once; later calls do nothing)."""
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status)
            self.run_id = None


def logger_callbacks(config: TrainingConfig, output_dir: Path) -> list[keras.callbacks.Callback]:
    """The Keras callbacks that write ``config.logger``'s training log for this run
    (RuntimeError naming ``TrainingConfig.logger`` when its package is missing)."""
    kind = config.logger
    if kind == 'none':
        return []
    if kind == 'csv':
        folder = next_version_dir(output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        logger.info('Training log: %s', folder / 'metrics.csv')
        return [LearningRateInLogs(), keras.callbacks.CSVLogger(str(folder / 'metrics.csv'))]
    if kind == 'tensorboard':
        require_logger_package(kind)
        folder = next_version_dir(output_dir)
        logger.info('TensorBoard log: %s', folder)
        return [LearningRateInLogs(),
                keras.callbacks.TensorBoard(log_dir=str(folder), histogram_freq=0,
                                            write_graph=False, update_freq='epoch')]
    if kind == 'mlflow':
        require_logger_package(kind)
        return [LearningRateInLogs(), MlflowMetrics(config, mlflow_tracking_uri(output_dir))]
    raise ValueError(f"TrainingConfig.logger: expected one of ['csv', 'tensorboard', 'mlflow', "
                     f"'none'], found {kind!r}")
