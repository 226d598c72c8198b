"""Config flags generated from the dataclasses: every field, booleans, YAML + flag precedence."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest
import yaml

from ptycho.cli import build_parser
from ptycho.cli_config import parse_bool
from ptycho.config.config import InferenceConfig, ModelConfig, TrainingConfig, load_yaml

from cli_helpers import assert_user_error, run_cli


def _train_config(*argv: str, yaml_path: Path | None = None) -> TrainingConfig:
    from ptycho.cli.run_config import resolve

    args = build_parser().parse_args(['train', *argv] + (['--config', str(yaml_path)]
                                                          if yaml_path else []))
    return resolve(TrainingConfig, args)[0]


def test_every_config_field_has_a_flag() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    train_flags = {s for a in sub.choices['train']._actions for s in a.option_strings}
    infer_flags = {s for a in sub.choices['infer']._actions for s in a.option_strings}
    for cls, flags in ((TrainingConfig, train_flags), (ModelConfig, train_flags),
                       (InferenceConfig, infer_flags)):
        for f in dataclasses.fields(cls):
            if f.name != 'model':
                assert f'--{f.name}' in flags, (cls.__name__, f.name)


def test_flag_choices_and_help_come_from_the_field_metadata() -> None:
    from ptycho.config.config import describe

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    actions = {a.dest: a for a in sub.choices['train']._actions}
    for cls, prefix in ((TrainingConfig, ''), (ModelConfig, 'model.')):
        for info in describe(cls):
            action = actions[prefix + info.name]
            assert tuple(action.choices or ()) == info.choices, info.name
            assert info.help.replace('%', '%%') in action.help, info.name


@pytest.mark.parametrize('text,value', [('true', True), ('False', False), ('yes', True),
                                        ('NO', False), ('1', True), ('0', False),
                                        ('on', True), ('off', False)])
def test_parse_bool_words(text: str, value: bool) -> None:
    assert parse_bool(text) is value


def test_boolean_flags_parse_words_and_bare_flag() -> None:
    config = _train_config('--probe_trainable', 'yes', '--intensity-scale-trainable', '0',
                           '--object_big', 'false', '--debug', '--sequential_sampling', 'True')
    assert config.probe_trainable is True
    assert config.intensity_scale_trainable is False
    assert config.model.object_big is False
    assert config.debug is True
    assert config.sequential_sampling is True


def test_typed_flags() -> None:
    config = _train_config('--N', '128', '--n_groups', '7', '--subsample_seed', 'none',
                           '--learning-rate', '2e-4', '--train-data', 'a/b.npz',
                           '--output-dir', 'out')
    assert config.model.N == 128
    assert config.n_groups == 7 and config.subsample_seed is None
    assert config.learning_rate == pytest.approx(2e-4)
    assert config.train_data_file == Path('a/b.npz') and config.output_dir == Path('out')


def test_yaml_is_base_and_flags_win(tmp_path: Path) -> None:
    path = tmp_path / 'run.yaml'
    path.write_text(yaml.safe_dump({'nepochs': 7, 'batch_size': 8, 'backend': 'pytorch',
                                    'model': {'gridsize': 2, 'n_filters_scale': 3}}))
    config = _train_config('--nepochs', '3', '--n_filters_scale', '1', yaml_path=path)
    assert config.nepochs == 3 and config.model.n_filters_scale == 1  # flags win
    assert config.batch_size == 8 and config.model.gridsize == 2  # YAML kept
    assert config.backend == 'pytorch'
    assert config.learning_rate == TrainingConfig().learning_rate  # defaults fill the rest


def test_bad_flag_values_are_one_line_errors(tmp_path: Path) -> None:
    for argv, needles in ((['--N', '100'], ['--N', '100']),
                          (['--nepochs', 'many'], ['--nepochs', 'many']),
                          (['--debug', 'maybe'], ['--debug', 'maybe']),
                          (['--learning_rate', '5'], ['learning_rate', '5'])):
        result = run_cli('train', '--train-data', 'x.npz', *argv, cwd=tmp_path)
        assert_user_error(result, *needles)


def test_yaml_errors(tmp_path: Path) -> None:
    bad_key = tmp_path / 'bad.yaml'
    bad_key.write_text('nepochs: 3\nnot_a_field: 1\n')
    assert_user_error(run_cli('train', '--config', bad_key, cwd=tmp_path), 'not_a_field')
    assert_user_error(run_cli('train', '--config', tmp_path / 'nope.yaml', cwd=tmp_path),
                      'nope.yaml')


def test_round_trip_of_saved_yaml(tmp_path: Path) -> None:
    from ptycho.config.config import save_yaml

    config = _train_config('--nepochs', '4', '--gridsize', '2', '--neighbor_count', '6')
    save_yaml(config, tmp_path / 'config.yaml')
    again = load_yaml(TrainingConfig, tmp_path / 'config.yaml')
    assert again == config
