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
