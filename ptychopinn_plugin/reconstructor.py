"""The PINN and supervised reconstructors Ptychodus sees (Ptychodus-side, no frameworks).

Each method is a thin translation: settings -> validated ``ptycho.config`` configs,
Ptychodus data -> :class:`~ptychopinn_plugin.conversion.ScanData`, then one request to the
shared worker. Model files are PtychoPINN bundles (``wts.h5.zip`` archives with a JSON
manifest); the parent only peeks at the manifest to fail fast on a wrong backend.
"""

from __future__ import annotations

import json
import logging
import time
import zipfile
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ptychodus.api.io import StandardFileLayout
from ptychodus.api.product import LossValue
from ptychodus.api.reconstruct import (
    ReconstructInput,
    ReconstructOutput,
    TrainableReconstructor,
    TrainOutput,
)

from ptycho.atomic import copy_file

from .client import WorkerPool
from .conversion import result_product, scan_from_input, write_contract_npz
from .settings import PluginSettings
from .training_data import find_training_files

logger = logging.getLogger(__name__)
T = TypeVar('T')

MODEL_EXTENSION = '.zip'
MODEL_FILE_FILTER = 'PtychoPINN Model Bundle (*.zip)'
TRAINING_DATA_FILE_FILTER = 'PtychoPINN Training Data (*.npz)'
TRAINING_DIR_NAME = 'ptychopinn_training'
PROGRESS_INTERVAL_S = 0.5
"""Default least time between two partial images sent to Ptychodus."""


@dataclass(frozen=True)
class BundleInfo:
    """What the parent knows about a model file without loading it."""

    path: Path
    backend: str
    N: int | None
    gridsize: int | None
    model_type: str | None


