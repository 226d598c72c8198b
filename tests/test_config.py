"""Configuration validation, pickling, YAML, the legacy mirror, and the import wall."""

from __future__ import annotations

import json
import math
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from ptycho import params
from ptycho.config.config import (InferenceConfig, ModelConfig, TrainingConfig, from_dict,
                                  load_yaml, save_yaml, to_dict, update_legacy_dict)

REPO = Path(__file__).resolve().parents[1]

MODEL_ERRORS = [
    ({'N': 100}, 'ModelConfig.N: expected one of [64, 128, 256], found 100'),
    ({'gridsize': 0}, 'ModelConfig.gridsize: expected an integer >= 1, found 0'),
    ({'gridsize': 2.0}, 'ModelConfig.gridsize: expected an integer >= 1, found 2.0'),
    ({'n_filters_scale': 0}, 'ModelConfig.n_filters_scale'),
    ({'model_type': 'gan'}, "ModelConfig.model_type: expected one of ['pinn', 'supervised'], found 'gan'"),
    ({'amp_activation': 'tanh'}, 'ModelConfig.amp_activation'),
    ({'object_big': 1}, 'ModelConfig.object_big: expected true or false, found 1'),
    ({'probe_big': 'yes'}, 'ModelConfig.probe_big'),
    ({'probe_mask': None}, 'ModelConfig.probe_mask'),
    ({'pad_object': 0}, 'ModelConfig.pad_object'),
    ({'probe_scale': 2.0}, 'ModelConfig.probe_scale: expected 4.0 (the probe is normalised by '
                           'its energy; probe scaling is not implemented), found 2.0'),
    ({'probe_scale': math.inf}, 'ModelConfig.probe_scale'),
    ({'gaussian_smoothing_sigma': -1.0}, 'ModelConfig.gaussian_smoothing_sigma'),
    ({'gaussian_smoothing_sigma': 1.5}, 'ModelConfig.gaussian_smoothing_sigma: expected 0.0 '
                                        '(smoothing of the object is not implemented), found 1.5'),
]

TRAINING_ERRORS = [
    ({'model': {'N': 64}}, 'TrainingConfig.model: expected a ModelConfig'),
    ({'backend': 'jax'}, "TrainingConfig.backend: expected one of ['tensorflow', 'pytorch'], found 'jax'"),
    ({'debug': 'no'}, 'TrainingConfig.debug'),
    ({'batch_size': 0}, 'TrainingConfig.batch_size'),
    ({'nepochs': 0}, 'TrainingConfig.nepochs'),
    ({'learning_rate': 0.0}, 'TrainingConfig.learning_rate'),
    ({'learning_rate': 2.0}, 'TrainingConfig.learning_rate: expected a finite number > 0.0 and <= 1.0'),
    ({'mae_weight': -0.1}, 'TrainingConfig.mae_weight'),
    ({'nll_weight': 1.5}, 'TrainingConfig.nll_weight'),
    ({'realspace_mae_weight': float('nan')}, 'TrainingConfig.realspace_mae_weight'),
    ({'realspace_weight': 2}, 'TrainingConfig.realspace_weight'),
    ({'nll_weight': 0.0, 'mae_weight': 0.0}, 'TrainingConfig.nll_weight/mae_weight: expected at least one positive'),
    ({'nphotons': 0}, 'TrainingConfig.nphotons'),
    ({'n_groups': 0}, 'TrainingConfig.n_groups'),
    ({'neighbor_count': 0}, 'TrainingConfig.neighbor_count'),
    ({'model': ModelConfig(gridsize=2), 'neighbor_count': 3}, 'TrainingConfig.neighbor_count: expected >= gridsize**2 = 4, found 3'),
    ({'positions_provided': 1}, 'TrainingConfig.positions_provided'),
    ({'positions_provided': False}, 'TrainingConfig.positions_provided: expected True'),
    ({'realspace_mae_weight': 0.5}, "TrainingConfig.realspace_mae_weight: expected 0 when "
                                    "ModelConfig.model_type is not 'supervised'"),
    ({'realspace_weight': 0.1}, 'TrainingConfig.realspace_weight: expected 0 when'),
    ({'num_workers': 2}, 'TrainingConfig.num_workers: expected 0 with the tensorflow backend'),
    ({'probe_trainable': None}, 'TrainingConfig.probe_trainable'),
    ({'intensity_scale_trainable': 'true'}, 'TrainingConfig.intensity_scale_trainable'),
    ({'sequential_sampling': 0}, 'TrainingConfig.sequential_sampling'),
    ({'subsample_seed': -1}, 'TrainingConfig.subsample_seed'),
    ({'validation_split': 0.6}, 'TrainingConfig.validation_split'),
    ({'early_stopping_patience': -1}, 'TrainingConfig.early_stopping_patience'),
    ({'lr_plateau_patience': 1.5}, 'TrainingConfig.lr_plateau_patience'),
    ({'logger': 'wandb'}, 'TrainingConfig.logger'),
    ({'num_workers': -2}, 'TrainingConfig.num_workers'),
    ({'train_data_file': 3}, 'expected a file path, found 3'),
]

