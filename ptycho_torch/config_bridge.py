"""Translate between the shared :mod:`ptycho.config.config` dataclasses and the torch ones.

The shared configs are what users, the CLI and Ptychodus write; the torch backend reads its
own dataclasses (:mod:`ptycho_torch.torch_config`). The renames are fixed here, once:

=========================  ===============================
shared (``ptycho``)        torch (``ptycho_torch``)
=========================  ===============================
``model.gridsize`` g        ``grid_size`` (g, g)
``model_type`` pinn         ``mode`` unsupervised
``model_type`` supervised   ``mode`` supervised
``amp_activation`` swish    ``amp_activation`` silu
``nepochs``                 ``epochs``
``neighbor_count``          ``K``
``subsample_seed`` (None)   ``seed`` (42)
=========================  ===============================

Values with no counterpart raise ``ValueError`` naming the field, the value and what the
other side accepts.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ptycho.config import config as core
from ptycho_torch import torch_config as tcfg

_MODE_TO_TORCH = {'pinn': 'unsupervised', 'supervised': 'supervised'}
_MODE_FROM_TORCH = {v: k for k, v in _MODE_TO_TORCH.items()}
_ACT_TO_TORCH = {'sigmoid': 'sigmoid', 'swish': 'silu', 'silu': 'silu',
                 'softplus': 'softplus', 'relu': 'relu'}


def _map(table: dict[str, str], value: Any, field_name: str, side: str) -> str:
    if value not in table:
        raise ValueError(f'config_bridge: {field_name}={value!r} has no {side} equivalent; '
                         f'expected one of {sorted(table)}')
    return table[value]


def _grid(gridsize: int) -> tuple[int, int]:
    return (int(gridsize), int(gridsize))


def _gridsize(grid_size: Any) -> int:
    values = tuple(grid_size) if isinstance(grid_size, (tuple, list)) else (grid_size, grid_size)
    if len(values) != 2 or values[0] != values[1] or int(values[0]) < 1:
        raise ValueError(f'config_bridge: grid_size={grid_size!r} has no shared equivalent; '
                         f'expected a square grid (g, g) with g >= 1 (shared gridsize is one int)')
    return int(values[0])


def to_torch_model(model: core.ModelConfig) -> tcfg.ModelConfig:
    """Shared ``ModelConfig`` -> torch ``ModelConfig``."""
    N = model.require_size()
    return tcfg.ModelConfig(
        N=N, grid_size=_grid(model.gridsize), n_filters_scale=model.n_filters_scale,
        mode=_map(_MODE_TO_TORCH, model.model_type, 'model_type', 'torch'),
        amp_activation=_map(_ACT_TO_TORCH, model.amp_activation, 'amp_activation', 'torch'),
        object_big=model.object_big, probe_big=model.probe_big, probe_mask=model.probe_mask,
        pad_object=model.pad_object, probe_scale=model.probe_scale,
        gaussian_smoothing_sigma=model.gaussian_smoothing_sigma,
        input_features=model.input_features,
        backprojection_iterations=model.backprojection_iterations,
        skip_connections=model.skip_connections, network_precision=model.network_precision)


def from_torch_model(model: tcfg.ModelConfig) -> core.ModelConfig:
    """Torch ``ModelConfig`` -> shared ``ModelConfig`` (validated by the shared class)."""
    if model.amp_activation not in tcfg.TORCH_ACTIVATIONS:
        raise ValueError(f'config_bridge: amp_activation={model.amp_activation!r} has no shared '
                         f'equivalent; expected one of {list(tcfg.TORCH_ACTIVATIONS)}')
    return core.ModelConfig(
        N=model.N, gridsize=_gridsize(model.grid_size), n_filters_scale=model.n_filters_scale,
        model_type=_map(_MODE_FROM_TORCH, model.mode, 'mode', 'shared'),
        amp_activation=model.amp_activation, object_big=model.object_big,
        probe_big=model.probe_big, probe_mask=model.probe_mask, pad_object=model.pad_object,
        probe_scale=model.probe_scale, gaussian_smoothing_sigma=model.gaussian_smoothing_sigma,
        input_features=model.input_features,
        backprojection_iterations=model.backprojection_iterations,
        skip_connections=model.skip_connections, network_precision=model.network_precision)


def to_torch_data(config: core.TrainingConfig | core.InferenceConfig) -> tcfg.DataConfig:
    """The data-side settings of a shared run config."""
    nphotons = getattr(config, 'nphotons', 1e9)
    return tcfg.DataConfig(
        N=config.model.require_size(), grid_size=_grid(config.model.gridsize),
        K=config.neighbor_count, n_groups=config.n_groups, nphotons=nphotons,
        probe_scale=config.model.probe_scale, sequential_sampling=config.sequential_sampling,
        seed=config.seed)


def to_torch_training(config: core.TrainingConfig) -> tcfg.TrainingConfig:
    """Shared ``TrainingConfig`` -> torch ``TrainingConfig``."""
    return tcfg.TrainingConfig(
        epochs=config.nepochs, batch_size=config.batch_size, learning_rate=config.learning_rate,
        nll_weight=config.nll_weight, mae_weight=config.mae_weight,
        realspace_mae_weight=config.realspace_mae_weight,
        realspace_weight=config.realspace_weight, nphotons=config.nphotons,
        probe_trainable=config.probe_trainable,
        intensity_scale_trainable=config.intensity_scale_trainable,
        output_dir=Path(config.output_dir), seed=config.seed,
        validation_split=config.validation_split,
        early_stopping_patience=config.early_stopping_patience,
        lr_plateau_patience=config.lr_plateau_patience, logger=config.logger,
        accelerator=config.accelerator, num_workers=config.num_workers, debug=config.debug)


def to_torch(config: core.TrainingConfig) -> tuple[tcfg.DataConfig, tcfg.ModelConfig,
                                                   tcfg.TrainingConfig]:
    """All torch dataclasses of a shared training config."""
    return to_torch_data(config), to_torch_model(config.model), to_torch_training(config)


def from_torch(data: tcfg.DataConfig, model: tcfg.ModelConfig,
               training: tcfg.TrainingConfig, **overrides: Any) -> core.TrainingConfig:
    """Torch dataclasses -> shared ``TrainingConfig`` (``backend='pytorch'``)."""
    if data.N != model.N or tuple(data.grid_size) != tuple(model.grid_size):
        raise ValueError(f'config_bridge: DataConfig (N={data.N}, grid_size={data.grid_size}) '
                         f'disagrees with ModelConfig (N={model.N}, grid_size={model.grid_size})')
    values: dict[str, Any] = dict(
        model=from_torch_model(model), batch_size=training.batch_size, nepochs=training.epochs,
        learning_rate=training.learning_rate, mae_weight=training.mae_weight,
        nll_weight=training.nll_weight, realspace_mae_weight=training.realspace_mae_weight,
        realspace_weight=training.realspace_weight, nphotons=training.nphotons,
        n_groups=data.n_groups, neighbor_count=data.K,
        probe_trainable=training.probe_trainable,
        intensity_scale_trainable=training.intensity_scale_trainable,
        output_dir=training.output_dir, backend='pytorch', debug=training.debug,
        subsample_seed=data.seed, sequential_sampling=data.sequential_sampling,
        validation_split=training.validation_split,
        early_stopping_patience=training.early_stopping_patience,
        lr_plateau_patience=training.lr_plateau_patience, logger=training.logger,
        accelerator=training.accelerator, num_workers=training.num_workers)
    values.update(overrides)
    return core.TrainingConfig(**values)


def inference_from_training(config: core.TrainingConfig, **overrides: Any) -> core.InferenceConfig:
    """The inference config matching a training config (same model, same grouping)."""
    values: dict[str, Any] = dict(
        model=dataclasses.replace(config.model), n_groups=config.n_groups,
        neighbor_count=config.neighbor_count, output_dir=config.output_dir,
        backend=config.backend, debug=config.debug, subsample_seed=config.subsample_seed)
    values.update(overrides)
    return core.InferenceConfig(**values)
