"""The plugin's Ptychodus settings groups and their translation into run configs.

The values live in Ptychodus' own settings registry, so they are saved to and read from
the Ptychodus settings file like every other reconstructor's. The parameters carry no
minimum/maximum: Ptychodus clamps bounded parameters silently, which would hide a bad
value in a settings file. Instead every value is checked by the
``ptycho.config.config`` dataclasses, whose ``ValueError`` names the field, what was
expected and what was found; that message is what Ptychodus shows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ptychodus.api.observer import Observable, Observer
from ptychodus.api.parameters import (
    BooleanParameter,
    IntegerParameter,
    RealParameter,
    StringParameter,
)
from ptychodus.api.settings import SettingsRegistry

from ptycho.config.config import (
    AMP_ACTIVATIONS,
    BACKENDS,
    InferenceConfig,
    ModelConfig,
    TrainingConfig,
)

logger = logging.getLogger(__name__)

GROUP_BACKEND = 'PtychoPINNDualBackend'
GROUP_MODEL = 'PtychoPINNDualModel'
GROUP_TRAINING = 'PtychoPINNDualTraining'
GROUP_INFERENCE = 'PtychoPINNDualInference'
GROUP_NAMES = (GROUP_BACKEND, GROUP_MODEL, GROUP_TRAINING, GROUP_INFERENCE)

# The amplitude activations a user can pick ('silu' is an alias of 'swish').
AMP_ACTIVATION_CHOICES: tuple[str, ...] = tuple(a for a in AMP_ACTIVATIONS if a != 'silu')


class _Group(Observable, Observer):
    """One Ptychodus settings group; re-notifies when any of its parameters changes."""

    def __init__(self, registry: SettingsRegistry, name: str) -> None:
        super().__init__()
        self.name = name
        self._group = registry.create_group(name)
        self._group.add_observer(self)

    def _string(self, key: str, value: str) -> StringParameter:
        return self._group.create_string_parameter(key, value)

    def _int(self, key: str, value: int) -> IntegerParameter:
        return self._group.create_integer_parameter(key, value)

    def _real(self, key: str, value: float) -> RealParameter:
        return self._group.create_real_parameter(key, value)

    def _bool(self, key: str, value: bool) -> BooleanParameter:
        return self._group.create_boolean_parameter(key, value)

    def _update(self, observable: Observable) -> None:
        if observable is self._group:
            self.notify_observers()


class BackendSettings(_Group):
    def __init__(self, registry: SettingsRegistry) -> None:
        super().__init__(registry, GROUP_BACKEND)
        self.backend = self._string('Backend', 'tensorflow')


class ModelSettings(_Group):
    """Network settings; the patch size N is not a setting: it is the pattern size."""

    def __init__(self, registry: SettingsRegistry) -> None:
        super().__init__(registry, GROUP_MODEL)
        defaults = ModelConfig(N=0)
        self.gridsize = self._int('GridSize', defaults.gridsize)
        self.n_filters_scale = self._int('NumFiltersScale', defaults.n_filters_scale)
        self.amp_activation = self._string('AmpActivation', defaults.amp_activation)
        self.object_big = self._bool('ObjectBig', defaults.object_big)
        self.probe_big = self._bool('ProbeBig', defaults.probe_big)
        self.probe_mask = self._bool('ProbeMask', defaults.probe_mask)
        self.pad_object = self._bool('PadObject', defaults.pad_object)
        self.probe_scale = self._real('ProbeScale', defaults.probe_scale)
        self.gaussian_smoothing_sigma = self._real(
            'GaussianSmoothingSigma', defaults.gaussian_smoothing_sigma)
        self.input_features = self._string('InputFeatures', defaults.input_features)
        self.backprojection_iterations = self._int('BackprojectionIterations',
                                                   defaults.backprojection_iterations)
        self.skip_connections = self._bool('SkipConnections', defaults.skip_connections)


class TrainingSettings(_Group):
    def __init__(self, registry: SettingsRegistry) -> None:
        super().__init__(registry, GROUP_TRAINING)
        defaults = TrainingConfig(model=ModelConfig(N=0))
        self.nepochs = self._int('NumEpochs', defaults.nepochs)
        self.batch_size = self._int('BatchSize', defaults.batch_size)
        self.learning_rate = self._real('LearningRate', defaults.learning_rate)
        self.nphotons = self._real('NumPhotons', defaults.nphotons)
        self.nll_weight = self._real('NLLWeight', defaults.nll_weight)
        self.mae_weight = self._real('MAEWeight', defaults.mae_weight)
        self.realspace_mae_weight = self._real('RealspaceMAEWeight', defaults.realspace_mae_weight)
        self.realspace_weight = self._real('RealspaceWeight', defaults.realspace_weight)
        self.n_groups = self._int('NumGroups', 0)  # 0 = one group per scan position
        self.neighbor_count = self._int('NeighborCount', defaults.neighbor_count)
        self.seed = self._int('Seed', defaults.seed)
        self.validation_split = self._real('ValidationSplit', defaults.validation_split)
        self.intensity_scale_trainable = self._bool(
            'IntensityScaleTrainable', defaults.intensity_scale_trainable)
        self.probe_trainable = self._bool('ProbeTrainable', defaults.probe_trainable)
        self.accelerator = self._string('Accelerator', defaults.accelerator)
        self.devices = self._int('Devices', defaults.devices)
        self.strategy = self._string('Strategy', defaults.strategy)
        self.precision = self._string('Precision', defaults.precision)


class InferenceSettings(_Group):
    def __init__(self, registry: SettingsRegistry) -> None:
        super().__init__(registry, GROUP_INFERENCE)
        defaults = InferenceConfig(model=ModelConfig(N=0))
        self.batch_size = self._int('BatchSize', defaults.batch_size)
        self.neighbor_count = self._int('NeighborCount', defaults.neighbor_count)
        self.device = self._string('Device', defaults.device)


@dataclass
class PluginSettings:
    """All four groups, registered once per Ptychodus settings registry."""

    backend: BackendSettings
    model: ModelSettings
    training: TrainingSettings
    inference: InferenceSettings

    @classmethod
    def register(cls, registry: SettingsRegistry) -> PluginSettings:
        return cls(BackendSettings(registry), ModelSettings(registry),
                   TrainingSettings(registry), InferenceSettings(registry))

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
        m = self.model
        return ModelConfig(
            N=N,
            gridsize=m.gridsize.get_value(),
            n_filters_scale=m.n_filters_scale.get_value(),
            model_type=model_type,
            amp_activation=m.amp_activation.get_value(),
            object_big=m.object_big.get_value(),
            probe_big=m.probe_big.get_value(),
            probe_mask=m.probe_mask.get_value(),
            pad_object=m.pad_object.get_value(),
            probe_scale=m.probe_scale.get_value(),
            gaussian_smoothing_sigma=m.gaussian_smoothing_sigma.get_value(),
            input_features=m.input_features.get_value(),
            backprojection_iterations=m.backprojection_iterations.get_value(),
            skip_connections=m.skip_connections.get_value(),
        )

    def training_config(self, model_type: str, N: int = 0,
                        output_dir: Path | None = None) -> TrainingConfig:
        """A validated :class:`TrainingConfig` (``N=0``: the worker sets it from the data)."""
        t = self.training
        n_groups = t.n_groups.get_value()
        return TrainingConfig(
            model=self.model_config(model_type, N),
            backend=self.backend_name(),
            nepochs=t.nepochs.get_value(),
            batch_size=t.batch_size.get_value(),
            learning_rate=t.learning_rate.get_value(),
            nphotons=t.nphotons.get_value(),
            nll_weight=t.nll_weight.get_value(),
            mae_weight=t.mae_weight.get_value(),
            realspace_mae_weight=t.realspace_mae_weight.get_value(),
            realspace_weight=t.realspace_weight.get_value(),
            n_groups=None if n_groups == 0 else n_groups,
            neighbor_count=t.neighbor_count.get_value(),
            subsample_seed=t.seed.get_value(),
            validation_split=t.validation_split.get_value(),
            intensity_scale_trainable=t.intensity_scale_trainable.get_value(),
            probe_trainable=t.probe_trainable.get_value(),
            accelerator=t.accelerator.get_value(),
            devices=t.devices.get_value(),
            strategy=t.strategy.get_value(),
            precision=t.precision.get_value(),
            output_dir=output_dir or Path('training_outputs'),
            logger='none',
        )

    def inference_config(self, model_type: str, N: int = 0,
                         model_path: Path | None = None) -> InferenceConfig:
        i = self.inference
        return InferenceConfig(
            model=self.model_config(model_type, N),
            backend=self.backend_name(),
            model_path=model_path,
            batch_size=i.batch_size.get_value(),
            neighbor_count=i.neighbor_count.get_value(),
            device=i.device.get_value(),
        )

    def validate(self, model_type: str = 'pinn') -> str:
        """'' when every setting is valid, else the first problem (for the GUI panel)."""
        try:
            self.training_config(model_type)
            self.inference_config(model_type)
        except (ValueError, TypeError) as exc:
            return str(exc)
        return ''