def peek_bundle(path: Path) -> BundleInfo:
    """Read a bundle's manifest (stdlib only) and fail clearly on anything unexpected."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'{path}: model file not found')
    try:
        with zipfile.ZipFile(path) as archive:
            manifest = json.loads(archive.read('manifest.json'))
    except KeyError:
        raise ValueError(f'{path}: not a PtychoPINN model bundle (no manifest.json inside); '
                         f'models are written by training with this plugin or `ptychopinn '
                         f'train`') from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f'{path}: corrupt or truncated model bundle ({exc})') from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f'{path}: manifest.json is not valid JSON ({exc})') from exc
    if not isinstance(manifest, dict) or manifest.get('format') != 'ptychopinn-bundle':
        raise ValueError(f'{path}: manifest.json key "format": expected "ptychopinn-bundle", '
                         f'found {manifest.get("format") if isinstance(manifest, dict) else manifest!r}')
    model_cfg = manifest.get('config', {}).get('model', {}) if isinstance(
        manifest.get('config'), dict) else {}
    return BundleInfo(path, str(manifest.get('backend')), manifest.get('N'),
                      manifest.get('gridsize'), model_cfg.get('model_type'))


def _relay(stream: Generator[dict[str, Any], None, Any],
           convert: Callable[[dict[str, Any]], T]) -> Generator[T, None, Any]:
    """Yield ``convert(event)`` for each event of a worker request; return its result.

    A consumer that stops early (Ptychodus's Stop) closes the request, which cancels the
    worker's work at its next epoch or chunk.
    """
    while True:
        try:
            event = next(stream)
        except StopIteration as stop:
            return stop.value
        try:
            yield convert(event)
        except GeneratorExit:
            stream.close()
            raise


class PtychoPINNTrainableReconstructor(TrainableReconstructor):
    """One algorithm (``PINN`` or ``Supervised``) of the PtychoPINN-Dual library.

    The design card's lifecycle: Ptychodus settings -> ``TrainingConfig`` /
    ``InferenceConfig`` with ``backend`` (:class:`~ptychopinn_plugin.settings.PluginSettings`)
    -> the worker process, where :func:`ptycho.workflows.backend_selector.backend_for` calls
    ``update_legacy_dict`` and hands out the backend (:mod:`ptychopinn_plugin.engine`).
    """

    def __init__(self, name: str, settings: PluginSettings, workers: WorkerPool) -> None:
        self._name = name
        self._model_type = name.lower()
        self._settings = settings
        self._workers = workers
        self._model: BundleInfo | None = None
        self._progress_goal = 1
        self.last_timings: dict[str, float] = {}
        self.last_backend: str | None = None
        """The backend the worker's dispatcher ran the last train/reconstruct on."""
        self.progress_interval_s = PROGRESS_INTERVAL_S
        """Least time between two partial images of one reconstruction."""
        self.progress_chunk: int | None = None
        """Patterns per step of a reconstruction (None: the inference batch size)."""

    @property
    def name(self) -> str:
        return self._name

    @property
    def model_type(self) -> str:
        return self._model_type

    @property
    def model_path(self) -> Path | None:
        return None if self._model is None else self._model.path

    def get_progress_goal(self) -> int:
        return self._progress_goal

    # -- model files ------------------------------------------------------------------
    def is_model_loaded(self) -> bool:
        return self._model is not None

    def get_model_file_filter(self) -> str:
        return MODEL_FILE_FILTER

    def get_model_file_extension(self) -> str:
        return MODEL_EXTENSION

    def load_model_from_file(self, file_path: Path) -> None:
        """Check the bundle matches the selected backend, then load it in the worker."""
        info = peek_bundle(Path(file_path))
        backend = self._settings.backend_name()
        if info.backend != backend:
            raise ValueError(
                f'{file_path}: this model was trained with the {info.backend} backend, but the '
                f'{backend} backend is selected; set Backend to {info.backend} (models are not '
                f'interchangeable between tensorflow and pytorch)')
        if info.model_type not in (None, self._model_type):
            raise ValueError(f'{file_path}: this is a {info.model_type} model; select the '
                             f'{info.model_type} algorithm to use it')
        client = self._workers.client(backend)
        starts = client.starts
        tic = time.perf_counter()
        result = client.call('load', {'bundle': str(info.path),
                                      'config': self._inference_config(info)})
        self._model = info
        self.last_timings = {
            'worker_start_s': client.timings.worker_start_s if client.starts != starts else 0.0,
            'model_load_s': 0.0 if result['cached'] else result['load_s'],
            'total_s': time.perf_counter() - tic}
        logger.info('Loaded %s model %s (N=%s, gridsize=%s)', backend, info.path, info.N,
                    info.gridsize)

    def save_model(self, file_path: Path) -> None:
        if self._model is None:
            raise RuntimeError(f'Cannot save the {self._name} model: no model has been loaded '
                               f'or trained yet')
        source, target = self._model.path, Path(file_path)
        if source.resolve() != target.resolve():
            copy_file(source, target)
        logger.info('Saved model to %s', target)

    # -- training ---------------------------------------------------------------------
    def get_training_data_file_filter(self) -> str:
        return TRAINING_DATA_FILE_FILTER

    def export_training_data(self, file_path: Path, parameters: ReconstructInput) -> None:
        """Write the scan as a contract NPZ: amplitudes (sqrt(counts)), object-pixel positions."""
        write_contract_npz(Path(file_path), scan_from_input(parameters))

    def train(self, input_path: Path, output_path: Path) -> Iterator[TrainOutput]:
        """Validate now (so bad settings fail before any work), then stream epochs."""
        config = self._settings.training_config(
            self._model_type, output_dir=Path(output_path) / TRAINING_DIR_NAME)
        self._progress_goal = config.nepochs
        return self._train(Path(input_path), Path(output_path), config)

    def _train(self, input_path: Path, output_path: Path, config: Any) -> Iterator[TrainOutput]:
        files = find_training_files(input_path, output_path)
        target = output_path / f'{StandardFileLayout.MODEL_BASENAME}{MODEL_EXTENSION}'
        client = self._workers.client(config.backend)
        stream = client.stream('train', {
            'config': config, 'train_npz': str(files.train),
            'test_npz': None if files.test is None else str(files.test),
            'bundle': str(target)})
        training: list[LossValue] = []
        validation: list[LossValue] = []

        def epoch_output(event: dict[str, Any]) -> TrainOutput:
            epoch = int(event['epoch'])
            if event.get('train_loss') is not None:
                training.append(LossValue(epoch, float(event['train_loss'])))
            if event.get('val_loss') is not None:
                validation.append(LossValue(epoch, float(event['val_loss'])))
            return TrainOutput(list(training), list(validation), progress=epoch + 1)

        result = yield from _relay(stream, epoch_output)
        self._model = peek_bundle(Path(result['bundle']))
        self.last_backend = result['backend']
        logger.info('Trained %s model saved to %s', result['backend'], self._model.path)
        if not training and result.get('history'):
            history = result['history']
            training = [LossValue(e, float(v)) for e, v in enumerate(history.get('train_loss', []))]
            validation = [LossValue(e, float(v)) for e, v in enumerate(history.get('val_loss', []))]
            yield TrainOutput(training, validation, progress=len(training))

    # -- reconstruction ---------------------------------------------------------------
    def _inference_config(self, info: BundleInfo, N: int | None = None) -> Any:
        return self._settings.inference_config(
            self._model_type, N=N or info.N or 0, model_path=info.path)

    def reconstruct(self, parameters: ReconstructInput) -> Iterator[ReconstructOutput]:
        """The partial image as the worker's stream of chunks grows it, then the final one.

        Progress counts patterns (the goal is the scan's pattern count); a partial image is
        sent at most every :attr:`progress_interval_s`. Stopping early (Ptychodus's
        Stop) cancels the worker's reconstruction between chunks.
        """
        if self._model is None:
            raise RuntimeError(f'Cannot reconstruct with {self._name}: no model loaded; train '
                               f'one or use "Load Model..." first')
        self._progress_goal = max(len(parameters.diffraction_patterns), 1)
        return self._reconstruct(parameters, self._model)

    def _reconstruct(self, parameters: ReconstructInput,
                     info: BundleInfo) -> Iterator[ReconstructOutput]:
        tic = time.perf_counter()
        scan = scan_from_input(parameters)
        if info.N is not None and scan.pattern_size != info.N:
            raise ValueError(f'diffraction patterns are {scan.pattern_size} pixels but the model '
                             f'{info.path} was trained on N={info.N}')
        config = self._inference_config(info, scan.pattern_size)
        self._progress_goal = max(len(scan), 1)
        convert_s = time.perf_counter() - tic
        client = self._workers.client(config.backend)
        starts = client.starts
        stream = client.stream('reconstruct', {
            'bundle': str(info.path), 'config': config, 'scan': scan,
            'chunk': self.progress_chunk, 'progress_interval_s': self.progress_interval_s})
        result = yield from _relay(stream, lambda event: ReconstructOutput(
            result_product(parameters, event['image']), progress=int(event['patterns'])))
        timings = dict(result.get('timings', {}))
        timings['convert_s'] = convert_s
        timings['worker_start_s'] = (client.timings.worker_start_s
                                     if client.starts != starts else 0.0)
        timings['total_s'] = time.perf_counter() - tic
        self.last_timings = timings
        self.last_backend = result['backend']
        if result.get('uncovered'):
            logger.info('%d object pixels are not covered by any scan position; they are '
                        'left at 0', result['uncovered'])
        logger.info('Reconstructed %d patterns: %s', len(scan),
                    ', '.join(f'{k}={v:.3f}' for k, v in timings.items()))
        yield ReconstructOutput(result_product(parameters, result['image'],
                                               result.get('losses', ()), result.get('probe'),
                                               result.get('positions')),
                                progress=self._progress_goal)
