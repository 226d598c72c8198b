"""The torch backend's view of the run configuration, derived from the core dataclasses.

The canonical run configuration is :mod:`ptycho.config.config`, shared with TensorFlow and
Ptychodus. The torch code reads it split by concern (data, model, training) and under the
names it uses (``grid_size``, ``mode``, ``epochs``, ``K``, ``silu``). Those views are not a
second list of fields: each is generated from the core fields (their types and defaults),
and :data:`RENAMES` is the one table of where a torch name or value differs. A field added
to a core dataclass therefore appears here with no edit. :mod:`ptycho_torch.config_bridge`
converts both ways; nothing else should build the views from scratch. (The PtychoPINN-Torch
configuration API that Ptychodus builds is :mod:`ptycho_torch.config_params`.)
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from ptycho.config import config as core

MODES: tuple[str, ...] = ('unsupervised', 'supervised')
TORCH_ACTIVATIONS: tuple[str, ...] = ('sigmoid', 'silu', 'softplus', 'relu')

_MODE_TO_TORCH = {'pinn': 'unsupervised', 'supervised': 'supervised'}
_MODE_TO_CORE = {v: k for k, v in _MODE_TO_TORCH.items()}
_ACTIVATION_TO_TORCH = {'swish': 'silu'}  # the same function; torch calls it silu


def _lookup(table: Mapping[str, str], value: Any, name: str, side: str) -> str:
    if value not in table:
        raise ValueError(f'config_bridge: {name}={value!r} has no {side} equivalent; '
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


def _activation_to_core(value: str) -> str:
    if value not in TORCH_ACTIVATIONS:
        raise ValueError(f'config_bridge: amp_activation={value!r} has no shared equivalent; '
                         f'expected one of {list(TORCH_ACTIVATIONS)}')
    return value


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Rename:
    """A core field whose torch name or value differs."""

    torch_name: str
    to_torch: Callable[[Any], Any] = _same
    to_core: Callable[[Any], Any] = _same
    torch_type: Any = None
    """Type of the torch field where the conversion changes it (else the core type)."""


RENAMES: dict[str, Rename] = {
    'gridsize': Rename('grid_size', _grid, _gridsize, tuple[int, int]),
    'model_type': Rename('mode', lambda v: _lookup(_MODE_TO_TORCH, v, 'model_type', 'torch'),
                         lambda v: _lookup(_MODE_TO_CORE, v, 'mode', 'shared')),
    'amp_activation': Rename('amp_activation', lambda v: _ACTIVATION_TO_TORCH.get(v, v),
                             _activation_to_core),
    'nepochs': Rename('epochs'),
    'neighbor_count': Rename('K'),
    'subsample_seed': Rename('seed', lambda v: core.DEFAULT_SEED if v is None else v, _same, int),
}
"""Core field name -> its torch name and value conversions (both directions)."""

MODEL = 'model.'
"""Prefix of a core path that names a :class:`ptycho.config.config.ModelConfig` field."""

NOT_IN_TRAINING_VIEW: frozenset[str] = frozenset({'model', 'backend'})
"""Core training fields with no place in the torch training view (the network is the model
view; the backend is this one)."""

DATA_FIELDS: tuple[str, ...] = ('model.N', 'model.gridsize', 'neighbor_count', 'n_groups',
                                'nphotons', 'model.probe_scale', 'sequential_sampling',
                                'subsample_seed')
"""Core paths that make the data view: how raw scans become grouped, normalised samples."""


_PATHS: dict[type, dict[str, str]] = {}


def derive(name: str, paths: tuple[str, ...], doc: str, namespace: dict[str, Any] | None = None,
           *, model_cls: type = core.ModelConfig, run_cls: type = core.TrainingConfig) -> type:
    """A dataclass with one field per core path (``'model.<field>'`` of ``model_cls``, else
    ``'<field>'`` of ``run_cls``), named and converted by :data:`RENAMES`; types and defaults
    are the core field's (converted)."""
    specs = []
    for path in paths:
        cls = model_cls if path.startswith(MODEL) else run_cls
        field = next(f for f in dataclasses.fields(cls) if f.name == path.removeprefix(MODEL))
        rename = RENAMES.get(field.name, Rename(field.name))
        default = (field.default if field.default is not dataclasses.MISSING
                   else field.default_factory())  # type: ignore[misc]
        hint = rename.torch_type or typing.get_type_hints(cls)[field.name]
        specs.append((rename.torch_name, hint, dataclasses.field(default=rename.to_torch(default))))
    view = dataclasses.make_dataclass(name, specs,
                                      namespace={'__doc__': doc, **(namespace or {})})
    view.__module__ = __name__  # so the views pickle (DDP spawn) and print like classes
    _PATHS[view] = {spec[0]: path for spec, path in zip(specs, paths)}
    return view


def model_paths(model_cls: type = core.ModelConfig) -> tuple[str, ...]:
    """Every field of the core model config: the model view."""
    return tuple(MODEL + f.name for f in dataclasses.fields(model_cls))


def training_paths(run_cls: type = core.TrainingConfig) -> tuple[str, ...]:
    """Every field of the core training config but :data:`NOT_IN_TRAINING_VIEW`."""
    return tuple(f.name for f in dataclasses.fields(run_cls) if f.name not in NOT_IN_TRAINING_VIEW)


def _channels(self: Any) -> int:
    """Patterns per sample, C = grid_size[0] * grid_size[1]."""
    return int(self.grid_size[0] * self.grid_size[1])


ModelConfig = derive('ModelConfig', model_paths(),
                     'Network and physics layers: the core ModelConfig, torch names.',
                     {'C': property(_channels)})
TrainingConfig = derive('TrainingConfig', training_paths(),
                        'Optimisation and trainer settings: the core TrainingConfig but the '
                        'model, torch names.')
DataConfig = derive('DataConfig', DATA_FIELDS,
                    'How raw scans become grouped, normalised samples (DATA_FIELDS, torch '
                    'names).', {'C': property(_channels)})
VIEWS: tuple[type, ...] = (DataConfig, ModelConfig, TrainingConfig)


def core_path(view: type, torch_name: str) -> str:
    """The core path (``'model.gridsize'``, ``'nepochs'``) a torch view field comes from."""
    return _PATHS[view][torch_name]


def view_from_dict(view: type, data: Mapping[str, Any]) -> Any:
    """A view from a plain dict as a checkpoint stores it (unknown keys are an error; lists
    become tuples and strings paths where the field is one; missing keys take defaults, so
    checkpoints written before a field existed still load)."""
    names = {f.name: f for f in dataclasses.fields(view)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f'{view.__name__}: unknown keys {unknown}')
    hints = typing.get_type_hints(view)
    values = dict(data)
    for key, value in data.items():
        if isinstance(names[key].default, tuple) and isinstance(value, list):
            values[key] = tuple(value)
        elif value is not None and hints[key] in (Path, Path | None):
            values[key] = Path(value)
    return view(**values)
