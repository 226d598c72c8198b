"""The PtychoPINN-Torch API that Ptychodus 1.7.0's built-in library calls, over this backend.

Ptychodus' child processes (``ptychodus/model/ptychopinn_torch/_subprocess.py``) use::

    ConfigManager(data_config=, model_config=, training_config=, inference_config=,
                  datagen_config=)
    PtychoDataLoader(data_dir=, config_manager=, data_format=DataloaderFormats(...),
                     output_dir=)                       # training data on disk
    PtychoModel._new_model(model=PtychoPINN_Lightning, config_manager=)
    Trainer._from_lightning(model=, dataloader=, orchestration='lightning', config_manager=)
    trainer._trainer.callbacks.append(...); trainer.train(orchestration=, experiment_name=)
    PtychoModel._extract_configs_from_checkpoint(path) -> (data, model, training, inference)
    ConfigManager.from_loaded_model(model); config_manager.validate_arch_compatibility(model)
    PtychoDataLoader.from_np(diff_patterns=, probe=, positions=, config_manager=)
    InferenceEngine(config_manager=, ptycho_model=).predict_and_stitch(loader) -> object array

Each is a thin adapter: the settings are translated once by
:mod:`ptycho_torch.api.settings_map` into :class:`ptycho.config.config.TrainingConfig`, and
the work is this package's own torch backend (:func:`~ptycho_torch.workflows.training.
prepare_training`/``run_training``, :func:`~ptycho_torch.inference.reconstruct_groups`,
:func:`~ptycho_torch.inference.stitch_groups`). ``specs/ptychodus_api_spec.md`` §5 is the
contract.
"""

from __future__ import annotations

import datetime
import logging
import warnings
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from ptycho.atomic import copy_file
from ptycho.config import config as core
from ptycho.physics import PTYCHODUS_PIXEL_OFFSET, default_crop
from ptycho.ptychodus_io import find_training_files, read_pair
from ptycho.raw_data import CountsConversionWarning, RawData
from ptycho_torch import config_params as api
from ptycho_torch.api.settings_map import Request, describe_defaults, from_core
from ptycho_torch.data import as_torch_container
from ptycho_torch.inference import reconstruct_groups, resolve_device, stitch_groups
from ptycho_torch.model import PtychoPINN_Lightning
from ptycho_torch.workflows.training import (TrainingSession, prepare_training, run_training)

logger = logging.getLogger(__name__)

__all__ = ['ConfigManager', 'DataloaderFormats', 'InferenceEngine', 'PtychoDataLoader',
           'PtychoModel', 'Trainer', 'centred_canvas', 'position_window']


MODEL_FILE_NAME = 'model.ckpt'
"""Ptychodus' model file name for this library (``StandardFileLayout.MODEL_BASENAME`` + the
extension it registers, ``.ckpt``)."""


class DataloaderFormats(str, Enum):
    """How training data reach Lightning; this package feeds a LightningDataModule."""

    LIGHTNING_ONLY_MODULE = 'lightning_only_module'


@dataclass
class ConfigManager:
    """The five PtychoPINN-Torch configs, checked on construction (all problems at once)."""

    data_config: api.DataConfig
    model_config: api.ModelConfig
    training_config: api.TrainingConfig
    inference_config: api.InferenceConfig
    datagen_config: api.DatagenConfig = field(default_factory=api.DatagenConfig)

    def __post_init__(self) -> None:
        self.request = Request(self.data_config, self.model_config, self.training_config,
                               self.inference_config).check()
        defaults = describe_defaults(self.request)
        logger.info('PtychoPINN-Torch settings without a counterpart in this package, accepted '
                    'at their Ptychodus default: %s', ', '.join(defaults) or 'none')

    @classmethod
    def from_loaded_model(cls, ptycho_model: 'PtychoModel') -> 'ConfigManager':
        """The configs a loaded model was built with."""
        return cls(data_config=ptycho_model.data_config, model_config=ptycho_model.model_config,
                   training_config=ptycho_model.training_config,
                   inference_config=ptycho_model.inference_config)

    def validate_arch_compatibility(self, ptycho_model: 'PtychoModel') -> None:
        """ValueError naming every network setting where these configs and the model differ."""
        if ptycho_model.model is None:
            raise ValueError('validate_arch_compatibility: the PtychoModel holds no network')
        wanted = core.to_dict(self.request.model_config())
        built = ptycho_model.model.hparams.get('core_config') or {}
        have = built.get('model', {})
        differ = sorted(k for k, v in wanted.items() if have.get(k) != v)
        if differ:
            raise ValueError('PtychoPINN-Torch configs do not match the loaded network: ' +
                             ', '.join(f'{k}: configs {wanted[k]!r}, network {have.get(k)!r}'
                                       for k in differ))

    def core_training_config(self, *, nphotons: float, output_dir: Path) -> core.TrainingConfig:
        return self.request.training_config(nphotons=nphotons, output_dir=output_dir)