INFERENCE_ERRORS = [
    ({'backend': 'torch'}, 'InferenceConfig.backend'),
    ({'n_groups': -5}, 'InferenceConfig.n_groups'),
    ({'neighbor_count': 0}, 'InferenceConfig.neighbor_count'),
    ({'batch_size': 0}, 'InferenceConfig.batch_size'),
    ({'subsample_seed': -3}, 'InferenceConfig.subsample_seed'),
    ({'sequential_sampling': 'yes'}, 'InferenceConfig.sequential_sampling'),
    ({'debug': 1}, 'InferenceConfig.debug'),
    ({'model': None}, 'InferenceConfig.model: expected a ModelConfig'),
    ({'model_path': 1.5}, 'expected a file path'),
]


@pytest.mark.parametrize('kwargs, message', MODEL_ERRORS)
def test_model_config_rules(kwargs, message):
    with pytest.raises(ValueError) as info:
        ModelConfig(**kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize('kwargs, message', TRAINING_ERRORS)
def test_training_config_rules(kwargs, message):
    with pytest.raises(ValueError) as info:
        TrainingConfig(**kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize('kwargs, message', INFERENCE_ERRORS)
def test_inference_config_rules(kwargs, message):
    with pytest.raises(ValueError) as info:
        InferenceConfig(**kwargs)
    assert message in str(info.value)


def test_valid_defaults_and_accepted_values():
    t = TrainingConfig(train_data_file='a.npz', output_dir='out')
    assert t.backend == 'tensorflow' and t.train_data_file == Path('a.npz')
    assert t.output_dir == Path('out') and t.seed == 42
    assert TrainingConfig(subsample_seed=None).seed == 42
    assert InferenceConfig(subsample_seed=7).seed == 7
    assert ModelConfig(gridsize=2).n_channels == 4
    for act in ('sigmoid', 'swish', 'silu', 'softplus', 'relu'):
        ModelConfig(amp_activation=act)
    TrainingConfig(model=ModelConfig(model_type='supervised'), nll_weight=0.0, backend='pytorch')
    TrainingConfig(model=ModelConfig(model_type='supervised'), realspace_mae_weight=0.5,
                   realspace_weight=1.0)
    TrainingConfig(backend='pytorch', num_workers=2)
    ModelConfig(probe_scale=4, gaussian_smoothing_sigma=0)  # Ptychodus' values, any number type
    TrainingConfig(model=ModelConfig(gridsize=2), neighbor_count=4)


def test_late_patch_size_like_ptychodus():
    config = TrainingConfig(model=ModelConfig(N=0), train_data_file=Path(), test_data_file=None,
                            output_dir=Path())
    with pytest.raises(ValueError, match='never set'):
        config.model.require_size()
    cfg: dict = {}
    update_legacy_dict(cfg, config)
    assert cfg['N'] == 0 and 'intensity_scale' not in cfg
    config.model.N = 64
    assert config.model.require_size() == 64
    update_legacy_dict(cfg, config)
    assert cfg['N'] == 64
    assert cfg['intensity_scale'] == pytest.approx(math.sqrt(1e9) / 32)
    config.model.N = 65  # assignment is unchecked; the consumer's check catches it
    with pytest.raises(ValueError, match='ModelConfig.N'):
        config.model.require_size()


def test_configs_pickle():
    t = TrainingConfig(model=ModelConfig(N=0, gridsize=2), train_data_file='x.npz',
                       backend='pytorch', n_groups=10)
    i = InferenceConfig(model=ModelConfig(N=128), model_path='m', test_data_file=Path('t.npz'))
    for config in (t, i, t.model):
        back = pickle.loads(pickle.dumps(config))
        assert back == config and back is not config
    back = pickle.loads(pickle.dumps(t))
    back.model.N = 64
    assert back.model.require_size() == 64 and t.model.N == 0


def test_yaml_round_trip(tmp_path):
    t = TrainingConfig(model=ModelConfig(N=128, gridsize=2, amp_activation='swish'),
                       train_data_file=Path('data/train.npz'), test_data_file=None,
                       backend='pytorch', n_groups=64, subsample_seed=None, learning_rate=5e-4)
    path = save_yaml(t, tmp_path / 'cfg' / 'train.yaml')
    assert load_yaml(TrainingConfig, path) == t
    assert [p.name for p in path.parent.iterdir()] == ['train.yaml']
    i = InferenceConfig(model=ModelConfig(N=64), model_path=Path('model'), batch_size=8)
    assert load_yaml(InferenceConfig, save_yaml(i, tmp_path / 'infer.yaml')) == i
    json.dumps(to_dict(t))  # plain types only
    assert from_dict(TrainingConfig, to_dict(t)) == t


def test_yaml_errors(tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('model: [1, 2\n')
    with pytest.raises(ValueError, match=f'{bad}: not valid YAML'):
        load_yaml(TrainingConfig, bad)
    listy = tmp_path / 'list.yaml'
    listy.write_text('- 1\n- 2\n')
    with pytest.raises(ValueError, match='expected a YAML mapping'):
        load_yaml(TrainingConfig, listy)
    unknown = tmp_path / 'unknown.yaml'
    unknown.write_text('nepochs: 3\nepochs: 4\nmodel:\n  size: 64\n')
    with pytest.raises(ValueError, match=r"unknown config keys \['size', 'epochs'\]"):
        load_yaml(TrainingConfig, unknown)
    invalid = tmp_path / 'invalid.yaml'
    invalid.write_text('nepochs: 0\n')
    with pytest.raises(ValueError, match='TrainingConfig.nepochs'):
        load_yaml(TrainingConfig, invalid)
    with pytest.raises(ValueError, match='cannot read config file'):
        load_yaml(TrainingConfig, tmp_path / 'missing.yaml')
    empty = tmp_path / 'empty.yaml'
    empty.write_text('')
    assert load_yaml(InferenceConfig, empty) == InferenceConfig()


def test_update_legacy_dict_mapping_and_none_skipping():
    cfg = {'test_data_file_path': 'keep.npz', 'n_groups': 99, 'unrelated': 1}
    t = TrainingConfig(model=ModelConfig(N=64, gridsize=2, object_big=False, probe_mask=True),
                       train_data_file=Path('tr.npz'), test_data_file=None, n_groups=None,
                       probe_trainable=True, intensity_scale_trainable=False,
                       output_dir=Path('runs/a'), neighbor_count=6,
                       nphotons=1e6)
    update_legacy_dict(cfg, t)
    assert cfg['object.big'] is False and cfg['probe.big'] is True and cfg['probe.mask'] is True
    assert cfg['probe.trainable'] is True and cfg['intensity_scale.trainable'] is False
    assert cfg['positions.provided'] is True
    assert cfg['output_prefix'] == 'runs/a' and cfg['train_data_file_path'] == 'tr.npz'
    assert cfg['test_data_file_path'] == 'keep.npz' and cfg['n_groups'] == 99  # None skipped
    assert cfg['N'] == 64 and cfg['gridsize'] == 2 and cfg['K'] == 6 and cfg['unrelated'] == 1
    assert cfg['intensity_scale'] == pytest.approx(1e3 / 32)
    for dataclass_name in ('object_big', 'probe_trainable', 'output_dir', 'train_data_file'):
        assert dataclass_name not in cfg
    cfg2: dict = {}
    update_legacy_dict(cfg2, InferenceConfig(model=ModelConfig(N=128), model_path=None,
                                             neighbor_count=7))
    assert 'model_path' not in cfg2 and cfg2['K'] == 7 and cfg2['N'] == 128
    assert 'intensity_scale' not in cfg2


def test_params_get_and_set(monkeypatch):
    monkeypatch.setattr(params, 'cfg', {})
    with pytest.raises(KeyError, match="'intensity_scale' is not set"):
        params.get('intensity_scale')
    update_legacy_dict(params.cfg, TrainingConfig())
    assert params.get('intensity_scale') == pytest.approx(math.sqrt(1e9) / 32)
    params.set('intensity_scale', 12.5)
    assert params.get('intensity_scale') == 12.5
    copy = params.params()
    copy['N'] = 1
    assert params.get('N') == 64


def test_core_imports_neither_tensorflow_nor_torch():
    code = ('import sys\n'
            'import ptycho.config.config, ptycho.raw_data, ptycho.loader, ptycho.probe, '
            'ptycho.physics, ptycho.params, ptycho.bundle\n'
            'heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "torch", '
            '"keras", "lightning"))\n'
            'print(heavy)\n')
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[]'


def test_bundles_without_the_newer_model_keys_describe_the_old_network(tmp_path):
    """A bundle written before input_features/skip_connections holds the amplitude-input net."""
    from ptycho.bundle import read_bundle, write_bundle
    from ptycho.config.config import LEGACY_MODEL_DEFAULTS

    old = to_dict(TrainingConfig(model=ModelConfig(N=64)))
    for key in LEGACY_MODEL_DEFAULTS:
        del old['model'][key]
    write_bundle(tmp_path, 'pytorch', {}, config=old, intensity_scale=1.0, model_names=[])
    model = from_dict(TrainingConfig, read_bundle(tmp_path).config).model
    assert (model.input_features, model.skip_connections) == ('amplitude', False)
    fresh = to_dict(TrainingConfig(model=ModelConfig(N=64)))
    write_bundle(tmp_path, 'pytorch', {}, config=fresh, intensity_scale=1.0, model_names=[])
    model = from_dict(TrainingConfig, read_bundle(tmp_path).config).model
    assert (model.input_features, model.skip_connections) == ('backprojection', True)


def test_bundles_with_settings_that_had_no_effect_still_load(tmp_path, caplog):
    """Values earlier versions accepted and ignored (now refused) load as what was trained."""
    from ptycho.bundle import read_bundle, write_bundle

    old = to_dict(TrainingConfig(model=ModelConfig(N=64)))
    old['model'].update(probe_scale=2.0, gaussian_smoothing_sigma=0.5)
    old.update(positions_provided=False, realspace_weight=0.3, num_workers=4)
    with pytest.raises(ValueError, match='probe_scale'):
        from_dict(TrainingConfig, old)
    write_bundle(tmp_path, 'tensorflow', {}, config=old, intensity_scale=1.0, model_names=[])
    with caplog.at_level('INFO', logger='ptycho.config.config'):
        loaded = from_dict(TrainingConfig, read_bundle(tmp_path).config)
    assert loaded == TrainingConfig(model=ModelConfig(N=64))
    assert 'model.probe_scale=2.0' in caplog.text and 'num_workers=4' in caplog.text
    supervised = to_dict(TrainingConfig(model=ModelConfig(N=64, model_type='supervised'),
                                        realspace_weight=0.3, backend='pytorch', num_workers=2))
    write_bundle(tmp_path, 'pytorch', {}, config=supervised, intensity_scale=1.0,
                 model_names=[])
    kept = from_dict(TrainingConfig, read_bundle(tmp_path).config)
    assert (kept.realspace_weight, kept.num_workers) == (0.3, 2)


def test_default_stitching_crop():
    from ptycho.physics import default_crop

    assert [default_crop(n) for n in (64, 128, 256)] == [20, 40, 80]
