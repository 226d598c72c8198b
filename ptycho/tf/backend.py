"""The TensorFlow backend behind the contract of :mod:`ptycho.workflows.contract`."""

from __future__ import annotations

import contextlib
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from ptycho.bundle import bundle_path
from ptycho.config.config import InferenceConfig, TrainingConfig
from ptycho.loader import PtychoDataContainer, container_from_raw
from ptycho.workflows.contract import (GroupObjects, LoadedModel, Reconstruction, TrainHooks,
                                       TrainingCancelled, TrainResult, UnsupportedOption)
from ptycho.workflows.training_files import checkpoint_path, resume_path

NAME = 'tensorflow'


def _keras_hooks(hooks: TrainHooks) -> Any:
    """Per-epoch losses out, cancellation in, as a Keras callback (Keras imported here, so
    choosing this backend does not load TensorFlow before it trains or loads a model)."""
    import keras

    class Hooks(keras.callbacks.Callback):
        cancelled = False

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if hooks.should_stop is not None and hooks.should_stop():
                self.cancelled = True
                self.model.stop_training = True

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if hooks.on_epoch is not None:
                logs = logs or {}
                loss, val = logs.get('loss'), logs.get('val_loss')
                hooks.on_epoch(int(epoch), None if loss is None else float(loss),
                               None if val is None else float(val))

    return Hooks()


def _gpus() -> list[Any]:
    import tensorflow as tf

    return list(tf.config.list_physical_devices('GPU'))


def training_scope(config: TrainingConfig) -> contextlib.AbstractContextManager[Any]:
    """Where Keras builds and fits the model: ``accelerator`` and ``devices``.

    'cpu' pins everything to the CPU; 'gpu'/'cuda' asks for GPUs that must be visible;
    ``devices`` > 1 spreads one process over that many GPUs with
    ``tf.distribute.MirroredStrategy`` (the model is built inside its scope).
    """
    import tensorflow as tf

    if config.accelerator == 'cpu':
        if config.devices > 1:
            raise UnsupportedOption('devices > 1 with accelerator cpu', NAME,
                                    'MirroredStrategy spreads training over GPUs')
        return tf.device('/CPU:0')
    gpus = _gpus() if config.accelerator in ('gpu', 'cuda') or config.devices > 1 else []
    if config.accelerator in ('gpu', 'cuda') and not gpus:
        raise ValueError(f'TrainingConfig.accelerator: expected a visible GPU for '
                         f'{config.accelerator!r}, found none (tf.config.list_physical_devices)')
    if config.devices > 1:
        if len(gpus) < config.devices:
            raise ValueError(f'TrainingConfig.devices: expected at most the {len(gpus)} visible '
                             f'GPU(s), found {config.devices}')
        return tf.distribute.MirroredStrategy(
            [f'/GPU:{i}' for i in range(config.devices)]).scope()
    return contextlib.nullcontext()


def inference_scope(device: str) -> contextlib.AbstractContextManager[Any]:
    """``InferenceConfig.device`` as a TensorFlow device scope ('auto': TensorFlow's choice)."""
    import tensorflow as tf

    if device == 'auto':
        return contextlib.nullcontext()
    if device == 'cpu':
        return tf.device('/CPU:0')
    index = int(device.partition(':')[2] or 0)
    if index >= len(_gpus()):
        raise ValueError(f'InferenceConfig.device: expected a visible GPU, found {device!r} '
                         f'with {len(_gpus())} GPU(s) visible')
    return tf.device(f'/GPU:{index}')


