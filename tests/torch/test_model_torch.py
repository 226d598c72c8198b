"""The section 5 network, the section 6 physics layers and Lightning reloads."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from ptycho_torch.config_params import ModelConfig, TrainingConfig
from ptycho_torch.model import PtychoNet, PtychoPINN_Lightning, count_parameters


def conv(c_in: int, c_out: int) -> int:
    return 9 * c_in * c_out + c_out


def expected_parameters(N: int, scale: int, C: int, pad_object: bool, probe_big: bool) -> int:
    """Parameter count written out from architecture.md section 5."""
    L = int(math.log2(N)) - 3
    w = [16 * scale * 2 ** k for k in range(L)]
    total, c_in = 0, C
    for width in w:
        total += conv(c_in, width) + conv(width, width)
        c_in = width
    steps = w[-2::-1] + ([] if pad_object else [w[0]])
    decoder, c_in = 0, w[-1]
    for width in steps:
        decoder += conv(c_in, width) + conv(width, width)
        c_in = width
    decoder += conv(c_in, C)
    if pad_object and probe_big:
        decoder += conv(w[0], C)
    return total + 2 * decoder


@pytest.mark.parametrize('N,scale,grid,pad,big', [(64, 2, 1, True, True), (64, 1, 2, True, False),
                                                  (128, 1, 1, False, True), (64, 2, 2, False, False)])
def test_parameter_count_and_shapes(N, scale, grid, pad, big):
    config = ModelConfig(N=N, grid_size=(grid, grid), n_filters_scale=scale, pad_object=pad,
                         probe_big=big)
    net = PtychoNet(config)
    assert count_parameters(net) == expected_parameters(N, scale, grid * grid, pad, big)
    with torch.no_grad():
        amp, phase = net(torch.rand(2, grid * grid, N, N))
    assert amp.shape == phase.shape == (2, grid * grid, N, N)
    assert float(phase.detach().abs().max()) < math.pi
    if pad and not big:  # pad_object confines the object to the central N/2 window
        assert float(amp[..., : N // 4, :].abs().max()) == 0.0


@pytest.mark.parametrize('activation', ['sigmoid', 'silu', 'softplus', 'relu'])
def test_amplitude_activations(activation):
    net = PtychoNet(ModelConfig(N=64, n_filters_scale=1, amp_activation=activation))
    amp, _ = net(torch.rand(1, 1, 64, 64))
    assert torch.isfinite(amp).all()


def test_gain_and_inference_scaling():
    module = PtychoPINN_Lightning(ModelConfig(N=64, n_filters_scale=1), TrainingConfig(nphotons=1e6))
    model = module.model
    assert model.s0 == pytest.approx(math.sqrt(1e6) / 32)
    with torch.no_grad():
        model.log_scale.add_(math.log(2.0))
    assert float(model.gain()) == pytest.approx(2.0, rel=1e-6)
    X = torch.rand(3, 1, 64, 64)
    amp, _, obj = model.object_patches(X)
    raw_amp, _ = model.net(X)
    torch.testing.assert_close(amp, 2.0 * raw_amp)
    recon = module.diffraction_to_obj()(X * module.intensity_scale, torch.zeros(3, 1, 2))
    assert recon.shape == (3, 64, 64, 1) and recon.dtype == torch.complex64
    torch.testing.assert_close(recon[..., 0], obj[:, 0], rtol=1e-5, atol=1e-6)


def test_trainable_flags():
    fixed = PtychoPINN_Lightning(ModelConfig(N=64, n_filters_scale=1),
                                 TrainingConfig(intensity_scale_trainable=False))
    assert not fixed.model.log_scale.requires_grad
    assert 'model.probe_real' in dict(fixed.named_buffers())
    free = PtychoPINN_Lightning(ModelConfig(N=64, n_filters_scale=1),
                                TrainingConfig(probe_trainable=True))
    assert 'model.probe_real' in dict(free.named_parameters())


def test_probe_mask_applies_disk():
    module = PtychoPINN_Lightning(ModelConfig(N=64, n_filters_scale=1, probe_mask=True),
                                  TrainingConfig(), probe=np.ones((64, 64), np.complex64))
    probe = module.model.probe
    assert probe[32, 32] == 1 and probe[0, 0] == 0 and probe[32, 32 + 17] == 0


def test_supervised_loss_needs_and_uses_truth():
    module = PtychoPINN_Lightning(ModelConfig(N=64, n_filters_scale=1, mode='supervised'),
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