def _subset(raw: RawData, keep: NDArray[np.bool_]) -> RawData:
    """The positions of ``raw`` where ``keep`` is True (a new object; ``raw`` is untouched)."""
    return RawData(raw.xcoords[keep], raw.ycoords[keep], None, None, raw.diff3d[keep],
                   raw.probeGuess, raw.scan_index[keep], objectGuess=raw.objectGuess,
                   source=raw.source, diffraction_units='amplitude')


def position_window(raw: RawData, x_bounds: tuple[float, float],
                    y_bounds: tuple[float, float]) -> RawData:
    """Keep the positions inside the given fractions of the scan's x and y extent.

    ``DataConfig.x_bounds = (0.1, 0.9)`` keeps the central 80 % of the scan width, leaving
    out the edge positions whose neighbourhoods are incomplete; ``(0, 1)`` keeps all.
    """
    keep = np.ones(len(raw), dtype=bool)
    for coords, (lo, hi) in ((raw.xcoords, x_bounds), (raw.ycoords, y_bounds)):
        start, extent = float(coords.min()), float(np.ptp(coords))
        keep &= (coords >= start + lo * extent - 1e-9) & (coords <= start + hi * extent + 1e-9)
    if keep.all():
        return raw
    logger.info('x_bounds %s, y_bounds %s: training on %d of %d positions', tuple(x_bounds),
                tuple(y_bounds), int(keep.sum()), len(raw))
    return _subset(raw, keep)


class PtychoDataLoader:
    """A scan (and optional validation scan) read or handed over, plus the run directory."""

    def __init__(self, data_dir: str | Path | None = None, config_manager: ConfigManager | None
                 = None, data_format: DataloaderFormats | str =
                 DataloaderFormats.LIGHTNING_ONLY_MODULE, output_dir: str | Path | None = None,
                 *, raw: RawData | None = None) -> None:
        """``data_dir``: what :func:`ptycho.ptychodus_io.find_training_files` accepts.
        ``output_dir``: the run is written to ``output_dir/run_<timestamp>`` (``self.output_dir``),
        where :func:`ptycho_torch.lightning_utils.find_best_checkpoint` finds it."""
        self.config_manager = config_manager
        self.data_format = DataloaderFormats(data_format)
        self.test: RawData | None = None
        if raw is not None:
            self.train = raw
        elif data_dir is not None:
            files = find_training_files(data_dir)
            if files.pair:
                self.train = read_pair(files.train).raw
            else:
                self.train = RawData.from_file(files.train)
                self.test = RawData.from_file(files.test) if files.test else None
        else:
            raise ValueError('PtychoDataLoader: give data_dir (training data on disk) or use '
                             'PtychoDataLoader.from_np')
        if config_manager is not None and self.train.N != config_manager.data_config.N:
            raise ValueError(
                f'{self.train.source}: diffraction patterns are {self.train.N} x {self.train.N} '
                f'but PtychoPINNTorchData.model_size (DataConfig.N) is '
                f'{config_manager.data_config.N}; set it to {self.train.N}')
        self.output_dir: Path | None = None
        if output_dir is not None:
            stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
            self.output_dir = Path(output_dir) / f'run_{stamp}'

    @classmethod
    def from_np(cls, diff_patterns: ArrayLike, probe: ArrayLike, positions: ArrayLike,
                config_manager: ConfigManager | None = None) -> 'PtychoDataLoader':
        """A scan handed over in memory, as Ptychodus does for reconstruction.

        ``diff_patterns`` (M, N, N) detector counts; ``probe`` (N, N) or a (modes, N, N)
        stack; ``positions`` (M, 2) as **(y, x)** in Ptychodus object pixels (its
        ``map_probe_positions_to_object_{y,x}_px``).
        """
        positions = np.asarray(positions, dtype=np.float64)
        if positions.ndim != 2 or positions.shape[1] != 2:
            raise ValueError(f'PtychoDataLoader.from_np: positions expected (M, 2) as (y, x), '
                             f'found shape {positions.shape}')
        with warnings.catch_warnings():  # Ptychodus always hands counts: not news
            warnings.simplefilter('ignore', CountsConversionWarning)
            raw = RawData(positions[:, 1] + PTYCHODUS_PIXEL_OFFSET,
                          positions[:, 0] + PTYCHODUS_PIXEL_OFFSET, None, None, diff_patterns,
                          probe, None, source='PtychoDataLoader.from_np',
                          diffraction_units='counts', diffraction_key='diff_patterns')
        return cls(config_manager=config_manager, raw=raw)

    @property
    def nphotons(self) -> float:
        """Mean detected photons per pattern (the data are counts; amplitudes squared)."""
        amplitudes = self.train.diff3d.astype(np.float64)
        return float(np.mean(np.sum(amplitudes ** 2, axis=(1, 2))))