class TensorFlowBackend:
    """Keras 3: training, bundles, batched inference, native stitching."""

    name = NAME

    def train(self, train_data: Any, test_data: Any | None, config: TrainingConfig, *,
              resume: bool | str | os.PathLike[str] = False, max_time: timedelta | None = None,
              hooks: TrainHooks | None = None, save_bundle: bool = True) -> TrainResult:
        from ptycho.tf import persistence
        from ptycho.tf.training import NonFiniteLossError
        from ptycho.tf.workflows import train_cdi_model

        tic = time.perf_counter()
        resume_from = resume_path(resume, config.output_dir, NAME)
        hook = _keras_hooks(hooks) if hooks is not None else None
        try:
            with training_scope(config):
                results = train_cdi_model(train_data, test_data, config, max_time=max_time,
                                          callbacks=[hook] if hook is not None else None,
                                          resume_from=resume_from)
        except NonFiniteLossError as exc:
            good = getattr(exc, 'models', None)
            if good is not None and save_bundle:
                path = persistence.save_models(good, exc.config, config.output_dir)
                raise NonFiniteLossError(f'{exc} [the last finite-epoch model was saved to '
                                         f'{path}]', exc.history) from None
            raise
        if hook is not None and hook.cancelled:
            raise TrainingCancelled('training cancelled; no model was saved')
        models, config = results['ptycho_models'], results['config']
        bundle = (Path(persistence.save_models(models, config, config.output_dir))
                  if save_bundle else None)
        model = LoadedModel(NAME, config, float(models.intensity_scale), bundle, models)
        history = results['history']
        checkpoint = checkpoint_path(config.output_dir, NAME)
        return TrainResult(NAME, model, history, len(history.get('train_loss', [])), bundle,
                           checkpoint if checkpoint.exists() else None,
                           time.perf_counter() - tic)

    def load(self, path: str | os.PathLike[str]) -> LoadedModel:
        from ptycho.tf.workflows import load_inference_models

        models, config = load_inference_models(path)
        return LoadedModel(NAME, config, float(models.intensity_scale), bundle_path(path),
                           models)

    def predict(self, model: LoadedModel, scan: Any, config: InferenceConfig) -> GroupObjects:
        from ptycho.tf.workflows import mirror_legacy_params, predict_objects

        tic = time.perf_counter()
        mirror_legacy_params(config)
        container = (scan if isinstance(scan, PtychoDataContainer)  # grouped by a stream
                     else container_from_raw(scan, config))
        with inference_scope(config.device):
            patches = np.asarray(predict_objects(model.handle, container,
                                                 batch_size=config.batch_size,
                                                 precision=config.precision_override)[..., 0])
        positions = np.asarray(container.global_offsets, np.float64).reshape(-1, 2)
        return GroupObjects(patches.astype(np.complex64), positions, time.perf_counter() - tic,
                            config.device)

    def stitch(self, groups: GroupObjects, M: int, *,
               canvas_shape: tuple[int, int] | None = None,
               origin_xy: tuple[float, float] | None = None,
               align_phase: bool = True) -> Reconstruction:
        from ptycho.phase_alignment import align_group_phases
        from ptycho.physics import canvas_geometry
        from ptycho.tf.physics import stitch

        if canvas_shape is None or origin_xy is None:
            canvas_shape, origin_xy = canvas_geometry(groups.positions_xy, M)
        patches = groups.patches
        if align_phase:
            patches = align_group_phases(np.asarray(patches), groups.positions_xy, M)
        with inference_scope(groups.device):
            image, coverage = stitch(patches, groups.positions_xy, M, canvas_shape=canvas_shape,
                                     origin_xy=origin_xy)
        return Reconstruction(np.asarray(image, np.complex64), np.asarray(coverage, np.float32),
                              (float(origin_xy[0]), float(origin_xy[1])), M, NAME, groups)

    def refine(self, scan: Any, reconstruction: Reconstruction,
               config: InferenceConfig) -> Reconstruction:
        from ptycho.tf.refine import refine

        return refine(scan, reconstruction, config)

    # -- the reference guide's workflows ------------------------------------------------
    def run_cdi_example(self, train_data: Any, test_data: Any | None, config: TrainingConfig,
                        flip_x: bool = False, flip_y: bool = False, transpose: bool = False,
                        M: int | None = None, do_stitching: bool = False
                        ) -> tuple[Any, Any, dict[str, Any]]:
        from ptycho.tf.workflows import run_cdi_example

        return run_cdi_example(train_data, test_data, config, flip_x, flip_y, transpose, M,
                               do_stitching)

    def train_cdi_model(self, train_data: Any, test_data: Any | None,
                        config: TrainingConfig) -> dict[str, Any]:
        from ptycho.tf.workflows import train_cdi_model

        return train_cdi_model(train_data, test_data, config)

    def load_inference_bundle(self, model_dir: str | os.PathLike[str]) -> tuple[Any, Any]:
        from ptycho.tf.workflows import load_inference_bundle

        return load_inference_bundle(model_dir)

    def reassemble_cdi_image(self, test_data: Any, config: TrainingConfig | InferenceConfig,
                             flip_x: bool = False, flip_y: bool = False,
                             transpose: bool = False, M: int | None = None, *,
                             models: Any = None) -> tuple[Any, Any, dict[str, Any]]:
        from ptycho.tf.workflows import reassemble_cdi_image

        return reassemble_cdi_image(test_data, config, flip_x, flip_y, transpose, M,
                                    models=models)
