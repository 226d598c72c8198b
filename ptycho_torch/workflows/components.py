"""Public torch workflows: train, save, load, reconstruct (the twins of
``ptycho.workflows.components``, same signatures and result shapes).

This module imports torch and Lightning, never TensorFlow.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any

import numpy as np

from ptycho.config.config import InferenceConfig, TrainingConfig, mirror_legacy_params
from ptycho.photons import resolve_nphotons
from ptycho_torch import config_bridge
from ptycho_torch.data import PtychoDataContainerTorch, as_torch_container
from ptycho_torch.inference import reconstruct_and_stitch
from ptycho_torch.model import NonFiniteLossError, PtychoPINN_Lightning
from ptycho_torch.persistence import load_inference_bundle_torch, save_bundle_torch
from ptycho_torch.workflows.training import checkpoint_path, train_cdi_model_torch

__all__ = ['run_cdi_example_torch', 'train_cdi_model_torch', 'load_inference_bundle_torch',
           '_reassemble_cdi_image_torch', 'save_bundle_torch', 'PtychoPINN_Lightning',
           'NonFiniteLossError', 'checkpoint_path', 'PtychoDataContainerTorch']

logger = logging.getLogger(__name__)

BACKEND = 'pytorch'


def _grouping_config(config: TrainingConfig | InferenceConfig) -> InferenceConfig:
    """Grouping for reconstruction: every position, in scan order, unless asked otherwise."""
    if isinstance(config, InferenceConfig):
        return config
    return config_bridge.inference_from_training(config, n_groups=None, sequential_sampling=True)


def _inference_batch(config: TrainingConfig | InferenceConfig) -> int:
    return config.batch_size if isinstance(config, InferenceConfig) else 256


def _inference_device(config: TrainingConfig | InferenceConfig) -> Any:
    """Where reconstruction runs: ``InferenceConfig.device``; after training, the device
    the training ``accelerator`` chose ('cpu' stays on the CPU, otherwise a GPU if any)."""
    from ptycho_torch.inference import resolve_device

    if isinstance(config, InferenceConfig):
        return resolve_device(config.device)
    return resolve_device('cpu' if config.accelerator == 'cpu' else 'auto')


def _model_dir(config: TrainingConfig | InferenceConfig) -> os.PathLike[str]:
    if isinstance(config, InferenceConfig) and config.model_path is not None:
        return config.model_path
    return config.output_dir


def _reassemble_cdi_image_torch(test_data: Any, config: TrainingConfig | InferenceConfig,
                                flip_x: bool = False, flip_y: bool = False,
                                transpose: bool = False, M: int | None = None, *,
                                models: dict[str, Any] | None = None,
                                canvas_shape: tuple[int, int] | None = None,
                                origin_xy: tuple[float, float] | None = None
                                ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Reconstruct ``test_data`` and stitch it natively in torch.

    The model comes from ``models`` (as returned by training or
    :func:`load_inference_bundle_torch`) or else from the bundle at ``config.model_path``
    (InferenceConfig) / ``config.output_dir`` (TrainingConfig); loads are cached.
    ``M`` is the central crop per patch (default ``ptycho.physics.default_crop(N)``, 20 for N = 64). Returns ``(amplitude, phase,
    results)`` with ``results['reconstruction']`` (complex) and ``results['coverage']``.
    """
    if models is None:
        models, _ = load_inference_bundle_torch(_model_dir(config))
    module: PtychoPINN_Lightning = models['lightning_module']
    container = as_torch_container(test_data, _grouping_config(config))
    amplitude, phase, results = reconstruct_and_stitch(
        models['diffraction_to_obj'], container, module.intensity_scale, flip_x=flip_x,
        flip_y=flip_y, transpose=transpose, M=M, batch_size=_inference_batch(config),
        canvas_shape=canvas_shape, origin_xy=origin_xy, device=_inference_device(config))
    results['backend'] = BACKEND
    results['test_container'] = container
    return amplitude, phase, results


def run_cdi_example_torch(train_data: Any, test_data: Any, config: TrainingConfig,
                          do_stitching: bool = False, flip_x: bool = False, flip_y: bool = False,
                          transpose: bool = False, M: int | None = None, *,
                          resume: bool | str | os.PathLike[str] = False,
                          max_time: timedelta | None = None
                          ) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    """Train (and optionally reconstruct ``test_data``) with the torch backend.

    ``train_data``/``test_data``: ``RawData`` or data containers (``test_data`` may be
    None). Writes ``{output_dir}/checkpoints/last.ckpt`` and ``{output_dir}/wts.h5.zip``.
    Returns ``(amplitude, phase, results)``; amplitude and phase are None unless
    ``do_stitching`` and ``test_data`` are given.
    """
    config = resolve_nphotons(config, train_data)  # None: from the data, before grouping
    mirror_legacy_params(config)
    train_container = as_torch_container(train_data, config)
    test_container = as_torch_container(test_data, config) if test_data is not None else None
    trained = train_cdi_model_torch(train_container, test_container, config, resume=resume,
                                    max_time=max_time)
    mirror_legacy_params(config, trained['intensity_scale'])
    results: dict[str, Any] = dict(trained)
    results.update(backend=BACKEND, train_container=train_container,
                   test_container=test_container)
    amplitude = phase = None
    if do_stitching:
        if test_data is None:
            logger.warning('do_stitching=True but no test_data: nothing to reconstruct')
        else:
            amplitude, phase, stitched = _reassemble_cdi_image_torch(
                test_data, config, flip_x, flip_y, transpose, M, models=trained['models'])
            results.update({k: v for k, v in stitched.items() if k != 'test_container'})
    return amplitude, phase, results
