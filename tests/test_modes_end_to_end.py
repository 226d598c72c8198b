"""Every documented mode trains and reconstructs end to end through the backend contract:
supervised in both backends, TensorFlow at gridsize 2, N = 128 in both, N = 256 once.

Tiny scans and one or two epochs: these check that each mode runs and behaves (losses
finite and falling, bundles that reload, finite images of the right size), not quality.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ptycho.config.config import ModelConfig, TrainingConfig
from ptycho.simulation import default_object_size, simulate_dataset
from ptycho.workflows.backend_selector import get_backend
from ptycho.workflows.contract import inference_config_for, reconstruct


def _scan(N: int, positions: int, seed: int = 1):
    return simulate_dataset(N=N, n_positions=positions, seed=seed,
                            object_size=default_object_size(N, positions))


def _run(backend_name: str, tmp_path: Path, *, N: int = 64, gridsize: int = 1,
         model_type: str = 'pinn', positions: int = 32, epochs: int = 2) -> None:
    train = _scan(N, positions)
    config = TrainingConfig(
        model=ModelConfig(N=N, gridsize=gridsize, n_filters_scale=1, model_type=model_type),
        nepochs=epochs, batch_size=8, output_dir=tmp_path, backend=backend_name,
        logger='none', validation_split=0.0, accelerator='cpu', learning_rate=2e-3)
    backend = get_backend(backend_name)
    trained = backend.train(train, None, config)
    losses = trained.history['train_loss']
    assert len(losses) == epochs and np.all(np.isfinite(losses))
    if epochs > 1:
        assert losses[-1] < losses[0]
    loaded = backend.load(tmp_path)
    assert loaded.config.model.N == N and loaded.config.model.gridsize == gridsize
    assert loaded.config.model.model_type == model_type
    recon = reconstruct(backend, loaded, _scan(N, 12, seed=2), inference_config_for(loaded))
    assert recon.groups.patches.shape[1:] == (N, N)
    assert np.isfinite(recon.obj).all() and recon.coverage.max() > 0


@pytest.mark.parametrize('backend', ['tensorflow', 'pytorch'])
def test_supervised(backend: str, tmp_path: Path) -> None:
    _run(backend, tmp_path, model_type='supervised')


def test_tensorflow_gridsize_2(tmp_path: Path) -> None:
    _run('tensorflow', tmp_path, gridsize=2)


@pytest.mark.parametrize('backend', ['tensorflow', 'pytorch'])
def test_patch_size_128(backend: str, tmp_path: Path) -> None:
    _run(backend, tmp_path, N=128, positions=16, epochs=1)


def test_patch_size_256(tmp_path: Path) -> None:
    _run('pytorch', tmp_path, N=256, positions=8, epochs=1)
