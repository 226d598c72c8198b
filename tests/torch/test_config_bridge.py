"""Shared <-> torch configuration translation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ptycho.config.config import InferenceConfig, ModelConfig, TrainingConfig
from ptycho_torch import config_bridge, torch_config


def shared_config(**overrides) -> TrainingConfig:
    values = dict(model=ModelConfig(N=128, gridsize=2, model_type='pinn', amp_activation='swish',
                                    n_filters_scale=3, probe_mask=True, pad_object=False),
                  nepochs=7, batch_size=8, learning_rate=5e-4, neighbor_count=6, n_groups=100,
                  nphotons=1e6, mae_weight=0.2, nll_weight=0.8, probe_trainable=True,
                  intensity_scale_trainable=False, subsample_seed=7, sequential_sampling=True,
                  output_dir=Path('/tmp/out'), logger='mlflow', backend='pytorch')
    values.update(overrides)
    return TrainingConfig(**values)


def test_renamed_fields_translate():
    data, model, training = config_bridge.to_torch(shared_config())
    assert model.grid_size == (2, 2) and data.grid_size == (2, 2) and model.C == 4
    assert model.mode == 'unsupervised'
    assert model.amp_activation == 'silu'
    assert training.epochs == 7
    assert data.K == 6 and data.n_groups == 100 and data.seed == 7
    assert (model.N, model.n_filters_scale, model.probe_mask, model.pad_object) == (128, 3, True, False)
    assert (training.learning_rate, training.mae_weight, training.probe_trainable) == (5e-4, 0.2, True)
    assert training.intensity_scale_trainable is False and training.logger == 'mlflow'


def test_supervised_and_default_seed():
    config = shared_config(model=ModelConfig(N=64, model_type='supervised'), subsample_seed=None)
    data, model, training = config_bridge.to_torch(config)
    assert model.mode == 'supervised' and data.seed == 42 and training.seed == 42


def test_round_trip_is_identity():
    original = shared_config()
    back = config_bridge.from_torch(*config_bridge.to_torch(original))
    # swish and silu are the same activation; the torch side names it silu.
    expected = dataclasses.replace(original, model=dataclasses.replace(original.model,
                                                                       amp_activation='silu'))
    assert back == expected


def test_unmappable_values_raise_clear_errors():
    model = torch_config.ModelConfig(N=64, mode='semi-supervised')
    with pytest.raises(ValueError, match=r"mode='semi-supervised'.*expected one of"):
        config_bridge.from_torch_model(model)
    with pytest.raises(ValueError, match=r'grid_size=\(2, 3\).*square'):
        config_bridge.from_torch_model(torch_config.ModelConfig(N=64, grid_size=(2, 3)))
    with pytest.raises(ValueError, match=r"amp_activation='tanh'"):
        config_bridge.from_torch_model(torch_config.ModelConfig(N=64, amp_activation='tanh'))
    with pytest.raises(ValueError, match='N: expected one of'):
        config_bridge.to_torch(shared_config(model=ModelConfig(N=0)))
    data, model, training = config_bridge.to_torch(shared_config())
    with pytest.raises(ValueError, match='disagrees'):
        config_bridge.from_torch(dataclasses.replace(data, N=64), model, training)


def test_inference_config_from_training():
    infer = config_bridge.inference_from_training(shared_config(), n_groups=None)
    assert isinstance(infer, InferenceConfig)
    assert infer.model == shared_config().model and infer.n_groups is None
    assert infer.neighbor_count == 6 and infer.backend == 'pytorch'


# --------------------------------------------------------------- the views are derived
def test_views_hold_every_core_field_under_the_rename_table():
    """Mechanically: the torch names are the core names except where RENAMES says, and the
    model and training views leave out no core field (types and defaults are the core's)."""
    model_view = {f.name for f in dataclasses.fields(torch_config.ModelConfig)}
    training_view = {f.name for f in dataclasses.fields(torch_config.TrainingConfig)}
    for core_cls, view, prefix, left_out in (
            (ModelConfig, torch_config.ModelConfig, 'model.', set()),
            (TrainingConfig, torch_config.TrainingConfig, '', torch_config.NOT_IN_TRAINING_VIEW)):
        names = model_view if view is torch_config.ModelConfig else training_view
        for f in dataclasses.fields(core_cls):
            if f.name in left_out:
                continue
            rename = torch_config.RENAMES.get(f.name)
            torch_name = rename.torch_name if rename else f.name
            assert torch_name in names, (core_cls.__name__, f.name)
            assert torch_config.core_path(view, torch_name) == prefix + f.name
            if rename is None:
                torch_field = next(t for t in dataclasses.fields(view) if t.name == f.name)
                assert torch_field.default == f.default, f.name
    for view in torch_config.VIEWS:  # and nothing that is not a core field
        for f in dataclasses.fields(view):
            path = torch_config.core_path(view, f.name)
            cls = ModelConfig if path.startswith('model.') else TrainingConfig
            assert path.removeprefix('model.') in {c.name for c in dataclasses.fields(cls)}


def test_a_field_added_to_the_core_appears_in_the_torch_views_without_edits():
    """A copy of the core dataclasses with one new field each: the derived views carry the
    fields (type, default), the bridge fills them and translates them back."""
    Model = dataclasses.make_dataclass(
        'ModelConfig', [('dropout', float, dataclasses.field(default=0.1))], bases=(ModelConfig,))
    Training = dataclasses.make_dataclass(
        'TrainingConfig', [('warmup_epochs', int, dataclasses.field(default=2))],
        bases=(TrainingConfig,))
    model_view = torch_config.derive('ModelConfig', torch_config.model_paths(Model), 'test',
                                     model_cls=Model)
    training_view = torch_config.derive('TrainingConfig', torch_config.training_paths(Training),
                                        'test', run_cls=Training)
    assert model_view().dropout == 0.1 and training_view().warmup_epochs == 2
    grid = ModelConfig().gridsize
    assert model_view().grid_size == (grid, grid) and training_view().epochs == 50  # renames

    config = Training(model=Model(N=64, dropout=0.3, gridsize=3), warmup_epochs=5,
                      neighbor_count=9, nepochs=3)
    torch_model = config_bridge._to_view(model_view, config.model)
    torch_training = config_bridge._to_view(training_view, config)
    assert (torch_model.dropout, torch_model.grid_size) == (0.3, (3, 3))
    assert (torch_training.warmup_epochs, torch_training.epochs) == (5, 3)
    model_values, run_values = config_bridge._collect((torch_model, torch_training))
    assert model_values['dropout'] == 0.3 and model_values['gridsize'] == 3
    assert run_values['warmup_epochs'] == 5 and run_values['nepochs'] == 3


def test_views_round_trip_through_checkpoint_dicts():
    """What a checkpoint stores (plain JSON types) builds the same view again; a checkpoint
    written before a field existed takes the field's default."""
    import json

    _, model, training = config_bridge.to_torch(shared_config())
    for view in (model, training):
        plain = json.loads(json.dumps(dataclasses.asdict(view), default=str))
        assert torch_config.view_from_dict(type(view), plain) == view
    old = {k: v for k, v in dataclasses.asdict(training).items() if k != 'num_nodes'}
    assert torch_config.view_from_dict(torch_config.TrainingConfig, old).num_nodes == 1
    with pytest.raises(ValueError, match=r"unknown keys \['not_a_field'\]"):
        torch_config.view_from_dict(torch_config.TrainingConfig, {'not_a_field': 1})
