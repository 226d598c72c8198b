"""The section 5 network, the section 6 physics layers and Lightning reloads."""

from __future__ import annotations

import dataclasses
import math

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from _torch_data import tiny_config, tiny_raw
from ptycho_torch import config_bridge
from ptycho_torch.torch_config import ModelConfig, TrainingConfig
from ptycho_torch.data import as_torch_container
from ptycho_torch.model import PtychoNet, PtychoPINN_Lightning, autocast_dtype, count_parameters
from ptycho_torch.workflows.training import backprojection_cache


def conv(c_in: int, c_out: int) -> int:
    return 9 * c_in * c_out + c_out


def small_model(**changes: object) -> ModelConfig:
    """A narrow gridsize-1 network (one pattern per sample, as these tests feed it)."""
    return ModelConfig(**{'N': 64, 'grid_size': (1, 1), 'n_filters_scale': 1, **changes})


def expected_parameters(N: int, scale: int, C: int, pad_object: bool, probe_big: bool,
                        backprojection: bool = True, skips: bool = True) -> int:
    """Parameter count written out from architecture.md section 5."""
    L = int(math.log2(N)) - 3
    w = [16 * scale * 2 ** k for k in range(L)]
    total, c_in = 0, C * (3 if backprojection else 1)
    for width in w:
        total += conv(c_in, width) + conv(width, width)
        c_in = width
    steps = w[-2::-1] + ([] if pad_object else [w[0]])
    window = N // 2 if pad_object else N
    decoder, c_in, size = 0, w[-1], 8
    for width in steps:
        size *= 2
        level = int(math.log2(window // size))  # encoder level with window/size px per cell
        skip = w[level] if skips and 2 ** level * size == window and level < L else 0
        decoder += conv(c_in + skip, width) + conv(width, width)
        c_in = width
    decoder += conv(c_in, C)
    if pad_object and probe_big:
        decoder += conv(w[0], C)
    return total + 2 * decoder


@pytest.mark.parametrize('N,scale,grid,pad,big,features,skips', [
    (64, 2, 1, True, True, 'backprojection', True), (64, 1, 2, True, False, 'amplitude', False),
    (128, 1, 1, False, True, 'backprojection', False), (64, 2, 2, False, False, 'amplitude', True),
    (64, 1, 2, True, True, 'backprojection', True), (128, 1, 2, False, True, 'backprojection', True)])
def test_parameter_count_and_shapes(N, scale, grid, pad, big, features, skips):
    config = ModelConfig(N=N, grid_size=(grid, grid), n_filters_scale=scale, pad_object=pad,
                         probe_big=big, input_features=features, skip_connections=skips)
    net = PtychoNet(config)
    C = grid * grid
    assert count_parameters(net) == expected_parameters(N, scale, C, pad, big,
                                                        features == 'backprojection', skips)
    with torch.no_grad():
        amp, phase = net(torch.rand(2, C * (3 if features == 'backprojection' else 1), N, N))
    assert amp.shape == phase.shape == (2, C, N, N)
    assert float(phase.detach().abs().max()) < math.pi
    if pad and not big:  # pad_object confines the object to the central N/2 window
        assert float(amp[..., : N // 4, :].abs().max()) == 0.0


@pytest.mark.parametrize('activation', ['sigmoid', 'silu', 'softplus', 'relu'])
def test_amplitude_activations(activation):
    net = PtychoNet(small_model(amp_activation=activation, input_features='amplitude'))
    amp, _ = net(torch.rand(1, 1, 64, 64))
    assert torch.isfinite(amp).all()


def test_gain_and_inference_scaling():
    module = PtychoPINN_Lightning(small_model(), TrainingConfig(nphotons=1e6))
    model = module.model
    assert model.s0 == pytest.approx(math.sqrt(1e6) / 32)
    with torch.no_grad():
        model.log_scale.add_(math.log(2.0))
    assert float(model.gain()) == pytest.approx(2.0, rel=1e-6)
    X = torch.rand(3, 1, 64, 64)
    amp, _, obj = model.object_patches(X)
    raw_amp, _ = model.net(model.network_input(X))
    torch.testing.assert_close(amp, 2.0 * raw_amp)
    recon = module.diffraction_to_obj()(X * module.intensity_scale, torch.zeros(3, 1, 2))
    assert recon.shape == (3, 64, 64, 1) and recon.dtype == torch.complex64
    torch.testing.assert_close(recon[..., 0], obj[:, 0], rtol=1e-5, atol=1e-6)


def test_trainable_flags():
    fixed = PtychoPINN_Lightning(small_model(),
                                 TrainingConfig(intensity_scale_trainable=False))
    assert not fixed.model.log_scale.requires_grad
    assert 'model.probe_real' in dict(fixed.named_buffers())
    free = PtychoPINN_Lightning(small_model(),
                                TrainingConfig(probe_trainable=True))
    assert 'model.probe_real' in dict(free.named_parameters())


def test_probe_mask_applies_disk():
    module = PtychoPINN_Lightning(small_model(probe_mask=True),
                                  TrainingConfig(), probe=np.ones((64, 64), np.complex64))
    probe = module.model.probe
    assert probe[32, 32] == 1 and probe[0, 0] == 0 and probe[32, 32 + 17] == 0


def test_supervised_loss_needs_and_uses_truth():
    module = PtychoPINN_Lightning(small_model(mode='supervised'),
                                  TrainingConfig())
    batch = {'X': torch.rand(2, 1, 64, 64), 'offsets': torch.zeros(2, 1, 2)}
    with pytest.raises(ValueError, match='ground-truth'):
        module.compute_loss(batch)
    batch['Y'] = torch.polar(torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64))
    loss = module.compute_loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0


def test_load_from_checkpoint_needs_no_arguments(tmp_path):
    probe = (np.random.default_rng(0).normal(size=(64, 64)) + 0j).astype(np.complex64)
    module = PtychoPINN_Lightning(ModelConfig(N=64, grid_size=(2, 2), n_filters_scale=1),
                                  TrainingConfig(nphotons=1e7, probe_trainable=True), probe=probe)
    with torch.no_grad():
        module.model.log_scale.add_(0.25)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator='cpu')
    trainer.strategy.connect(module)
    path = tmp_path / 'm.ckpt'
    trainer.save_checkpoint(path)
    loaded = PtychoPINN_Lightning.load_from_checkpoint(path)
    assert loaded.model_config == module.model_config
    assert loaded.intensity_scale == pytest.approx(module.intensity_scale)
    torch.testing.assert_close(loaded.model.probe, module.model.probe)
    for (name, a), (_, b) in zip(module.state_dict().items(), loaded.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)


def test_backprojection_input_cached_equals_computed_per_batch(tmp_path):
    """Training may precompute the back-projection; the loss must not notice."""
    config = tiny_config(tmp_path, gridsize=2)
    data = as_torch_container(tiny_raw(), config)
    _, model_cfg, training_cfg = config_bridge.to_torch(config)
    module = PtychoPINN_Lightning(model_cfg, training_cfg, probe=data.probe)
    cache = backprojection_cache(module.model, data)
    assert cache is not None and cache.shape == (len(data.X), 8, 64, 64)
    batch = {'X': data.X[:5], 'offsets': data.local_offsets[:5].float()}
    with torch.no_grad():
        live = module.compute_loss(batch)
        cached = module.compute_loss({**batch, 'features': cache[:5]})
    torch.testing.assert_close(live, cached, rtol=1e-5, atol=1e-6)
    # a trained probe changes the input as it learns: computed per batch then
    trainable = PtychoPINN_Lightning(
        model_cfg, dataclasses.replace(training_cfg, probe_trainable=True), probe=data.probe)
    assert backprojection_cache(trainable.model, data) is None


def test_checkpoint_hparams_without_new_model_keys_load_the_old_network():
    """Checkpoints from before input_features/skip_connections hold the amplitude-input net."""
    old = {k: v for k, v in dataclasses.asdict(small_model()).items()
           if k not in ('input_features', 'skip_connections')}
    module = PtychoPINN_Lightning(old, TrainingConfig())
    assert module.model_config.input_features == 'amplitude'
    assert module.model_config.skip_connections is False
    assert module.model.net.encoder.levels[0][0].in_channels == 1


def test_network_precision_bfloat16_is_close_to_float32_and_returns_float32():
    torch.manual_seed(0)
    exact = PtychoNet(small_model(network_precision='float32'))
    fast = PtychoNet(small_model(network_precision='bfloat16'))
    fast.load_state_dict(exact.state_dict())
    x = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        (a32, p32), (a16, p16) = exact(x), fast(x)
    assert a16.dtype == p16.dtype == torch.float32
    assert float((a16 - a32).abs().max()) < 0.05 * float(a32.abs().max())
    assert float((p16 - p32).abs().max()) < 0.05 * math.pi
    assert autocast_dtype('float32', torch.device('cpu')) is None
    assert autocast_dtype('bfloat16', torch.device('cpu')) is torch.bfloat16
    native = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    assert autocast_dtype('auto', torch.device('cpu')) is (torch.bfloat16 if native else None)


def test_lr_plateau_counts_any_decrease_of_a_negative_loss():
    """Same rule as the TF backend (tests/test_tf_workflow.py): halve after `patience` epochs
    without a decrease, however small the decrease and although the loss is negative."""
    module = PtychoPINN_Lightning(small_model(),
                                  TrainingConfig(learning_rate=1e-3, lr_plateau_patience=2))
    conf = module.configure_optimizers()
    scheduler, optimizer = conf['lr_scheduler']['scheduler'], conf['optimizer']
    loss = -3.876
    for _ in range(10):  # steady 1e-6 decreases are progress
        loss -= 1e-6
        scheduler.step(loss)
    assert optimizer.param_groups[0]['lr'] == 1e-3
    scheduler.step(loss + 1e-5)  # slightly worse: not an improvement
    assert optimizer.param_groups[0]['lr'] == 1e-3
    scheduler.step(loss + 1e-5)
    assert optimizer.param_groups[0]['lr'] == pytest.approx(5e-4)
