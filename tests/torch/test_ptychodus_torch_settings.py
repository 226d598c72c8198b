"""The PtychoPINN-Torch layer's parts, one at a time: settings translation, the data window,
the output canvas, probe-weighted stitching, checkpoints trained outside Ptychodus."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from _torch_data import tiny_config, tiny_raw
from ptycho.config import config as core
from ptycho_torch import config_params as api
from ptycho_torch.api import settings_map
from ptycho_torch.api.settings_map import Request, UnsupportedSettingError, from_core

REPO = Path(__file__).resolve().parents[2]


def _request(**changes: object) -> Request:
    configs = {cls: cls() for cls in api.CONFIG_CLASSES}
    for key, value in changes.items():
        name, field = key.split('__')
        cls = {'data': api.DataConfig, 'model': api.ModelConfig, 'training': api.TrainingConfig,
               'inference': api.InferenceConfig}[name]
        configs[cls] = dataclasses.replace(configs[cls], **{field: value})
    return Request(*configs.values())


def test_every_field_has_exactly_one_meaning() -> None:
    groups = [settings_map.MAPPED, settings_map.NO_COUNTERPART, settings_map.RECORDED]
    for cls in api.CONFIG_CLASSES:
        names = [f.name for f in dataclasses.fields(cls)]
        for name in names:
            homes = [g for g in groups if name in g.get(cls, ())]
            homes += [1] if (cls, name) in settings_map.FIXED else []
            homes += [1] if (cls, name) in settings_map.INACTIVE_UNLESS else []
            assert len(homes) == 1, (cls.__name__, name, len(homes))
    spec = (REPO / 'specs' / 'ptychodus_api_spec.md').read_text()
    section = spec[spec.index('## 5. Ptychodus\' built-in PtychoPINN-Torch library'):]
    for cls in api.CONFIG_CLASSES:
        for f in dataclasses.fields(cls):
            shown = settings_map.SETTING_NAMES.get((cls, f.name), f.name)
            assert f.name in section or shown.split('/')[0] in section, (cls.__name__, f.name)


def test_ptychodus_defaults_are_accepted() -> None:
    assert Request(*(cls() for cls in api.CONFIG_CLASSES)).problems() == []


@pytest.mark.parametrize('cls, name', [(cls, name) for cls, names in
                                       settings_map.NO_COUNTERPART.items() for name in names]
                         + list(settings_map.FIXED))
def test_a_changed_unsupported_setting_is_refused_by_name(cls: type, name: str) -> None:
    default = getattr(cls(), name)
    changed = {bool: (not default) if isinstance(default, bool) else None,
               int: 3, float: 0.37, str: 'Other', type(None): 'Total_Variation'}
    value = changed[type(default)] if not isinstance(default, bool) else not default
    key = {api.DataConfig: 'data', api.ModelConfig: 'model', api.TrainingConfig: 'training',
           api.InferenceConfig: 'inference'}[cls]
    with pytest.raises(UnsupportedSettingError, match=re.escape(settings_map.setting_name(
            cls, name))):
        _request(**{f'{key}__{name}': value}).check()


def test_mapped_settings_reach_the_core_config(tmp_path: Path) -> None:
    request = _request(data__N=64, data__grid_size=(1, 1), data__C=1, model__C_model=1,
                       model__C_forward=1, model__decoder_last_amp_channels=1, data__K=5,
                       model__mode='Supervised', model__amp_activation='sigmoid',
                       model__loss_function='MAE', training__nll=False, training__epochs=7,
                       training__batch_size=8, training__learning_rate=0.003,
                       training__device='cpu', model__n_filters_scale=1,
                       model__intensity_scale_trainable=True).check()
    config = request.training_config(nphotons=2.5e5, output_dir=tmp_path)
    assert (config.model.N, config.model.gridsize, config.model.model_type,
            config.model.amp_activation, config.model.n_filters_scale) == (
        64, 1, 'supervised', 'sigmoid', 1)
    assert (config.nll_weight, config.mae_weight, config.nepochs, config.batch_size,
            config.learning_rate, config.neighbor_count, config.nphotons, config.accelerator,
            config.intensity_scale_trainable, config.backend) == (
        0.0, 1.0, 7, 8, 0.003, 5, 2.5e5, 'cpu', True, 'pytorch')
    assert request.stitch_crop() == 32 and _request(inference__middle_trim=0).stitch_crop() is None
    assert request.trainer_devices() == (1, 'auto')


def test_contradictions_and_bad_values_are_named_together() -> None:
    with pytest.raises(UnsupportedSettingError) as caught:
        _request(data__C=3, data__grid_size=(2, 3), training__nll=False,
                 inference__patch_weighting='gauss').check()
    message = str(caught.value)
    for part in ('grid_size_y/grid_size_x', 'use_negative_log_likelihood_loss',
                 'patch_weighting_method'):
        assert part in message


def test_from_core_round_trips_the_network() -> None:
    config = core.TrainingConfig(model=core.ModelConfig(N=128, gridsize=2, n_filters_scale=1,
                                                        amp_activation='swish'),
                                 neighbor_count=6, backend='pytorch')
    request = Request(*from_core(config)).check()
    assert request.model_config() == dataclasses.replace(config.model)


def test_position_window_keeps_the_inner_fraction() -> None:
    from ptycho_torch.api.base_api import position_window

    raw = tiny_raw()
    assert position_window(raw, (0.0, 1.0), (0.0, 1.0)) is raw
    inner = position_window(raw, (0.25, 0.75), (0.0, 1.0))
    x = raw.xcoords
    lo, hi = x.min() + 0.25 * np.ptp(x), x.min() + 0.75 * np.ptp(x)
    assert len(inner) == int(np.sum((x >= lo) & (x <= hi))) < len(raw)
    assert len(raw) == 64  # the input is not modified


def test_canvas_is_laid_out_as_ptychodus_lays_out_its_object() -> None:
    from ptychodus.api.object import compute_object_geometry
    from ptychodus.api.probe import ProbeGeometry
    from ptychodus.api.probe_positions import ProbePosition

    from ptycho_torch.api.base_api import centred_canvas

    rng = np.random.default_rng(1)
    positions = rng.uniform(40, 170, size=(50, 2))
    pixel = 1e-8
    geometry = compute_object_geometry(
        [ProbePosition(i, x * pixel, y * pixel) for i, (x, y) in enumerate(positions)],
        ProbeGeometry(64, 64, pixel, pixel))
    shape, origin = centred_canvas(positions, 64)
    assert shape == (geometry.height_px, geometry.width_px)
    # Canvas pixel (W-1)/2 is the scan centre, where Ptychodus puts its object centre.
    centre = (positions.min(axis=0) + positions.max(axis=0)) / 2
    assert origin[0] + (shape[1] - 1) / 2 == pytest.approx(centre[0])
    assert origin[1] + (shape[0] - 1) / 2 == pytest.approx(centre[1])


def test_weighted_stitch() -> None:
    from ptycho_torch import physics

    rng = np.random.default_rng(0)
    patches = torch.from_numpy((rng.normal(size=(6, 16, 16)) + 1j * rng.normal(size=(6, 16, 16))
                                ).astype(np.complex64))
    positions = rng.uniform(20, 30, size=(6, 2))
    plain, cov = physics.stitch(patches, positions, 8)
    ones, cov_ones = physics.stitch(patches, positions, 8, weights=torch.ones(8, 8))
    torch.testing.assert_close(ones, plain)
    torch.testing.assert_close(cov_ones, cov)
    # A weighted average of equal values is that value, whatever the weights.
    constant = torch.full((6, 16, 16), 0.5 + 0.25j, dtype=torch.complex64)
    weights = torch.from_numpy(rng.uniform(0.1, 1.0, size=(8, 8)))
    image, coverage = physics.stitch(constant, positions, 8, weights=weights)
    covered = coverage > 1e-3
    torch.testing.assert_close(image[covered], constant[0, 0, 0].expand(int(covered.sum())),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match='non-negative'):
        physics.stitch(patches, positions, 8, weights=-torch.ones(8, 8))


def test_find_best_checkpoint(tmp_path: Path) -> None:
    from ptycho_torch.lightning_utils import find_best_checkpoint

    assert find_best_checkpoint(tmp_path) is None
    (tmp_path / 'checkpoints').mkdir()
    (tmp_path / 'checkpoints' / 'epoch=001.ckpt').write_bytes(b'x')
    assert find_best_checkpoint(tmp_path).name == 'epoch=001.ckpt'
    (tmp_path / 'checkpoints' / 'last.ckpt').write_bytes(b'x')
    assert find_best_checkpoint(tmp_path).name == 'last.ckpt'


def test_a_cli_trained_checkpoint_loads_the_ptychodus_way(tmp_path: Path) -> None:
    """``ptychopinn train --backend pytorch`` checkpoints open in Ptychodus' torch library."""
    from ptycho_torch.api.base_api import ConfigManager, PtychoModel
    from ptycho_torch.model import PtychoPINN_Lightning
    from ptycho_torch.workflows.training import train_cdi_model_torch

    trained = train_cdi_model_torch(tiny_raw(), None, tiny_config(tmp_path, nepochs=1))
    path = trained['checkpoint']
    data, model, training, inference = PtychoModel._extract_configs_from_checkpoint(path)
    loaded = PtychoPINN_Lightning.load_from_checkpoint(
        path, model_config=model, data_config=data, training_config=training,
        inference_config=inference)
    ptycho_model = PtychoModel(model, data, training, inference)
    ptycho_model.model = loaded
    ConfigManager.from_loaded_model(ptycho_model).validate_arch_compatibility(ptycho_model)
    original = trained['models']['lightning_module'].state_dict()
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, original[key])
    # A config that describes another network is refused, naming the field.
    wider = ConfigManager(data, dataclasses.replace(model, n_filters_scale=2), training,
                          inference)
    with pytest.raises(ValueError, match='n_filters_scale'):
        wider.validate_arch_compatibility(ptycho_model)


def test_bad_checkpoint_is_named(tmp_path: Path) -> None:
    from ptycho_torch.api.base_api import PtychoModel

    bad = tmp_path / 'broken.ckpt'
    bad.write_bytes(b'not a checkpoint')
    with pytest.raises(ValueError, match='broken.ckpt'):
        PtychoModel._extract_configs_from_checkpoint(bad)


def test_configs_import_without_frameworks() -> None:
    """Ptychodus builds these configs in its GUI process: no torch, Lightning or TensorFlow."""
    import subprocess
    import sys

    code = ('import sys, pickle, ptycho_torch.config_params as c, ptycho_torch.api.settings_map; '
            'pickle.loads(pickle.dumps(c.ModelConfig())); '
            'print(sorted(m for m in ("torch", "lightning", "tensorflow") if m in sys.modules))')
    run = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == '[]'
