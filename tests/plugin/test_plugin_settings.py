"""The plugin's settings and panel rows are generated from the config fields' metadata."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from ptychodus.api.parameters import (
    BooleanParameter,
    IntegerParameter,
    RealParameter,
    StringParameter,
)
from ptychodus.api.settings import SettingsRegistry

from ptycho.config.config import InferenceConfig, ModelConfig, Setting, TrainingConfig, describe
from ptychopinn_plugin.settings import (
    GROUP_INFERENCE,
    GROUP_MODEL,
    GROUP_TRAINING,
    ConfigSettings,
    PluginSettings,
)

GROUPS = {ModelConfig: GROUP_MODEL, TrainingConfig: GROUP_TRAINING,
          InferenceConfig: GROUP_INFERENCE}
PARAMETER_TYPES = {bool: BooleanParameter, int: IntegerParameter, float: RealParameter,
                   str: StringParameter}

# Keys users' saved settings files hold: they must keep loading (specs/ptychodus_api_spec.md).
RELEASED_KEYS = {
    GROUP_MODEL: {'GridSize', 'NumFiltersScale', 'AmpActivation', 'ObjectBig', 'ProbeBig',
                  'ProbeMask', 'PadObject', 'ProbeScale', 'GaussianSmoothingSigma',
                  'InputFeatures', 'BackprojectionIterations', 'SkipConnections'},
    GROUP_TRAINING: {'NumEpochs', 'BatchSize', 'LearningRate', 'NumPhotons', 'NLLWeight',
                     'MAEWeight', 'RealspaceMAEWeight', 'RealspaceWeight', 'NumGroups',
                     'NeighborCount', 'Seed', 'ValidationSplit', 'IntensityScaleTrainable',
                     'ProbeTrainable', 'Accelerator', 'Devices', 'Strategy', 'Precision'},
    GROUP_INFERENCE: {'BatchSize', 'NeighborCount', 'Device'},
}


class RecordingBuilder:
    """Stands in for Ptychodus' ParameterViewBuilder: records (group, label, widget)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, Any, str]] = []

    def __getattr__(self, method: str) -> Any:
        def add(parameter: Any, *args: Any, tool_tip: str = '', group: str = '') -> None:
            label = args[-1]
            self.rows.append((group, label, method.removeprefix('add_'), parameter, tool_tip))
        return add


def _panel_rows(group: ConfigSettings, model_type: str) -> list[tuple[str, str, str, Any, str]]:
    from ptychopinn_plugin.panel import add_rows

    builder = RecordingBuilder()
    add_rows(builder, group, 'Title', model_type)  # type: ignore[arg-type]
    return builder.rows


def test_every_field_with_a_setting_is_a_typed_parameter_with_the_field_default() -> None:
    registry = SettingsRegistry()
    settings = PluginSettings.register(registry)
    for cls, name in GROUPS.items():
        stored = registry[name].parameters()
        declared = [info for info in describe(cls) if info.setting is not None]
        assert {info.setting.key for info in declared} == set(stored), name
        for info in declared:
            parameter = getattr(getattr(settings, cls.__name__.removesuffix('Config').lower()),
                                info.name)
            assert stored[info.setting.key] is parameter
            assert isinstance(parameter, PARAMETER_TYPES[info.type]), info.name
            expected = info.setting.unset if info.default is None else info.default
            assert parameter.get_value() == expected, info.name
    assert settings.training_config('pinn') == TrainingConfig(
        model=ModelConfig(N=0), logger='none')  # the defaults are the dataclasses'


def test_saved_settings_keys_are_kept() -> None:
    registry = SettingsRegistry()
    PluginSettings.register(registry)
    for name, keys in RELEASED_KEYS.items():
        assert keys <= set(registry[name].parameters()), name


def test_an_old_settings_file_loads(tmp_path: Path) -> None:
    path = tmp_path / 'settings.ini'
    path.write_text('[PtychoPINNDualTraining]\nNumGroups = 0\nSeed = 3\nNumEpochs = 9\n'
                    '[PtychoPINNDualModel]\nAmpActivation = swish\n'
                    '[PtychoPINNDualInference]\nDevice = cpu\n')
    registry = SettingsRegistry()
    settings = PluginSettings.register(registry)
    registry.open_settings(path)
    config = settings.training_config('pinn')
    assert (config.n_groups, config.subsample_seed, config.nepochs) == (None, 3, 9)
    assert config.model.amp_activation == 'swish'
    assert settings.inference_config('pinn').device == 'cpu'


@pytest.mark.parametrize('model_type', ['pinn', 'supervised'])
def test_every_shown_setting_is_a_panel_row(model_type: str) -> None:
    settings = PluginSettings.register(SettingsRegistry())
    for group in (settings.model, settings.training, settings.inference):
        rows = {label: (widget, parameter, tip)
                for _, label, widget, parameter, tip in _panel_rows(group, model_type)}
        for info in describe(group.config_class):
            setting = info.setting
            if setting is None:
                continue
            label = setting.label if info.type is bool else f'{setting.label}:'
            if not setting.shown or setting.model_type not in (None, model_type):
                assert label not in rows, info.name
                continue
            widget, parameter, tip = rows.pop(label)
            assert parameter is group.parameters[info.name]
            assert tip.lower() == info.help.lower()
            expected = ('check_box' if info.type is bool
                        else 'combo_box' if info.choices
                        else {int: 'integer_line_edit', float: 'decimal_line_edit',
                              str: 'line_edit'}[info.type])
            assert widget == expected, info.name
        assert not rows  # no row the metadata does not declare


def test_a_field_added_with_a_setting_appears_without_other_edits() -> None:
    """A copy of TrainingConfig with one new field: its settings group and panel row follow."""
    Extended = dataclasses.make_dataclass('TrainingConfig', [
        ('warmup_epochs', int, dataclasses.field(default=2, metadata={
            'help': 'epochs of linear learning-rate warm-up',
            'setting': Setting('WarmupEpochs', 'Warm-up Epochs')})),
        ('schedule', str, dataclasses.field(default='cosine', metadata={
            'help': 'learning-rate schedule', 'choices': ('cosine', 'step'),
            'setting': Setting('Schedule', 'Schedule', model_type='supervised')}))],
        bases=(TrainingConfig,))
    registry = SettingsRegistry()
    group = ConfigSettings(registry, 'Extended', Extended)
    assert registry['Extended'].parameters()['WarmupEpochs'].get_value() == 2
    assert group.values()['schedule'] == 'cosine'
    rows = {label: widget for _, label, widget, _, _ in _panel_rows(group, 'supervised')}
    assert rows['Warm-up Epochs:'] == 'integer_line_edit'
    assert rows['Schedule:'] == 'combo_box'
    assert 'Schedule:' not in {label for _, label, *_ in _panel_rows(group, 'pinn')}


def test_every_reconstruction_setting_reaches_the_run_config() -> None:
    """The panel's reconstruction settings are what the engine carries to the backend
    (``run_settings``): a new setting cannot be shown and then dropped."""
    from ptycho.workflows.contract import RUN_SETTINGS, run_settings

    shown = {info.name for info in describe(InferenceConfig) if info.setting is not None}
    assert shown == set(RUN_SETTINGS)
    chosen = InferenceConfig(batch_size=7, tiling='partition', inference_precision='bfloat16',
                             refine_epochs=3)
    carried = run_settings(chosen)
    assert carried['batch_size'] == 7 and carried['tiling'] == 'partition'
    assert carried['inference_precision'] == 'bfloat16' and carried['refine_epochs'] == 3
