"""Worker-side engine: loads models once, trains, and reconstructs onto Ptychodus' grid.

Runs only inside the worker process (:mod:`ptychopinn_plugin.worker`). One ``Engine``
per worker holds the loaded models (keyed by bundle path, size and mtime, so a retrained
file is reloaded) and talks to the backend through a small adapter per framework:

* load a bundle -> ``LoadedModel`` (network + training config + intensity scale);
* ``predict``: group/normalise the scan as the model was trained, one forward pass per
  group -> complex object patches (B, N, N) and their centres (B, 2) in object pixels;
* ``stitch``: the backend's batched twin of ``ptycho.physics.stitch`` straight onto the
  Ptychodus object canvas (``canvas_shape`` = object shape, ``origin_xy`` = (0, 0));
* ``fit``: train with a per-epoch hook (progress + losses to Ptychodus) and a per-batch
  cancel check, then write the bundle.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptycho.atomic import copy_file
from ptycho.config.config import InferenceConfig, TrainingConfig
from ptycho.physics import default_crop

logger = logging.getLogger('ptychopinn_plugin.engine')

Emit = Callable[[dict[str, Any]], None]
MAX_CACHED_MODELS = 2


class TrainingCancelled(RuntimeError):
    """Training stopped because Ptychodus asked it to."""


@dataclass
class LoadedModel:
    models: Any
    config: TrainingConfig
    intensity_scale: float
    path: Path


def _require_backend(backend: str) -> None:
    """Fail fast with the dispatcher's actionable message when the framework is missing."""
    from ptycho.workflows.backend_selector import backend_module

    backend_module(backend)  # RuntimeError 'PyTorch backend selected but torch ...'


def _file_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size


