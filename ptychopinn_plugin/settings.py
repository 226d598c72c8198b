"""The plugin's Ptychodus settings groups and their translation into run configs.

The values live in Ptychodus' own settings registry, so they are saved to and read from
the Ptychodus settings file like every other reconstructor's. The groups are generated from
the ``ptycho.config.config`` dataclasses: every field whose metadata carries a
:class:`~ptycho.config.config.Setting` becomes a parameter under that setting's key, typed
and defaulted by the field, so the plugin cannot fall behind the configs. Only the backend
choice, shared by training and inference, is declared here.

The parameters carry no minimum/maximum: Ptychodus clamps bounded parameters silently,
which would hide a bad value in a settings file. Instead every value is checked by the
dataclasses, whose ``ValueError`` names the field, what was expected and what was found;
that message is what Ptychodus shows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ptychodus.api.observer import Observable, Observer
from ptychodus.api.parameters import Parameter, ParameterGroup, StringParameter
from ptychodus.api.settings import SettingsRegistry

from ptycho.config.config import (
    BACKENDS,
    FieldInfo,
    InferenceConfig,
    ModelConfig,
    Setting,
    TrainingConfig,
    describe,
)

logger = logging.getLogger(__name__)

GROUP_BACKEND = 'PtychoPINNDualBackend'
GROUP_MODEL = 'PtychoPINNDualModel'
GROUP_TRAINING = 'PtychoPINNDualTraining'
GROUP_INFERENCE = 'PtychoPINNDualInference'
GROUP_NAMES = (GROUP_BACKEND, GROUP_MODEL, GROUP_TRAINING, GROUP_INFERENCE)

_CREATE: dict[type, Callable[[ParameterGroup, str, Any], Parameter[Any]]] = {
    bool: ParameterGroup.create_boolean_parameter,
    int: ParameterGroup.create_integer_parameter,
    float: ParameterGroup.create_real_parameter,
    str: ParameterGroup.create_string_parameter,
}


@dataclass(frozen=True)
class PluginField:
    """A config field that is a plugin setting."""

    info: FieldInfo
    setting: Setting

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def menu(self) -> tuple[str, ...]:
        """The values a combo box offers (empty: a free-form field)."""
        return self.setting.menu or tuple(map(str, self.info.choices))


def plugin_fields(cls: type) -> tuple[PluginField, ...]:
    """The fields of ``cls`` that declare a :class:`Setting`, in declaration order."""
    out = []
    for info in describe(cls):
        if info.setting is None:
            continue
        if info.type not in _CREATE:
            raise TypeError(f'{cls.__name__}.{info.name}: a {info.type.__name__} field cannot '
                            f'be a Ptychodus setting')
        if info.default is None and info.setting.unset is None:
            raise TypeError(f'{cls.__name__}.{info.name}: a field whose default is None needs '
                            f'Setting.unset (the settings value that stands for None)')
        out.append(PluginField(info, info.setting))
    return tuple(out)


class _Group(Observable, Observer):
    """One Ptychodus settings group; re-notifies when any of its parameters changes."""

    def __init__(self, registry: SettingsRegistry, name: str) -> None:
        super().__init__()
        self.name = name
        self._group = registry.create_group(name)
        self._group.add_observer(self)

    def _update(self, observable: Observable) -> None:
        if observable is self._group:
            self.notify_observers()


class BackendSettings(_Group):
    """Which backend trains and runs the model (one choice for training and inference)."""

    def __init__(self, registry: SettingsRegistry) -> None:
        super().__init__(registry, GROUP_BACKEND)
        default = next(i.default for i in describe(TrainingConfig) if i.name == 'backend')
        self.backend: StringParameter = self._group.create_string_parameter('Backend', default)


class ConfigSettings(_Group):
    """The settings of one config dataclass; each parameter is an attribute named like its
    field (``settings.training.nepochs``)."""

    def __init__(self, registry: SettingsRegistry, name: str, cls: type) -> None:
        super().__init__(registry, name)
        self.config_class = cls
        self.fields = plugin_fields(cls)
        self.parameters: dict[str, Parameter[Any]] = {}
        for field in self.fields:
            default = field.info.default
            if default is None:
                default = field.setting.unset
            self.parameters[field.name] = _CREATE[field.info.type](
                self._group, field.setting.key, default)

    def __getattr__(self, name: str) -> Parameter[Any]:
        parameters = self.__dict__.get('parameters', {})
        if name in parameters:
            return parameters[name]
        raise AttributeError(f'{type(self).__name__} has no setting {name!r}')

    def values(self) -> dict[str, Any]:
        """The config values of the settings (``Setting.unset`` becomes ``None``)."""
        out: dict[str, Any] = {}
        for field in self.fields:
            value = self.parameters[field.name].get_value()
            unset = field.setting.unset
            out[field.name] = None if unset is not None and value == unset else value
        return out


@dataclass
class PluginSettings:
    """All four groups, registered once per Ptychodus settings registry."""

    backend: BackendSettings
    model: ConfigSettings
    training: ConfigSettings
    inference: ConfigSettings

    @classmethod
    def register(cls, registry: SettingsRegistry) -> PluginSettings:
        return cls(BackendSettings(registry),
                   ConfigSettings(registry, GROUP_MODEL, ModelConfig),
                   ConfigSettings(registry, GROUP_TRAINING, TrainingConfig),
                   ConfigSettings(registry, GROUP_INFERENCE, InferenceConfig))

    def groups(self) -> tuple[_Group, ...]:
        return (self.backend, self.model, self.training, self.inference)

    def backend_name(self) -> str:
        """The selected backend, checked (``ValueError`` naming the setting otherwise)."""
        value = self.backend.backend.get_value().strip().lower()
        if value not in BACKENDS:
            raise ValueError(f'{GROUP_BACKEND}.Backend: expected one of {list(BACKENDS)}, '
                             f'found {self.backend.backend.get_value()!r}')
        return value

    def model_config(self, model_type: str, N: int = 0) -> ModelConfig:
        return ModelConfig(N=N, model_type=model_type, **self.model.values())

    def training_config(self, model_type: str, N: int = 0,
                        output_dir: Path | None = None) -> TrainingConfig:
        """A validated :class:`TrainingConfig` (``N=0``: the worker sets it from the data).
        Ptychodus shows the losses itself, so no training log is written."""
        return TrainingConfig(model=self.model_config(model_type, N),
                              backend=self.backend_name(),
                              output_dir=output_dir or Path('training_outputs'),
                              logger='none', **self.training.values())

    def inference_config(self, model_type: str, N: int = 0,
                         model_path: Path | None = None) -> InferenceConfig:
        return InferenceConfig(model=self.model_config(model_type, N),
                               backend=self.backend_name(), model_path=model_path,
                               **self.inference.values())

    def validate(self, model_type: str = 'pinn') -> str:
        """'' when every setting is valid, else the first problem (for the GUI panel)."""
        try:
            self.training_config(model_type)
            self.inference_config(model_type)
        except (ValueError, TypeError) as exc:
            return str(exc)
        return ''
