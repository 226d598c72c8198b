"""Worker-side engine: loads models once, trains, and reconstructs onto Ptychodus' grid.

Runs only inside the worker process (:mod:`ptychopinn_plugin.worker`). One ``Engine``
per worker holds the loaded models (keyed by bundle path, size and mtime, so a retrained
file is reloaded). Every request follows the design card: the payload's
``TrainingConfig``/``InferenceConfig`` carries ``backend``;
:func:`ptycho.workflows.backend_selector.backend_for` mirrors it into ``params.cfg``
(``update_legacy_dict``) and hands out the backend (failing fast, with the install command,
when torch is missing); the work is the backend contract (:mod:`ptycho.workflows.contract`):
``train`` with per-epoch and cancel hooks, ``load``, and reconstruction as a
:class:`~ptycho.workflows.streaming.ScanStream` straight onto the Ptychodus object canvas
(``canvas_shape`` = object shape, ``origin_xy`` = (0, 0)), fed chunk by chunk so the partial
image goes to Ptychodus as it forms (events ``{'patterns', 'groups', 'image'}``).
Nothing here knows which framework runs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ptycho.atomic import copy_file
from ptycho.config.config import BACKENDS, InferenceConfig, TrainingConfig
from ptycho.physics import default_crop
from ptycho.workflows import backend_selector
from ptycho.workflows.contract import (Backend, LoadedModel, TrainHooks, TrainingCancelled,
                                       inference_config_for, run_settings, with_refinement)
from ptycho.workflows.streaming import ScanStream

logger = logging.getLogger('ptychopinn_plugin.engine')

Emit = Callable[[dict[str, Any]], None]
MAX_CACHED_MODELS = 2

__all__ = ['Engine', 'ReconstructionCancelled', 'TrainingCancelled']


class ReconstructionCancelled(RuntimeError):
    """Ptychodus stopped reading a reconstruction: the worker stops between chunks."""


def _file_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size


# ------------------------------------------------------------------------------ the engine
class Engine:
    """Request handlers of one worker; owns its model cache."""

    def __init__(self, backend: str, cancel: Any) -> None:
        if backend not in BACKENDS:
            raise ValueError(f'backend: expected one of {list(BACKENDS)}, found {backend!r}')
        self.backend = backend
        self._cancel = cancel
        self._models: OrderedDict[tuple[str, int, int], LoadedModel] = OrderedDict()
        self.loads = 0
        """Bundles read from disk so far (a warm reconstruct adds none; ``ping`` reports it)."""

    def handle(self, kind: str, payload: Any, emit: Emit) -> Any:
        handler = getattr(self, f'_do_{kind}', None)
        if handler is None:
            raise ValueError(f'PtychoPINN worker: unknown request {kind!r}')
        return handler(payload or {}, emit)

    def _dispatch(self, config: TrainingConfig | InferenceConfig) -> Backend:
        """``update_legacy_dict`` + the dispatcher, for a config of this worker's backend."""
        if config.backend != self.backend:
            config = dataclasses.replace(config, backend=self.backend)
        return backend_selector.backend_for(config)

    # -- requests ---------------------------------------------------------------------
    def _do_ping(self, payload: dict[str, Any], emit: Emit) -> dict[str, Any]:
        return {'pid': os.getpid(), 'backend': self.backend,
                'cached_models': [key[0] for key in self._models], 'loads': self.loads}

    def _do_load(self, payload: dict[str, Any], emit: Emit) -> dict[str, Any]:
        tic = time.perf_counter()
        model, cached = self._model(Path(payload['bundle']), payload.get('config'))
        return {'load_s': time.perf_counter() - tic, 'cached': cached, 'N': model.config.model.N,
                'gridsize': model.config.model.gridsize}

    def _do_reconstruct(self, payload: dict[str, Any], emit: Emit) -> dict[str, Any]:
        from ptycho.raw_data import RawData

        timings: dict[str, float] = {}
        tic = time.perf_counter()
        settings: InferenceConfig = payload['config']
        model, cached = self._model(Path(payload['bundle']), settings)
        timings['model_load_s'] = 0.0 if cached else time.perf_counter() - tic
        scan = payload['scan']
        trained = model.config.model
        for key in ('N', 'gridsize'):
            wanted = getattr(settings.model, key)
            if wanted not in (0, getattr(trained, key)):
                logger.warning('Settings say %s=%s but the model was trained with %s=%s; '
                               'using the model\'s value', key, wanted, key, getattr(trained, key))
        if scan.pattern_size != trained.N:
            raise ValueError(f'{scan.source}: diffraction patterns are {scan.pattern_size} pixels '
                             f'but the model {model.path} was trained on N={trained.N}')
        config = inference_config_for(model, **run_settings(settings))
        backend = self._dispatch(config)
        tic = time.perf_counter()
        raw = RawData(scan.x_px, scan.y_px, None, None, scan.amplitudes, scan.probe, None,
                      source=scan.source, diffraction_units='amplitude',
                      diffraction_key='diffraction', bad_pixels=scan.bad_pixels)
        timings['prepare_s'] = time.perf_counter() - tic  # validation
        positions = np.stack([raw.xcoords, raw.ycoords], axis=1)
        # The whole scan's positions are the plan: the groups of a whole-scan reconstruction.
        stream = ScanStream(backend, model, config, raw.probeGuess, plan=positions,
                            M=default_crop(trained.N), canvas_shape=scan.object_shape,
                            origin_xy=(0.0, 0.0))
        chunk = max(int(payload.get('chunk') or config.batch_size), 1)
        interval = float(payload.get('progress_interval_s', 0.5))
        last_emit = time.perf_counter()
        for start in range(0, len(raw), chunk):
            if self._cancel.is_set():
                raise ReconstructionCancelled(
                    f'reconstruction cancelled after {start} of {len(raw)} patterns')
            status = stream.add(raw.diff3d[start:start + chunk], positions[start:start + chunk])
            done = start + chunk >= len(raw)
            if not done and status.groups and time.perf_counter() - last_emit >= interval:
                partial = stream.image()
                emit({'patterns': status.patterns, 'groups': status.groups,
                      'image': np.asarray(partial.obj, dtype=np.complex64)})
                last_emit = time.perf_counter()
        # The network's image, then the physics refinement on the scan's data (if asked).
        result = with_refinement(backend, raw, stream.close(), config)
        timings.update(stream.seconds)
        timings.update(result.timings)
        return {'image': np.asarray(result.obj, dtype=np.complex64),
                'probe': result.probe if result.probe_refined else None,
                'positions': result.positions_xy,
                'losses': list(result.losses),
                'uncovered': result.uncovered, 'groups': stream.groups_done,
                'patterns': stream.patterns, 'timings': timings, 'backend': result.backend}

    def _do_train(self, payload: dict[str, Any], emit: Emit) -> dict[str, Any]:
        from ptycho.raw_data import RawData

        config: TrainingConfig = payload['config']
        backend = self._dispatch(config)  # fails fast when the framework is missing
        train_raw = RawData.from_file(payload['train_npz'])
        test_raw = None if payload.get('test_npz') is None else RawData.from_file(
            payload['test_npz'])
        if config.model.model_type == 'supervised' and train_raw.objectGuess is None:
            raise ValueError(f'{payload["train_npz"]}: supervised training needs the object '
                             f'(objectGuess) as ground truth, found none')
        config = dataclasses.replace(
            config, backend=self.backend,
            model=dataclasses.replace(config.model, N=train_raw.N))

        def on_epoch(epoch: int, train_loss: float | None, val_loss: float | None) -> None:
            emit({'epoch': epoch, 'train_loss': train_loss, 'val_loss': val_loss})

        tic = time.perf_counter()  # the client cleared the cancel flag with this request
        trained = backend.train(train_raw, test_raw, config,
                                hooks=TrainHooks(on_epoch=on_epoch,
                                                 should_stop=self._cancel.is_set))
        if trained.bundle_path is None:
            raise RuntimeError(f'the {self.backend} backend wrote no model bundle')
        target = Path(payload['bundle'])
        copy_file(trained.bundle_path, target)
        self._remember(_file_key(target), dataclasses.replace(trained.model, path=target))
        logger.info('Training took %.1f s; model saved to %s', time.perf_counter() - tic, target)
        return {'bundle': str(target), 'history': dict(trained.history),
                'training_dir': str(config.output_dir), 'backend': trained.backend}

    # -- model cache --------------------------------------------------------------------
    def _model(self, path: Path, config: InferenceConfig | None = None
               ) -> tuple[LoadedModel, bool]:
        if not path.is_file():
            raise FileNotFoundError(f'{path}: model file not found')
        key = _file_key(path)
        model = self._models.get(key)
        if model is not None:
            self._models.move_to_end(key)
            return model, True
        backend = self._dispatch(config if config is not None
                                 else InferenceConfig(backend=self.backend))
        backend_selector.check_bundle_backend(path, self.backend)  # names both backends
        model = backend.load(path)
        self.loads += 1
        self._remember(key, model)
        return model, False

    def _remember(self, key: tuple[str, int, int], model: LoadedModel) -> None:
        self._models[key] = model
        self._models.move_to_end(key)
        while len(self._models) > MAX_CACHED_MODELS:
            self._models.popitem(last=False)