# ------------------------------------------------------------------------ backend adapters
class _TensorFlow:
    name = 'tensorflow'

    def load(self, path: Path) -> LoadedModel:
        from ptycho.workflows.components import load_inference_models

        models, config = load_inference_models(path)  # a bundle zip of any name
        return LoadedModel(models, config, float(models.intensity_scale), path)

    def group(self, raw: Any, config: InferenceConfig) -> Any:
        from ptycho.loader import container_from_raw

        return container_from_raw(raw, config)

    def predict(self, model: LoadedModel, container: Any, config: InferenceConfig
                ) -> tuple[Any, np.ndarray]:
        from ptycho.workflows.components import predict_objects

        patches = predict_objects(model.models, container)[..., 0]
        return patches, np.asarray(container.global_offsets, np.float64).reshape(-1, 2)

    def stitch(self, patches: Any, positions: np.ndarray, M: int,
               canvas_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        from ptycho.phase_alignment import align_group_phases
        from ptycho.tf_helper import stitch

        image, coverage = stitch(align_group_phases(np.asarray(patches), positions, M), positions,
                                 M, canvas_shape=canvas_shape, origin_xy=(0.0, 0.0))
        return np.asarray(image), np.asarray(coverage)

    def fit(self, train_raw: Any, test_raw: Any, config: TrainingConfig, emit: Emit,
            cancel: Any) -> tuple[dict[str, list[float]], Path, LoadedModel]:
        import keras

        from ptycho import model_manager, params
        from ptycho.config.config import update_legacy_dict
        from ptycho.loader import container_from_raw
        from ptycho.model import create_model
        from ptycho.train_pinn import seed_everything, train

        class Hook(keras.callbacks.Callback):
            def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
                if cancel.is_set():
                    self.model.stop_training = True

            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                logs = logs or {}
                emit({'epoch': epoch, 'train_loss': logs.get('loss'),
                      'val_loss': logs.get('val_loss')})

        update_legacy_dict(params.cfg, config)
        train_container = container_from_raw(train_raw, config)
        test_container = None
        if test_raw is not None:
            test_container = container_from_raw(
                test_raw, dataclasses.replace(config, n_groups=None, sequential_sampling=True))
        seed_everything(config.seed)
        models = create_model(config, train_container.probe)
        history = train(models, train_container, config, test_container, callbacks=[Hook()])
        if cancel.is_set():
            raise TrainingCancelled('training cancelled')
        params.cfg['intensity_scale'] = models.intensity_scale
        bundle = Path(model_manager.save_models(models, config, config.output_dir))
        return history, bundle, LoadedModel(models, config, float(models.intensity_scale),
                                            bundle)


class _PyTorch:
    name = 'pytorch'

    def load(self, path: Path) -> LoadedModel:
        from ptycho_torch.workflows.components import load_inference_bundle_torch

        models, config = load_inference_bundle_torch(path)  # a bundle zip of any name
        return LoadedModel(models, config,
                           float(models['lightning_module'].intensity_scale), path)

    def group(self, raw: Any, config: InferenceConfig) -> Any:
        from ptycho_torch.data import as_torch_container

        return as_torch_container(raw, config)

    def predict(self, model: LoadedModel, container: Any, config: InferenceConfig
                ) -> tuple[Any, np.ndarray]:
        from ptycho_torch.inference import reconstruct_groups

        objects = reconstruct_groups(model.models['diffraction_to_obj'], container,
                                     model.intensity_scale, config.batch_size)
        return objects, container.global_offsets.numpy().astype(np.float64).reshape(-1, 2)

    def stitch(self, patches: Any, positions: np.ndarray, M: int,
               canvas_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        from ptycho_torch.inference import stitch_groups

        stitched = stitch_groups(patches, positions, M, canvas_shape, (0.0, 0.0))
        return stitched.image, stitched.coverage

    def fit(self, train_raw: Any, test_raw: Any, config: TrainingConfig, emit: Emit,
            cancel: Any) -> tuple[dict[str, list[float]], Path, LoadedModel]:
        from lightning.pytorch.callbacks import Callback

        from ptycho import params
        from ptycho.config.config import update_legacy_dict
        from ptycho_torch.data import as_torch_container
        from ptycho_torch.workflows.training import train_cdi_model_torch

        class Hook(Callback):
            def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
                if cancel.is_set():
                    trainer.should_stop = True

            def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
                metrics = trainer.callback_metrics
                emit({'epoch': int(trainer.current_epoch),
                      'train_loss': float(metrics['train_loss']) if 'train_loss' in metrics
                      else None,
                      'val_loss': float(metrics['val_loss']) if 'val_loss' in metrics else None})

        update_legacy_dict(params.cfg, config)
        train_container = as_torch_container(train_raw, config)
        test_container = None if test_raw is None else as_torch_container(
            test_raw, dataclasses.replace(config, n_groups=None, sequential_sampling=True))
        trained = train_cdi_model_torch(train_container, test_container, config,
                                        extra_callbacks=[Hook()])
        if cancel.is_set():
            raise TrainingCancelled('training cancelled')
        bundle = Path(trained['bundle'])
        model = LoadedModel(trained['models'], config, float(trained['intensity_scale']), bundle)
        return trained['history'], bundle, model


_ADAPTERS: dict[str, Callable[[], Any]] = {'tensorflow': _TensorFlow, 'pytorch': _PyTorch}


# ------------------------------------------------------------------------------ the engine
class Engine:
    """Request handlers of one worker; owns its model cache."""

    def __init__(self, backend: str, cancel: Any) -> None:
        if backend not in _ADAPTERS:
            raise ValueError(f'backend: expected one of {sorted(_ADAPTERS)}, found {backend!r}')
        self.backend = backend
        self._cancel = cancel
        self._adapter = _ADAPTERS[backend]()
        self._models: OrderedDict[tuple[str, int, int], LoadedModel] = OrderedDict()

    def handle(self, kind: str, payload: Any, emit: Emit) -> Any:
        handler = getattr(self, f'_do_{kind}', None)
        if handler is None:
            raise ValueError(f'PtychoPINN worker: unknown request {kind!r}')
        return handler(payload or {}, emit)

    # -- requests ---------------------------------------------------------------------
    def _do_ping(self, payload: dict[str, Any], emit: Emit) -> dict[str, Any]:
        return {'pid': os.getpid(), 'backend': self.backend,
                'cached_models': [key[0] for key in self._models]}

    def _do_load(self, payload: dict[str, Any], emit: Emit) -> dict[str, Any]:
        tic = time.perf_counter()
        model, cached = self._model(Path(payload['bundle']))
        return {'load_s': time.perf_counter() - tic, 'cached': cached, 'N': model.config.model.N,
                'gridsize': model.config.model.gridsize}

    def _do_reconstruct(self, payload: dict[str, Any], emit: Emit) -> dict[str, Any]:
        from ptycho.raw_data import RawData

        timings: dict[str, float] = {}
        tic = time.perf_counter()
        model, cached = self._model(Path(payload['bundle']))
        timings['model_load_s'] = 0.0 if cached else time.perf_counter() - tic
        scan = payload['scan']
        settings: InferenceConfig = payload['config']
        trained = model.config.model
        for key in ('N', 'gridsize'):
            wanted = getattr(settings.model, key)
            if wanted not in (0, getattr(trained, key)):
                logger.warning('Settings say %s=%s but the model was trained with %s=%s; '
                               'using the model\'s value', key, wanted, key, getattr(trained, key))
        if scan.pattern_size != trained.N:
            raise ValueError(f'{scan.source}: diffraction patterns are {scan.pattern_size} pixels '
                             f'but the model {model.path} was trained on N={trained.N}')
        config = InferenceConfig(model=trained, backend=self.backend,
                                 batch_size=settings.batch_size,
                                 neighbor_count=settings.neighbor_count,
                                 n_groups=None, sequential_sampling=True)
        from ptycho import params
        from ptycho.config.config import update_legacy_dict

        update_legacy_dict(params.cfg, config)
        tic = time.perf_counter()
        raw = RawData(scan.x_px, scan.y_px, None, None, scan.amplitudes, scan.probe, None,
                      source=scan.source, diffraction_units='amplitude',
                      diffraction_key='diffraction')
        container = self._adapter.group(raw, config)
        timings['prepare_s'] = time.perf_counter() - tic  # validation, grouping, normalising
        tic = time.perf_counter()
        patches, positions = self._adapter.predict(model, container, config)
        timings['inference_s'] = time.perf_counter() - tic
        tic = time.perf_counter()
        M = default_crop(trained.N)
        image, coverage = self._adapter.stitch(patches, positions, M, scan.object_shape)
        timings['stitch_s'] = time.perf_counter() - tic
        from ptycho.physics import COVERAGE_EPS

        uncovered = int(np.count_nonzero(np.asarray(coverage) < COVERAGE_EPS))
        return {'image': np.asarray(image, dtype=np.complex64), 'uncovered': uncovered,
                'groups': int(len(positions)), 'timings': timings}

    def _do_train(self, payload: dict[str, Any], emit: Emit) -> dict[str, Any]:
        from ptycho.raw_data import RawData

        config: TrainingConfig = payload['config']
        _require_backend(self.backend)
        train_raw = RawData.from_file(payload['train_npz'])
        test_raw = None if payload.get('test_npz') is None else RawData.from_file(
            payload['test_npz'])
        if config.model.model_type == 'supervised' and train_raw.objectGuess is None:
            raise ValueError(f'{payload["train_npz"]}: supervised training needs the object '
                             f'(objectGuess) as ground truth, found none')
        config = dataclasses.replace(
            config, backend=self.backend,
            model=dataclasses.replace(config.model, N=train_raw.N))
        tic = time.perf_counter()  # the client cleared the cancel flag with this request
        history, bundle, model = self._adapter.fit(train_raw, test_raw, config, emit,
                                                   self._cancel)
        target = Path(payload['bundle'])
        copy_file(bundle, target)
        model.path = target
        self._remember(_file_key(target), model)
        logger.info('Training took %.1f s; model saved to %s', time.perf_counter() - tic, target)
        return {'bundle': str(target), 'history': history,
                'training_dir': str(config.output_dir)}

    # -- model cache --------------------------------------------------------------------
    def _model(self, path: Path) -> tuple[LoadedModel, bool]:
        if not path.is_file():
            raise FileNotFoundError(f'{path}: model file not found')
        key = _file_key(path)
        model = self._models.get(key)
        if model is not None:
            self._models.move_to_end(key)
            return model, True
        _require_backend(self.backend)
        from ptycho.workflows.backend_selector import check_bundle_backend

        check_bundle_backend(path, self.backend)  # ValueError naming both backends
        model = self._adapter.load(path)
        self._remember(key, model)
        return model, False

    def _remember(self, key: tuple[str, int, int], model: LoadedModel) -> None:
        self._models[key] = model
        self._models.move_to_end(key)
        while len(self._models) > MAX_CACHED_MODELS:
            self._models.popitem(last=False)