class PtychoModel:
    """A Lightning module and the PtychoPINN-Torch configs that describe it."""

    def __init__(self, model_config: api.ModelConfig, data_config: api.DataConfig,
                 training_config: api.TrainingConfig,
                 inference_config: api.InferenceConfig) -> None:
        self.model_config = model_config
        self.data_config = data_config
        self.training_config = training_config
        self.inference_config = inference_config
        self.model: PtychoPINN_Lightning | None = None

    @staticmethod
    def _extract_configs_from_checkpoint(path: str | Path) -> tuple[
            api.DataConfig, api.ModelConfig, api.TrainingConfig, api.InferenceConfig]:
        """The four configs recorded in a Lightning checkpoint of this package.

        A checkpoint trained through Ptychodus holds them as sent; one trained with the
        ``ptychopinn`` CLI or Python API holds this package's config, from which equivalent
        configs are derived (:func:`ptycho_torch.api.settings_map.from_core`).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f'{path}: checkpoint not found')
        try:
            checkpoint = torch.load(path, map_location='cpu', weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any decode failure means a bad file
            raise ValueError(f'{path}: not a readable Lightning checkpoint ({exc})') from exc
        hparams = checkpoint.get('hyper_parameters') if isinstance(checkpoint, dict) else None
        if not isinstance(hparams, dict) or not hparams.get('core_config'):
            raise ValueError(f'{path}: key "hyper_parameters.core_config": expected the '
                             f'configuration of a PtychoPINN checkpoint, found none')
        if hparams.get('data_config') is not None:
            from ptycho_torch.model import _as_api
            return tuple(_as_api(cls, hparams[key]) for cls, key in zip(  # type: ignore[return-value]
                api.CONFIG_CLASSES, ('data_config', 'api_model_config', 'api_training_config',
                                     'inference_config')))
        source = f'{path}:core_config'
        config = core.from_dict(core.TrainingConfig,
                                core.as_recorded(hparams['core_config'], source), source=source)
        return from_core(config)

    @classmethod
    def _new_model(cls, model: type[PtychoPINN_Lightning] = PtychoPINN_Lightning, *,
                   config_manager: ConfigManager) -> 'PtychoModel':
        """A new, untrained network for the configs. :meth:`Trainer._from_lightning` binds it
        to the training data (their photon count and probe)."""
        out = cls(config_manager.model_config, config_manager.data_config,
                  config_manager.training_config, config_manager.inference_config)
        out.model = model(model_config=config_manager.model_config,
                          training_config=config_manager.training_config,
                          data_config=config_manager.data_config,
                          inference_config=config_manager.inference_config)
        return out


class Trainer:
    """One training run of this backend; ``_trainer`` is the Lightning ``Trainer``."""

    def __init__(self, session: TrainingSession, model: PtychoModel,
                 dataloader: PtychoDataLoader) -> None:
        self._session = session
        self._trainer = session.trainer
        self.model = model
        self.dataloader = dataloader
        self.results: dict[str, Any] | None = None

    @classmethod
    def _from_lightning(cls, model: PtychoModel, dataloader: PtychoDataLoader,
                        orchestration: str = 'lightning', *,
                        config_manager: ConfigManager) -> 'Trainer':
        """Bind the network to the training data and build the Lightning trainer."""
        if str(orchestration).casefold() != 'lightning':
            raise ValueError(f'Trainer: orchestration {orchestration!r} is not available; this '
                             f'package trains with Lightning (orchestration="lightning")')
        if dataloader.output_dir is None:
            raise ValueError('Trainer: the PtychoDataLoader has no output_dir to write the run to')
        request = config_manager.request
        config = config_manager.core_training_config(nphotons=dataloader.nphotons,
                                                     output_dir=dataloader.output_dir)
        data = request.data
        train = position_window(dataloader.train, data.x_bounds, data.y_bounds)
        pl.seed_everything(config.seed, workers=True, verbose=False)  # the weights' init too
        module = PtychoPINN_Lightning(
            model_config=config_manager.model_config,
            training_config=config_manager.training_config, core_config=core.to_dict(config),
            data_config=data, inference_config=config_manager.inference_config)
        model.model = module
        session = prepare_training(train, dataloader.test, config, module=module)
        logger.info('PtychoPINN-Torch training: %d positions, N=%d, gridsize %d, %d epochs, '
                    'nphotons %.4g, %s x %d; run directory %s', len(train), config.model.N,
                    config.model.gridsize, config.nepochs, config.nphotons,
                    config.accelerator, config.devices, dataloader.output_dir)
        return cls(session, model, dataloader)

    def train(self, orchestration: str = 'lightning', experiment_name: str = '') -> dict[str, Any]:
        """Fit, then write ``wts.h5.zip`` beside the checkpoints (usable by ``ptychopinn``)
        and copy the final checkpoint to ``model.ckpt`` in the directory Ptychodus trains
        into: the file its batch ``-b reconstruct`` loads from an input directory."""
        if experiment_name:
            logger.info('Experiment %r', experiment_name)
        self.results = run_training(self._session)
        checkpoint = Path(self.results['checkpoint'])
        run_dir = self._session.output_dir
        if checkpoint.is_file() and self.results['primary']:
            model_file = copy_file(checkpoint, run_dir.parent / MODEL_FILE_NAME)
            logger.info('Model saved to %s (and %s)', model_file, checkpoint)
        return self.results


class InferenceEngine:
    """Reconstruct a scan with a loaded model and stitch it onto Ptychodus' object grid."""

    def __init__(self, config_manager: ConfigManager, ptycho_model: PtychoModel) -> None:
        if ptycho_model.model is None:
            raise ValueError('InferenceEngine: the PtychoModel holds no network')
        self.config_manager = config_manager
        self.ptycho_model = ptycho_model

    def predict_and_stitch(self, data_loader: PtychoDataLoader) -> NDArray[np.complex64]:
        """The stitched complex object (H, W), centred where Ptychodus centres its object.

        Ptychodus sizes an object to the scan's bounding box plus one probe width and puts
        its centre at the box centre; the array returned here is laid out the same way, so
        the caller's object geometry (pixel size, centre) applies to it unchanged.
        """
        module = self.ptycho_model.model
        assert module is not None
        request = self.config_manager.request
        trained = core.from_dict(core.TrainingConfig,
                                 core.as_recorded(module.hparams['core_config'],
                                                  'checkpoint core_config'),
                                 source='checkpoint core_config')
        N = trained.model.N
        raw = data_loader.train
        if raw.N != N:
            raise ValueError(f'{raw.source}: diffraction patterns are {raw.N} x {raw.N} but the '
                             f'model was trained on N={N}')
        config = core.InferenceConfig(model=trained.model, backend='pytorch',
                                      batch_size=int(request.inference.batch_size),
                                      neighbor_count=trained.neighbor_count, n_groups=None,
                                      sequential_sampling=True)
        container = as_torch_container(raw, config)
        module.eval()
        # Ptychodus' inference settings name no device: its training `device` does.
        device = resolve_device('cuda' if request.accelerator() == 'gpu' else 'cpu')
        objects = reconstruct_groups(module.diffraction_to_obj(), container,
                                     module.intensity_scale, config.batch_size, device)
        positions = container.global_offsets.numpy().astype(np.float64).reshape(-1, 2)
        M = request.stitch_crop() or default_crop(N)
        weights = None
        if request.inference.patch_weighting == 'probe':
            lo = N // 2 - M // 2
            intensity = module.model.probe.detach().abs().square()[lo:lo + M, lo:lo + M]
            weights = intensity / intensity.max().clamp_min(1e-30)
        shape, origin = centred_canvas(raw.positions_xy, N)
        stitched = stitch_groups(objects, positions, M, shape, origin, weights=weights)
        return stitched.image


def centred_canvas(positions_xy: NDArray[np.float64], N: int
                   ) -> tuple[tuple[int, int], tuple[float, float]]:
    """``(shape, origin_xy)`` of Ptychodus' object grid for a scan: the bounding box of the
    positions plus one probe width (``ptychodus.api.object.compute_object_geometry``),
    centred on the box's centre."""
    low, high = positions_xy.min(axis=0), positions_xy.max(axis=0)
    width, height = (int(np.ceil(extent + N)) for extent in high - low)
    centre = (low + high) / 2
    origin = (float(centre[0] - (width - 1) / 2), float(centre[1] - (height - 1) / 2))
    return (height, width), origin

