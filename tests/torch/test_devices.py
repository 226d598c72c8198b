"""Device choice: reconstruction runs where ``InferenceConfig.device`` says; GPU-only code
paths are checked where a GPU exists and skipped, with the reason, where none does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from _torch_data import tiny_config, tiny_raw
from ptycho.config.config import InferenceConfig, TrainingConfig
from ptycho.workflows.contract import inference_config_for, reconstruct
from ptycho_torch import physics
from ptycho_torch.backend import TorchBackend
from ptycho_torch.inference import resolve_device

NO_GPU = not torch.cuda.is_available()
NO_GPU_REASON = 'needs a CUDA GPU; this machine has none (torch.cuda.is_available() is False)'


@pytest.fixture(scope='module')
def trained(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp('devices')
    return TorchBackend().train(tiny_raw(), None, tiny_config(out, nepochs=1))


def test_inference_runs_on_the_configured_device(trained) -> None:
    backend = TorchBackend()
    config = inference_config_for(trained.model, device='cpu')
    groups = backend.predict(trained.model, tiny_raw(seed=1), config)
    assert groups.device == 'cpu'
    network = trained.model.handle['diffraction_to_obj']
    assert {p.device.type for p in network.parameters()} == {'cpu'}
    recon = reconstruct(backend, trained.model, tiny_raw(seed=1), config)
    assert recon.groups.device == 'cpu' and np.isfinite(recon.obj).all()
    assert resolve_device('auto') == torch.device('cuda' if torch.cuda.is_available() else 'cpu')


@pytest.mark.skipif(not NO_GPU, reason='checks the error for a missing GPU')
def test_asking_for_a_missing_gpu_is_an_error_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="InferenceConfig.device: expected a visible CUDA GPU"):
        resolve_device('cuda:0')


def test_device_settings_are_validated() -> None:
    with pytest.raises(ValueError, match='InferenceConfig.device'):
        InferenceConfig(device='tpu')
    with pytest.raises(ValueError, match="TrainingConfig.strategy: expected 'ddp' or "
                                         "'ddp_spawn' when devices > 1"):
        TrainingConfig(backend='pytorch', devices=2)
    with pytest.raises(ValueError, match="TrainingConfig.num_nodes: expected 1 with the "
                                         "tensorflow backend"):
        TrainingConfig(backend='tensorflow', num_nodes=2)
    with pytest.raises(ValueError, match='TrainingConfig.precision'):
        TrainingConfig(backend='pytorch', precision='bf16-mixed',
                       model=tiny_config(Path('.')).model.__class__(network_precision='bfloat16'))


def test_dense_and_sparse_placement_agree() -> None:
    """DensePlacement is what CUDA runs; on the CPU it must equal the sparse placement."""
    rng = np.random.default_rng(0)
    offsets = torch.from_numpy(rng.uniform(-6, 6, size=(3, 4, 2)))
    patches = torch.from_numpy(rng.normal(size=(3, 4, 16, 16)).astype(np.float32))
    sparse = physics.GroupPlacement(offsets, 16, torch.float32)
    dense = physics.DensePlacement(offsets, 16, torch.float32)
    torch.testing.assert_close(dense.place(patches), sparse.place(patches), rtol=1e-5, atol=1e-5)
    canvas = torch.from_numpy(rng.normal(size=(3, 32, 32)).astype(np.float32))
    torch.testing.assert_close(dense.read(canvas), sparse.read(canvas), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(NO_GPU, reason=NO_GPU_REASON)
def test_gpu_reconstruction_matches_cpu(trained) -> None:  # pragma: no cover - GPU machines
    backend = TorchBackend()
    scan = tiny_raw(seed=1)
    on_cpu = reconstruct(backend, trained.model, scan,
                         inference_config_for(trained.model, device='cpu'))
    on_gpu = reconstruct(backend, trained.model, scan,
                         inference_config_for(trained.model, device='cuda'))
    assert on_gpu.groups.device.startswith('cuda')
    np.testing.assert_allclose(on_gpu.obj, on_cpu.obj, rtol=1e-3, atol=1e-4)


@pytest.mark.skipif(NO_GPU, reason=NO_GPU_REASON)
def test_gpu_backprojection_is_deterministic() -> None:  # pragma: no cover - GPU machines
    rng = np.random.default_rng(1)
    X = torch.from_numpy(rng.uniform(0, 1, (4, 4, 64, 64)).astype(np.float32)).cuda()
    probe = torch.from_numpy(np.full((64, 64), 0.5, np.complex64)).cuda()
    offsets = torch.from_numpy(rng.uniform(-5, 5, (4, 4, 2))).cuda()
    first = physics.backprojection(X, probe, offsets, 4)
    torch.testing.assert_close(physics.backprojection(X, probe, offsets, 4), first)
