"""Translate between the shared :mod:`ptycho.config.config` dataclasses and the torch views.

The shared configs are what users, the CLI and Ptychodus write; the torch backend reads its
views (:mod:`ptycho_torch.torch_config`), which are derived from the shared fields. The
renames live in one table, :data:`ptycho_torch.torch_config.RENAMES`:

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

Every other field keeps its name and value, so the functions here walk the fields rather
than list them. Values with no counterpart raise ``ValueError`` naming the field, the value
and what the other side accepts.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ptycho.config import config as core
from ptycho_torch import torch_config as tcfg
from ptycho_torch.torch_config import MODEL, RENAMES, Rename, core_path


def _to_view(view: type, config: core.TrainingConfig | core.InferenceConfig | core.ModelConfig
             ) -> Any:
    """``view`` filled from ``config``; fields the config lacks keep the view's default."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(view):
        path = core_path(view, f.name)
        if isinstance(config, core.ModelConfig):
            source: Any = config if path.startswith(MODEL) else None
        else:
            source = config.model if path.startswith(MODEL) else config
        name = path.removeprefix(MODEL)
        if source is not None and hasattr(source, name):
            values[f.name] = RENAMES.get(name, Rename(name)).to_torch(getattr(source, name))
    return view(**values)


def to_torch_model(model: core.ModelConfig) -> Any:
    """Shared ``ModelConfig`` -> torch ``ModelConfig``."""
    model.require_size()
    return _to_view(tcfg.ModelConfig, model)


def to_torch_data(config: core.TrainingConfig | core.InferenceConfig) -> Any:
    """The data-side settings of a shared run config."""
    config.model.require_size()
    return _to_view(tcfg.DataConfig, config)


def to_torch_training(config: core.TrainingConfig) -> Any:
    """Shared ``TrainingConfig`` -> torch ``TrainingConfig``."""
    return _to_view(tcfg.TrainingConfig, config)


def to_torch(config: core.TrainingConfig) -> tuple[Any, Any, Any]:
    """All torch views of a shared training config: (data, model, training)."""
    return to_torch_data(config), to_torch_model(config.model), to_torch_training(config)


def _collect(views: tuple[Any, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model values, run values) in shared names; a field two views hold must agree."""
    model: dict[str, Any] = {}
    run: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for view in views:
        for f in dataclasses.fields(view):
            path = core_path(type(view), f.name)
            name = path.removeprefix(MODEL)
            value = RENAMES.get(name, Rename(name)).to_core(getattr(view, f.name))
            target = model if path.startswith(MODEL) else run
            label = f'{type(view).__name__}.{f.name}={getattr(view, f.name)!r}'
            if name in target and target[name] != value:
                raise ValueError(f'config_bridge: {label} disagrees with {origin[path]}')
            target[name] = value
            origin[path] = label
    return model, run


def from_torch_model(model: Any) -> core.ModelConfig:
    """Torch ``ModelConfig`` -> shared ``ModelConfig`` (validated by the shared class)."""
    values, _ = _collect((model,))
    return core.ModelConfig(**values)


def from_torch(data: Any, model: Any, training: Any, **overrides: Any) -> core.TrainingConfig:
    """Torch views -> shared ``TrainingConfig`` (``backend='pytorch'``)."""
    model_values, values = _collect((model, data, training))
    values = {'backend': 'pytorch', **values, 'model': core.ModelConfig(**model_values),
              **overrides}
    return core.TrainingConfig(**values)


CARRIED_TO_INFERENCE: tuple[str, ...] = ('n_groups', 'neighbor_count', 'output_dir', 'backend',
                                         'debug', 'subsample_seed')
"""Run fields an inference config takes from its training config (the rest, such as the
larger inference batch and sequential sampling, keep the inference defaults)."""


def inference_from_training(config: core.TrainingConfig, **overrides: Any) -> core.InferenceConfig:
    """The inference config matching a training config (same model, same grouping)."""
    values: dict[str, Any] = {name: getattr(config, name) for name in CARRIED_TO_INFERENCE}
    values.update(model=dataclasses.replace(config.model), **overrides)
    return core.InferenceConfig(**values)
