"""Lightning training of the torch backend: trainer, loggers, callbacks, persistence.

Everything is built from the shared :class:`ptycho.config.config.TrainingConfig` via the
config bridge. Reliability rules (DESIGN.md section 6): a non-finite loss aborts the fit
before any checkpoint of the bad state is written; ``last.ckpt`` is written by Lightning's
``ModelCheckpoint`` through :class:`AtomicCheckpointIO` (temp file beside it, fsync,
rename); temporaries a killed run left are removed when the next one starts; ``resume``
continues from it; the same seed reproduces the same losses and weights on CPU.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import (Callback, EarlyStopping, LearningRateMonitor,
                                         ModelCheckpoint)
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.plugins import TorchCheckpointIO
from torch import Tensor

from ptycho import progress
from ptycho.atomic import remove_stale_temporaries, write_bytes
from ptycho.config.config import TrainingConfig, to_dict
from ptycho.photons import resolve_nphotons
from ptycho.workflows import training_files
from ptycho.workflows.training_files import (LOG_DIR, MLFLOW_EXPERIMENT, mlflow_tracking_uri,
                                             require_logger_package)
from ptycho_torch import config_bridge
from ptycho_torch.data import PtychoDataContainerTorch, PtychoDataModule, as_torch_container
from ptycho_torch.model import NonFiniteLossError, PtychoPINN, PtychoPINN_Lightning
from ptycho_torch.persistence import save_bundle_torch

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = training_files.CHECKPOINT_DIR
LAST_CHECKPOINT = training_files.LAST_CHECKPOINT['pytorch']
MAX_FEATURE_CACHE_BYTES = 2 * 2 ** 30


class LossHistory(Callback):
    """Per-epoch ``train_loss``/``val_loss``; saved in checkpoints so resumes keep it."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {'train_loss': [], 'val_loss': []}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = trainer.callback_metrics
        for key in ('train_loss', 'val_loss'):
            if key in metrics:
                self.history[key].append(float(metrics[key]))
        logger.info('epoch %d: %s', trainer.current_epoch,
                    ', '.join(f'{k} {v[-1]:.6g}' for k, v in self.history.items() if v))

    def state_dict(self) -> dict[str, Any]:
        return {'history': {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {k: list(v) for k, v in state_dict.get('history', {}).items()}
        self.history.setdefault('train_loss', [])
        self.history.setdefault('val_loss', [])


class BestWeights(Callback):
    """Keep the weights of the epoch with the lowest monitored loss; load them at the end.

    Lightning's ``EarlyStopping`` stops but keeps the last epoch's weights; Keras'
    ``EarlyStopping(restore_best_weights=True)`` (the TensorFlow backend) ends with the
    best epoch's. This makes the torch backend end the same way, so the bundle written
    after training holds the best weights. Improvement means strictly lower, as in both
    early-stopping rules (``min_delta`` 0). The best state rides in checkpoints, so a
    resumed run ends as an uninterrupted one.
    """

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.best: float | None = None
        self.best_epoch = -1
        self.weights: dict[str, Tensor] | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        if self.best is None or float(value) < self.best:
            self.best, self.best_epoch = float(value), trainer.current_epoch
            self.weights = {key: tensor.detach().to('cpu', copy=True)
                            for key, tensor in pl_module.state_dict().items()}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.weights is None:
            return
        pl_module.load_state_dict(self.weights)
        logger.info('Restored the weights of epoch %d, the lowest %s (%.6g)',
                    self.best_epoch + 1, self.monitor, self.best)

    def state_dict(self) -> dict[str, Any]:
        return {'best': self.best, 'best_epoch': self.best_epoch, 'weights': self.weights}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict.get('best')
        self.best_epoch = int(state_dict.get('best_epoch', -1))
        self.weights = state_dict.get('weights')


def early_stopping_callbacks(config: TrainingConfig, monitor: str) -> list[Callback]:
    """``early_stopping_patience`` > 0: stop after that many epochs in a row without a
    lower ``monitor`` and end with the best epoch's weights (the TensorFlow backend's rule,
    :func:`ptycho.tf.training.early_stopping_callback`); none when it is 0."""
    if config.early_stopping_patience <= 0:
        return []
    return [BestWeights(monitor),
            EarlyStopping(monitor=monitor, patience=config.early_stopping_patience,
                          min_delta=0.0, mode='min', check_finite=True)]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written like every other file here, through :mod:`ptycho.atomic`.

    Lightning's own writer builds the file in the system temp folder and moves it over:
    across file systems that move copies into ``last.ckpt`` in place (a kill leaves it
    truncated), a kill leaves an anonymous ``/tmp/tmpXXXX`` nobody can attribute, and
    nothing is fsynced. Here the temporary sits beside the target under our own name, so
    :func:`ptycho.atomic.remove_stale_temporaries` finds it after a kill.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None or '://' in str(path):  # remote: Lightning's own
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_bytes(path, buffer.getbuffer())


def make_logger(config: TrainingConfig, output_dir: Path) -> Logger | bool:
    """The experiment logger chosen by ``config.logger`` (layout:
    :mod:`ptycho.workflows.training_files`, the same as the TensorFlow backend's)."""
    kind = config.logger
    if kind == 'none':
        return False
    if kind == 'csv':
        return CSVLogger(save_dir=str(output_dir), name=LOG_DIR)
    if kind == 'tensorboard':
        require_logger_package(kind, 'tensorboard', 'tensorboardX')
        from lightning.pytorch.loggers import TensorBoardLogger
        return TensorBoardLogger(save_dir=str(output_dir), name=LOG_DIR)
    if kind == 'mlflow':
        require_logger_package(kind)
        from lightning.pytorch.loggers import MLFlowLogger
        return MLFlowLogger(experiment_name=MLFLOW_EXPERIMENT,
                            tracking_uri=mlflow_tracking_uri(output_dir))
    raise ValueError(f"TrainingConfig.logger: expected one of ['csv', 'tensorboard', 'mlflow', "
                     f"'none'], found {kind!r}")


def checkpoint_path(output_dir: str | os.PathLike[str]) -> Path:
    return training_files.checkpoint_path(output_dir, 'pytorch')


@contextlib.contextmanager
def _quiet_lightning(debug: bool) -> Iterator[None]:
    """Hide Lightning's start-up banners (GPU/TPU availability, tips) unless debugging."""
    names = ('lightning.pytorch.utilities.rank_zero', 'lightning.fabric.utilities.rank_zero',
             'lightning.pytorch.accelerators.cuda')
    loggers = [logging.getLogger(name) for name in names]
    levels = [lg.level for lg in loggers]
    if not debug:
        for lg in loggers:
            lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def build_trainer(config: TrainingConfig, output_dir: Path, monitor: str,
                  max_time: timedelta | None = None, history: LossHistory | None = None,
                  extra_callbacks: list[Callback] | None = None,
                  batches_per_epoch: int = 10, validate: bool = True) -> pl.Trainer:
    """Lightning trainer with the project's checkpointing, logging and stopping rules.

    Devices are the config's: ``accelerator``, ``devices``, ``strategy`` (``'ddp'``: one
    process per device, each on its own shard of the groups through Lightning's
    distributed sampler; CPU processes talk over gloo), ``num_nodes`` and ``precision``.
    Lightning saves checkpoints from rank 0 only.
    """
    exp_logger = make_logger(config, output_dir)
    callbacks: list[Callback] = [
        history or LossHistory(),
        # Lightning writes last.ckpt only when it saved a regular checkpoint in the same step,
        # so keep one rolling epoch checkpoint (save_top_k=1, no monitor = the latest). No
        # version counter: a new run in the same directory replaces last.ckpt.
        ModelCheckpoint(dirpath=str(output_dir / CHECKPOINT_DIR), filename='{epoch:03d}',
                        save_top_k=1, save_last=True, every_n_epochs=1,
                        save_on_train_epoch_end=True, enable_version_counter=False),
    ]
    if exp_logger is not False:
        callbacks.append(LearningRateMonitor(logging_interval='epoch'))
    callbacks += early_stopping_callbacks(config, monitor)
    callbacks += extra_callbacks or []
    return pl.Trainer(
        max_epochs=config.nepochs, max_time=max_time, deterministic=True,
        default_root_dir=str(output_dir), accelerator=config.accelerator,
        devices=config.devices, strategy=config.strategy, num_nodes=config.num_nodes,
        precision=config.precision,
        logger=exp_logger, callbacks=callbacks, enable_progress_bar=config.debug,
        enable_model_summary=config.debug, num_sanity_val_steps=0,
        log_every_n_steps=max(1, min(10, batches_per_epoch)),
        enable_checkpointing=True, limit_val_batches=None if validate else 0,
        plugins=[AtomicCheckpointIO()])


def backprojection_cache(model: PtychoPINN, data: PtychoDataContainerTorch,
                         batch_size: int = 256) -> Tensor | None:
    """The back-projection input of every group, computed once before training.

    It depends only on the data and the probe, so with a fixed probe recomputing it every
    step (a few FFTs and overlap merges per group) would repeat identical work. None (the
    model computes it per batch) when the model does not use it, the probe is trained, or
    the cache would exceed :data:`MAX_FEATURE_CACHE_BYTES`.
    """
    if model.config.input_features != 'backprojection' or model.probe.requires_grad:
        return None
    X = data.X
    size = X.numel() * 2 * X.element_size()
    if size > MAX_FEATURE_CACHE_BYTES:
        logger.info('Back-projection input not cached (%.1f GiB > %.1f GiB): computed per batch',
                    size / 2 ** 30, MAX_FEATURE_CACHE_BYTES / 2 ** 30)
        return None
    offsets = data.local_offsets.to(torch.float32)
    start = time.perf_counter()
    chunks = []
    with torch.no_grad(), progress.bar(len(X), 'Back-projection input', 'group') as shown:
        for i in range(0, len(X), batch_size):
            chunks.append(model.backprojection(X[i:i + batch_size], offsets[i:i + batch_size]))
            shown.update(len(chunks[-1]))
    features = torch.cat(chunks) if chunks else X.new_zeros((0, 2 * X.shape[1], *X.shape[2:]))
    logger.info('Back-projection input of %d groups (%d iterations) computed in %.1f s',
                len(X), model.config.backprojection_iterations, time.perf_counter() - start)
    return features


@dataclass
class TrainingSession:
    """A training run built and ready to fit: what :func:`prepare_training` assembled.

    Kept as one object so a caller can add Lightning callbacks to ``trainer`` between
    preparing and running it (the Ptychodus PtychoPINN-Torch layer does).
    """

    config: TrainingConfig
    module: PtychoPINN_Lightning
    datamodule: PtychoDataModule
    trainer: pl.Trainer
    history: LossHistory
    output_dir: Path
    resume_from: Path | None


def prepare_training(train_data: Any, test_data: Any | None, config: TrainingConfig, *,
                     resume: bool | str | os.PathLike[str] = False,
                     max_time: timedelta | None = None,
                     extra_callbacks: list[Callback] | None = None,
                     module: PtychoPINN_Lightning | None = None) -> TrainingSession:
    """Group the data, build (or adopt) the Lightning module, the data module and the trainer.

    ``module``: a module built beforehand from the same config (its probe is set to the
    training data's); default: a new one. ``max_time`` counts from this call, so data
    preparation (the back-projection cache) is inside the budget.
    """
    started = time.monotonic()
    config = resolve_nphotons(config, train_data)  # None: from the data (before grouping)
    train_data = as_torch_container(train_data, config)
    test_data = as_torch_container(test_data, config) if test_data is not None else None
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if rank_zero_only.rank == 0:  # other ranks of a DDP run start while rank 0 writes
        remove_stale_temporaries(output_dir, output_dir / CHECKPOINT_DIR)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    _, model_cfg, training_cfg = config_bridge.to_torch(config)
    if module is None:
        module = PtychoPINN_Lightning(model_cfg, training_cfg, probe=train_data.probe,
                                      core_config=to_dict(config))
    else:
        module.model.set_probe(train_data.probe)
    datamodule = PtychoDataModule(train_data, test_data, config.batch_size, config.seed,
                                  config.validation_split, config.num_workers,
                                  with_truth=model_cfg.mode == 'supervised',
                                  features=lambda data: backprojection_cache(module.model, data))
    module.monitor = 'val_loss' if datamodule.has_validation else 'train_loss'
    if max_time is not None:
        prepared = timedelta(seconds=time.monotonic() - started)
        max_time = max(max_time - prepared, timedelta(seconds=1))
    history = LossHistory()
    batches = math.ceil(len(datamodule.train_set) / config.batch_size)
    with _quiet_lightning(config.debug):
        trainer = build_trainer(config, output_dir, module.monitor, max_time, history,
                                extra_callbacks, batches, datamodule.has_validation)
    return TrainingSession(config, module, datamodule, trainer, history, output_dir,
                           training_files.resume_path(resume, output_dir, 'pytorch'))


def run_training(session: TrainingSession, *, save_bundle: bool = True) -> dict[str, Any]:
    """Fit a prepared session, then write the bundle; the results dict of training.

    ``results['primary']`` is False in the other processes of a distributed run: they wrote
    nothing (``bundle`` None) and their caller should not write outputs either.
    """
    config, module, trainer, output_dir = (session.config, session.module, session.trainer,
                                           session.output_dir)
    ckpt = session.resume_from
    if ckpt is not None:
        logger.info('Resuming training from %s', ckpt)
    try:
        with _quiet_lightning(config.debug):
            trainer.fit(module, datamodule=session.datamodule,
                        ckpt_path=str(ckpt) if ckpt else None)
    except NonFiniteLossError as exc:
        kept = checkpoint_path(output_dir)
        where = f'last good checkpoint kept at {kept}' if kept.exists() else \
            'no checkpoint was written (it failed in the first epoch)'
        raise NonFiniteLossError(f'{exc} [{where}]') from None
    if getattr(trainer, 'interrupted', False):
        raise RuntimeError('training was interrupted')
    primary = trainer.is_global_zero  # in a DDP run, rank 0 alone writes files
    bundle = save_bundle_torch(module, config, output_dir) if save_bundle and primary else None
    return {
        'primary': primary,
        'history': session.history.history,
        'models': {'lightning_module': module, 'autoencoder': module,
                   'diffraction_to_obj': module.diffraction_to_obj()},
        'trainer': trainer,
        'intensity_scale': module.intensity_scale,
        'checkpoint': checkpoint_path(output_dir),
        'bundle': bundle,
        'epochs_run': trainer.current_epoch,
    }


def train_cdi_model_torch(train_data: Any, test_data: Any | None, config: TrainingConfig, *,
                          resume: bool | str | os.PathLike[str] = False,
                          max_time: timedelta | None = None, save_bundle: bool = True,
                          extra_callbacks: list[Callback] | None = None) -> dict[str, Any]:
    """Train on ``RawData`` or data containers; returns history, models, trainer and artefact paths.

    ``resume``: ``True`` continues from ``{output_dir}/checkpoints/last.ckpt`` (epochs
    count on to ``nepochs``), or give a checkpoint path. ``max_time`` is a wall-clock limit
    for the whole call, data preparation (the back-projection cache) included; the rest is
    Lightning's ``Timer``. A non-finite loss raises :class:`NonFiniteLossError` naming the
    kept checkpoint.
    """
    session = prepare_training(train_data, test_data, config, resume=resume, max_time=max_time,
                               extra_callbacks=extra_callbacks)
    return run_training(session, save_bundle=save_bundle)
